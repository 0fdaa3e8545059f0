"""Errors and diagnostics shared by every stage.

A `Diagnostic` is one finding with a source span; stages collect them and raise a
`SchemeError` holding the whole list once, so a user sees every problem in one run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# The exit codes of every command line (grouper/cli.py, `grouper serve`): 0 ok, 1 scheme or policy
# errors, 2 usage, 3 input/data errors, 70 internal error (a bug), 130 interrupted, 143 terminated.
EXIT_OK, EXIT_SCHEME, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE: a bug, never an expected outcome (tests treat it as a failure)
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT / SIGTERM, as shells report them


@dataclass(frozen=True, slots=True)
class Span:
    """A position in a scheme file: 1-based line and column, plus the end position."""

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str  # stable identifier, e.g. "unknown-table"
    severity: str  # "error" or "warning"
    message: str
    span: Span | None = None
    hint: str | None = None
    source_line: str | None = field(default=None, compare=False)

    def render(self) -> str:
        """file:line:col: severity[code]: message, then the source line with a caret and the hint."""
        where = f"{self.span}: " if self.span else ""
        lines = [f"{where}{self.severity}[{self.code}]: {self.message}"]
        if self.span and self.source_line is not None:
            text = self.source_line.rstrip("\n")
            lines.append(f"    {text}")
            width = 1
            if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
                width = self.span.end_column - self.span.column
            lines.append("    " + _caret_pad(text, self.span.column - 1) + "^" * max(width, 1))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


def _caret_pad(text: str, upto: int) -> str:
    # Keep tabs so the caret lines up; wide (CJK) characters take two cells.
    out = []
    for ch in text[:upto]:
        if ch == "\t":
            out.append("\t")
        elif "\u2e80" <= ch <= "\uffef":
            out.append("  ")
        else:
            out.append(" ")
    return "".join(out)


def with_source(diag: Diagnostic, text: str | None) -> Diagnostic:
    """Attach the offending source line to a diagnostic (for rendering)."""
    if diag.span is None or text is None:
        return diag
    lines = text.splitlines()
    if 1 <= diag.span.line <= len(lines):
        return Diagnostic(diag.code, diag.severity, diag.message, diag.span, diag.hint, lines[diag.span.line - 1])
    return diag


class GrouperError(Exception):
    """Root of every error this package raises on purpose."""


class SchemeError(GrouperError):
    """A scheme pack failed to parse or check; `diagnostics` holds every finding."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        shown = "\n".join(d.render() for d in errors[:20])
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(shown + more)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


class InputError(GrouperError):
    """A case file could not be read (format, encoding, missing columns)."""




class UsageError(GrouperError):
    """A command was given options that cannot work together (e.g. an output that is its input)."""


class PolicyError(SchemeError):
    """A settlement policy file failed validation; `diagnostics` point at file:line:column.

    A SchemeError subclass so that every front end reports it the same way (exit code 1)."""


class DemoSchemeWarning(UserWarning):
    """No scheme was given, so the shipped demo pack (33 DRGs, for trying grouper out) is used."""


DEMO_SCHEME_NOTICE = ("no scheme given: using the shipped DEMO pack (33 DRGs, for trying grouper out, not a real "
                      "payment scheme). Give --scheme PACK, or set a default once: GROUPER_SCHEME or `scheme = ...` "
                      "in the config file (see docs/commands.md)")


def warn_demo_scheme() -> None:
    import warnings

    warnings.warn(DEMO_SCHEME_NOTICE, DemoSchemeWarning, stacklevel=3)
