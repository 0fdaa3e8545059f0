"""The fast readmission search (hash-prefix sort, grouper/payment/settle.py `readmissions`) agrees with
the exact one (sorting the strings) on random stays full of ties, shared patients and, with a
narrowed hash prefix, colliding partitions."""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from grouper.payment import settle as E
from settle_helpers import base_points_policy, policy


def _stays(seed: int, n: int, span_days: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    admission = rng.integers(0, span_days, n)
    los = rng.integers(0, 6, n)  # 0: same-day stays, so ties and zero gaps occur
    drg = rng.choice(["A11", "A13", "B11", "C11", None], n, p=[0.4, 0.2, 0.2, 0.15, 0.05])
    start = dt.date(1900, 1, 1) if span_days > 1 << 16 else dt.date(2025, 1, 1)
    frame = pl.DataFrame({
        "status": rng.choice(["grouped", "grouped", "grouped", "no_adrg"], n),
        "patient_id": rng.choice([f"p{i}" for i in range(n // 6)] + [None], n),
        "group": drg, "hospital": rng.choice(["H1", "H2", None], n),
        "admission_date": pl.Series(admission, dtype=pl.Int32).cast(pl.Date) + (start - dt.date(1970, 1, 1)),
        "id": rng.permutation(n).astype(str),
        "paid_by": rng.choice([0, 0, 0, 1, 2], n).astype(np.uint8),
        "case_type": rng.choice([TYPE for TYPE in range(len(E.CASE_TYPES))], n).astype(np.uint8),
    }).with_row_index("row")
    return frame.with_columns(pl.col("group").str.slice(0, 2).alias("adrg"),
                              (pl.col("admission_date") + pl.duration(days=pl.Series(los))).alias("discharge_date"))


def _exact(frame: pl.DataFrame, pol) -> list[float]:
    rule = pol["readmission"]
    key = "group" if rule["same"] == "drg" else "adrg"
    partition = ["patient_id", key, *(["hospital"] if rule["same_hospital"] else [])]
    exceptions = list(rule["exceptions"] or ())
    excepted = pl.col("group").is_in(exceptions) | pl.col("adrg").is_in(exceptions) if exceptions else pl.lit(False)
    reducible = (pl.col("paid_by") == E.PAY["group"]) & (pl.col("case_type") != E.TYPE["special_review"])
    stays = frame.lazy().filter((pl.col("status") == "grouped") & pl.col("patient_id").is_not_null()
                                & pl.col(key).is_not_null())
    rows = set(E._readmissions_exact(stays, partition, rule["days"], excepted, reducible).to_list())
    return [float(rule["factor"]) if r in rows else 1.0 for r in range(frame.height)]


@pytest.mark.parametrize("prefix_mask", [E._PREFIX_MASK, 0xC000_0000_0000_0000, 0xFF00_0000_0000_0000])
@pytest.mark.parametrize("readmission", [
    {"days": 15, "same": "drg", "factor": 0.5},
    {"days": 3, "same": "adrg", "factor": 0.7, "exceptions": ["C11"], "same_hospital": True},
    {"days": 0, "same": "adrg", "factor": 0.0},
])
def test_fast_search_equals_exact_search(tmp_path, monkeypatch, prefix_mask, readmission):
    monkeypatch.setattr(E, "_PREFIX_MASK", prefix_mask)
    pol = policy(tmp_path, base_points_policy(readmission=readmission))
    for seed in range(3):
        frame = _stays(seed, 3000, 60)
        got = E.readmissions(frame, pol)["readmission_factor"].to_list()
        assert got == _exact(frame, pol)
        assert sum(f != 1.0 for f in got) > 20  # the search found something to compare


def test_admissions_spanning_more_than_the_day_field_use_the_exact_search(tmp_path):
    pol = policy(tmp_path, base_points_policy(readmission={"days": 30000, "same": "drg", "factor": 0.5}))
    frame = _stays(5, 2000, 70_000)
    got = E.readmissions(frame, pol)["readmission_factor"].to_list()
    assert got == _exact(frame, pol)
    assert sum(f != 1.0 for f in got) > 20


def test_compiled_and_python_stay_search_agree():
    from grouper.payment import _settle_kernel_py as _kernel_py

    try:
        from grouper import _settle_kernel
    except ImportError:
        pytest.skip("the compiled settle kernel is not built")
    rng = np.random.default_rng(11)
    n = 20_000
    for mask in (E._PREFIX_MASK, 0xF000_0000_0000_0000):
        partition = rng.integers(0, 6000, n).astype(np.uint64)
        key = ((partition * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(mask)) | rng.integers(0, 365, n).astype(np.uint64)
        check = partition * np.uint64(31) + np.uint64(7)
        discharge = (key & np.uint64(0xFFFF)).astype(np.int32) + 20_000 + rng.integers(0, 5, n).astype(np.int32)
        excepted = (rng.random(n) < 0.1).astype(np.uint8)
        row = rng.permutation(n).astype(np.int64)
        outputs = []
        for kernel in (_kernel_py, _settle_kernel):
            candidates, exact = np.empty(n, np.int64), np.empty(n, np.int64)
            found, doubtful = kernel.next_stays(key, check, discharge, excepted, row, mask, 20_000, 7, candidates, exact)
            outputs.append((candidates[:found].tolist(), sorted(exact[:doubtful].tolist())))
        assert outputs[0] == outputs[1]
        if mask == E._PREFIX_MASK:
            assert len(outputs[0][0]) > 500 and 0 < len(outputs[0][1]) < n // 10
        else:  # 16 prefixes for 6,000 partitions: every run is in doubt
            assert outputs[0] == ([], list(range(n)))
