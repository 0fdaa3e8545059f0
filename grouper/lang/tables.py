"""The CSV tables of a scheme pack, loaded lazily and read as text (codes keep leading zeros)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import polars as pl

from ..errors import Diagnostic, SchemeError
from . import ast

# A pack reads its tables from its own folder; a table path leaving it ("/etc/passwd",
# "../../secret.csv", a link pointing out) is an error unless the user sets this variable.
ALLOW_OUTSIDE = "GROUPER_ALLOW_TABLES_OUTSIDE_PACK"


class TableStore:
    """Loads the tables a scheme declares, relative to the scheme file's folder."""

    def __init__(self, base_dir: str | Path, table_defs: list[ast.TableDef]):
        self.base_dir = Path(base_dir)
        self.defs = {t.name: t for t in table_defs}
        self._frames: dict[str, pl.DataFrame] = {}
        self._partitions: dict[tuple[str, str], dict[str, pl.DataFrame]] = {}
        self._codes: dict[ast.TableFilter | ast.SetRef, list[str]] = {}

    def _folder(self, node) -> Path:
        # A file is relative to the scheme file that names it (an overlay's base tables live in
        # the base pack, its own tables and patches beside the overlay).
        return Path(node.span.file).parent if node.span and node.span.file != "<string>" else self.base_dir

    def _relative(self, node, file: str) -> Path:
        return self._folder(node) / file

    def outside_error(self, node, file: str, what: str = "table") -> Diagnostic | None:
        """An error when `file` (as `node` names it) lies outside the folder of the scheme file naming
        it, after following links; None when it is inside, or the user allowed it (ALLOW_OUTSIDE)."""
        folder = self._folder(node)
        path = folder / file
        if os.environ.get(ALLOW_OUTSIDE) or path.resolve().is_relative_to(folder.resolve()):
            return None
        return Diagnostic("table-outside-pack", "error", f"{what} file {file!r} lies outside the pack folder {folder}; "
                          "it was not read", node.span,
                          f"put the file in the pack folder, or allow tables outside packs with {ALLOW_OUTSIDE}=1")

    def _read(self, node, file: str, what: str = "table") -> pl.DataFrame:
        problem = self.outside_error(node, file, what)
        if problem is not None:    # never read, whoever asks (check reports it first)
            raise SchemeError([problem])
        return pl.read_csv(self._relative(node, file), infer_schema=False, encoding="utf8")

    def path(self, name: str) -> Path:
        return self._relative(self.defs[name], self.defs[name].file)

    def patch_path(self, patch: ast.TablePatch) -> Path:
        return self._relative(patch, patch.file)

    def _unpatched(self, name: str) -> pl.DataFrame:
        return self._read(self.defs[name], self.defs[name].file)

    def frame(self, name: str) -> pl.DataFrame:
        if name not in self._frames:
            frame = self._unpatched(name)
            for patch in self.defs[name].patches:
                frame, _ = apply_patch(frame, self._read(patch, patch.file, "patch"))
            self._frames[name] = frame
        return self._frames[name]

    def columns(self, name: str) -> list[str]:
        return self.frame(name).columns

    def key(self, name: str) -> str:
        return self.defs[name].key_column

    def load_errors(self) -> list[Diagnostic]:
        """One diagnostic per declared table that is missing or unreadable, or lacks its key column."""
        found = []
        for name, table in self.defs.items():
            path = self.path(name)
            outside = self.outside_error(table, table.file)
            if outside is not None:
                found.append(outside)
                continue
            if not path.is_file():
                found.append(Diagnostic("missing-table-file", "error", f"table file {table.file!r} not found",
                                        table.span, f"looked for {path}"))
                continue
            try:
                columns = self._unpatched(name).columns
            except Exception as exc:  # polars raises several error types for a bad CSV
                found.append(Diagnostic("unreadable-table", "error", f"cannot read table {name}: {csv_problem(path, exc)}",
                                        table.span, "every line needs the header's number of fields (quote values "
                                        "holding a comma); tables are UTF-8"))
                continue
            if table.key_column not in columns:
                found.append(Diagnostic(
                    "unknown-column", "error", f"table {name} has no key column {table.key_column!r}", table.span,
                    f"columns are {', '.join(columns)}; name the code column with `key COLUMN`"))
            found += self.patch_errors(name)
        return found

    def patch_errors(self, name: str) -> list[Diagnostic]:
        """A patch file that is missing, has other columns than its table (plus `op`), an op other
        than + and -, or a `-` row that is not in the table: an error at the `patch` line."""
        found = []
        frame = self._unpatched(name) if self.defs[name].patches else None
        for patch in self.defs[name].patches:
            path = self.patch_path(patch)
            outside = self.outside_error(patch, patch.file, "patch")
            if outside is not None:
                found.append(outside)
                continue
            try:
                rows = pl.read_csv(path, infer_schema=False, encoding="utf8")
            except Exception as exc:  # polars raises several error types for a missing or bad CSV
                found.append(Diagnostic("unreadable-table", "error", f"cannot read patch {patch.file!r}: "
                                        f"{csv_problem(path, exc)}", patch.span, f"looked for {path}"))
                continue
            if sorted(rows.columns) != sorted(["op", *frame.columns]):
                found.append(Diagnostic("bad-patch", "error", f"patch {patch.file!r} has columns {', '.join(rows.columns)}",
                                        patch.span, f"a patch of {name} has the column op (+ or -) and then "
                                        f"exactly the table's columns: {', '.join(frame.columns)}"))
                continue
            frame, problems = apply_patch(frame, rows)
            for line, problem in problems:
                found.append(Diagnostic("bad-patch", "error", f"{patch.file} line {line}: {problem}", patch.span))
        return found

    def filtered(self, expr: ast.TableFilter | ast.SetRef) -> pl.DataFrame:
        """Rows of a table matching a filter expression (all rows for a bare table name)."""
        name = expr.table if isinstance(expr, ast.TableFilter) else expr.name
        filters = list(getattr(expr, "filters", ()))
        frame = self.frame(name)
        if filters and filters[0].op == "=":
            # Schemes filter the same column hundreds of times (adrg = "AA1", "AB1", ...):
            # split the table by that column once and look the value up.
            first = filters.pop(0)
            key = (name, first.column)
            if key not in self._partitions:
                by_value = frame.with_columns(pl.col(first.column).fill_null("")).partition_by(first.column, as_dict=True)
                self._partitions[key] = {k[0]: part for k, part in by_value.items()}
            frame = self._partitions[key].get(first.value, frame.clear())
        for f in filters:
            column = pl.col(f.column).fill_null("")  # an empty cell is the empty string: `site != ""` = has a site
            frame = frame.filter(column == f.value if f.op == "=" else column != f.value)
        return frame

    def codes(self, expr: ast.TableFilter | ast.SetRef) -> list[str]:
        """Distinct non-empty key codes of a (filtered) table, in file order."""
        if expr not in self._codes:
            key = self.key(expr.table if isinstance(expr, ast.TableFilter) else expr.name)
            self._codes[expr] = self.filtered(expr)[key].drop_nulls().unique(maintain_order=True).to_list()
        return self._codes[expr]


def csv_problem(path: Path, exc: Exception) -> str:
    """Why a table CSV cannot be read, at its own file:line where there is one (not Polars' advice,
    which speaks of its own options)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        return f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x})"
    records = csv.reader(io.StringIO(text, newline=""))
    header = next(records, None)
    if not header:
        return f"{path} is empty: a table needs a header line"
    try:
        for record in records:
            if len(record) > len(header):
                return f"{path}:{records.line_num}: {len(record)} fields, the header has {len(header)}"
    except csv.Error as err:
        return f"{path}:{records.line_num}: {err}"
    return f"{path}: {str(exc).strip().splitlines()[0]}"


def apply_patch(frame: pl.DataFrame, patch: pl.DataFrame) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """The table with the patch's `-` rows removed (every row equal to one, empty cells equal) and
    its `+` rows appended in patch order; plus (patch file line, problem) for rows that do nothing."""
    columns = frame.columns
    patch = patch.with_row_index("_line", offset=2)           # line 1 is the header
    problems = [(line, f"op {op!r} is neither + nor -")
                for line, op in patch.filter(~pl.col("op").is_in(["+", "-"]) | pl.col("op").is_null())
                .select("_line", "op").iter_rows()]
    removed = patch.filter(pl.col("op") == "-").select("_line", *columns)
    missing = removed.join(frame, on=columns, how="anti", nulls_equal=True)
    problems += [(line, "this `-` row is not in the table") for line in missing["_line"].to_list()]
    kept = frame.join(removed.select(columns), on=columns, how="anti", nulls_equal=True, maintain_order="left")
    added = patch.filter(pl.col("op") == "+").select(columns)
    return pl.concat([kept, added]), sorted(problems)
