"""Load a scheme pack: parse → check → compile. The one place that joins the language and the engine."""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from .package_data import data_dir
from pathlib import Path
from typing import TYPE_CHECKING

from .engine.ir import Plan
from .errors import Diagnostic, InputError, SchemeError, warn_demo_scheme, with_source
from .plancache import Classes, Damaged, Later, cache_dir, cache_enabled, cached  # noqa: F401 - cache_dir: where entries are

if TYPE_CHECKING:
    from .lang import ast

SCHEME_FILE = "scheme.grp"
DEMO_PACK = "demo"


class LoadedScheme:
    """A loaded pack: where it is, its AST, the compiled plan, its warnings (errors raise) and the
    content hash of every file of the pack and its bases (see content_hash).

    From the plan cache the AST is decoded only when first read (explain, check, serve's tables):
    grouping never reads it, and leaving it undecoded saves the grouping command the AST's classes
    and a third of the entry (issue 20: the plan is loaded before any case is grouped)."""

    def __init__(self, path: Path, ast: "ast.Scheme | Later", plan: Plan, diagnostics: list[Diagnostic],
                 content_hash: str = ""):
        self.path, self.plan, self.diagnostics, self.content_hash = path, plan, diagnostics, content_hash
        self._ast = ast

    @property
    def ast(self) -> "ast.Scheme":
        if isinstance(self._ast, Later):
            try:
                self._ast = self._ast.get()
            except Damaged:   # the entry's AST member was damaged after its plan was read: parse again
                self._ast = parse_pack(self.path)[0]
        return self._ast

    def __getstate__(self) -> dict:
        """Pickled (grouper.spark ships a loaded scheme to its workers) with the AST decoded."""
        return {**self.__dict__, "_ast": self.ast}

    def describe(self) -> dict[str, str]:
        """Which rules: name, version, pack path and content hash (for summaries and output metadata)."""
        return {"name": self.plan.name, "version": self.plan.version, "path": str(self.path),
                "content_hash": self.content_hash}


@dataclass
class _Entry:
    """What the plan cache holds for a pack: its LoadedScheme but the path and content hash (both part
    of the key), the AST apart."""

    ast: Later
    plan: Plan
    diagnostics: list[Diagnostic]


def scheme_path(pack: str | Path | None) -> Path:
    """A pack folder (its scheme.grp), a .grp file, or None for the shipped demo pack."""
    if pack is None:
        warn_demo_scheme()
        return data_dir("tables") / DEMO_PACK / SCHEME_FILE
    path = Path(pack)
    if path.is_dir():
        path = path / SCHEME_FILE
    if not path.is_file():  # a path that names nothing is an input error (exit 3), like a missing case file
        raise InputError(f"no scheme file at {path}: give a pack folder holding {SCHEME_FILE}, or the .grp file itself")
    return path


EXTENDS = re.compile(r'^\s*scheme\s+"(?:[^"\\]|\\.)*"\s+version\s+"(?:[^"\\]|\\.)*"\s+extends\s+"([^"]*)"', re.M)


def _base_path(path: Path, extends: str, span) -> Path:
    try:
        return scheme_path(path.parent / extends)
    except InputError:
        raise SchemeError([Diagnostic("missing-base", "error", f"the base scheme {extends!r} was not found", span,
                                      f"`extends` names a pack folder or .grp file relative to {path.parent}")]) from None


def parse_pack(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[ast.Scheme, list[Diagnostic]]:
    """Parse a scheme file and, for an overlay, its base chain, merged (see lang/overlay.py)."""
    from .lang.overlay import merge
    from .lang.parse import parse_file   # lark: loaded only when a pack is parsed (not from the plan cache)

    scheme = parse_file(path)
    if scheme.header.extends is None:
        return scheme, []
    base_path = _base_path(path, scheme.header.extends, scheme.header.span)
    if base_path.resolve() in _chain + (path.resolve(),):
        raise SchemeError([Diagnostic("cycle", "error", f"{path} extends itself through {base_path}",
                                      scheme.header.span)])
    base, found = parse_pack(base_path, _chain + (path.resolve(),))
    merged, more = merge(base, scheme)
    return merged, found + more


def _with_sources(found: list[Diagnostic]) -> list[Diagnostic]:
    """Attach each diagnostic's source line, read from the file its span names (overlays span several)."""
    from .lang.parse import read_source

    texts: dict[str, str | None] = {}
    out = []
    for d in found:
        file = d.span.file if d.span else None
        if file and file not in texts:
            try:
                texts[file] = read_source(file)
            except SchemeError:  # not UTF-8: shown as well as it can be
                texts[file] = Path(file).read_bytes().decode("utf-8-sig", errors="replace")
            except OSError:
                texts[file] = None
        out.append(with_source(d, texts.get(file)) if file else d)
    return out


def _parse_and_check(path: Path) -> tuple[ast.Scheme, TableStore, list[Diagnostic]]:
    from .lang.check import check
    from .lang.tables import TableStore

    scheme, found = parse_pack(path)
    store = TableStore(path.parent, scheme.tables)
    return scheme, store, _with_sources(found + check(scheme, store))


def check_scheme(pack: str | Path | None) -> tuple[ast.Scheme | None, list[Diagnostic]]:
    """Parse and check without compiling; returns every diagnostic (errors included)."""
    path = scheme_path(pack)
    try:
        scheme, _, found = _parse_and_check(path)
    except SchemeError as exc:
        return None, _with_sources(exc.diagnostics)
    return scheme, found


def split_base_diagnostics(pack: str | Path | None, found: list[Diagnostic]) -> tuple[list[Diagnostic], str | None]:
    """For an overlay: (the diagnostics that are its own, one line summarising the ones its base
    pack has by itself). A base diagnostic the overlay changed (or caused) counts as its own."""
    path = scheme_path(pack)
    match = EXTENDS.search(path.read_text(encoding="utf-8-sig", errors="replace"))
    if match is None:
        return found, None
    try:
        base = scheme_path(path.parent / match.group(1))
    except InputError:
        return found, None
    _, base_found = check_scheme(base)
    inherited = [d for d in found if d in base_found]
    own = [d for d in found if d not in base_found]
    by_code: dict[str, int] = {}
    for d in inherited:
        by_code[d.code] = by_code.get(d.code, 0) + 1
    errors = sum(d.severity == "error" for d in inherited)
    detail = ", ".join(f"{code} {n}" for code, n in sorted(by_code.items(), key=lambda kv: (-kv[1], kv[0])))
    summary = (f"base {match.group(1)}: {errors} error(s), {len(inherited) - errors} warning(s) of its own"
               + (f" ({detail}); `grouper check {base.parent}` lists them" if inherited else ""))
    return own, summary


# Bump when the AST or Plan layout changes (the engine fingerprint covers the source anyway).
CACHE_FORMAT = 4   # 4: .npz + JSON entries (grouper.plancache) instead of pickles


@functools.cache
def engine_fingerprint() -> str:
    """Hash of the package's own source (Python modules and the grammars): a new engine, a new key."""
    from .version import __version__

    digest = hashlib.blake2b(f"{__version__}/{CACHE_FORMAT}".encode(), digest_size=20)
    root = Path(__file__).parent
    grammars = data_dir("grammars")
    for file in sorted(root.rglob("*.py")) + sorted(grammars.glob("*.lark")):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _pack_chain(path: Path) -> list[Path]:
    """The scheme file and, for an overlay, its base scheme files in turn."""
    chain: list[Path] = []
    while path is not None and path.resolve() not in {p.resolve() for p in chain}:
        chain.append(path)
        match = EXTENDS.search(path.read_text(encoding="utf-8-sig", errors="replace"))
        try:
            path = scheme_path(path.parent / match.group(1)) if match else None
        except InputError:
            path = None  # reported when the pack is parsed
    return chain


def pack_inputs(option: str, pack: str | Path | None) -> list[tuple[str, Path]]:
    """(option, folder) for each folder a pack reads whole (its own and its bases'; every file in
    them is part of its content hash): a command writes nothing inside them. [] for the demo pack."""
    if pack is None:
        return []
    path = Path(pack)
    if not path.exists():
        return [(option, path)]   # reported when it is loaded
    scheme_file = path / SCHEME_FILE if path.is_dir() else path
    if scheme_file.suffix == ".grp" and scheme_file.is_file():
        return [(option, file.parent) for file in _pack_chain(scheme_file)]
    return [(option, path if path.is_dir() else path.parent)]   # a DIP pack


def content_hash(path: Path) -> str:
    """Hash of every file of the pack folder and of its base packs (names and contents): which rules
    produced a result, whatever folder the pack sits in. Recorded in outputs for audits."""
    digest = hashlib.blake2b(digest_size=20)
    for scheme_file in _pack_chain(path):
        digest.update(scheme_file.name.encode() + b"\0")
        for file in sorted(p for p in scheme_file.parent.iterdir() if p.is_file()):
            digest.update(file.name.encode() + b"\0")
            digest.update(file.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def pack_fingerprint(path: Path, content: str | None = None) -> str:
    """The plan cache key: the engine, where the pack is, and its content hash.

    Any change to the scheme, to any table or to the engine gives a new key, so a stale plan is never
    used; the folder is part of the key because a plan's rules name their source files (an identical
    copy elsewhere must show its own paths in explain and check).
    """
    digest = hashlib.blake2b(f"{engine_fingerprint()}/{content or content_hash(path)}".encode(), digest_size=20)
    for scheme_file in _pack_chain(path):
        digest.update(str(scheme_file).encode() + b"\0" + str(scheme_file.resolve()).encode() + b"\0")
    return digest.hexdigest()


def load_scheme(pack: str | Path | None = None, *, cache: bool | None = None) -> LoadedScheme:
    """Parse, check and compile a pack; raise SchemeError if the check finds errors.

    With `cache` (default: on unless GROUPER_NO_CACHE is set) a compiled pack is kept in
    `cache_dir()` under a fingerprint of all the pack's files and reused while none changes.
    """
    path = scheme_path(pack)
    content = content_hash(path)
    if not cache_enabled(cache):
        loaded = _load_uncached(path)
        loaded.content_hash = content
        return loaded

    def build() -> _Entry:
        loaded = _load_uncached(path)
        return _Entry(Later(loaded.ast), loaded.plan, loaded.diagnostics)

    entry = cached(pack_fingerprint(path, content), _cached_classes(), _Entry, build, later=_ast_classes)
    return LoadedScheme(path, entry.ast, entry.plan, entry.diagnostics, content)


@functools.cache
def _cached_classes() -> Classes:
    """What a plan cache entry of a scheme may hold, the AST apart: the plan, diagnostics."""
    from . import errors
    from .engine import ir

    return Classes([errors, ir], extra=[_Entry])


@functools.cache
def _ast_classes() -> Classes:
    """What the AST member of an entry may hold (read only when the AST is)."""
    from . import errors
    from .lang import ast as ast_module

    return Classes([ast_module, errors])


def _load_uncached(path: Path) -> LoadedScheme:
    from .engine.compile import compile_scheme

    try:
        scheme, store, found = _parse_and_check(path)
    except SchemeError as exc:
        raise SchemeError(_with_sources(exc.diagnostics)) from None
    if any(d.severity == "error" for d in found):
        raise SchemeError(found)
    return LoadedScheme(path, scheme, compile_scheme(scheme, store), found)
