"""DIP scheme + catalogue → `DipPlan`: flat arrays the DIP kernel reads (ext/_dip_kernel.pyx).

Procedure codes are interned (id i+1 for `proc_codes[i]`, 0 for codes the scheme never names).
Rows of all levels are numbered globally (core, then primary, then comprehensive, each in file
order). Core and primary rows are bucketed by diagnosis category: bucket `level * n_cat + cat - 1`
holds rows `bucket_rows[bucket_start[b]:bucket_start[b + 1]]`. A row's expression is a list of
alternatives (`row_alt_start`), each a list of terms that must all hold (`alt_term_start`), each
a list of procedure ids of which one will do (`term_opt_start`, `opt_proc`). Comprehensive rows
are a table (key × treatment) → row; keys are prefixes and chapter ranges (`comp_categories`).
`precedence[level * n_treat + type]` is the position of the class (level, treatment type) in the
final precedence (0 = best); `tie_break[level]` says whether the level's matching rows are first
narrowed to one by the tie-breaks; `row_cost` is each row's reference cost in fen (-1 unknown).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from ..lang.tables import TableStore
from .ast import LEVELS, DipScheme
from .auxiliary import Auxiliary, load_auxiliary
from .catalogue import Row, chapter_range, range_categories, row_reference_cost

GROUPED, UNGROUPED, INVALID = range(3)
STATUS_NAMES = ("grouped", "ungrouped", "invalid")
# Reason codes (kernel output for ungrouped cases; set before the kernel for invalid ones)
REASON_NAMES = ("", "no_comprehensive_category", "no_comprehensive_treatment", "missing_dx", "excluded_dx",
                "malformed_line")
NO_CATEGORY, NO_TREATMENT, MISSING_DX, EXCLUDED_DX, MALFORMED_LINE = 1, 2, 3, 4, 5
LEVEL_IDS = {name: i for i, name in enumerate(LEVELS)}


@dataclass
class DipPlan:
    name: str
    version: str
    dx_length: int
    treatments: list[str]
    proc_codes: list[str]
    proc_rank: np.ndarray        # int8[n_proc + 1]: index of the treatment type, -1 none
    proc_qualifying: np.ndarray  # uint8[n_proc + 1]
    categories: list[str]        # core / primary diagnosis categories (category id = index + 1)
    bucket_start: np.ndarray     # int32[2 * n_cat + 1]
    bucket_rows: np.ndarray      # int32
    row_alt_start: np.ndarray    # int32[n_rows + 1]
    alt_term_start: np.ndarray   # int32[n_alts + 1]
    term_opt_start: np.ndarray   # int32[n_terms + 1]
    opt_proc: np.ndarray         # uint32[n_opts]
    row_proc_start: np.ndarray   # int32[n_rows + 1]: the row's distinct codes (for "matched procedures")
    row_proc: np.ndarray         # uint32
    comp_categories: list[str]   # comprehensive keys (id = index + 1): prefixes of any length, ranges
    comp_table: np.ndarray       # int32[n_comp_cat * n_treat]: row, or -1
    range_categories: list[str]  # every 3-character category a chapter-range key holds
    range_table: np.ndarray      # int32[n_range_cat + 1, depth]: key ids of the ranges holding each (file
                                 # order, 0-padded; the last row: none)
    precedence: np.ndarray       # int32[3 * n_treat]
    tie_break: np.ndarray        # uint8[3]
    row_cost_column: np.ndarray  # int64[n_rows]: the catalogue's reference cost (fen), -1 none
    point_value: str | None      # yuan per point (decimal text): reference cost = score × it where no column
    excluded_dx: list[str]
    rows: list[Row]              # every row, by global number
    row_level: np.ndarray        # uint8[n_rows]
    row_code: list[str] = field(default_factory=list)
    row_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    auxiliary: Auxiliary | None = None   # severity subtypes (辅助目录), evaluated after grouping
    row_cost: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64: reference cost (fen), -1

    @property
    def cost_step(self) -> bool:
        """Whether any row has a reference cost (else the cost step never decides)."""
        return bool((self.row_cost >= 0).any())

    def with_point_value(self, point_value: Decimal | None) -> "DipPlan":
        """The plan with another point value (a run's parameter); the catalogue's column still wins."""
        return dataclasses.replace(self, point_value=None if point_value is None else str(point_value),
                                   row_cost=reference_costs(self.rows, self.row_cost_column, point_value))

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def proc_enum(self):
        """The Polars Enum over the plan's procedure codes (built once per plan)."""
        enum = self.__dict__.get("_proc_enum")
        if enum is None:
            import polars as pl

            enum = self.__dict__["_proc_enum"] = pl.Enum(self.proc_codes)
        return enum

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_proc_enum"}

    def kernel_args(self) -> tuple:
        return (self.proc_rank, self.proc_qualifying, self.bucket_start, self.bucket_rows, self.row_alt_start,
                self.alt_term_start, self.term_opt_start, self.opt_proc, self.row_proc_start, self.row_proc,
                self.row_cost, self.precedence, self.tie_break, self.comp_table, self.n_categories,
                len(self.treatments))


def reference_costs(rows: list[Row], column: np.ndarray, point_value: Decimal | None) -> np.ndarray:
    """Each row's reference cost in fen: its catalogue column, else score × point value (yuan per
    point) rounded half-up to the fen, else -1."""
    if point_value is None:
        return np.ascontiguousarray(np.array(column, np.int64, copy=True))
    costs = [row_reference_cost(row, point_value) for row in rows]
    return np.ascontiguousarray(np.array([-1 if c is None else c for c in costs], np.int64))


def compile_dip(scheme: DipScheme, store: TableStore, rows_by_level: dict[str, list[Row]]) -> DipPlan:
    treatments = list(scheme.treatments) or ["保守治疗"]
    rank_of = {t: i for i, t in enumerate(treatments)}
    qualifying = store.codes(scheme.setting("qualifying").value)
    proc_treatment: dict[str, int] = {}
    if scheme.setting("treatment_column"):
        table, column = scheme.setting("treatment_column").value
        frame = store.frame(table)
        for code, kind in zip(frame[store.key(table)].to_list(), frame[column].to_list()):
            if code and kind in rank_of:
                proc_treatment.setdefault(code, rank_of[kind])
    rows = [r for level in LEVELS for r in rows_by_level.get(level, ())]
    codes = list(dict.fromkeys([*qualifying, *proc_treatment, *(c for r in rows for c in r.codes)]))
    ids = {c: i + 1 for i, c in enumerate(codes)}
    proc_rank = np.full(len(codes) + 1, -1, np.int8)
    for code, rank in proc_treatment.items():
        proc_rank[ids[code]] = rank
    proc_qualifying = np.zeros(len(codes) + 1, np.uint8)
    for code in qualifying:
        proc_qualifying[ids[code]] = 1

    row_alt_start, alt_term_start, term_opt_start, opt_proc, row_proc_start, row_proc = [0], [0], [0], [], [0], []
    for row in rows:
        for alt in row.alternatives:
            for term in alt:
                opt_proc.extend(ids[c] for c in term)
                term_opt_start.append(len(opt_proc))
            alt_term_start.append(len(term_opt_start) - 1)
        row_alt_start.append(len(alt_term_start) - 1)
        row_proc.extend(ids[c] for c in row.codes)
        row_proc_start.append(len(row_proc))

    categories = list(dict.fromkeys(r.dx for level in ("core", "primary") for r in rows_by_level.get(level, ())))
    cat_ids = {c: i for i, c in enumerate(categories)}
    buckets: list[list[int]] = [[] for _ in range(2 * len(categories))]
    for k, row in enumerate(rows):
        if row.level != "comprehensive":
            buckets[LEVEL_IDS[row.level] * len(categories) + cat_ids[row.dx]].append(k)
    bucket_start = np.zeros(len(buckets) + 1, np.int32)
    bucket_start[1:] = np.cumsum([len(b) for b in buckets])
    bucket_rows = np.array([k for b in buckets for k in b], np.int32)

    comp_rows = [(k, r) for k, r in enumerate(rows) if r.level == "comprehensive"]
    comp_categories = list(dict.fromkeys(r.dx for _, r in comp_rows))
    comp_ids = {c: i for i, c in enumerate(comp_categories)}
    comp_table = np.full(len(comp_categories) * len(treatments), -1, np.int32)
    for k, r in comp_rows:
        slot = comp_ids[r.dx] * len(treatments) + rank_of[r.treatment]
        if comp_table[slot] < 0:          # the first row of a key wins (check warns on the others)
            comp_table[slot] = k
    holding: dict[str, list[int]] = {}            # category → ids of the range keys holding it, file order
    for key in dict.fromkeys(r.dx for _, r in comp_rows if r.chapter_range):
        for category in range_categories(chapter_range(key)):
            holding.setdefault(category, []).append(comp_ids[key] + 1)
    range_cats = sorted(holding)
    depth = max((len(v) for v in holding.values()), default=0)
    range_table = np.zeros((len(range_cats) + 1, depth), np.int32)
    for i, category in enumerate(range_cats):
        range_table[i, :len(holding[category])] = holding[category]

    precedence = np.zeros(len(LEVELS) * len(treatments), np.int32)
    for position, (level, kind) in enumerate(scheme.precedence(treatments)):
        precedence[LEVEL_IDS[level] * len(treatments) + rank_of[kind]] = position
    tie_break = np.array([level in scheme.tie_break_levels for level in LEVELS], np.uint8)
    cost_column = np.array([-1 if r.cost is None else r.cost for r in rows], np.int64)
    point_value = scheme.point_value

    excluded = store.codes(scheme.setting("exclude").value) if scheme.setting("exclude") else []
    auxiliary = None
    if scheme.setting("auxiliary"):
        lists = scheme.setting("auxiliary_lists")
        auxiliary, _ = load_auxiliary(scheme.setting("auxiliary").value, lists.value if lists else None, store)
    i32 = lambda xs: np.ascontiguousarray(np.array(xs, np.int32))  # noqa: E731
    return DipPlan(
        name=scheme.header.name, version=scheme.header.version, dx_length=scheme.dx_length,
        treatments=treatments, proc_codes=codes, proc_rank=proc_rank, proc_qualifying=proc_qualifying,
        categories=categories, bucket_start=bucket_start, bucket_rows=bucket_rows,
        row_alt_start=i32(row_alt_start), alt_term_start=i32(alt_term_start),
        term_opt_start=i32(term_opt_start), opt_proc=np.ascontiguousarray(np.array(opt_proc, np.uint32)),
        row_proc_start=i32(row_proc_start), row_proc=np.ascontiguousarray(np.array(row_proc, np.uint32)),
        comp_categories=comp_categories, comp_table=comp_table, range_categories=range_cats, range_table=range_table,
        precedence=precedence, tie_break=tie_break, row_cost_column=cost_column,
        point_value=None if point_value is None else str(point_value),
        excluded_dx=list(excluded),
        rows=rows, row_level=np.array([LEVEL_IDS[r.level] for r in rows], np.uint8),
        row_code=[r.code for r in rows], row_score=np.array([r.score for r in rows], np.float64),
        auxiliary=auxiliary, row_cost=reference_costs(rows, cost_column, point_value))
