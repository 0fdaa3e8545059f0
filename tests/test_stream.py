"""Streaming: the stages of a batch stream overlap (grouper.overlap), and the output does not depend
on how the input is cut into batches or on the thread count."""
from __future__ import annotations

import threading
import time

import polars as pl
import pytest

from grouper.api import group_file
from grouper.cli import main
from grouper.overlap import ahead, behind
from grouper.validate import QualityReport
from grouper.writers import ResultSink, parquet_row_group_rows


# --------------------------------------------------------------------------------------------
# grouper.overlap

def test_ahead_keeps_order_and_every_item():
    assert list(ahead(iter(range(1000)), 1)) == list(range(1000))
    assert list(ahead([], 1)) == []


def test_ahead_raises_the_producers_error_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("bad line 3")

    got = []
    with pytest.raises(ValueError, match="bad line 3"):
        for item in ahead(items(), 1):
            got.append(item)
    assert got == [1, 2]


def test_ahead_stays_within_its_depth_and_stops_when_left():
    made = []
    closed = threading.Event()

    def items():
        try:
            for i in range(100):
                made.append(i)
                yield i
        finally:
            closed.set()

    stream = ahead(items(), 1)
    assert next(stream) == 0
    time.sleep(0.3)
    assert made == [0, 1]          # one item ready ahead of the consumer, no more
    stream.close()                 # the consumer leaves: the producer stops, its finally runs
    assert closed.is_set()
    assert len(made) <= 3
    assert not any(t.name == "grouper-read" and t.is_alive() for t in threading.enumerate())


def test_behind_consumes_in_order_and_raises_the_consumers_error():
    seen = []
    with behind(seen.append, 1) as writer:
        for i in range(500):
            writer.put(i)
    assert seen == list(range(500))

    def fails(item):
        if item == 3:
            raise OSError("disk full")
        seen.append(item)

    seen.clear()
    writer = behind(fails, 1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            writer.put(i)
        writer.close()
    assert seen == [0, 1, 2]


# --------------------------------------------------------------------------------------------
# identical output at any batch size and thread count

@pytest.fixture(scope="module")
def mixed_cases(chs_tables, tmp_path_factory):
    """300 golden cases with bad rows among them (a missing sex, a bad code, a duplicate, no dx)."""
    cases = pl.read_csv(chs_tables / "golden" / "cases.csv", infer_schema=False).head(300)
    bad = pl.DataFrame({"id": ["B1", "B2", "B3", "B4"], "sex": [None, "1", "2", "9"], "age": ["40", "-3", "50", "x"],
                        "dx": ["K35.800", "ZZZ.999", "K35.800|K35.800", None]}, schema_overrides={"sex": pl.String})
    mixed = pl.concat([cases.head(150), bad, cases.tail(150)], how="diagonal")
    path = tmp_path_factory.mktemp("stream") / "mixed.csv"
    mixed.write_csv(path)
    return path


def _run(source, out, scheme, **options):
    report = QualityReport(scheme.plan)
    rows = group_file(source, out, scheme, report=report, **options)
    return rows, out.read_bytes(), report.frame()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".xlsx"])
def test_output_bytes_do_not_depend_on_batch_size_or_threads(chs_scheme, mixed_cases, tmp_path, suffix):
    rows, expected, report = _run(mixed_cases, tmp_path / f"default{suffix}", chs_scheme, threads=1)
    assert rows == 304
    for threads in (1, 2):
        for batch_size in (1, 7, 1_000_000):
            got_rows, got, got_report = _run(mixed_cases, tmp_path / f"t{threads}-b{batch_size}{suffix}", chs_scheme,
                                             threads=threads, batch_size=batch_size)
            assert got_rows == rows
            assert got == expected, f"threads={threads}, batch_size={batch_size}"
            assert got_report.equals(report)


def test_a_parquet_inputs_batches_ramp_up_and_down_and_add_up_to_the_file(mixed_cases, chs_scheme, tmp_path):
    """A Parquet input is read in batches that start and end at a quarter of the batch size
    (grouper.io.ramped_sizes: the stages overlap sooner and longer); the rows, and the output's
    bytes at any batch size and thread count, are the same."""
    from grouper import io

    assert io.ramped_sizes(1_000_000, 100_000) == [25_000, 50_000, *[100_000] * 8, 50_000, 50_000, 25_000]
    assert io.ramped_sizes(1_000_000, 50_000)[:3] == [12_500, 25_000, 50_000]
    assert io.ramped_sizes(120_000, 50_000) == [12_500, 25_000, 45_000, 25_000, 12_500]
    for total in (0, 1, 5, 99, 1_234_567):
        for largest in (1, 4, 7, 1000, 10**6):
            sizes = io.ramped_sizes(total, largest)
            assert sum(sizes) == total and all(0 < size <= largest for size in sizes)
    source = tmp_path / "mixed.parquet"
    pl.read_csv(mixed_cases, infer_schema=False).write_parquet(source)
    whole = io.read_cases(source)
    batches = list(io.iter_case_batches(source, batch_size=40))
    assert [b.height for b in batches] == io.ramped_sizes(whole.height, 40) == [10, 20, *[40] * 6, 4, 20, 10]
    assert pl.concat(batches).equals(whole)
    rows, expected, report = _run(source, tmp_path / "default.parquet", chs_scheme, threads=1)
    for threads in (1, 2):
        for batch_size in (1, 7, 40, 1_000_000):
            got_rows, got, got_report = _run(source, tmp_path / f"t{threads}-b{batch_size}.parquet", chs_scheme,
                                             threads=threads, batch_size=batch_size)
            assert (got_rows, got) == (rows, expected), f"threads={threads}, batch_size={batch_size}"
            assert got_report.equals(report)


def test_parquet_row_groups_are_fixed_whatever_the_batches(tmp_path):
    import pyarrow.parquet as pq

    size = 10_000
    rows = size * 2 + 5
    frame = pl.DataFrame({"id": [str(i) for i in range(rows)], "n": list(range(rows))})
    files = []
    for cut in (rows, 777, size, 1):
        path = tmp_path / f"cut{cut}.parquet"
        with ResultSink(path, row_group_rows=size) as sink:
            for start in range(0, rows, cut):
                sink.write(frame.slice(start, cut))
        files.append(path.read_bytes())
        meta = pq.ParquetFile(path).metadata
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [size, size, 5]
    assert all(f == files[0] for f in files)
    assert pl.read_parquet(tmp_path / "cut777.parquet").equals(frame)


def test_parquet_row_groups_follow_the_input_size():
    """A tenth of the input, 10,000 to 1,000,000 rows: what the progress batches cut before, so the
    files of `grouper group` without --batch-size keep their bytes."""
    assert parquet_row_group_rows(20_000) == 10_000
    assert parquet_row_group_rows(1_000_000) == 100_000
    assert parquet_row_group_rows(1_234_567) == 123_457
    assert parquet_row_group_rows(50_000_000) == parquet_row_group_rows(None) == 1_000_000


def test_cli_threads_give_the_same_bytes(chs_pack, mixed_cases, tmp_path):
    outputs = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.parquet"
        assert main(["group", str(mixed_cases), "-o", str(out), "--scheme", str(chs_pack), "-q",
                     "--threads", threads, "--batch-size", "50"]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_ahead_runs_then_in_the_producer_unless_the_consumer_waits():
    """`then(item)` is the producer's work on an item it has handed over: done in its thread while the
    consumer is busy, left to the consumer when the consumer was already waiting for the item."""
    done_by = {}

    def then(item):
        done_by.setdefault(item, threading.current_thread().name)

    def slow_items():
        for i in range(3):
            time.sleep(0.2)            # the consumer waits for each item
            yield i

    assert list(ahead(slow_items(), 1, then=then)) == [0, 1, 2]
    assert done_by == {}
    for i in ahead(iter(range(3)), 1, then=then):
        time.sleep(0.2)                # the consumer is busy: the producer does the work
    assert set(done_by) >= {1, 2} and set(done_by.values()) == {"grouper-read"}


@pytest.mark.parametrize("threads", [1, 2])
def test_an_encoding_error_reaches_the_caller_at_its_batch(chs_scheme, tmp_path, threads):
    """Whichever thread encodes a batch, an error there is raised in the grouping thread, after the
    batches before it, and leaves no output."""
    source = tmp_path / "cases.parquet"
    pl.DataFrame({"id": [str(i) for i in range(6)], "sex": ["1"] * 6, "age": ["40"] * 6, "dx": ["K35.800"] * 6}) \
        .write_parquet(source)
    import grouper.pipeline as pipeline

    real, seen = pipeline.encode, []

    def failing(plan, cases, **kwargs):
        if "4" in cases["id"].to_list():
            raise ValueError("bad batch")
        return real(plan, cases, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "encode", failing)
        with pytest.raises(ValueError, match="bad batch"):
            for g in pipeline.grouped_batches(source, chs_scheme.plan, batch_size=2, threads=threads):
                seen.append(g.results["id"].to_list())
        with pytest.raises(ValueError, match="bad batch"):
            group_file(source, tmp_path / "out.parquet", chs_scheme, batch_size=4, threads=threads)
    assert seen == [["0"], ["1", "2"]]   # a Parquet input's batches of 2 ramp: 1, 2, 2 (fails), 1
    assert not (tmp_path / "out.parquet").exists()


def test_a_read_error_midway_leaves_no_output(chs_scheme, tmp_path):
    """An error in the read-ahead thread reaches the caller; the output is not left half written."""
    source = tmp_path / "cases.parquet"
    pl.DataFrame({"id": ["1", "2"], "sex": ["1", "2"], "age": ["40", "30"], "dx": ["K35.800", "J18.900"]}) \
        .write_parquet(source)
    out = tmp_path / "out.parquet"

    import grouper.pipeline as pipeline

    real = pipeline.case_batches

    def failing(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == 1:
                raise OSError("the disk went away")
            yield batch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "case_batches", failing)
        with pytest.raises(OSError, match="went away"):
            group_file(source, out, chs_scheme, batch_size=1, threads=2)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# GB-encoded CSV, read piece by piece

GB_CSV = ("病案号,性别,年龄,住院天数,主要诊断编码,其他诊断编码1,其他诊断编码2,主要手术操作编码,备注\n"
          + "".join(f"{i},1,{20 + i % 50},5,K35.800,J18.900,,47.0100,阑尾{i}\n" for i in range(1, 120))
          + '120,2,30,3,K35.800,,,,"引号里的\n换行, 和逗号"\n'
          + "\n"
          + "121,2,31,3,K35.800,I10.x00,,,多余,字段,太多\n"
          + "".join(f"{i},2,40,6,J18.900,,,,术后{i}\n" for i in range(122, 200)))


@pytest.mark.parametrize("piece_bytes", [64, 1000, 1 << 25])
def test_gb_csv_read_in_pieces_equals_the_whole_file(tmp_path, monkeypatch, piece_bytes):
    """A GBK file cut into pieces of whole records (a quoted line break, a blank line and a malformed
    line among them) gives the rows the whole file gives, in order, at any batch size."""
    import grouper.io as io

    path = tmp_path / "gbk.csv"
    path.write_bytes(GB_CSV.encode("gbk"))
    whole = io.read_cases(path)            # decoded whole, then parsed
    assert whole.height == 199
    monkeypatch.setattr(io, "_GB_PIECE_BYTES", piece_bytes)
    monkeypatch.setattr(io, "_GB_DECODE_BYTES", 50)
    for encoding in (None, "gbk"):
        for batch_size in (1, 7, 1_000_000):
            pieces = pl.concat(list(io.iter_case_batches(path, batch_size=batch_size, encoding=encoding)),
                               how="diagonal")   # a malformed line adds read_problem from its batch on
            assert pieces.equals(whole), (encoding, batch_size)


def test_gb_csv_bad_byte_after_the_first_piece_is_an_input_error(tmp_path, monkeypatch):
    import grouper.io as io
    from grouper.errors import InputError

    path = tmp_path / "bad.csv"
    good = GB_CSV.replace("多余,字段,太多", "多余").encode("gbk")
    path.write_bytes(good + b"300,1,40,5,K35.800,,,,\xff\xff\n")
    for piece_bytes, slice_bytes in ((256, 1 << 20), (1 << 25, 16), (1 << 25, 1 << 20)):
        # the offset in the file, as when it is decoded whole, whatever the pieces and slices
        monkeypatch.setattr(io, "_GB_PIECE_BYTES", piece_bytes)
        monkeypatch.setattr(io, "_GB_DECODE_BYTES", slice_bytes)
        with pytest.raises(InputError, match=rf"neither UTF-8 nor GB18030/GBK \(bad byte at offset {len(good) + 22}\)"):
            list(io.iter_case_batches(path))


# --------------------------------------------------------------------------------------------
# Excel: its cost is said before a big sheet is written

def test_a_big_excel_output_says_what_it_costs(chs_pack, mixed_cases, tmp_path, monkeypatch, capsys):
    import grouper.writers as writers

    assert writers.excel_cost_note(99_999) is None and writers.excel_cost_note(None) is None
    assert "1,000,000 rows to an Excel sheet takes about 50 s" in writers.excel_cost_note(1_000_000)
    monkeypatch.setattr(writers, "EXCEL_NOTE_ROWS", 100)   # the 304 cases count as big here
    assert main(["group", str(mixed_cases), "-o", str(tmp_path / "r.xlsx"), "--scheme", str(chs_pack), "-q"]) == 0
    assert "304 rows to an Excel sheet" in capsys.readouterr().err
    assert main(["group", str(mixed_cases), "-o", str(tmp_path / "r.csv"), "--scheme", str(chs_pack), "-q"]) == 0
    assert "Excel" not in capsys.readouterr().err
