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
input or another output.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UsageError

PARTIAL_MARK = ".partial"


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
def atomic_output(target: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target` (a file, or with `directory=True` an empty folder);
    on success it replaces `target`, on any exception it is removed and the exception goes on."""
    target = Path(target)
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
    """Raise UsageError when an output path is an input or another output, or is a folder holding
    one (options given as (option name, path) pairs; None paths are ignored). Call it before
    reading anything."""
    inputs = [(name, Path(p)) for name, p in inputs if p is not None]
    outputs = [(name, Path(p)) for name, p in outputs if p is not None]
    for i, (name, path) in enumerate(outputs):
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
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
        raise UsageError(f"{name} {path}: cannot write in {parent}")
