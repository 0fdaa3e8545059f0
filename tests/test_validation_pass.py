"""The one-pass validation (grouper.engine.encode + the kernels' `check_cases`): the compiled pass
against its Python twin, and both against the definitions they replace.

- text matchers: the compiled kernel's hand-written code-format matchers against the regular
  expressions of grouper.engine.ir, as Polars applies them (every code of the national pack, tricky
  strings, hypothesis strings);
- interning: code ids from the string_view buffers against the Polars Enum cast they replace
  (`_code_lists`), also for sliced and chunked frames, nulls, long and non-ASCII codes;
- fields: plain integers parsed by the kernel against Polars' cast, the rest left to the full rules;
- whole batches: results and problems of the compiled pass equal the Python twin's, at any thread
  count, on deliberately bad input.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouper.engine import _kernel_py, ir
from grouper.engine.encode import Text, _code_lists, encode_cases, intern_lists
from grouper.io import cases_from_frame
from grouper.pipeline import group_frame
from grouper.scheme import load_scheme

from test_kernel_parity import cython_kernel

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tables" / "demo"
MINI = ROOT / "tests" / "fixtures" / "packs" / "mini"
MINI_QY = ROOT / "tests" / "fixtures" / "packs" / "mini-qy"
TRICKY = ["", " ", "A00.000", "A00.000 ", "a00.000", "A00.000x001", "A00.x01", "A00.x0", "A00.000x00", "A00.000x0011",
          "A01.001+K77.0*", "A17.000+G01*", "A17.000+G01", "A17.000+G0*", "K77.0*", "*", "+*", "A+B*", "V00.000",
          "V01.000", "V99", "V9", "W00", "X99.1", "Y98.x00", "Y99.000", "Y89", "51.2300", "00.0200x001", "01.6x00",
          "01.6x00x001", "17.91100", "17.912A0", "86.700x0013", "86.700x001", "99.9999 ", "1.2", "男", "Ａ00.000",
          "A00.000\n", "A00.000*\n", "17.912a0", "00.00000x001"]


@pytest.fixture(params=["python", "cython"])
def kernel(request):
    return _kernel_py if request.param == "python" else cython_kernel()


def _polars_flags(strings: list[str]) -> list[int]:
    """The definition: ir's patterns as Polars (Rust regex) applies them."""
    s = pl.Series(strings, dtype=pl.String)
    out = np.zeros(len(strings), np.int64)
    for flag, pattern in ((ir.CODE_DX_FORMAT, ir.DX_FORMAT), (ir.CODE_PROC_FORMAT, ir.PROC_FORMAT),
                          (ir.CODE_NOT_PRINCIPAL, ir.NOT_PRINCIPAL)):
        out += s.str.contains(pattern).fill_null(False).to_numpy() * flag
    return out.tolist()


def _kernel_flags(kernel, strings: list[str]) -> list[int]:
    out = np.zeros(len(strings), np.uint8)
    kernel.text_flags(*Text.of(pl.Series(strings, dtype=pl.String)).kernel_args(), out)
    return out.tolist()


def test_text_matchers_follow_the_patterns(kernel, chs_scheme):
    strings = TRICKY + list(chs_scheme.plan.codes)
    assert _kernel_flags(kernel, strings) == _polars_flags(strings)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet="AVWXYZK0123456789.x+* a\n男", max_size=16), min_size=1, max_size=40))
def test_text_matchers_on_any_string(strings):
    expected = _polars_flags(strings)
    assert _kernel_flags(_kernel_py, strings) == expected
    assert _kernel_flags(cython_kernel(), strings) == expected


def _random_lists(plan, n: int, seed: int) -> pl.Series:
    rng = random.Random(seed)
    codes = list(plan.codes)
    pool = TRICKY + ["a-very-long-unknown-code-of-many-bytes", "疾病编码很长的一个未知编码", None]
    return pl.Series([[rng.choice(codes) if rng.random() < 0.7 else rng.choice(pool) for _ in range(rng.randint(0, 7))]
                      if rng.random() > 0.05 else None for _ in range(n)], dtype=pl.List(pl.String))


@pytest.mark.parametrize("pack", [DEMO, MINI])
def test_interning_matches_the_enum_cast(kernel, pack):
    plan = load_scheme(pack).plan
    column = _random_lists(plan, 3000, 1)
    expected = _code_lists(column.fill_null(pl.lit([], pl.List(pl.String))), plan.code_enum(), plan.prefixes)
    for part in (column, column.slice(17, 2000), pl.concat([column.slice(0, 1000), column.slice(1000, 2000)], rechunk=False)):
        offsets, ids, text = intern_lists(plan, part, kernel)
        want_offsets, want_ids = _code_lists(part.fill_null(pl.lit([], pl.List(pl.String))), plan.code_enum(),
                                             plan.prefixes)
        assert np.array_equal(offsets, want_offsets) and np.array_equal(ids, want_ids)
        assert text.take(np.arange(len(ids))).to_list() == part.explode(keep_nulls=False).fill_null("").to_list()
    assert (expected[1] > 0).any() and (expected[1] == 0).any()


def test_interning_ignores_the_bytes_past_a_short_string(kernel):
    """A string_view of up to 12 bytes holds the string inline; the compiled kernel reads its key from
    the view itself, so bytes past the string that are not zero (a producer that leaves them) must
    not change the id. Every length 0–14 around the codes' own lengths, nulls included."""
    plan = load_scheme(DEMO).plan
    strings = [code[:k] for code in list(plan.codes)[:300] for k in range(len(code) + 1)] \
        + list(plan.codes) + ["a-very-long-unknown-code", None, "", "疾病"]
    text = Text.of(pl.Series(strings, dtype=pl.String))
    views, data, bits, offset = text.kernel_args()
    table = kernel.code_table(*_code_table_args(plan))
    want = np.empty(len(strings), np.uint32)
    kernel.intern_codes(table, *_code_table_args(plan), views, data, bits, offset, want)
    dirty = views.copy().reshape(-1, 16)
    lengths = dirty[:, :4].copy().view(np.int32).ravel()
    for i, n in enumerate(lengths.tolist()):
        if n <= 12:
            dirty[i, 4 + n:] = 0xA5
    got = np.empty(len(strings), np.uint32)
    kernel.intern_codes(table, *_code_table_args(plan), dirty.ravel(), data, bits, offset, got)
    assert np.array_equal(got, want)
    expected = [plan.codes.index(s) + 1 if s in plan.codes else 0 for s in strings]
    assert want.tolist() == expected


def _code_table_args(plan):
    encoded = [code.encode() for code in plan.codes]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), np.uint8), offsets


def test_plain_integers_are_parsed_like_polars_casts_them(kernel):
    strings = ["0", "12", "-3", "0012", "-0", "2147483647", "2147483648", "-2147483647", "-2147483648",
               "123456789012345678", "1234567890123456789", "+5", " 12", "12 ", "12.0", "1e3", "男", "", None, "-", "１２"]
    values = np.empty(len(strings), np.int32)
    state = np.empty(len(strings), np.uint8)
    kernel.parse_ints(*Text.of(pl.Series(strings, dtype=pl.String)).kernel_args(), values, state)
    cast = pl.Series(strings, dtype=pl.String).cast(pl.Int64, strict=False).to_list()
    for s, v, st_, c in zip(strings, values.tolist(), state.tolist(), cast):
        if st_ == ir.FIELD_OK:
            assert v == c, s                               # a plain integer reads as Polars reads it
        elif st_ == ir.FIELD_BAD:
            assert c is not None and not -2**31 < c < 2**31, s   # a number, but outside int32
        elif st_ == ir.FIELD_ABSENT:
            assert s in ("", None)
        else:
            assert st_ == ir.FIELD_SLOW and v == ir.MISSING, s   # the full reading rules decide
    assert dict(zip(strings, state.tolist()))["12"] == ir.FIELD_OK
    assert dict(zip(strings, state.tolist()))["12.0"] == ir.FIELD_SLOW


def nasty_frame(plan, n: int, seed: int = 7) -> pl.DataFrame:
    """Cases with every kind of problem: unknown, malformed and repeated codes, stray separators,
    unreadable and implausible fields."""
    return cases_from_frame(nasty_rows(plan, n, seed))


PLAIN_VALUES = [None, "", "0", "1", "2", "9", "12", "0012", "-3", "-0", "99999999999", "151", "365", "3000", "50",
                "-2147483648", "2147483647"]


def nasty_rows(plan, n: int, seed: int = 7, values: list | None = None) -> pl.DataFrame:
    """nasty_frame's rows as an input file has them (text columns, codes joined by '|'); `values`: the
    field values to draw from (default: every kind, unreadable ones included)."""
    rng = random.Random(seed)
    codes = list(plan.codes)
    values = values or [None, "", " ", "0", "1", "2", "9", "12", " 12 ", "12.0", "-3", "abc", "男", "f", "99999999999",
                        "151", "365", "3000", "50", "+5", "-2147483648"]

    def code():
        return rng.choice(codes) if rng.random() < 0.7 else rng.choice(TRICKY[:30])

    rows = []
    for i in range(n):
        dx = [code() for _ in range(rng.randint(0, 6))]
        px = [code() for _ in range(rng.randint(0, 4))]
        dx += dx[:1] if rng.random() < 0.2 else []
        px += px[-1:] if rng.random() < 0.2 else []
        rows.append({"id": str(i), **{f: rng.choice(values) for f in ("sex", "age", "age_days", "weight", "los",
                                                                        "discharge")},
                     "dept": rng.choice([None, "", "儿科", "x"]), "dx": "|".join(dx), "proc": "|".join(px)})
    return pl.DataFrame(rows, schema={k: pl.String for k in rows[0]})


@pytest.mark.parametrize("pack", [DEMO, MINI, MINI_QY, "chs-1.1"])
@pytest.mark.parametrize("values", ["plain", "any"])
def test_what_the_reader_did_ahead_encodes_as_encoding_does_it(pack, values, tmp_path, request):
    """The reader interns the code lists as it splits them and parses the number fields as it looks at
    them (grouper.io.ReadAhead, grouper.pipeline.read_ahead); the encoding takes that over: the same
    kernel arrays, item text and problems as encoding the batch itself, for every batch of a file
    (Parquet and CSV, batches cut anywhere; the canonical frames as without), with plain or unreadable fields, code prefixes, `read
    sex` spellings and `read empty` rules (MINI_QY: its lists are encoded again). The kernel's
    interning and parsing are not called again for what the reader did."""
    from types import SimpleNamespace

    from grouper import io
    from grouper.engine.kernel import KERNEL, companion
    from grouper.pipeline import encode, read_ahead
    from grouper.validate import check_cases

    compiled = companion("_text", None) is not None

    plan = (request.getfixturevalue("chs_scheme") if pack == "chs-1.1" else load_scheme(pack)).plan
    rows = nasty_rows(plan, 1200, seed=11, values=PLAIN_VALUES if values == "plain" else None)
    rows.write_parquet(tmp_path / "cases.parquet")
    rows.write_csv(tmp_path / "cases.csv")
    names = ("dx_offsets", "dx_codes", "px_offsets", "px_codes", "fields", "skip", "field_state")

    def no_second_walk(what):
        def refuse(*args):
            raise AssertionError(f"{what} walked again")
        return refuse

    for path in (tmp_path / "cases.parquet", tmp_path / "cases.csv"):
        reader = read_ahead(plan)
        for cases in io.iter_case_batches(path, batch_size=500, ahead=reader):
            part = reader.take()
            assert not reader.lists and not reader.parsed
            assert set(part.lists) == ({"dx", "proc"} if compiled else set())   # (the reference path reads on)
            assert bool(part.parsed) == (compiled and values == "plain")
            kernel = SimpleNamespace(**{k: getattr(KERNEL, k) for k in dir(KERNEL) if not k.startswith("__")})
            if compiled and not plan.empty_lists:
                kernel.intern_codes = no_second_walk("the code lists")
            if compiled and values == "plain":
                kernel.parse_ints = no_second_walk("the fields")
            taken = encode(plan, cases, reader=part, kernel=kernel)
            itself = encode(plan, cases)
            for name in names:
                assert np.array_equal(getattr(taken.batch, name), getattr(itself.batch, name)), name
            assert taken.batch.skip_reason.equals(itself.batch.skip_reason)
            assert taken.batch.dx_text.series.equals(itself.batch.dx_text.series)
            assert check_cases(plan, taken.cases, taken.batch).equals(check_cases(plan, itself.cases, itself.batch))
        read = pl.concat(io.iter_case_batches(path, batch_size=500, ahead=read_ahead(plan)))
        assert read.equals(pl.concat(io.iter_case_batches(path, batch_size=500)))   # the same canonical frame


@pytest.mark.parametrize("pack", [DEMO, MINI])
def test_the_compiled_pass_and_its_twin_agree(pack):
    plan = load_scheme(pack).plan
    cases = nasty_frame(plan, 1500)
    results, problems = group_frame(plan, cases, threads=1, kernel=_kernel_py, problems=True)
    got_results, got_problems = group_frame(plan, cases, threads=1, kernel=cython_kernel(), problems=True)
    assert got_results.equals(results) and got_problems.equals(problems)
    assert {"bad_dx_format", "duplicate_dx", "malformed_age", "implausible_age"} <= set(problems["reason"])


def test_threads_and_slices_change_nothing(chs_scheme):
    plan = chs_scheme.plan
    cases = nasty_frame(plan, 2000)
    cases = pl.concat([cases] * 60)                   # 120,000 rows: split over threads
    one = group_frame(plan, cases, threads=1, problems=True)
    two = group_frame(plan, cases, threads=2, problems=True)
    assert one[0].equals(two[0]) and one[1].equals(two[1])
    part = cases.slice(1999, 3000)                     # a frame that starts inside Polars' buffers
    results, problems = group_frame(plan, part, threads=1, problems=True)
    assert results.equals(one[0].slice(1999, 3000))
    assert problems.equals(group_frame(plan, part.clone(), threads=1, problems=True)[1])


def test_a_batch_without_its_text_is_checked_all_the_same(chs_scheme):
    from dataclasses import replace

    from grouper.validate import check_cases

    plan = chs_scheme.plan
    cases = nasty_frame(plan, 500)
    batch = encode_cases(plan, cases)
    bare = replace(batch, field_state=None, dx_text=None, px_text=None)
    assert check_cases(plan, cases, bare).equals(check_cases(plan, cases, batch))


def test_fields_read_as_the_full_rules_read_them(kernel, chs20_scheme):
    """Kernel parsing (plain integers; `read sex` spellings looked up like codes) + the full rules
    for the rest give what the full rules give on every value."""
    from grouper.engine.encode import _encode_field, _slow_field

    plan = chs20_scheme.plan
    assert plan.sex_spellings                       # the national 2.0 pack reads sex as 1/2 only
    text = pl.Series(["1", "2", " 1", "1 ", "男", "3", "", None, "12.0", "-0", "01", "abc", "2147483648"], dtype=pl.String)
    for name in ("sex", "age"):
        values, state = _encode_field(name, text, {}, plan, kernel)
        value, present = _slow_field(name, text, plan.sex_spellings if name == "sex" else None)
        ok = value.is_between(-2**31 + 1, 2**31 - 1).fill_null(False).to_list()
        empty = plan.empty_numbers.get(name)
        for i, (v, p, good) in enumerate(zip(value.to_list(), present.to_list(), ok)):
            want_state = ir.FIELD_OK if good else ir.FIELD_BAD if p else ir.FIELD_ABSENT
            want_value = v if good else (empty if empty is not None and not p else ir.MISSING)
            assert (state[i], values[i]) == (want_state, want_value), (name, text[i])


@pytest.mark.parametrize("pack", [DEMO, MINI])
def test_results_without_problems_equal_those_with_them(pack):
    """group_frame without `problems` skips writing the problems' details (nothing it returns reads
    them): the results, warnings included, are those it gives with them; check_cases(details=False)
    is check_cases with every detail null."""
    from grouper.validate import check_cases

    plan = load_scheme(pack).plan
    cases = nasty_frame(plan, 1500)
    results, _ = group_frame(plan, cases, threads=1, problems=True)
    assert group_frame(plan, cases, threads=1).equals(results)
    batch = encode_cases(plan, cases)
    full = check_cases(plan, cases, batch)
    assert full["detail"].is_not_null().any()
    assert check_cases(plan, cases, batch, details=False).equals(full.with_columns(pl.lit(None, pl.String).alias("detail")))


@pytest.mark.parametrize("pack", [DEMO, MINI])
def test_a_frame_in_chunks_encodes_as_one_in_one_piece(kernel, pack):
    """Fields and code lists are read chunk by chunk (a CSV Polars parsed in parallel comes in chunks;
    joining them would copy every column): the same arrays as from the frame in one piece."""
    plan = load_scheme(pack).plan
    cases = nasty_frame(plan, 600, seed=3)
    chunked = pl.concat([cases.slice(0, 1), cases.slice(1, 250), cases.slice(251)], rechunk=False)
    assert chunked["age"].n_chunks() == 3
    whole, parts = encode_cases(plan, cases, kernel=kernel), encode_cases(plan, chunked, kernel=kernel)
    for name in ("dx_offsets", "dx_codes", "px_offsets", "px_codes", "fields", "skip", "field_state"):
        assert np.array_equal(getattr(parts, name), getattr(whole, name)), name
    assert parts.skip_reason.equals(whole.skip_reason)


@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["a", "b", "c", "dup"]), st.booleans()), max_size=40))
@settings(max_examples=300, deadline=None)
def test_warnings_list_each_reason_once_in_problem_order(found):
    """The results' `warnings`: a row's warning reasons, each once (its first), in the order of the
    problems, whatever their order (rows unsorted, a repeat right after or further apart) — the
    shortcut for repeats side by side against hashing every (row, reason)."""
    from grouper.engine.results import _warnings

    problems = pl.DataFrame({"row": [r for r, _, _ in found], "reason": [x for _, x, _ in found],
                             "level": ["warning" if w else "error" for _, _, w in found]},
                            schema={"row": pl.UInt32, "reason": pl.String, "level": pl.String})
    want = [[] for _ in range(7)]
    for row, reason, warning in found:
        if warning and reason not in want[row]:
            want[row].append(reason)
    assert _warnings(problems, 7).to_list() == want
