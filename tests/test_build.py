"""The compiled kernels are optional at build time (issue 17): without a C compiler the build
still succeeds, leaving the kernels out with a warning (grouper then runs the pure-Python twins and
says so); GROUPER_REQUIRE_EXTENSION=1 makes that a failure, as CI wants."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("Cython")


def _build_without_compiler(tmp_path, **env):
    tree = tmp_path / "src"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for folder in ("ext", "grammars", "tables"):
        shutil.copytree(ROOT / folder, tree / folder, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (tree / "grouper").mkdir()
    shutil.copy(ROOT / "grouper" / "__init__.py", tree / "grouper" / "__init__.py")
    environment = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), **env}
    environment.pop("GROUPER_NO_EXTENSIONS", None)
    environment.pop("GROUPER_REQUIRE_EXTENSION", None)
    environment.update(env)
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", "lib", "--build-temp", "tmp"],
                          cwd=tree, capture_output=True, text=True, env=environment, timeout=600)
    return done, tree


def test_build_without_a_c_compiler_succeeds_without_the_kernels(tmp_path):
    done, tree = _build_without_compiler(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "grouper._kernel could not be built" in done.stderr
    assert "pure-Python kernels" in done.stderr
    assert not list(tree.rglob("*.so"))


def test_build_without_a_c_compiler_fails_when_the_kernels_are_required(tmp_path):
    done, _ = _build_without_compiler(tmp_path, GROUPER_REQUIRE_EXTENSION="1")
    assert done.returncode != 0


def test_version_and_summary_name_the_kernel(tmp_path):
    env = {**os.environ, "GROUPER_NO_EXTENSIONS": "1"}
    version = subprocess.run([sys.executable, "-m", "grouper", "--version"], capture_output=True, text=True,
                             env=env, cwd=tmp_path, check=True).stdout
    assert "python kernel: GROUPER_NO_EXTENSIONS is set" in version
    cases = tmp_path / "cases.csv"
    cases.write_text("id,sex,age,dx,proc\n1,1,30,K35.300,\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "grouper", "group", str(cases), "-o", str(tmp_path / "out.csv")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "(python kernel: GROUPER_NO_EXTENSIONS is set)" in run.stderr
