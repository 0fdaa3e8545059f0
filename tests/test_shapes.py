"""Wide and list exports of the same records group alike (issue 7, defect 1).

A wide export (主要诊断编码 + 其他诊断编码1..N, 主要手术操作编码 + 其他手术操作编码1..N) is made from
the CHS-DRG 1.1 golden cases by `grouper.synth.to_wide`; both shapes go through the same reader
and grouper. The one thing a wide export cannot say is an empty *secondary* item (`A||B`): a blank
cell there is padding, so the strict comparison is against the list with those items removed.
"""
import polars as pl
import pytest

import grouper
from grouper import synth
from grouper.io import cases_from_frame

RESULT = ["id", "status", "mdc", "adrg", "drg", "reason"]


def test_blank_principal_procedure_keeps_its_slot():
    """`|55.6901` in list shape and a blank 主要手术操作编码 with 其他手术操作编码1 = 55.6901 are
    the same record: no procedure is promoted to principal, and the blank is reported."""
    listed = cases_from_frame(pl.DataFrame({"dx": ["N18.500"], "proc": ["|55.6901"]}))
    wide = cases_from_frame(pl.DataFrame({"主要诊断编码": ["N18.500"], "主要手术操作编码": [""],
                                          "其他手术操作编码1": ["55.6901"]}))
    assert wide["proc"].to_list() == listed["proc"].to_list() == [["", "55.6901"]]
    results, problems = grouper.group(wide, problems=True)
    assert ("bad_proc_format", "") in list(zip(problems["reason"], problems["detail"]))


def without_empty_secondary_items(column: pl.Series, *, kind: str) -> pl.Series:
    items = column.fill_null("").str.split("|")
    kept = items.list.eval(pl.element().filter((pl.int_range(pl.len()) == 0) | (pl.element() != "")))
    joined = kept.list.join("|")
    if kind == "proc":  # an empty principal with nothing after it is no procedure at all
        joined = pl.select(pl.when(joined == "").then(None).otherwise(joined)).to_series()
    return joined


@pytest.fixture(scope="module")
def golden_source(chs_tables):
    return synth.read_source(chs_tables / "golden" / "cases.csv")


def test_wide_and_list_shapes_agree_on_the_golden_set(chs_scheme, chs_tables, golden_source, tmp_path):
    wide_file = tmp_path / "wide.csv"
    synth.to_wide(golden_source).write_csv(wide_file)
    wide, wide_problems = grouper.group(wide_file, chs_scheme, problems=True)
    listed = grouper.group(chs_tables / "golden" / "cases.csv", chs_scheme)
    assert wide.height == listed.height == golden_source.height
    assert wide.select(RESULT).equals(listed.select(RESULT))

    # strictly equal, warnings and every problem included, once empty secondary items are gone
    cleaned = golden_source.with_columns(without_empty_secondary_items(golden_source["dx"], kind="dx").alias("dx"),
                                         without_empty_secondary_items(golden_source["proc"], kind="proc").alias("proc"))
    strict, strict_problems = grouper.group(cleaned, chs_scheme, problems=True)
    assert wide.equals(strict)
    assert wide_problems.equals(strict_problems)
    # the golden set has the case of defect 1 many times over
    assert golden_source.filter(pl.col("proc").str.starts_with("|")).height > 50
