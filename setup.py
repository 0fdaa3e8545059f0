"""Only the Cython extension lives here; all metadata is in pyproject.toml."""
import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("GROUPER_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    debug = bool(os.environ.get("GROUPER_CYTHON_DEBUG"))
    ext_modules = cythonize(
        [Extension("grouper._kernel", ["ext/_kernel.pyx"]),
         Extension("grouper._dip_kernel", ["ext/_dip_kernel.pyx"])],
        force=debug,  # directives are not part of cythonize's dependency check
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": True,
        },
    )

setup(ext_modules=ext_modules)
