"""The compiled reading of GB CSV records (ext/_text.pyx read_gb_records, grouper.io._GbRecords) against
its twin, the Polars parse of the codec's text: the same canonical frames on awkward files (quotes,
line breaks, blank lines, short records, non-ASCII and four-byte characters, blanks around codes,
records cut across the reader's pieces, any batch size), and where the compiled reading stops (a
record Polars rejects, a byte the tables lack, the join separator in a code cell) the same frames,
the same flagged rows and the same errors as before."""
import random

import polars as pl
import pytest

from grouper import io
from grouper.engine.kernel import companion

pytestmark = pytest.mark.skipif(companion("_text", None) is None, reason="the compiled reader (grouper._text) is not built")

WIDE_HEADER = ["清单流水号", "性别", "年龄", "出院科别", "实际住院天数", "患者姓名", "主要诊断编码", "其他诊断编码1",
               "其他诊断编码2", "其他诊断编码10", "主要手术操作编码", "其他手术操作编码1", "医疗总费用"]
CODES = ["A01.000", "K63.812", "A18.100x018+N51.8*", "T20.000x006", "21.9901", "35.2100x004", " I10.x00 ",
         "\u3000E11.900", "J18.900\u3000", "\t", " ", ""]
TEXTS = ["内科", "张三", "李", "€", "é", "", " 外科 ", "0302", "12", "9"]


def _cell(rng, values, multiline=True):
    value = rng.choice(values)
    roll = rng.random()
    if roll < 0.08:
        return '"' + value.replace('"', '""') + '"'       # quoted
    if roll < 0.10:
        inside = "\r\nz" if multiline else "z"
        return '"' + value + ',x""y' + inside + '"'         # separator, quote and line break inside quotes
    return value


def _record(rng, width, multiline=True, separator=","):
    roll = rng.random()
    if roll < 0.02:
        return ""                                           # blank line
    if roll < 0.04:
        return separator * (width - 1)                      # separators only
    cells = [f"R{rng.randrange(10**6):07d}", rng.choice(["1", "2", "", "男"]), str(rng.randrange(100)),
             _cell(rng, TEXTS, multiline), str(rng.randrange(60)), _cell(rng, TEXTS, multiline)]
    cells += [_cell(rng, CODES, multiline) for _ in range(width - len(cells) - 1)] + [_cell(rng, ["12.5", "", "3"])]
    if rng.random() < 0.03:
        cells = cells[:rng.randrange(1, width)]             # a short record: the rest is null
    return separator.join(cells)


def _file(tmp_path, rng, rows, *, header=WIDE_HEADER, codec="gb18030", newline="\n", last_newline=True,
          extra=(), multiline=True):
    lines = [",".join(header)] + [_record(rng, len(header), multiline) for _ in range(rows)]
    for at, line in extra:
        lines.insert(at, line)
    text = newline.join(lines) + (newline if last_newline else "")
    path = tmp_path / "cases.csv"
    path.write_bytes(text.encode(codec))
    return path


READ = []   # rows the compiled reading gave, per call


def _read(path, compiled: bool, monkeypatch, **options):
    with monkeypatch.context() as patch:
        if not compiled:
            patch.setattr(io._GbRecords, "of", classmethod(lambda cls, *args: None))
        else:
            read = io._GbRecords.read

            def counted(self, *args, **kwargs):
                status, end, frame = read(self, *args, **kwargs)
                READ.append(0 if frame is None else frame.height)
                return status, end, frame

            patch.setattr(io._GbRecords, "read", counted)
        try:
            # a flagged line (the tolerant reader) adds its column from its batch on
            return pl.concat(list(io.iter_case_batches(path, **options)), how="diagonal")
        except io.InputError as error:
            return str(error)


def _same(path, monkeypatch, **options):
    old, new = _read(path, False, monkeypatch, **options), _read(path, True, monkeypatch, **options)
    if isinstance(old, str) or isinstance(new, str):
        assert new == old
    else:
        assert new.schema == old.schema
        assert new.equals(old), (new, old)
    return new


@pytest.mark.parametrize("seed", range(6))
def test_awkward_wide_files_read_as_polars_reads_them(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    path = _file(tmp_path, rng, 400, newline=rng.choice(["\n", "\r\n"]), last_newline=seed % 2 == 0)
    READ.clear()
    for batch_size in (1, 7, 1000):
        frame = _same(path, monkeypatch, batch_size=batch_size)
    assert isinstance(frame, pl.DataFrame) and frame.height > 300
    assert sum(READ) > 2 * frame.height   # most records were read by the compiled reading
    _same(path, monkeypatch, settlement=True)
    _same(path, monkeypatch, encoding="gb18030", columns={"dept": "患者姓名"})


def test_records_cut_across_pieces_and_any_batch_size(tmp_path, monkeypatch):
    path = _file(tmp_path, random.Random(20), 600)
    for piece in (64, 200, 1000, 1 << 20):
        monkeypatch.setattr(io, "_GB_PIECE_BYTES", piece)
        for batch_size in (1, 3, 50, 10_000):
            _same(path, monkeypatch, batch_size=batch_size)


def test_list_shape_and_gbk(tmp_path, monkeypatch):
    rng = random.Random(3)
    lines = ["id,sex,age,dept,los,dx,proc,姓名"]
    for i in range(300):
        dx = "|".join(rng.choice(CODES) for _ in range(rng.randrange(0, 4)))
        proc = ",".join(rng.choice(CODES) for _ in range(rng.randrange(0, 3)))
        lines.append(f"{i},1,{rng.randrange(90)},{rng.choice(['内科', '', '外科'])},3,\"{dx}\",\"{proc}\",张三")
    path = tmp_path / "list.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("gbk", errors="replace"))
    for encoding in (None, "gbk"):
        _same(path, monkeypatch, encoding=encoding, batch_size=64)


def test_cells_of_several_codes_and_other_dx_mappings(tmp_path, monkeypatch):
    header = ["id", "主要诊断编码", "附加诊断", "附加诊断1", "附加诊断2", "主要手术操作编码"]
    rows = ["1,A01.000,\"B02.000|C03\",D04,,P1", "2, E05 ,,F06;G07,,", "3,,,,,"]
    path = tmp_path / "mapped.csv"
    path.write_bytes(("\n".join([",".join(header), *rows]) + "\n").encode("gbk"))
    _same(path, monkeypatch, columns={"other_dx": "附加诊断"})


@pytest.mark.parametrize("line", [
    "R1,1,30,内科,3,张三,A01.000,B02,,,P1,,1,extra",      # more cells than the header: a flagged row
    "R1,1,30,内科,3,张三,A01.000,B\"02,,,P1,,1",          # a quote inside an unquoted cell
    "R1,1,30,内科,3,张三,\"A01.000\"x,B02,,,P1,,1",       # text after the closing quote
    "R1,1,30,内科\r,3,张三,A01.000,B02,,,P1,,1",          # a carriage return not before a line feed
    "R1,1,30,内科,3,张三,A01\x1f000,B02,,,P1,,1",         # the join separator in a code cell
    "R1,1,30,内科,3,张三,A01.000,\"B02,,,P1,,1",          # a quote never closed
    "R1,1,30,𠀀,3,𠀀,A01.000,B02,,,P1,,1",               # GB18030 four-byte characters
    "R1,1,30,内科,3,张三,A01.000\u00a0,B02,,,P1,,1",     # one in a code cell (U+00A0: four bytes)
])
def test_records_the_compiled_reading_leaves_to_polars(tmp_path, monkeypatch, line):
    # Without line breaks inside quotes: once Polars rejects a line, the tolerant reader (Python's csv)
    # reads the records of the piece before it too, and it reads a short record with a quoted line
    # break as a quote never closed, where Polars and the compiled reading read the record (which of
    # them read such a record depended on where the pieces fell before, too).
    for at in (1, 150, 399):
        path = _file(tmp_path, random.Random(at), 400, extra=[(at, line)], multiline=False)
        for piece in (256, 1 << 20):
            monkeypatch.setattr(io, "_GB_PIECE_BYTES", piece)
            _same(path, monkeypatch, batch_size=64)


@pytest.mark.parametrize("bad", [b"\xff", b"\x80", b"\x81", b"\x81\x2c", b"\xa1\x7f", b"\x81\x30\x81"])
def test_a_bad_byte_is_the_same_error_at_the_same_offset(tmp_path, monkeypatch, bad):
    rng = random.Random(5)
    for column in (3, 5, 6):   # a used column, the unused name column, a code cell
        head = _file(tmp_path, rng, 300).read_bytes()
        cells = "R9,1,30,内科,3,张三,A01.000,,,,,,1".encode("gbk").split(b",")
        cells[column] = cells[column] + bad
        path = tmp_path / "bad.csv"
        path.write_bytes(head + b",".join(cells) + b"\n" + "R10,2,4,,1,,B01,,,,,,\n".encode("gbk"))
        for encoding in (None, "gbk", "gb18030"):
            message = _same(path, monkeypatch, encoding=encoding, batch_size=100)
            assert isinstance(message, str) and "bad byte at offset" in message, message


def test_tab_separated_with_title_lines(tmp_path, monkeypatch):
    rng = random.Random(9)
    lines = ["2026年1月 出院病例", "\t".join(WIDE_HEADER)]
    for _ in range(300):
        line = _record(rng, len(WIDE_HEADER), multiline=False, separator="\t")
        if line.count("\t") < len(WIDE_HEADER):   # not with a code cell of a tab (more cells than the header)
            lines.append(line)
    path = tmp_path / "cases.tsv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk", errors="replace"))
    for batch_size in (5, 1000):
        READ.clear()
        frame = _same(path, monkeypatch, skip_rows=1, batch_size=batch_size)
        assert isinstance(frame, pl.DataFrame) and frame.height > 120
        assert sum(READ) > frame.height / 2
