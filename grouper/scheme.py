"""Load a scheme pack: parse → check → compile. The one place that joins the language and the engine."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .engine.compile import compile_scheme
from .engine.ir import Plan
from .errors import Diagnostic, SchemeError, with_source
from .lang import ast
from .lang.check import check
from .lang.parse import parse_file
from .lang.tables import TableStore

SCHEME_FILE = "scheme.grp"
DEMO_PACK = "demo"


@dataclass
class LoadedScheme:
    path: Path
    ast: ast.Scheme
    plan: Plan
    diagnostics: list[Diagnostic]  # warnings (errors raise)


def scheme_path(pack: str | Path | None) -> Path:
    """A pack folder (its scheme.grp), a .grp file, or None for the shipped demo pack."""
    if pack is None:
        return Path(str(resources.files("grouper.tables").joinpath(DEMO_PACK, SCHEME_FILE)))
    path = Path(pack)
    if path.is_dir():
        path = path / SCHEME_FILE
    if not path.is_file():
        raise SchemeError([Diagnostic("missing-scheme", "error", f"no scheme file at {path}", None,
                                      "give a pack folder holding scheme.grp, or the .grp file itself")])
    return path


def check_scheme(pack: str | Path | None) -> tuple[ast.Scheme | None, list[Diagnostic]]:
    """Parse and check without compiling; returns every diagnostic (errors included)."""
    path = scheme_path(pack)
    try:
        scheme = parse_file(path)
    except SchemeError as exc:
        return None, exc.diagnostics
    store = TableStore(path.parent, scheme.tables)
    found = [with_source(d, scheme.text) for d in check(scheme, store)]
    return scheme, found


def load_scheme(pack: str | Path | None = None) -> LoadedScheme:
    """Parse, check and compile a pack; raise SchemeError if the check finds errors."""
    path = scheme_path(pack)
    scheme = parse_file(path)
    store = TableStore(path.parent, scheme.tables)
    found = [with_source(d, scheme.text) for d in check(scheme, store)]
    if any(d.severity == "error" for d in found):
        raise SchemeError(found)
    return LoadedScheme(path, scheme, compile_scheme(scheme, store), found)
