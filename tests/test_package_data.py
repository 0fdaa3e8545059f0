"""Python run from the checkout finds the grammars and the shipped tables (issue 17, item 4).

From the checkout root, `import grouper` is the source tree, which has no grouper.grammars or
grouper.tables (those are package-dir mappings of the installed package): the README's Python
examples failed there with ModuleNotFoundError. The editable install's finder is dropped first, so
the source tree is all Python sees, as after a regular `pip install .`.
"""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

SNIPPET = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, ".")
import grouper
from grouper import dip
assert grouper.__file__.startswith({root!r}), grouper.__file__
scheme = grouper.load_scheme(None)
results = grouper.group("tables/demo/discharges.csv", scheme)
pack = dip.load_dip_scheme("tables/dip-demo")
print(results.height)
"""


def test_python_from_the_checkout_finds_grammars_and_tables(tmp_path):
    env = {"GROUPER_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", SNIPPET.format(root=str(ROOT))], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ModuleNotFoundError" not in done.stderr
