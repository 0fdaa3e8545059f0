"""Writing outputs so that a file either appears whole or not at all.

Every command writes its outputs (results, reports, packs, ...) through `atomic_output`: the
writer fills a temporary path beside the target (same folder, so the final rename is atomic on
one file system), which replaces the target only when the whole block succeeded. On any failure
— an exception, Ctrl-C (KeyboardInterrupt), or SIGTERM (made an exception by
`raise_on_termination`) — the temporary path is removed and an existing target is left as it was.

    with atomic_output(path) as tmp:          # tmp keeps path's extension (writers pick the format from it)
        frame.write_parquet(tmp)

    with atomic_outputs(results_path, report_path) as (results_tmp, report_tmp):   # all or nothing
        ...

`refuse_collisions` stops a command before it reads anything when an output would overwrite an
input or another output, or land inside an input folder (a scheme pack is read whole).
`refuse_unwritable` stops it when an output cannot be written: a folder where a file is meant,
a folder that does not exist (outputs never create folders above them), or one it may not write.

A folder output (a settlement, a pack, a report folder) replaces the folder of that name whole, so
it is only ever written over an empty folder or one that a grouper command wrote as the same kind
of output: each folder output records its kind and every file in it in `OUTPUT_MARKER`, and a
folder holding anything else (a file the user put there, an input, another command's output) is
refused (`refuse_foreign_folder`) — nothing that grouper did not write is ever deleted.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UsageError

PARTIAL_MARK = ".partial"
OUTPUT_MARKER = ".grouper-output.json"   # in a folder output: {"kind": ..., "files": [every path in it]}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs (like KeyboardInterrupt for Ctrl-C)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def raise_on_termination() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op outside it)."""
    with contextlib.suppress(ValueError):           # signal.signal only works in the main thread
        signal.signal(signal.SIGTERM, _raise_terminated)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(target: str | Path, *, directory: bool = False, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target` (a file, or with `directory=True` an empty folder);
    on success it replaces `target`, on any exception it is removed and the exception goes on.

    A folder output names its `kind` (e.g. "settlement"): it replaces an existing folder only when
    that holds nothing but a previous output of the same kind (see `refuse_foreign_folder`), and it
    records its files in OUTPUT_MARKER for the next run."""
    target = Path(target)
    if directory and kind is None:
        raise TypeError("a folder output names its kind")
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{target.name}.", f"{PARTIAL_MARK}{target.suffix}"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            _write_marker(tmp, kind)
            tmp.chmod(0o777 & ~_umask())            # mkdtemp creates 0700; a plain mkdir would not
            refuse_foreign_folder("output", target, kind)   # checked again: it may have changed meanwhile
        if directory and target.is_dir():
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=target.parent))
            os.replace(target, old / "previous")    # a folder cannot be renamed over a non-empty one
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if not directory:
                tmp.chmod(0o666 & ~_umask())        # mkstemp creates 0600; a plain write would not
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _entries(folder: Path) -> list[str]:
    """Every path under `folder` (files, folders, links; not followed), relative, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _write_marker(folder: Path, kind: str) -> None:
    files = [name for name in _entries(folder) if name != OUTPUT_MARKER]
    text = json.dumps({"written_by": "grouper", "kind": kind, "files": files}, ensure_ascii=False, indent=1)
    (folder / OUTPUT_MARKER).write_text(text + "\n", encoding="utf-8")


def foreign_entries(folder: str | Path, kind: str) -> list[str]:
    """What in the existing folder `folder` was not written there by a grouper output of `kind`
    (paths relative to it); [] for an empty folder or no folder."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return []
    found = _entries(folder)
    if not found:
        return []
    try:
        marker = json.loads((folder / OUTPUT_MARKER).read_text(encoding="utf-8"))
        ours = set(marker["files"]) if marker.get("kind") == kind and isinstance(marker["files"], list) else set()
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        ours = set()
    if not ours:
        return [name for name in found if name != OUTPUT_MARKER] or [OUTPUT_MARKER]
    return [name for name in found if name != OUTPUT_MARKER and name not in ours]


def refuse_foreign_folder(name: str, path: str | Path | None, kind: str) -> None:
    """Raise UsageError when the folder output `path` exists and holds anything that a grouper
    output of `kind` did not put there (it would be deleted when the folder is replaced)."""
    if path is None:
        return
    foreign = foreign_entries(path, kind)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UsageError(f"{name} {path} is a folder holding files that grouper did not write there as a {kind} "
                         f"({shown}); it would be replaced whole: refusing to delete them; choose a new or empty "
                         "folder")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_outputs(*targets: str | Path | None) -> Iterator[tuple[Path | None, ...]]:
    """`atomic_output` for several files at once (None stays None): all are kept, or none."""
    with contextlib.ExitStack() as stack:
        yield tuple(None if t is None else stack.enter_context(atomic_output(t)) for t in targets)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)   # hard links, case-insensitive file systems
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    """`path` lies inside the existing folder `folder` (which an output folder replaces whole)."""
    return folder.is_dir() and path.resolve().is_relative_to(folder.resolve())


def refuse_collisions(inputs: Iterable[tuple[str, str | Path | None]],
                      outputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """Raise UsageError when an output path is an input or another output, is a folder holding
    one, or lies inside an input folder (options given as (option name, path) pairs; None paths
    are ignored). Call it before reading anything, and again with what was only known by reading
    (the files a policy or a schedule names) before writing anything."""
    inputs = [(name, Path(p)) for name, p in inputs if p is not None]
    outputs = [(name, Path(p)) for name, p in outputs if p is not None]
    for i, (name, path) in enumerate(outputs):
        for other_name, folder in inputs:
            if _inside(path, folder) and not _same_file(path, folder):
                raise UsageError(f"{name} {path} lies inside the input folder ({other_name} {folder}), which is "
                                 "read whole: refusing to write there; choose another path")
        for other_name, other in inputs + outputs[:i]:
            kind = "the input" if (other_name, other) in inputs else "another output"
            if _same_file(path, other):
                raise UsageError(f"{name} {path} is {kind} ({other_name} {other}): "
                                 "refusing to overwrite it; choose another path")
            if _inside(other, path) or (kind == "another output" and _inside(path, other)):
                outer, inner = (f"{name} {path}", f"{kind} ({other_name} {other})") if _inside(other, path) else \
                               (f"{other_name} {other}", f"another output ({name} {path})")
                raise UsageError(f"{outer} is a folder holding {inner}, and it would be replaced whole: "
                                 "refusing to overwrite it; choose another path")


def check_outputs(inputs: Iterable[tuple[str, str | Path | None]], files: Iterable[tuple[str, str | Path | None]] = (),
                  folders: Iterable[tuple[str, str | Path | None, str]] = ()) -> None:
    """Every check of a command's output paths, before it reads anything: `inputs` and `files`
    are (option, path) pairs, `folders` (option, path, kind) for folder outputs. Raises UsageError
    when an output would overwrite an input or another output, lies inside an input folder,
    cannot be written, or (a folder) would delete files that grouper did not write there."""
    files, folders = list(files), list(folders)
    for name, path in files:
        refuse_unwritable(name, path)
    for name, path, _ in folders:
        refuse_unwritable(name, path, folder=True)
    refuse_collisions(inputs, [*files, *((name, path) for name, path, _ in folders)])
    for name, path, kind in folders:
        refuse_foreign_folder(name, path, kind)


def refuse_unwritable(name: str, path: str | Path | None, *, folder: bool = False) -> None:
    """Raise UsageError when the output `path` (a file, or with `folder=True` a folder) cannot be
    written: it is a folder (a file), or the folder it goes in is not a writable folder. Call it
    before reading anything."""
    if path is None:
        return
    path = Path(path)
    if not folder and path.is_dir():
        raise UsageError(f"{name} {path} is a folder; give a file name, e.g. {path / 'results.csv'}")
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{name} {path} is a file; give a folder name")
    parent = path.absolute().parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{name} {path}: cannot write in {parent}, which is a file")
    if not parent.is_dir():
        raise UsageError(f"{name} {path}: the folder {parent} does not exist (outputs never create folders "
                         "above them); create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{name} {path}: cannot write in {parent}")


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind an exception, if any: writers wrap it (xlsxwriter's FileCreateError holds
    it as its argument, others chain it), and a full disk must read as a full disk."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return exc
        inner = next((a for a in getattr(exc, "args", ()) if isinstance(a, OSError)), None)
        exc = inner or exc.__cause__ or exc.__context__
    return None


def os_error_text(error: OSError) -> str:
    """One line for an OSError, e.g. `no space left on device (writing r.xlsx); nothing was written`."""
    if error.errno == errno.ENOSPC:
        name = str(error.filename or "")
        where = f" (writing {name})" if name and PARTIAL_MARK not in name else ""   # not the temporary file
        return f"{error.strerror or 'No space left on device'}{where}: the output was not written; free some space and run again"
    reason = error.strerror or str(error)
    return f"{error.filename}: {reason}" if error.filename else reason
