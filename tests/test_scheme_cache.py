"""The compiled-plan cache: reused while the pack is unchanged, rebuilt when any file changes or an
entry is damaged; an entry never runs code, and only the user's own private entries are used."""
import os
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
    return sorted(p.name for p in cache_dir().glob("*.npz"))


def entry_meta(entry: Path) -> str:
    """The JSON part of a cache entry."""
    with np.load(entry, allow_pickle=False) as arrays:
        return bytes(arrays["meta"]).decode("utf-8")


def write_meta(entry: Path, good: bytes, meta: str, member: str = "meta") -> None:
    """Rewrite the entry as `good` (an entry's bytes) with another JSON part (`member`: the main one,
    or a Later part such as the AST, "later0"), keeping its mode."""
    import io
    import zipfile

    from grouper.plancache import _member

    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(entry, "w") as target:
        for name in source.namelist():
            if name == f"{member}.npy":
                _member(target, member, np.frombuffer(meta.encode("utf-8"), np.uint8))
            else:
                target.writestr(name, source.read(name))
    entry.chmod(0o600)


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
    (entry,) = cache_dir().glob("*.npz")
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
                                    "future protocol", "garbled middle", "an object array", "another class",
                                    "an extra field", "bad JSON", "an array index out of range"])
def test_any_damaged_cache_entry_is_rebuilt(pack, damage, capsys):
    import io
    import pickle

    from grouper.cli import main

    load_scheme(pack)
    [entry] = cache_dir().glob("*.npz")
    good = entry.read_bytes()
    meta = entry_meta(entry)
    entry.unlink()
    if damage == "a folder":
        entry.mkdir()
    elif damage == "an object array":
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array([{"not": "a scheme"}], dtype=object))   # stored as a pickle
        entry.write_bytes(buffer.getvalue())
    elif damage in ("another class", "an extra field", "bad JSON", "an array index out of range"):
        header = '"c":"grouper.engine.ir.Plan","f":['
        assert header in meta
        write_meta(entry, good, {"another class": meta.replace('"grouper.engine.ir.Plan"', '"subprocess.Popen"'),
                                 "an extra field": meta.replace(header, header + "1,"), "bad JSON": meta[:-10],
                                 "an array index out of range": meta.replace('{"a":0}', '{"a":999}')}[damage])
        assert entry.read_bytes() != good
    else:
        entry.write_bytes({"random bytes": bytes(range(256)) * 4, "truncated": good[: len(good) // 2], "empty": b"",
                           "another object": pickle.dumps({"not": "a scheme"}), "future protocol": b"\x80\x09junk",
                           "garbled middle": good[:200] + b"\xff" * 100 + good[300:]}[damage])
    assert load_scheme(pack).plan.drg_codes == load_scheme(pack, cache=False).plan.drg_codes
    assert main(["check", str(pack)]) == 0
    if damage != "a folder":
        assert entry.read_bytes() == good  # replaced by a good entry
    assert "Traceback" not in capsys.readouterr().err


def entry_member(entry: Path, member: str) -> str:
    with np.load(entry, allow_pickle=False) as arrays:
        return bytes(arrays[member]).decode("utf-8")


def test_a_grouping_run_from_the_cache_decodes_no_ast_and_no_string_one_by_one(pack, monkeypatch):
    """The AST sits in a member of its own, decoded only when read; the plan's long string lists
    (codes, names) are one array of text each, not JSON strings (the mini pack's lists are short:
    packed here from 2 items on)."""
    import subprocess
    import sys

    from grouper import plancache

    monkeypatch.setattr(plancache, "PACKED_STRINGS", 2)
    compiled = load_scheme(pack, cache=False)
    load_scheme(pack)
    [entry] = cache_dir().glob("*.npz")
    meta, ast_part = entry_meta(entry), entry_member(entry, "later0")
    assert "grouper.lang.ast" not in meta and '"c":"grouper.lang.ast.Header"' in ast_part
    assert '"s":[' in meta and compiled.plan.codes[0] not in meta   # the codes are packed
    probe = (f"import sys; from grouper.scheme import load_scheme; s = load_scheme({str(pack)!r}); "
             "before = 'grouper.lang.ast' in sys.modules; header = s.ast.header; "
             "print(before, 'grouper.lang.ast' in sys.modules, header.name == s.plan.name)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                         env={**os.environ, "GROUPER_CACHE_DIR": str(cache_dir())}).stdout.split()
    assert out == ["False", "True", "True"]


def test_a_scheme_from_the_cache_pickles_whole(pack):
    """grouper.spark pickles a loaded scheme for its workers: the AST, not decoded yet, goes with it."""
    import pickle

    compiled = load_scheme(pack, cache=False)
    load_scheme(pack)
    shipped = pickle.loads(pickle.dumps(load_scheme(pack)))
    assert shipped.ast == compiled.ast and shipped.plan.drg_codes == compiled.plan.drg_codes
    assert shipped.describe() == compiled.describe()


@pytest.mark.parametrize("damage", ["a count that does not match", "not a count", "an index out of range"])
def test_a_damaged_packed_string_list_is_rebuilt(pack, damage, monkeypatch):
    import re

    from grouper import plancache

    monkeypatch.setattr(plancache, "PACKED_STRINGS", 2)
    want = load_scheme(pack, cache=False).plan.codes
    load_scheme(pack)
    [entry] = cache_dir().glob("*.npz")
    good, meta = entry.read_bytes(), entry_meta(entry)
    first = re.search(r'\{"s":\[(\d+),(\d+)\]\}', meta)
    index, count = first.groups()
    wrong = {"a count that does not match": f'{{"s":[{index},{int(count) + 1}]}}',
             "not a count": f'{{"s":[{index},"{count}"]}}',
             "an index out of range": f'{{"s":[999,{count}]}}'}[damage]
    write_meta(entry, good, meta.replace(first.group(0), wrong, 1))
    assert load_scheme(pack).plan.codes == want
    assert entry.read_bytes() == good   # rebuilt


@pytest.mark.parametrize("damage", ["bad JSON", "another class", "an extra field", "an array"])
def test_a_damaged_ast_member_is_parsed_again(pack, damage, capsys):
    """The AST member is decoded after the plan was used: damaged, the pack is parsed again for it
    (the same AST), and nothing else changes; it never runs code."""
    from grouper.cli import main

    compiled = load_scheme(pack, cache=False)
    load_scheme(pack)
    [entry] = cache_dir().glob("*.npz")
    good, ast_part = entry.read_bytes(), entry_member(entry, "later0")
    header = '"c":"grouper.lang.ast.Header","f":['
    write_meta(entry, good, {"bad JSON": ast_part[:-10],
                             "another class": ast_part.replace('"grouper.lang.ast.Header"', '"subprocess.Popen"'),
                             "an extra field": ast_part.replace(header, header + "1,"),
                             "an array": ast_part.replace(header, header[:-1] + '{"a":0},')}[damage], "later0")
    assert entry.read_bytes() != good
    cached = load_scheme(pack)
    assert cached.plan.drg_codes == compiled.plan.drg_codes
    assert cached.ast == compiled.ast
    assert main(["explain", "--scheme", str(pack), "--dx", "K35.800"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_cache_location_that_is_a_file_only_costs_speed(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    assert load_scheme(MINI).plan.drg_codes


def test_a_pickle_in_the_cache_is_never_run(pack, tmp_path):
    """Whoever can write in the cache folder cannot run code as the user: a pickle that would create
    a file when unpickled, under the entry's name (and the name entries had before), does nothing."""
    import pickle

    from grouper.scheme import pack_fingerprint, scheme_path

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    load_scheme(pack)
    [entry] = cache_dir().glob("*.npz")
    good = entry.read_bytes()
    key = pack_fingerprint(scheme_path(pack))
    for name in (entry.name, f"{key}.pickle"):
        (cache_dir() / name).write_bytes(pickle.dumps(Payload()))
        (cache_dir() / name).chmod(0o600)
    assert load_scheme(pack).plan.drg_codes == load_scheme(pack, cache=False).plan.drg_codes
    assert not marker.exists()
    assert entry.read_bytes() == good   # rebuilt


def _tampered(pack) -> Path:
    """The pack's entry, built afresh and validly rewritten to name a DRG differently (what a foreign
    writer could do)."""
    for old in cache_dir().glob("*.npz"):
        old.unlink()
    load_scheme(pack)
    [entry] = cache_dir().glob("*.npz")
    meta = entry_meta(entry)
    assert meta.count('"GZ19"') and '"tampered"' not in meta
    write_meta(entry, entry.read_bytes(), meta.replace('"GZ19"', '"tampered"'))
    return entry


def test_only_the_users_own_private_entries_are_used(pack):
    _tampered(pack)
    assert "tampered" in load_scheme(pack).plan.drg_codes     # the user's own entry, mode 0600: used
    for mode in (0o620, 0o602, 0o666):                        # writable by group or others: never used
        entry = _tampered(pack)
        entry.chmod(mode)
        assert "tampered" not in load_scheme(pack).plan.drg_codes
        assert entry.stat().st_mode & 0o777 == 0o600 and "tampered" not in entry_meta(entry)  # rewritten


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_an_entry_of_another_user_is_not_used(pack):
    entry = _tampered(pack)
    os.chown(entry, 12345, 12345)
    assert "tampered" not in load_scheme(pack).plan.drg_codes


def test_an_entry_under_another_key_is_not_used(pack, tmp_path):
    """A (renamed or linked) entry of another pack, or of this pack before a change, is not used."""
    load_scheme(pack)
    [old] = cache_dir().glob("*.npz")
    path = pack / "scheme.grp"
    path.write_text(path.read_text(encoding="utf-8").replace("drg GZ19", "drg GZ15"), encoding="utf-8")
    load_scheme(pack)
    [new] = [p for p in cache_dir().glob("*.npz") if p != old]
    new.unlink()
    os.link(old, new)
    assert "GZ15" in load_scheme(pack).plan.drg_codes


@pytest.mark.parametrize("name", ["mini", "mini-qy", "mini-regional", "demo"])
def test_a_cached_scheme_is_the_scheme(name, tmp_path, monkeypatch):
    """Round trip: what comes from the cache equals what was compiled (AST, plan, diagnostics) and
    groups identically."""
    from grouper import io
    from grouper.pipeline import group_frame

    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    pack = None if name == "demo" else MINI.parent / name
    compiled = load_scheme(pack)
    cached = load_scheme(pack)
    assert entries() and cached is not compiled
    assert_same_scheme(cached, compiled)
    cases = io.read_cases(Path(__file__).parents[1] / "tables" / "demo" / "discharges.csv")
    assert group_frame(cached.plan, cases).equals(group_frame(compiled.plan, cases))


def test_a_cached_national_scheme_is_the_scheme(chs20_pack, golden20_cases, tmp_path, monkeypatch):
    from grouper.pipeline import group_frame

    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    compiled = load_scheme(chs20_pack)
    cached = load_scheme(chs20_pack)
    assert_same_scheme(cached, compiled)
    assert group_frame(cached.plan, golden20_cases).equals(group_frame(compiled.plan, golden20_cases))


def assert_same_scheme(cached, compiled) -> None:
    import dataclasses

    assert cached.ast == compiled.ast and cached.diagnostics == compiled.diagnostics
    if hasattr(compiled, "describe"):
        assert cached.describe() == compiled.describe()
    for field in dataclasses.fields(compiled.plan):
        got, want = getattr(cached.plan, field.name), getattr(compiled.plan, field.name)
        if isinstance(want, np.ndarray):
            assert got.dtype == want.dtype and np.array_equal(got, want), field.name
        else:
            assert type(got) is type(want) and got == want, field.name


# ---- DIP packs: the same cache ----------------------------------------------------------------
DIP_MINI = Path(__file__).parent / "fixtures" / "dip" / "mini"
DIP_DEMO = Path(__file__).parents[1] / "tables" / "dip-demo"


@pytest.fixture
def dip_pack(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    return Path(shutil.copytree(DIP_MINI, tmp_path / "dip"))


@pytest.mark.parametrize("source", [DIP_MINI, DIP_DEMO])
def test_a_cached_dip_pack_is_the_pack(source, tmp_path, monkeypatch):
    """A DIP pack is compiled once and then read from the plan cache: the same AST, rows, plan and
    diagnostics, the same results and explanations."""
    from grouper.dip import explain_dip, group_dip, load_dip_scheme
    from grouper.io import read_cases

    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    compiled = load_dip_scheme(source)
    assert len(entries()) == 1
    cached = load_dip_scheme(source)
    assert len(entries()) == 1 and cached.plan is not compiled.plan
    assert_same_scheme(cached, compiled)
    assert cached.rows == compiled.rows and list(cached.rows) == list(compiled.rows)
    assert cached.path == compiled.path
    cases = read_cases(DIP_DEMO / "discharges.csv")
    assert group_dip(cases, cached).equals(group_dip(cases, compiled))
    for i in range(0, cases.height, 7):
        assert explain_dip(cached, cases[i]) == explain_dip(compiled, cases[i])


def test_a_changed_dip_catalogue_invalidates(dip_pack):
    from grouper.dip import load_dip_scheme

    before = load_dip_scheme(dip_pack)
    catalogue = dip_pack / "catalogue.csv"
    lines = catalogue.read_text(encoding="utf-8").splitlines(keepends=True)
    catalogue.write_text("".join(lines[:-1]), encoding="utf-8")          # one row fewer
    after = load_dip_scheme(dip_pack)
    assert len(entries()) == 2 and len(after.plan.rows) == len(before.plan.rows) - 1
    assert load_dip_scheme(dip_pack, cache=False).plan.row_code == after.plan.row_code


def test_a_damaged_or_foreign_dip_entry_is_rebuilt(dip_pack, tmp_path, monkeypatch):
    import pickle

    from grouper import plancache
    from grouper.dip import load_dip_scheme

    monkeypatch.setattr(plancache, "PACKED_STRINGS", 10**9)   # the row codes as JSON strings, to tamper with

    want = load_dip_scheme(dip_pack, cache=False).plan.row_code
    load_dip_scheme(dip_pack)
    [entry] = cache_dir().glob("*.npz")
    good = entry.read_bytes()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for damage in (b"junk", good[: len(good) // 2], pickle.dumps(Payload())):
        entry.write_bytes(damage)
        assert load_dip_scheme(dip_pack).plan.row_code == want
        assert entry.read_bytes() == good
    assert not marker.exists()
    meta = entry_meta(entry)
    first = want[0]
    write_meta(entry, good, meta.replace(f'"{first}"', '"tampered"'))
    assert "tampered" in load_dip_scheme(dip_pack).plan.row_code       # the user's own private entry
    entry.chmod(0o666)
    assert load_dip_scheme(dip_pack).plan.row_code == want              # writable by others: not used
