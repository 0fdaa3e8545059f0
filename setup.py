"""The Cython extensions and the package list; all other metadata is in pyproject.toml.

Packages are discovered (every folder of grouper/ with an __init__.py), so a new wing cannot be
left out of the installed package; grammars/ and tables/ are installed as grouper.grammars and
grouper.tables (package-dir in pyproject.toml).
"""
import os

from setuptools import Extension, find_packages, setup

PACKAGES = [*find_packages(include=["grouper", "grouper.*"]), "grouper.grammars", "grouper.tables"]

ext_modules = []
if not os.environ.get("GROUPER_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    debug = bool(os.environ.get("GROUPER_CYTHON_DEBUG"))
    ext_modules = cythonize(
        [Extension("grouper._kernel", ["ext/_kernel.pyx"]),
         Extension("grouper._dip_kernel", ["ext/_dip_kernel.pyx"]),
         Extension("grouper._settle_kernel", ["ext/_settle_kernel.pyx"])],
        force=debug,  # directives are not part of cythonize's dependency check
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": True,
        },
    )

setup(packages=PACKAGES, ext_modules=ext_modules)
