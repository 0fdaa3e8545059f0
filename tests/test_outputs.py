"""Outputs appear whole or not at all; an output never overwrites an input (issue 7, defects 3 and 4)."""
import errno
import json
import os
import signal
from pathlib import Path

import polars as pl
import pytest

from grouper import io
from grouper.cli import main
from grouper.errors import UsageError
from grouper.outputs import (OUTPUT_MARKER, PARTIAL_MARK, Terminated, atomic_output, atomic_outputs,
                             check_outputs, foreign_entries, raise_on_termination, refuse_collisions)

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
    with atomic_output(pack, directory=True, kind="DRG pack") as tmp:
        (tmp / "scheme.grp").write_text("scheme")
        (tmp / "stale.csv").write_text("x")
    with atomic_output(pack, directory=True, kind="DRG pack") as tmp:   # its own earlier output: replaced
        (tmp / "scheme.grp").write_text("scheme")
    assert sorted(p.name for p in pack.iterdir()) == [OUTPUT_MARKER, "scheme.grp"]
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


# ---- folder outputs never delete what grouper did not write (issue 16) ------------------------------

def test_a_folder_output_replaces_only_its_own_kind(tmp_path):
    """A folder output is written over an empty folder or an earlier output of the same kind (its
    marker lists every file); a file someone added, another kind's folder or an unmarked folder is
    refused, before and at the moment of replacing, and nothing in it is touched."""
    out = tmp_path / "settled"
    out.mkdir()
    with atomic_output(out, directory=True, kind="settlement") as tmp:     # an empty folder is fine
        (tmp / "summary.json").write_text("{}")
        (tmp / "change").mkdir()
        (tmp / "change" / "summary.json").write_text("{}")
    marker = json.loads((out / OUTPUT_MARKER).read_text(encoding="utf-8"))
    assert marker == {"written_by": "grouper", "kind": "settlement", "files": ["change", "change/summary.json",
                                                                               "summary.json"]}
    assert foreign_entries(out, "settlement") == [] and foreign_entries(out, "DIP pack") == ["change", "change/summary.json",
                                                                                            "summary.json"]
    (out / "change" / "notes.txt").write_text("mine")
    assert foreign_entries(out, "settlement") == ["change/notes.txt"]
    for kind in ("settlement", "DIP pack"):
        with pytest.raises(UsageError, match="change/notes.txt"):
            with atomic_output(out, directory=True, kind=kind) as tmp:
                (tmp / "summary.json").write_text("new")
    assert (out / "change" / "notes.txt").read_text() == "mine" and (out / "summary.json").read_text() == "{}"
    unmarked = tmp_path / "mine"
    unmarked.mkdir()
    (unmarked / "a.csv").write_text("a")
    with pytest.raises(UsageError, match=r"did not write there as a settlement \(a.csv\)"):
        check_outputs([], folders=[("-o", unmarked, "settlement")])
    assert leftovers(tmp_path) == []


def test_settle_never_deletes_a_folder_it_did_not_write(tmp_path, capsys):
    """`settle -o EXISTING_FOLDER` deleted the folder's other files (issue 16)."""
    from settle_helpers import WEIGHTS
    from test_settle_cli import _grouped_csv

    WEIGHTS.write_csv(tmp_path / "w.csv")
    policy = Path(__file__).resolve().parents[1] / "tables" / "policies" / "zhejiang-points.toml"
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "minutes.docx").write_bytes(b"board minutes")
    argv = ["settle", str(_grouped_csv(tmp_path)), "--policy", str(policy), "--weights", str(tmp_path / "w.csv"), "-q"]
    assert main([*argv, "-o", str(folder)]) == 2
    assert "minutes.docx" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["minutes.docx"]
    assert main([*argv, "-o", str(tmp_path / "settled")]) == 0
    assert main([*argv, "-o", str(tmp_path / "settled"), "--format", "csv"]) == 0   # its own output: replaced
    assert (tmp_path / "settled" / "cases.csv").is_file() and not (tmp_path / "settled" / "cases.parquet").exists()


@pytest.mark.parametrize("argv", [
    ["group", "{src}", "-o", "{missing}/r.csv", "--scheme", str(MINI), "-q"],
    ["group", "{src}", "-o", "{tmp}/r.csv", "--report", "{missing}/q.csv", "--scheme", str(MINI), "-q"],
    ["import", "dip", str(Path(__file__).parent / "fixtures" / "dip" / "published.csv"), "-o", "{missing}/pack"],
    ["synth", "history", "--cases", "10", "-o", "{missing}/h.parquet", "-q"],
])
def test_an_output_in_a_missing_folder_is_refused_and_creates_no_folder(tmp_path, argv, capsys):
    """`-o /nonexistent/dir/x.csv` created the folders and exited 0 (issue 17)."""
    src = cases_file(tmp_path)
    missing = tmp_path / "no" / "such"
    assert main([a.format(src=src, missing=missing, tmp=tmp_path) for a in argv]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists() and not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("output", ["{pack}/drg_weights.csv", "{pack}/cc.csv", "{base}/r.csv"])
def test_group_writes_nothing_inside_its_scheme_pack(tmp_path, output, capsys):
    """`group ... --scheme PACK -o PACK/drg_weights.csv` overwrote a table of the pack (issue 16);
    the pack's folder and its base's are read whole (every file is in the content hash)."""
    import shutil

    pack = Path(shutil.copytree(MINI, tmp_path / "pack"))
    base = Path(shutil.copytree(MINI, tmp_path / "base"))
    (pack / "scheme.grp").write_text('scheme "r" version "1" extends "../base"\n', encoding="utf-8")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    src = cases_file(tmp_path / "base")
    before[src] = src.read_bytes()
    out = output.format(pack=pack, base=base)
    assert main(["group", str(src), "-o", out, "--scheme", str(pack), "-q"]) == 2
    assert "lies inside the input folder (--scheme" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_settling_is_a_message(tmp_path, monkeypatch, capsys):
    """ENOSPC while the settlement folder is written: exit 3, one line, no folder, no temporary."""
    from grouper.payment import settle_files as files
    from settle_helpers import WEIGHTS
    from test_settle_cli import _grouped_csv

    WEIGHTS.write_csv(tmp_path / "w.csv")
    policy = Path(__file__).resolve().parents[1] / "tables" / "policies" / "zhejiang-points.toml"
    monkeypatch.setattr(files, "write_table", _full)
    argv = ["settle", str(_grouped_csv(tmp_path)), "--policy", str(policy), "--weights", str(tmp_path / "w.csv"),
            "-o", str(tmp_path / "settled"), "-q"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "settled").exists() and leftovers(tmp_path) == []


def test_disk_full_while_writing_excel_is_a_message(tmp_path, monkeypatch, capsys):
    """xlsxwriter wraps the OSError in its own FileCreateError: still a full disk, exit 3."""
    import xlsxwriter.workbook

    monkeypatch.setattr(xlsxwriter.workbook.Workbook, "_store_workbook", _full)
    src = cases_file(tmp_path)
    assert main(["group", str(src), "-o", str(tmp_path / "r.xlsx"), "--scheme", str(MINI), "-q"]) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert not (tmp_path / "r.xlsx").exists() and leftovers(tmp_path) == []


def test_an_unexpected_error_is_one_line_with_its_own_exit_code(tmp_path, monkeypatch, capsys):
    """A bug is never a traceback either: exit 70 with a line saying so (GROUPER_TRACEBACK=1 shows it)."""
    from grouper import api

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(api, "group_file", bug)
    src = cases_file(tmp_path)
    assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q"]) == 70
    err = capsys.readouterr().err
    assert "internal error" in err and "ZeroDivisionError" in err and "Traceback" not in err
    monkeypatch.setenv("GROUPER_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q"])
