"""The reader's compiled text loops (ext/_text.pyx) against their twins: the GB → UTF-8 decoder of
the streamed CSV reader (tables made by grouper.io._gb_tables) against Python's own codec (the same
text for every character the codecs know, the same errors at the same byte offsets for bytes they
refuse); the column checks that let canonicalising skip a pass against the Polars expressions they
stand in for."""
import random

import pytest

from grouper import io
from grouper.engine.kernel import companion

pytestmark = pytest.mark.skipif(companion("_text", None) is None, reason="the compiled reader (grouper._text) is not built")

CODECS = ("gb18030", "gbk", "gb2312")


def _by_codec(codec):
    def decode(part: bytes, at: int) -> bytes:
        try:
            return part.decode(codec).encode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"offset {at + exc.start}") from exc
    return decode


def _python(data: bytes, codec: str) -> bytes:
    try:
        return data.decode(codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"offset {exc.start}") from exc


@pytest.mark.parametrize("codec", CODECS)
def test_every_byte_and_two_byte_sequence_decodes_as_the_codec_does(codec):
    decode = io._gb_decoder(codec)
    sequences = [bytes([b]) for b in range(256)] + [bytes([lead, trail]) for lead in range(0x81, 0xFF)
                                                    for trail in range(256)]
    for raw in sequences:
        line = b"a," + raw + b"\n"
        try:
            expected = _python(line, codec)
        except ValueError as exc:
            with pytest.raises(ValueError, match=str(exc)):
                decode(line, _by_codec(codec))
        else:
            assert decode(line, _by_codec(codec)) == expected, raw


@pytest.mark.parametrize("codec", CODECS)
def test_random_text_with_four_byte_characters_and_every_plane(codec):
    rng = random.Random(20261206)
    alphabet = [chr(c) for c in range(1, 0x30000) if not 0xD800 <= c < 0xE000]
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    text = "\n".join(lines) + "\n"
    data = text.encode(codec, errors="ignore")
    assert io._gb_decoder(codec)(data, _by_codec(codec)) == _python(data, codec)


@pytest.mark.parametrize("bad", [b"\xff", b"\x80", b"\x81", b"\x81\x0a", b"\xa1\x7f", b"\x81\x30\x81"])
def test_a_bad_byte_is_the_codecs_error_at_the_same_offset(bad):
    data = "张三,住院\n李四,".encode("gbk") + bad + "\n王五\n".encode("gbk")
    for codec in ("gbk", "gb18030"):
        with pytest.raises(ValueError) as expected:
            _python(data, codec)
        with pytest.raises(ValueError, match=str(expected.value)):
            io._gb_decoder(codec)(data, _by_codec(codec))


def test_a_bad_byte_in_a_streamed_file_names_its_offset(tmp_path):
    good = "id,dx,dept\n" + "".join(f"{i},A01.000,内科\n" for i in range(1, 2001))
    data = good.encode("gbk")
    data = data + b"2001,A01.000,\xff\n"
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(io.InputError, match=f"bad byte at offset {len(data) - 2}"):
        list(io.iter_case_batches(path, encoding="gbk"))


def test_a_streamed_gb18030_file_reads_as_python_decodes_it(tmp_path):
    names = ["张三", "𠀀", "€", "é", "龘", "\u3000李"]
    text = "id,dx,dept\n" + "".join(f"{i},A01.000,{names[i % len(names)]}\n" for i in range(1, 5001))
    path = tmp_path / "gb18030.csv"
    path.write_bytes(text.encode("gb18030"))
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text(text, encoding="utf-8")
    import polars as pl

    assert pl.concat(list(io.iter_case_batches(path, encoding="gb18030"))).equals(io.read_cases(utf8))


_AWKWARD = ["", " ", "A01", " A01", "A01 ", "\tA", "A\n", "\u3000内科", "内科\u3000", "内科", "\u00a0x", "x\u0085",
            "a\x1fb", "a\x1f\x1fb", "a\x1f", "\x1f", "a b", "a\x1f b", "x" * 13, " " + "x" * 13, "x" * 13 + " ",
            "é", "\x1c", "\x0b", "\x0c", "\r", None]


def _random_strings(rng, n):
    parts = ["A", "01", ".", "\x1f", " ", "\t", "内", "\u3000", "x" * 12, "\u2028", "\u200b", "\x1c"]
    return [None if rng.random() < 0.05 else "".join(rng.choice(parts) for _ in range(rng.randrange(0, 6)))
            for _ in range(n)]


def test_strip_needed_is_false_only_when_strip_changes_nothing():
    import polars as pl

    rng = random.Random(7)
    columns = [[value] for value in _AWKWARD] + [_random_strings(rng, 50) for _ in range(200)]
    columns += [["A01.000", "B02", "x" * 20, None], ["A01"] * 3]
    for values in columns:
        column = pl.Series(values, dtype=pl.String)
        changes = not column.str.strip_chars().equals(column)
        assert io._strip_needed(column) or not changes, values
        assert io._strip_needed(column.slice(1)) or column.slice(1).str.strip_chars().equals(column.slice(1))
    assert not io._strip_needed(pl.Series(["A01", "B02", None, "x" * 30]))


def test_cleaning_rows_are_the_regex_rows():
    import polars as pl

    rng = random.Random(11)
    for values in [_AWKWARD, *(_random_strings(rng, 300) for _ in range(50))]:
        joined = pl.Series(values, dtype=pl.String)
        expected = joined.str.contains(io._NEEDS_CLEANING).arg_true()
        assert io._rows_matching_cleaning(joined).to_list() == expected.to_list(), values
        part = joined.slice(3)
        assert io._rows_matching_cleaning(part).to_list() == part.str.contains(io._NEEDS_CLEANING).arg_true().to_list()


def _polars_split(column, separators: str, empty_is_none: bool):
    """The definition the compiled splitter stands in for (grouper.io's list rules)."""
    import polars as pl

    first, other = separators[0], separators[-1]
    cell = pl.col("c").fill_null("")
    if other != first:
        cell = cell.str.replace_all(other, first, literal=True)
    if empty_is_none:
        cell = pl.when(cell != "").then(cell)
    split = cell.str.split(first)
    if empty_is_none:
        split = split.fill_null(pl.lit([], dtype=pl.List(pl.String)))
    return column.to_frame("c").select(split).to_series()


@pytest.mark.parametrize("separators", ["|,", "\x1f"])
@pytest.mark.parametrize("empty_is_none", [False, True], ids=["dx", "proc"])
def test_compiled_split_gives_polars_lists(separators, empty_is_none):
    """Code lists split by ext/_text.pyx: the same items as Polars' split (empty items, separators at
    either end, nulls, items longer than 12 bytes inside and at the end of long strings, non-ASCII),
    also on a slice of a column and on a column of several chunks."""
    import polars as pl

    rng = random.Random(5)
    sep = separators[0]
    pieces = ["", " ", "A01.000", "K35.800x002", "疾病", "a-code-longer-than-twelve", "x" * 13, "|", ",", sep, "男,女"]
    columns = [[value] for value in _AWKWARD] + [_random_strings(rng, 50) for _ in range(100)]
    columns += [[sep.join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) if rng.random() > 0.1 else None
                 for _ in range(300)] for _ in range(30)]
    columns += [["", None, sep, sep * 2, "A" + sep, sep + "A", "A,B|C", "x" * 40 + sep + "y" * 13 + sep + "z"]]
    for values in columns:
        column = pl.Series("dx", values, dtype=pl.String)
        for part in (column, column.slice(1), pl.concat([column.slice(0, 2), column.slice(2)], rechunk=False)):
            split = io._split_compiled(part, separators, empty_is_none=empty_is_none)
            assert split.dtype == pl.List(pl.String) and split.name == "dx"
            assert split.to_list() == _polars_split(part, separators, empty_is_none).to_list(), values


def test_split_and_interned_in_one_pass_as_intern_codes_gives(chs_scheme):
    """Code lists interned while they are split (split_codes with the plan's code table, as the
    reader does for the encoding: grouper.io.ReadAhead): the lists _split_compiled gives, and for each
    item the id the kernel's intern_codes gives it. Codes of every length (long ones, > 12 bytes,
    inside and at the end of a cell), prefixes and extensions of codes, empty items, nulls,
    non-ASCII, rows of many items; also a slice and a column of several chunks."""
    import numpy as np
    import polars as pl

    from grouper.engine.encode import Text, code_table
    from grouper.engine.kernel import KERNEL

    plan = chs_scheme.plan
    rng = random.Random(23)
    codes = list(plan.codes)
    long_codes = [c for c in codes if len(c) > 12]
    assert long_codes and any(len(c) <= 4 for c in codes + ["A01"])
    pieces = codes[:50] + long_codes[:50] + [c[:-1] for c in codes[:20]] + [c + "x" for c in long_codes[:20]] \
        + ["", " ", "疾病", "a-code-longer-than-twelve", "x" * 12, "x" * 13]

    def cell():
        if rng.random() < 0.05:
            return None
        return rng.choice("|,").join(rng.choice(pieces) for _ in range(rng.choice([1, 1, 2, 4, 40])))

    table = code_table(plan)
    column = pl.Series("dx", [cell() for _ in range(3000)], dtype=pl.String)
    for part in (column, column.slice(7), pl.concat([column.slice(0, 1000), column.slice(1000)], rechunk=False)):
        for kind in ("dx", "proc"):
            ahead = io.ReadAhead(lambda: table, ())
            split = io._split_listed(part, kind, ahead)
            assert split.to_list() == io._split_compiled(part, "|,", empty_is_none=kind == "proc").to_list()
            offsets, ids, items = ahead.lists[kind]
            assert np.array_equal(offsets, np.cumsum([0] + split.list.len().to_list()))
            want = np.empty(len(items.array), np.uint32)
            KERNEL.intern_codes(*table, *items.kernel_args(), want)
            assert np.array_equal(ids, want) and items.series.to_list() == [c for cell in split.to_list() for c in cell]
            assert (ids > 0).any() and (ids == 0).any() and any(len(codes[i - 1]) > 12 for i in ids if i)
            assert [] in split.to_list() if kind == "proc" else [""] in split.to_list()


@pytest.mark.parametrize("kind", ["dx", "proc"])
def test_wide_lists_are_the_joined_and_split_cells(kind):
    """The compiled wide pass (grouper.io._wide_lists) against joining the cells and splitting them
    (grouper.io._wide_joined + _split_wide, its cleaning included): blanks of every Unicode kind
    around and instead of codes, empty and null cells, long cells, non-ASCII; a cell holding the
    join's separator is left to Polars (None)."""
    import polars as pl

    rng = random.Random(13 if kind == "dx" else 17)
    spaces = [" ", "\t", "\u3000", "\u00a0", "\x85", "\u2028", "\u2029", "\u202f", "\u205f", "\u1680", "\u2000",
              "\u200a", "\u200b", "\x0b", "\r\n", "\x1c", "\ufeff", "\u180e"]
    codes = ["A01.000", "K35.800x002", "疾病", "a-code-longer-than-twelve", "x" * 12, "x" * 13, "", "A B"]

    def cell():
        if rng.random() < 0.3:
            return None
        return rng.choice(["", *spaces]) + rng.choice(codes) + rng.choice(["", *spaces])

    for n_others in (0, 1, 5):
        rows = [[cell() for _ in range(1 + n_others)] for _ in range(400)] + [[None] * (1 + n_others)]
        frame = pl.DataFrame({f"c{k}": [row[k] for row in rows] for k in range(1 + n_others)},
                             schema={f"c{k}": pl.String for k in range(1 + n_others)})
        others = tuple(f"c{k}" for k in range(1, 1 + n_others))
        joined = frame.select(io._wide_joined(pl.col("c0"), [pl.col(h) for h in others]).alias(kind)).to_series()
        expected = io._split_wide(joined, kind=kind)
        chunked = pl.concat([frame.slice(0, 150), frame.slice(150, 100), frame.slice(250)], rechunk=False)
        misaligned = chunked.with_columns(pl.concat([frame["c0"].slice(0, 7), frame["c0"].slice(7)], rechunk=False))
        for part, want in ((frame, expected), (frame.slice(3), expected.slice(3)), (chunked, expected),
                           (misaligned, expected)):
            got = io._wide_lists(part, "c0", others, frozenset(), kind)
            assert got.dtype == pl.List(pl.String) and got.to_list() == want.to_list()
    assert io._wide_lists(pl.DataFrame({"c0": ["A", "B\x1fC"]}), "c0", (), frozenset(), kind) is None
