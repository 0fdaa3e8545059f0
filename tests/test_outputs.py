"""Outputs appear whole or not at all; an output never overwrites an input (issue 7, defects 3 and 4)."""
import os
import signal
from pathlib import Path

import polars as pl
import pytest

from grouper import io
from grouper.cli import main
from grouper.errors import UsageError
from grouper.outputs import (PARTIAL_MARK, Terminated, atomic_output, atomic_outputs, raise_on_termination,
                             refuse_collisions)

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
ROW = "1,40,,,,5,1,K35.800|J18.900,47.0100\n"


def cases_file(tmp_path: Path, rows: int = 50) -> Path:
    src = tmp_path / "cases.csv"
    src.write_text("sex,age,age_days,weight,dept,los,discharge,dx,proc\n" + ROW * rows, encoding="utf-8")
    return src


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".old"))


def test_atomic_output_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"          # nothing visible until the block succeeds
    assert target.read_text() == "new"
    for error in (ValueError("boom"), KeyboardInterrupt(), Terminated()):
        with pytest.raises(type(error)):
            with atomic_output(target) as tmp:
                tmp.write_text("half")
                raise error
        assert target.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_atomic_output_folder_and_several_files(tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "stale.csv").write_text("x")
    with atomic_output(pack, directory=True) as tmp:
        (tmp / "scheme.grp").write_text("scheme")
    assert sorted(p.name for p in pack.iterdir()) == ["scheme.grp"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_outputs(tmp_path / "a.csv", None, tmp_path / "b.csv") as (a, none, b):
            assert none is None
            a.write_text("a")
            b.write_text("b")
            raise KeyboardInterrupt
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()
    assert leftovers(tmp_path) == []


def test_refuse_collisions_sees_through_spellings_and_links(tmp_path):
    src = cases_file(tmp_path)
    os.link(src, tmp_path / "linked.csv")
    for same in (src, tmp_path / "." / "cases.csv", tmp_path / "linked.csv"):
        with pytest.raises(UsageError, match="is the input"):
            refuse_collisions([("input", src)], [("-o", same)])
    with pytest.raises(UsageError, match="another output"):
        refuse_collisions([("input", src)], [("-o", tmp_path / "r.csv"), ("--report", tmp_path / "r.csv")])
    refuse_collisions([("input", src)], [("-o", tmp_path / "r.csv"), ("--report", None)])


def test_refuse_collisions_sees_a_folder_output_holding_an_input(tmp_path):
    """An output folder is replaced whole (atomic_output(directory=True)): it must hold no input."""
    src = cases_file(tmp_path)
    for folder in (tmp_path, tmp_path / ".." / tmp_path.name):
        with pytest.raises(UsageError, match="a folder holding the input"):
            refuse_collisions([("input", src)], [("-o", folder)])
    (tmp_path / "report").mkdir()
    with pytest.raises(UsageError, match="a folder holding another output"):
        refuse_collisions([], [("-o", tmp_path / "report" / "w.csv"), ("--report", tmp_path / "report")])
    refuse_collisions([("input", src)], [("-o", tmp_path / "pack")])     # a new folder beside the input is fine


@pytest.mark.parametrize("args", [
    ["-o", "{src}"],
    ["-o", "{dir}/r.csv", "--report", "{dir}/r.csv"],
    ["-o", "{dir}/r.csv", "--report", "{src}"],
])
def test_group_refuses_to_overwrite_its_input_or_its_output(tmp_path, args, capsys):
    src = cases_file(tmp_path)
    before = src.read_bytes()
    argv = ["group", str(src), *(a.format(src=src, dir=tmp_path) for a in args), "--scheme", str(MINI), "-q"]
    assert main(argv) == 2
    assert src.read_bytes() == before
    assert not (tmp_path / "r.csv").exists()
    assert "refusing to overwrite" in capsys.readouterr().err


def test_group_onto_a_folder_or_unwritable_place_is_a_message(tmp_path, capsys):
    src = cases_file(tmp_path)
    (tmp_path / "out.xlsx").mkdir()
    assert main(["group", str(src), "-o", str(tmp_path / "out.xlsx"), "--scheme", str(MINI), "-q"]) == 2
    assert "is a folder" in capsys.readouterr().err
    if os.geteuid() != 0:                             # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["group", str(src), "-o", str(locked / "r.xlsx"), "--scheme", str(MINI), "-q"]) == 2
        assert "cannot write" in capsys.readouterr().err


@pytest.fixture
def own_sigterm():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("how, code", [("ctrl-c", 130), ("sigterm", 143), ("error", 3)])
@pytest.mark.parametrize("output", ["r.csv", "r.parquet", "r.xlsx"])
def test_an_interrupted_run_leaves_no_output(tmp_path, monkeypatch, capsys, own_sigterm, how, code, output):
    """Stopped after the first batch was written: no results file, no report, no temporary file,
    and an earlier results file is left as it was."""
    src = cases_file(tmp_path, rows=30)
    out = tmp_path / output
    io.write_results(pl.DataFrame({"earlier": ["run"]}), out)
    before = out.read_bytes()
    write = io.ResultSink.write

    def write_then_stop(self, batch):
        write(self, batch)
        if how == "ctrl-c":
            raise KeyboardInterrupt
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)      # the handler main() installs raises here
        raise OSError("disk full")

    monkeypatch.setattr(io.ResultSink, "write", write_then_stop)
    argv = ["group", str(src), "-o", str(out), "--report", str(tmp_path / "report.csv"), "--scheme", str(MINI),
            "--batch-size", "10", "-q"]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err
    assert out.read_bytes() == before
    assert not (tmp_path / "report.csv").exists()
    assert leftovers(tmp_path) == []


def test_sigterm_handler_raises(own_sigterm):
    raise_on_termination()
    with pytest.raises(Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):                          # the handler runs at the next bytecode boundary
            pass


def test_the_progress_bar_names_the_output_not_its_temporary_file(tmp_path, monkeypatch):
    """While the output is finished the bar reads `writing r.xlsx`, never the temporary file's name."""
    import io as text_io

    from rich.console import Console

    from grouper import console

    shown = text_io.StringIO()
    monkeypatch.setattr(console, "stderr_console", lambda: Console(file=shown, force_terminal=True, width=200))
    src = cases_file(tmp_path)
    assert main(["group", str(src), "-o", str(tmp_path / "r.xlsx"), "--scheme", str(MINI)]) == 0
    text = shown.getvalue()
    assert "writing r.xlsx" in text and PARTIAL_MARK not in text
