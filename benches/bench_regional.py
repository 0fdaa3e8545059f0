"""Regional variants at scale: 200,000 generated cases per variant (tests/regional_variants.py)
grouped by the overlay (`import chs-drg --base`), by the standalone import and by the reference
interpreter of the regional tables: all three must agree on every case. Times the overlay run."""
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import record
from grouper.importers.chs_drg import import_chs_drg
from grouper.importers.regional import import_overlay
from grouper.io import cases_from_frame
from grouper.pipeline import group_frame
from grouper.scheme import load_scheme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from regional_variants import Reference, build_variant, variant_cases  # noqa: E402

N = 200_000


@pytest.mark.parametrize("name", ["north", "south"])
def test_regional_overlay_at_scale(benchmark, name, tables, pack, workdir):
    root = workdir / f"regional-{name}"
    region = build_variant(name, tables, root / "tables")
    import_chs_drg(region, root / "standalone", name=name, version="2024")
    import_overlay(region, pack, root / "overlay", name=name, version="2024")
    rows = variant_cases(tables, name, N, seed=17)
    cases = cases_from_frame(pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}))
    overlay_plan, standalone_plan = load_scheme(root / "overlay").plan, load_scheme(root / "standalone").plan
    benchmark.group = "regional"
    overlay = benchmark.pedantic(group_frame, args=(overlay_plan, cases), rounds=1, iterations=1)
    columns = ["status", "mdc", "adrg", "drg"]
    standalone = group_frame(standalone_plan, cases)
    assert overlay.select(columns).equals(standalone.select(columns))
    reference = Reference(region)
    expected = pl.DataFrame([reference.group(r) for r in rows], schema=columns, orient="row")
    bad = sum(a != b for a, b in zip(overlay.select(columns).rows(), expected.rows()))
    record(benchmark, target=f"regional variant {name}: overlay = standalone = reference on {N:,} cases",
           value=100 * (N - bad) / N, unit="%", op=">=", threshold=100.0, order=30, mismatches=bad)
    assert bad == 0
