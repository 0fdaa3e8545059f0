"""What the server does, without HTTP: the packs it serves, and grouping, explaining, what-if,
recommendations and estimates of JSON cases. The HTTP layer (grouper.serve.app) and the in-process
benchmark call these functions.

A `State` is one immutable snapshot of everything loaded (packs, policy, weights, code index). A
reload builds a new State beside the old one and swaps a single reference: a request keeps the
snapshot it started with, so no request sees half a reload, and a pack that fails to load never
replaces the one being served.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl

from ..errors import Diagnostic, GrouperError, InputError
from ..explain import Change, apply_changes, explain_case, parse_change, removal_scenarios
from ..fields import parse_date
from ..pipeline import case_batches, group_frame, grouped_batches
from ..versions.dated import NO_SCHEME
from ..onecase import Declined, group_one as group_one_case
from ..onecase import parse_date as onecase_date
from .cases import ShapeError, case_frame, check_case
from .estimate import Pricing, estimates

KINDS = ("drg", "dip")


@dataclass(frozen=True)
class PackSpec:
    """A pack the server was told to serve: from which discharge date (None: any), and where."""

    path: Path
    start: date | None = None


@dataclass(frozen=True)
class Settings:
    """What `grouper serve` was started with: files only, read again on every reload."""

    packs: tuple[PackSpec, ...] = ()
    schedules: tuple[Path, ...] = ()
    policy: Path | None = None
    weights: Path | None = None
    point_value: Decimal | None = None
    warn_at: Decimal = Decimal("0.8")


@dataclass(frozen=True)
class Pack:
    kind: str           # "drg" | "dip"
    start: date | None  # first discharge date it applies to (None: every date before the next pack)
    path: Path
    loaded: object      # LoadedScheme | LoadedDip
    groups: dict        # group code → {"name", "rw" or "score", "mean" (fen), "level"}
    source: object = None   # the settle engine's base points for estimates (None: the policy does not price it)

    @cached_property   # the scheme's AST is loaded on first use: not on every request
    def name(self) -> str:
        return self.loaded.ast.header.name if self.kind == "drg" else self.loaded.plan.name

    @cached_property
    def version(self) -> str:
        return self.loaded.ast.header.version if self.kind == "drg" else self.loaded.plan.version

    @cached_property
    def group_table(self) -> pl.DataFrame:
        """drg, drg_name, weight (a float) of every group, joined to the results of a batch."""
        codes = list(self.groups)
        return pl.DataFrame({
            "drg": pl.Series(codes, dtype=pl.String),
            "drg_name": pl.Series([self.groups[c]["name"] for c in codes], dtype=pl.String),
            "weight": pl.Series([None if self.groups[c]["rw"] is None else float(self.groups[c]["rw"]) for c in codes],
                                dtype=pl.Float64)})

    def describe(self) -> dict:
        out = {"kind": self.kind, "name": self.name, "version": self.version,
               "from": None if self.start is None else self.start.isoformat(), "groups": len(self.groups)}
        if self.kind == "drg":
            out["content_hash"] = self.loaded.content_hash
        return out


@dataclass(frozen=True)
class State:
    settings: Settings
    packs: dict[str, tuple[Pack, ...]]   # kind → packs in date order
    pricing: Pricing | None
    codes: tuple[tuple[str, str, str], ...]   # (kind dx/proc, code, name)
    generation: int
    loaded_at: float = field(default_factory=time.time)

    def kinds(self) -> list[str]:
        return [k for k in KINDS if self.packs.get(k)]

    def default_kind(self) -> str:
        return self.kinds()[0]

    def describe(self) -> dict:
        pricing = self.pricing
        return {
            "generation": self.generation, "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            "packs": {kind: [p.describe() for p in packs] for kind, packs in self.packs.items()},
            "policy": None if pricing is None else {
                "name": pricing.policy.name, "method": pricing.policy["policy"]["method"],
                "point_value": None if pricing.fen_per_point() is None else str(pricing.fen_per_point() / 100),
                "warn_at": str(pricing.warn_at)},
        }


# ---- loading -------------------------------------------------------------------------------

def load_state(settings: Settings, generation: int = 1) -> State:
    """Load every pack, the policy and the weights; raises GrouperError (SchemeError with the
    diagnostics, PolicyError, InputError) without side effects when any of them is bad."""
    from ..dip import is_dip_pack, load_dip_scheme
    from ..scheme import load_scheme
    from ..versions import load_schedule

    policy = None
    if settings.policy is not None:
        from ..payment.policy import load_policy

        policy = load_policy(settings.policy)
    weights = _weights_table(settings.weights) if settings.weights is not None else None
    found: list[tuple[str, date | None, Path, object]] = []
    for spec in settings.packs:
        if is_dip_pack(spec.path):
            found.append(("dip", spec.start, spec.path, load_dip_scheme(spec.path)))
        else:
            found.append(("drg", spec.start, spec.path, load_scheme(spec.path)))
    for schedule in settings.schedules:
        for period in load_schedule(schedule).periods:
            found.append(("drg", period.start, period.pack, period.scheme))
    if not found:
        found.append(("drg", None, Path("(demo)"), load_scheme(None)))
    packs: dict[str, tuple[Pack, ...]] = {}
    for kind in KINDS:
        mine = sorted((f for f in found if f[0] == kind), key=lambda f: (f[1] is not None, f[1] or date.min))
        starts = [f[1] for f in mine]
        if len(set(starts)) != len(starts):
            raise InputError(f"two {kind.upper()} packs apply from the same date ({_dates(starts)}): "
                             "give each pack its own FROM date")
        if mine:
            packs[kind] = tuple(Pack(kind, start, path, loaded, _groups(kind, loaded, weights, policy),
                                     _base_points(kind, loaded, settings.weights, policy))
                                for kind, start, path, loaded in mine)
    pricing = None
    if policy is not None:
        pricing = Pricing(policy, settings.point_value, settings.warn_at)
        for pack in (p for kind_packs in packs.values() for p in kind_packs if p.source is not None):
            pricing.pricer(pack.source)   # the one-case pricers' lookups, made before the first request
        if policy.is_dip and "dip" not in packs:
            raise InputError(f"the policy {settings.policy} is a DIP policy (method = \"dip\") but no DIP pack is served")
    return State(settings, packs, pricing, _code_index(packs), generation)


def _base_points(kind: str, loaded, weights: Path | None, policy):
    """The settle engine's base-points source of a pack under the policy, as `grouper settle` builds
    it: a DRG weights table (--weights, else the pack's own weights) under a DRG policy, the DIP
    pack's scores under a DIP policy; None when the policy does not price the pack's kind."""
    if policy is None or policy.is_dip != (kind == "dip"):
        return None
    if kind == "dip":
        from ..dip.settle import DipScores

        return DipScores.from_pack(loaded, policy)
    from ..payment.api import weights_source

    if weights is None:
        plan = loaded.plan
        rows = [(code, str(w)) for code, w in zip(plan.drg_codes, plan.drg_weights or ()) if w is not None]
        weights = pl.DataFrame(rows, schema={"drg": pl.String, "weight": pl.String}, orient="row")
    source = weights_source(weights, policy)
    source.table()   # checked now: a bad weights table refuses the (re)load, not a request
    return source


def _dates(starts) -> str:
    return ", ".join("any date" if s is None else s.isoformat() for s in starts)


def _weights_table(path: Path) -> pl.DataFrame:
    """The --weights table, read and checked as every command reads one (a bad row stops the start, exit 3)."""
    from ..payment.settle import checked_weights, read_weights

    return checked_weights(read_weights(path), str(path))


def _groups(kind: str, loaded, weights: pl.DataFrame | None, policy) -> dict:
    """Per group: its name, RW (DRG) or score and level (DIP), mean cost in fen when known."""
    if kind == "dip":
        means = {}
        if policy is not None and policy.is_dip:
            from ..dip.settle import DipScores

            catalogue = DipScores.from_pack(loaded, policy).catalogue
            means = dict(catalogue.select("group", "group_mean").iter_rows())
        return {row.code: {"name": getattr(row, "name", None) or "", "score": row.score, "level": row.level,
                           "mean": means.get(row.code)} for row in loaded.plan.rows}
    plan = loaded.plan
    groups = {code: {"name": name, "rw": weight, "mean": None}
              for code, name, weight in zip(plan.drg_codes, plan.drg_names, plan.drg_weights)}
    if weights is not None:
        for row in weights.iter_rows(named=True):
            entry = groups.setdefault(row["drg"], {"name": "", "rw": None, "mean": None})
            entry["rw"] = _positive(row["weight"])
            mean = _positive(row.get("mean"))
            entry["mean"] = None if mean is None else mean * 100
    return groups


def _positive(text) -> Decimal | None:
    try:
        value = Decimal(str(text).replace(",", "").strip())
    except (ArithmeticError, ValueError):
        return None
    return value if value.is_finite() and value > 0 else None


def _code_index(packs: dict) -> tuple:
    """(dx/proc, code, name) of the dictionaries of the newest DRG pack, for code search."""
    from ..lang import ast
    from ..lang.tables import TableStore

    drg = packs.get("drg")
    if not drg:
        return ()
    loaded = drg[-1].loaded
    store = TableStore(loaded.path.parent, loaded.ast.tables)
    out = []
    for d in loaded.ast.of_type(ast.DictionaryDef):
        frame = store.frame(d.table)
        if "name" not in frame.columns:
            continue
        key = store.key(d.table)
        out.extend((d.kind, code, name or "") for code, name in frame.select(key, "name").iter_rows() if code)
    return tuple(out)


def search_codes(state: State, query: str, kind: str | None, limit: int) -> list[dict]:
    """Codes whose code starts with / contains the query, then names containing it (case-insensitive)."""
    q = query.strip().lower()
    if not q:
        return []
    ranked = []
    for k, code, name in state.codes:
        if kind and k != kind:
            continue
        c = code.lower()
        rank = 0 if c.startswith(q) else 1 if q in c else 2 if q in name.lower() else None
        if rank is not None:
            ranked.append((rank, code, k, name))
            if rank == 0 and len(ranked) > 50 * limit:
                break
    ranked.sort()
    return [{"kind": k, "code": code, "name": name} for _, code, k, name in ranked[:limit]]


# ---- grouping --------------------------------------------------------------------------------

@dataclass
class Grouped:
    """Grouped cases in input order: `results` (result columns, the typed settlement fields, the
    pack's name and version, group name and weight) and their validation problems."""

    kind: str
    results: pl.DataFrame
    problems: pl.DataFrame | None
    packs: list     # the Pack of each row (None: no pack in force)


def _pack_rows(state: State, kind: str, raw: pl.DataFrame, today: date) -> list[int]:
    """Index of the pack in force at each case's discharge date (today when the date is absent, as for
    a patient still in the ward); -1 when none is (no pack yet, or an unreadable date)."""
    packs = state.packs[kind]
    if len(packs) == 1 and packs[0].start is None:
        return [0] * raw.height
    written = parse_date(pl.col("discharge_date"), pl.String)
    parsed = raw.select(pl.when(written.dt.year() >= 1).then(written).alias("d"),   # year 0 is no Python date
                        pl.col("discharge_date").str.strip_chars().alias("raw"))
    out = []
    for written, raw_text in parsed.iter_rows():
        when = written if written is not None else (today if not raw_text else None)
        index = -1
        if when is not None:
            for i, pack in enumerate(packs):
                if pack.start is None or pack.start <= when:
                    index = i
        out.append(index)
    return out


def group_cases(state: State, cases: list, kind: str | None = None, *, problems: bool = False,
                settlement: bool = False, where: str = "cases", today: date | None = None) -> Grouped:
    """Group JSON cases (shape-checked here, read and validated by the project's one reader). With
    `settlement`, the results carry the typed settlement fields (cost, level, ...) an estimate needs."""
    kind = kind or state.default_kind()
    raw = case_frame(cases, where)
    return group_raw(state, raw, kind, problems=problems, settlement=settlement, today=today or date.today())


def group_raw(state: State, raw: pl.DataFrame, kind: str, *, problems: bool = False, settlement: bool = False,
              today: date | None = None) -> Grouped:
    packs = state.packs[kind]
    index = _pack_rows(state, kind, raw, today or date.today())
    parts, found = [], []
    row = pl.Series("_row", range(raw.height), dtype=pl.UInt32)
    for i, pack in enumerate(packs):
        mask = None if index.count(i) == len(index) else pl.Series([k == i for k in index])   # (count: a C loop)
        subset = raw if mask is None else raw.filter(mask)
        if subset.height == 0:
            continue
        rows = row if mask is None else row.filter(mask)
        results, problem_rows = _group_with(pack, subset, problems, settlement)
        results = results.with_columns(rows, pl.lit(pack.name).alias("scheme"), pl.lit(pack.version).alias("scheme_version"))
        parts.append(results)
        if problem_rows is not None and problem_rows.height:
            found.append(problem_rows.with_columns(rows.gather(problem_rows["row"].cast(pl.UInt32)).alias("row")))
    outside = [r for r, k in enumerate(index) if k < 0] if -1 in index else []
    if not parts and not outside:   # no cases: the columns of an empty result
        results, _ = _group_with(packs[-1], raw, False, settlement)
        parts.append(results.with_columns(row, pl.lit(None, pl.String).alias("scheme"),
                                          pl.lit(None, pl.String).alias("scheme_version")))
    if outside:
        ids = raw["id"].gather(outside)
        parts.append(pl.DataFrame({"id": ids, "status": ["invalid"] * len(outside), "reason": [NO_SCHEME] * len(outside),
                                   "_row": pl.Series(outside, dtype=pl.UInt32)}))
    results = pl.concat(parts, how="diagonal_relaxed").sort("_row").drop("_row") if len(parts) != 1 else parts[0].drop("_row")
    problem_frame = None
    if problems:   # every case gets its (maybe empty) list of problems, also when no case has one
        problem_frame = pl.concat(found).sort("row", maintain_order=True) if found else pl.DataFrame(
            schema={"row": pl.UInt32, "reason": pl.String, "level": pl.String, "detail": pl.String})
    in_force = [packs[0]] * len(index) if index.count(0) == len(index) else [packs[k] if k >= 0 else None for k in index]
    return Grouped(kind, results, problem_frame, in_force)


def _group_with(pack: Pack, raw: pl.DataFrame, problems: bool, settlement: bool
                ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    if pack.kind == "drg":
        g = next(iter(grouped_batches(raw, pack.loaded.plan, batch_size=max(raw.height, 1), problems=problems,
                                      carry=settlement)))
        # one hash join (a null or unknown group gets null name and weight), half the cost of two lookups
        results = g.results.drop("drg_name", "weight", strict=False).join(pack.group_table, on="drg", how="left",
                                                                          maintain_order="left")
        return results, g.problems
    from ..dip.run import group_dip_frame
    from ..dip.settle import dip_grouped

    cases = next(iter(case_batches(raw, batch_size=max(raw.height, 1), settlement=settlement)))
    results = group_dip_frame(pack.loaded.plan, cases)
    return (dip_grouped(results, cases) if settlement else results), None


# What a result shows (the typed settlement fields stay inside, for the estimate).
RESULT_COLUMNS = {
    "drg": ("id", "status", "mdc", "adrg", "drg", "drg_name", "weight", "reason", "warnings", "scheme", "scheme_version"),
    "dip": ("id", "status", "dip", "dip_level", "treatment", "score", "aux", "aux_factor", "reason", "scheme",
            "scheme_version"),
}


def result_frame(grouped: Grouped) -> pl.DataFrame:
    columns = RESULT_COLUMNS[grouped.kind]
    frame = grouped.results
    return frame.select(pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in columns)


def result_dicts(state: State, grouped: Grouped, *, with_estimate: bool) -> list[dict]:
    """One JSON-ready dict per case: the result, its problems, and (with a policy) its estimate."""
    out = result_frame(grouped).to_dicts()
    if grouped.problems is not None:
        for p in grouped.problems.iter_rows(named=True):
            out[p["row"]].setdefault("problems", []).append(
                {"reason": p["reason"], "level": p["level"], "detail": p["detail"]})
        for r in out:
            r.setdefault("problems", [])
    if with_estimate and state.pricing is not None:
        for r, priced in zip(out, priced_cases(state, grouped.kind, estimate_inputs(grouped), grouped.packs)):
            r["estimate"] = priced
    return out


def priced_cases(state: State, kind: str, inputs: list[dict], packs: list) -> list[dict]:
    """The estimates of grouped cases (estimate_inputs), one settle-engine call per pack. A case
    under no pack (no pack in force on its date) is priced with the kind's newest pack's source."""
    out: list = [None] * len(inputs)
    by_source: dict[int, tuple[object, list[int]]] = {}
    fallback = state.packs[kind][-1].source
    for i, pack in enumerate(packs):
        source = pack.source if pack is not None else fallback
        by_source.setdefault(id(source), (source, []))[1].append(i)
    for source, rows in by_source.values():
        if source is None:
            for i in rows:
                out[i] = {"method": state.pricing.policy["policy"]["method"], "policy": state.pricing.policy.name,
                          "payment": None, "notes": [f"the policy does not price {kind.upper()} cases"]}
            continue
        for i, priced in zip(rows, estimates(state.pricing, [inputs[i] for i in rows], source)):
            out[i] = priced
    return out


def group_one(state: State, case, kind: str | None = None, *, estimate: bool = False, problems: bool = False) -> dict:
    """One JSON case → its result, exactly `result_dicts(state, group_cases(state, [case], ...))[0]`."""
    return group_many(state, [case], kind, estimate=estimate, problems=problems)[0]


def group_many(state: State, cases: list, kind: str | None = None, *, estimate: bool = False,
               problems: bool = False) -> list[dict]:
    """JSON cases (each with an id, or numbered by its place) → their results, exactly
    `result_dicts(state, group_cases(state, cases, ...))`: each case through grouper.onecase when it
    reads the case, the others through the batch pipeline together; the estimates (with a policy)
    in one settle-engine call per pack."""
    kind = kind or state.default_kind()
    cases = [case if type(case) is not dict or case.get("id") is not None else {**case, "id": i + 1}
             for i, case in enumerate(cases)]
    out: list = [None] * len(cases)
    inputs: list = [None] * len(cases)
    packs: list = [None] * len(cases)
    slow = []
    for i, case in enumerate(cases):
        found = _fast(state, case, kind, problems=problems, settlement=estimate)
        if found is None:
            slow.append(i)
        else:
            out[i], inputs[i], packs[i] = found
    if slow:
        grouped = group_cases(state, [cases[i] for i in slow], kind, problems=problems, settlement=estimate,
                              where="case")
        for i, result, typed, pack in zip(slow, result_dicts(state, grouped, with_estimate=False),
                                          estimate_inputs(grouped) if estimate else [None] * len(slow), grouped.packs):
            out[i], inputs[i], packs[i] = result, typed, pack
    if estimate and state.pricing is not None:
        for result, priced in zip(out, priced_cases(state, kind, inputs, packs)):
            result["estimate"] = priced
    return out


def group_one_fast(state: State, case, kind: str | None = None, *, problems: bool = False,
                   text: dict | None = None) -> dict | None:
    """`group_one` without an estimate by grouper.onecase (~0.15 ms); None when that declines the
    case (a value not in a plain spelling, a DIP pack, a discharge date it cannot read): then the
    batch pipeline answers. Raises ShapeError as group_cases does. `text`: the case's fields as
    `check_case` gave them, when the caller has checked it already."""
    found = _fast(state, case, kind or state.default_kind(), problems=problems, settlement=False, text=text)
    return None if found is None else found[0]


def _fast(state: State, case, kind: str, *, problems: bool, settlement: bool,
          text: dict | None = None) -> tuple[dict, dict | None, Pack] | None:
    """(result, estimate input or None, pack) of one case by grouper.onecase; None when it declines."""
    one = dict(text) if text is not None else check_case(case, "case[0]")
    if one["id"] is None:
        one["id"] = "1"
    index = _pack_index(state, kind, one.get("discharge_date"))
    pack = None if index is None else state.packs[kind][index]
    if pack is None or pack.kind != "drg":
        return None
    r = group_one_case(pack.loaded.plan, one, settlement=settlement)
    if r is None:
        return None
    entry = pack.groups.get(r.drg) if r.drg is not None else None
    rw = None if entry is None else entry["rw"]
    out = {"id": r.id, "status": r.status, "mdc": r.mdc, "adrg": r.adrg, "drg": r.drg,
           "drg_name": None if entry is None else entry["name"], "weight": None if rw is None else float(rw),
           "reason": r.reason, "warnings": r.warnings, "scheme": pack.name, "scheme_version": pack.version}
    if problems:
        out["problems"] = [{"reason": reason, "level": level, "detail": detail} for reason, level, detail in r.problems]
    typed = {**{name: r.fields[name] for name in ESTIMATE_FIELDS}, "status": r.status, "group": r.drg} if settlement else None
    return out, typed, pack


def _pack_index(state: State, kind: str, written: str | None) -> int | None:
    """`_pack_rows` for one case; None when its discharge date is not in a plain spelling."""
    packs = state.packs[kind]
    if len(packs) == 1 and packs[0].start is None:
        return 0
    try:
        when = onecase_date(written.strip() if written else None)
    except Declined:
        return None
    if when is None:
        if written and written.strip():
            return None   # unreadable: the batch pipeline answers with its reason
        when = date.today()
    index = None
    for i, pack in enumerate(packs):
        if pack.start is None or pack.start <= when:
            index = i
    return index


ESTIMATE_FIELDS = ("hospital", "hospital_level", "insurance", "cost", "los", "discharge", "admission_date",
                   "discharge_date")


def estimate_inputs(grouped: Grouped) -> list[dict]:
    """What an estimate needs of each grouped case: status, group (and DIP's auxiliary factor) and
    the typed settlement fields."""
    group_column = "drg" if grouped.kind == "drg" else "dip"
    wanted = ["status", group_column, *ESTIMATE_FIELDS, *(["aux_factor"] if grouped.kind == "dip" else [])]
    frame = grouped.results
    rows = frame.select(pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in wanted).to_dicts()
    for r in rows:
        r["group"] = r.pop(group_column)
    return rows


# ---- one case: explain, what-if, recommend ---------------------------------------------------

def one_case(state: State, case, kind: str | None, where: str) -> tuple[Pack, pl.DataFrame, pl.DataFrame]:
    """(the pack in force for a JSON case, its raw frame, its canonical one-row frame)."""
    kind = kind or state.default_kind()
    check_case(case, where)
    raw = case_frame([case], where)
    index = _pack_rows(state, kind, raw, date.today())[0]
    if index < 0:
        raise InputError(f"{where}.discharge_date: no {kind.upper()} pack is in force on that date")
    canonical = next(iter(case_batches(raw, batch_size=1, settlement=True)))
    return state.packs[kind][index], raw, canonical


def explain(state: State, case, kind: str | None = None) -> dict:
    """`grouper explain --json` of one JSON case under the pack in force (DRG or DIP), with its estimate
    when a policy is served."""
    pack, raw, canonical = one_case(state, case, kind, "case")
    if pack.kind == "dip":   # the case's cost feeds the cost step, as `grouper explain --cases` gives it
        from ..dip import explain_dip_json

        out = explain_dip_json(pack.loaded, canonical)
    else:
        out = explain_case(pack.loaded, canonical.select(
            c for c in canonical.columns if c in ("id", "sex", "age", "age_days", "weight", "dept", "los", "discharge",
                                                  "dx", "proc"))).to_dict()
    out["scheme"], out["scheme_version"] = pack.name, pack.version
    if state.pricing is not None:
        grouped = group_raw(state, raw, pack.kind, settlement=True)
        out["estimate"] = priced_cases(state, pack.kind, estimate_inputs(grouped), grouped.packs)[0]
    return out


class UnsupportedError(GrouperError):
    """Asked of a pack kind that does not offer it."""


def alternatives(state: State, case, kind: str | None, scenarios: list[tuple[str, pl.DataFrame]],
                 pack: Pack, raw: pl.DataFrame, canonical: pl.DataFrame) -> list[dict]:
    """Group the case and its variants (label, canonical frame) in one batch; the first is the case
    as recorded. Each: the group, its weight or score, and its estimated payment."""
    frames = [canonical] + [frame for _, frame in scenarios]
    labels = ["(as recorded)"] + [label for label, _ in scenarios]
    if pack.kind == "drg":
        results = group_frame(pack.loaded.plan, pl.concat([f.select(canonical.columns) for f in frames]), threads=1)
        group_column = "drg"
    else:
        from ..dip.run import group_dip_frame

        results = group_dip_frame(pack.loaded.plan, pl.concat([f.select(canonical.columns) for f in frames]))
        group_column = "dip"
    payments = [None] * results.height
    if state.pricing is not None:   # every variant priced in one settle-engine call
        typed = estimate_inputs(group_raw(state, raw, pack.kind, settlement=True))[0]
        variants = [{**typed, "status": r["status"], "group": r[group_column], "aux_factor": r.get("aux_factor")}
                    for r in results.iter_rows(named=True)]
        payments = [e["payment"] for e in priced_cases(state, pack.kind, variants, [pack] * len(variants))]
    out, first = [], None
    for label, r, payment in zip(labels, results.iter_rows(named=True), payments):
        group = r[group_column]
        entry = pack.groups.get(group, {}) if group else {}
        item = {"changes": label, "status": r["status"], group_column: group, "name": entry.get("name"),
                "weight" if pack.kind == "drg" else "score":
                    (None if entry.get("rw") is None else float(entry["rw"])) if pack.kind == "drg" else r.get("score")}
        if pack.kind == "drg":
            item["mdc"], item["adrg"] = r["mdc"], r["adrg"]
        if state.pricing is not None:
            item["payment"] = payment
        first = first or item
        item["changed"] = (item["status"], group) != (first["status"], first[group_column])
        out.append(item)
    return out


def try_scenarios(state: State, case, tries, kind: str | None = None) -> list[dict]:
    """`grouper explain --try` over HTTP: the case as recorded, then each scenario."""
    pack, raw, canonical = one_case(state, case, kind, "case")
    scenarios = []
    for i, text in enumerate(tries if isinstance(tries, list) else [tries]):
        if not isinstance(text, str):
            raise ShapeError(f"try[{i}]", "a scenario is a text like \"+dx:J18.900,-proc:96.0400\" or \"each\"")
        try:
            if text.strip() == "each":
                changes_list = removal_scenarios(canonical)
            else:
                changes_list = [[parse_change(part) for part in text.split(",") if part.strip()]]
            for changes in changes_list:
                scenarios.append((", ".join(map(str, changes)), apply_changes(canonical, changes)))
        except ValueError as exc:
            raise ShapeError(f"try[{i}]", str(exc)) from None
    return alternatives(state, case, kind, scenarios, pack, raw, canonical)


def recommend(state: State, case, candidates: dict | None = None, kind: str | None = None) -> dict:
    """Which single change moves the case to another group: each secondary diagnosis or procedure
    removed, each secondary diagnosis made the principal one, each later procedure made the principal
    one, and each candidate code the caller names added (codes documented in the record but not
    coded; nothing is ever added that the caller did not name). Only changes that move the group are
    listed, highest weight (or score) first."""
    pack, raw, canonical = one_case(state, case, kind, "case")
    dx = canonical["dx"].to_list()[0] or []
    px = canonical["proc"].to_list()[0] or []
    scenarios: list[tuple[str, pl.DataFrame]] = []
    for changes in removal_scenarios(canonical):
        scenarios.append((str(changes[0]), apply_changes(canonical, changes)))
    for i in range(1, len(dx)):
        if dx[i] and dx[i] != dx[0]:
            order = [dx[i]] + dx[:i] + dx[i + 1:]
            scenarios.append((f"pdx:{dx[i]}", _with_codes(canonical, order, px)))
    for j in range(1, len(px)):
        if px[j] and px[j] != px[0]:
            order = [px[j]] + px[:j] + px[j + 1:]
            scenarios.append((f"pproc:{px[j]}", _with_codes(canonical, dx, order)))
    for kind_name in ("dx", "proc"):
        for code in (candidates or {}).get(kind_name, ()):
            if code and code not in (dx if kind_name == "dx" else px):
                change = Change("add", kind_name, code)
                scenarios.append((str(change), apply_changes(canonical, [change])))
    rows = alternatives(state, case, kind, scenarios, pack, raw, canonical)
    measure = "weight" if pack.kind == "drg" else "score"
    moves = [r for r in rows[1:] if r["changed"]]
    moves.sort(key=lambda r: -(r[measure] or 0))
    return {"as_recorded": rows[0], "suggestions": moves, "tried": len(rows) - 1}


def _with_codes(canonical: pl.DataFrame, dx: list[str], px: list[str]) -> pl.DataFrame:
    return canonical.with_columns(pl.Series("dx", [dx], dtype=pl.List(pl.String)),
                                  pl.Series("proc", [px], dtype=pl.List(pl.String)))


def estimate_one(state: State, case, kind: str | None = None) -> dict:
    if state.pricing is None:
        raise UnsupportedError("no policy is served: start the server with --policy FILE to estimate payments")
    return group_one(state, case, kind, estimate=True)


def diagnostics_json(exc: GrouperError) -> list[dict]:
    """A load error's diagnostics as JSON (file, line, column, message) for a refused reload."""
    found: list[Diagnostic] = getattr(exc, "diagnostics", None) or []
    if not found:
        return [{"message": str(exc)}]
    out = []
    for d in found:
        item = {"code": d.code, "severity": d.severity, "message": d.message, "text": d.render()}
        if d.span is not None:
            item.update(file=str(d.span.file), line=d.span.line, column=d.span.column)
        if d.hint:
            item["hint"] = d.hint
        out.append(item)
    return out


__all__ = ["PackSpec", "Settings", "State", "UnsupportedError", "estimate_one", "explain", "group_cases", "group_one",
           "group_many", "group_one_fast", "load_state",
           "recommend", "result_dicts", "result_frame", "search_codes", "try_scenarios"]
