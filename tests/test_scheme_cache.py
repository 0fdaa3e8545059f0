"""The compiled-plan cache: reused while the pack is unchanged, rebuilt when any file changes."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from grouper.errors import SchemeError
from grouper.scheme import cache_dir, load_scheme

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"


@pytest.fixture
def pack(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(MINI, tmp_path / "mini")
    return tmp_path / "mini"


def entries():
    return sorted(p.name for p in cache_dir().glob("*.pickle"))


def test_second_load_comes_from_cache(pack):
    first = load_scheme(pack)
    assert len(entries()) == 1
    second = load_scheme(pack)
    assert len(entries()) == 1
    assert second.plan.drg_codes == first.plan.drg_codes
    assert np.array_equal(second.plan.program, first.plan.program)


@pytest.mark.parametrize("file, old, new", [
    ("scheme.grp", "drg GZ19", "drg GZ15"),
    ("cc.csv", "J18.900,MCC,T1", "J18.900,CC,T1"),
])
def test_any_changed_file_invalidates(pack, file, old, new):
    before = load_scheme(pack)
    path = pack / file
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    after = load_scheme(pack)
    assert len(entries()) == 2
    if file == "scheme.grp":
        assert "GZ15" in after.plan.drg_codes and "GZ15" not in before.plan.drg_codes
    else:
        assert not np.array_equal(after.plan.set_bits, before.plan.set_bits)


def test_added_file_invalidates(pack):
    load_scheme(pack)
    (pack / "notes.csv").write_text("a\n1\n", encoding="utf-8")
    load_scheme(pack)
    assert len(entries()) == 2


def test_errors_are_not_cached(pack):
    path = pack / "scheme.grp"
    path.write_text(path.read_text(encoding="utf-8").replace("drg GZ19", "drg GD11"), encoding="utf-8")
    for _ in range(2):
        with pytest.raises(SchemeError):
            load_scheme(pack)
    assert entries() == []


def test_corrupt_entry_is_rebuilt(pack):
    load_scheme(pack)
    (entry,) = cache_dir().glob("*.pickle")
    entry.write_bytes(b"not a pickle")
    assert load_scheme(pack).plan.drg_codes
    assert entry.read_bytes() != b"not a pickle"


def test_cache_off(pack):
    load_scheme(pack, cache=False)
    assert entries() == []


def test_a_copy_of_a_deleted_pack_shows_its_own_paths(tmp_path, monkeypatch, capsys):
    """Issue 7, defect 6: the cache never changes what a command shows."""
    from grouper.cli import main

    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(MINI, a)
    assert main(["explain", "--scheme", str(a), "--dx", "K35.800", "--proc", "47.0100", "--sex", "1", "--age", "40"]) == 0
    assert str(a) in capsys.readouterr().out
    shutil.copytree(a, b)
    shutil.rmtree(a)
    assert main(["explain", "--scheme", str(b), "--dx", "K35.800", "--proc", "47.0100", "--sex", "1", "--age", "40"]) == 0
    out = capsys.readouterr().out
    assert str(b) in out and str(a) not in out


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "empty", "another object", "a folder",
                                    "future protocol", "garbled middle"])
def test_any_damaged_cache_entry_is_rebuilt(pack, damage, capsys):
    import pickle

    from grouper.cli import main

    load_scheme(pack)
    [entry] = cache_dir().glob("*.pickle")
    good = entry.read_bytes()
    entry.unlink()
    if damage == "a folder":
        entry.mkdir()
    else:
        entry.write_bytes({"random bytes": bytes(range(256)) * 4, "truncated": good[: len(good) // 2], "empty": b"",
                           "another object": pickle.dumps({"not": "a scheme"}), "future protocol": b"\x80\x09junk",
                           "garbled middle": good[:200] + b"\xff" * 100 + good[300:]}[damage])
    assert load_scheme(pack).plan.drg_codes == load_scheme(pack, cache=False).plan.drg_codes
    assert main(["check", str(pack)]) == 0
    if damage != "a folder":
        assert entry.read_bytes() == good  # replaced by a good entry
    assert "Traceback" not in capsys.readouterr().err


def test_a_cache_location_that_is_a_file_only_costs_speed(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    assert load_scheme(MINI).plan.drg_codes
