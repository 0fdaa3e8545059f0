"""The Cython extensions and the package list; all other metadata is in pyproject.toml.

Packages are discovered (every folder of grouper/ with an __init__.py), so a new wing cannot be
left out of the installed package; grammars/ and tables/ are installed as grouper.grammars and
grouper.tables (package-dir in pyproject.toml).

The compiled kernels are optional at build time: on a machine without a C compiler the install
still succeeds (with a warning) and grouper runs on the pure-Python twins of the kernels
(`grouper --version` names the kernel in use). GROUPER_REQUIRE_EXTENSION=1 makes a failed build an
error instead; CI also checks that the kernels import.
"""
import os
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError

PACKAGES = [*find_packages(include=["grouper", "grouper.*"]), "grouper.grammars", "grouper.tables"]
BUILD_FAILURES = (CCompilerError, CompileError, ExecError, PlatformError, OSError)


def _required() -> bool:
    return os.environ.get("GROUPER_REQUIRE_EXTENSION", "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """build_ext that leaves a kernel out, with a warning, when it cannot be compiled."""

    def run(self):
        try:
            super().run()
        except BUILD_FAILURES as exc:  # e.g. no compiler at all
            self._skipped("the compiled kernels", exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except BUILD_FAILURES as exc:
            self._skipped(ext.name, exc)

    def _skipped(self, what, exc):
        if _required():
            raise exc
        print(f"WARNING: {what} could not be built ({exc}); grouper will use the pure-Python kernels, "
              "which give the same results more slowly. Install a C compiler and reinstall for the fast ones.",
              file=sys.stderr)


ext_modules = []
if not os.environ.get("GROUPER_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    debug = bool(os.environ.get("GROUPER_CYTHON_DEBUG"))
    ext_modules = cythonize(
        [Extension("grouper._kernel", ["ext/_kernel.pyx"]),
         Extension("grouper._dip_kernel", ["ext/_dip_kernel.pyx"]),
         Extension("grouper._settle_kernel", ["ext/_settle_kernel.pyx"]),
         Extension("grouper._text", ["ext/_text.pyx"]),
         Extension("grouper._cases", ["ext/_cases.pyx"])],
        force=debug,  # directives are not part of cythonize's dependency check
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": True,
        },
    )

setup(packages=PACKAGES, ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
