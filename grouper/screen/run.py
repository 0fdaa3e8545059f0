"""Screening a year: read the cases, run every rule, estimate the money at stake, rank the units, score
the doctors, write the outputs. `screen(...)` is the one entry point (the CLI and the API call it).

Personal fields are hashed (grouper.screen.privacy) when findings are assembled: the clear values
are only compared in memory (the same phone, the same patient), and every output holds the hash.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..fields import yuan_text
from ..grouped import GROUPED_SCHEMA
from . import rules as R
from .privacy import keyed_hash
from .schema import EXTRA_FIELDS
from .screens import Rule, Screens

MONEY_EVIDENCE = ("cost", "group_median_cost", "alternative_cost_limit")
UNIT_FILES = {"hospital": "hospitals", "dept": "departments", "doctor": "doctors"}
FLAG_SCHEMA = {"id": pl.String, "rule": pl.String, "name": pl.String, "level": pl.String, "stage": pl.String,
               "hospital": pl.String, "hospital_level": pl.Int8, "dept": pl.String, "doctor": pl.String,
               "patient": pl.String, "drg": pl.String, "evidence": pl.String, "paid": pl.Int64,
               "alternative": pl.Int64, "at_stake": pl.Int64}


@dataclass
class Screening:
    """The results: `flags` (one row per finding), `providers` (units judged by provider rules), the
    ranked `hospitals`, `departments`, `doctors`, `money` per rule, `scores` (None without a schedule or
    doctors), `unscreened` (cases a rule could not judge, with the reason), `summary` and `warnings`."""

    flags: pl.DataFrame
    providers: pl.DataFrame
    hospitals: pl.DataFrame
    departments: pl.DataFrame
    doctors: pl.DataFrame
    money: pl.DataFrame
    scores: pl.DataFrame | None
    unscreened: pl.DataFrame
    summary: dict
    warnings: list[str] = field(default_factory=list)


# ---- input ---------------------------------------------------------------------------------------

def read_extras(path: str | Path, names=EXTRA_FIELDS, *, encoding: str | None = None, with_id: bool = True) -> pl.DataFrame:
    """The columns of `names` that a case or grouped file has (and id, to check the rows line up, unless not `with_id`)."""
    from .. import io

    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        present = [c for c in (*(["id"] if with_id else []), *names) if c in pl.read_parquet_schema(path)]
        return pl.read_parquet(path, columns=present) if present else pl.DataFrame()
    raw = io._read_raw(path, encoding=encoding, sheet=None)
    return raw.select([pl.col(c).cast(pl.String) for c in (*(["id"] if with_id else []), *names) if c in raw.columns])


def load_cases(source, *, cases: str | Path | None = None, scheme=None, encoding: str | None = None) -> pl.DataFrame:
    """The grouped year (a grouped file, or raw cases grouped here with `scheme`) with the extra fields
    (doctor, phone, address) from the same file, and those it lacks from `cases` (the file that was grouped,
    row for row: refused when its rows do not line up)."""
    from ..payment.api import load_grouped

    frame = load_grouped(source, scheme, encoding=encoding)
    if isinstance(source, pl.DataFrame):
        extras = source.select([c for c in EXTRA_FIELDS if c in source.columns])
    elif isinstance(source, (list, tuple)):
        extras = pl.DataFrame()
    else:
        extras = read_extras(source, encoding=encoding, with_id=False)   # the same rows as `frame`
    if cases is not None:
        beside = read_extras(cases, encoding=encoding)
        if beside.height != frame.height or ("id" in beside.columns and not beside["id"].cast(pl.String).equals(frame["id"])):
            raise InputError(f"{cases} does not line up with {source}: the case file must be the one that was "
                             "grouped (the same rows in the same order)")
        extras = pl.concat([extras.select([c for c in extras.columns if c != "id"]),
                            beside.select([c for c in EXTRA_FIELDS if c in beside.columns and c not in extras.columns])],
                           how="horizontal")
    extras = extras.select([pl.col(c).cast(pl.String) for c in EXTRA_FIELDS if c in extras.columns])
    return pl.concat([frame, extras], how="horizontal") if extras.width else frame


def read_weights(path: str | Path) -> pl.DataFrame:
    """A weights table (CSV/Parquet/Excel with columns drg, weight), read and checked as every
    command reads one (grouper.payment.settle.read_weights), as drg String, weight Float64."""
    from ..payment.settle import checked_weights, read_weights as read_table

    frame = checked_weights(read_table(path), str(path))
    return frame.select(pl.col("drg").cast(pl.String).str.strip_chars(), pl.col("weight").cast(pl.Float64))


def data_weights(cases: pl.DataFrame) -> pl.DataFrame:
    """Weights from the year itself: a DRG's mean cost ÷ the mean cost of every grouped case."""
    costed = cases.lazy().filter(pl.col("drg").is_not_null() & pl.col("cost").is_not_null())
    overall = costed.select(pl.col("cost").mean()).collect().item()
    if not overall:
        return pl.DataFrame(schema={"drg": pl.String, "weight": pl.Float64})
    return costed.group_by("drg").agg((pl.col("cost").mean() / overall).alias("weight")).sort("drg").collect()


# ---- rules ---------------------------------------------------------------------------------------

def needed_fields(rule: Rule) -> tuple[str, ...]:
    spec = rule.spec
    extra = []
    if rule.logic == "shared_contact":
        extra.append(rule.params["field"])
    if spec.kind == "providers" and rule.params["by"] != "hospital":
        extra.append(rule.params["by"])
    if rule.logic == "mcc_upcoding" and rule.params["within"] != "none":
        extra += [k for k in R.UNIT_KEYS[rule.params["within"]] if k not in spec.fields]
    return (*spec.fields, *extra)


def _missing(frame: pl.DataFrame, names) -> list[str]:
    """Fields the input lacks: no column, or a column without a single value."""
    return [n for n in names if n not in frame.columns or frame[n].null_count() == frame.height]


def _evidence(found: pl.DataFrame, cases: pl.DataFrame, rule: Rule, key: bytes) -> pl.Series:
    parts = []
    for name in rule.evidence:
        if name in found.columns:
            column = found[name]
        elif name in cases.columns:
            column = cases[name].gather(found["row"])
        else:
            continue
        if name == "contact":
            column = keyed_hash(column.cast(pl.String), key)
        expr = pl.lit(column)
        text = yuan_text(expr) if name in MONEY_EVIDENCE else expr.cast(pl.String)
        parts.append(pl.lit(f"{name}=") + text.fill_null("-"))
    if not parts:
        return pl.Series("evidence", [""] * found.height, dtype=pl.String)
    return pl.select(pl.concat_str(parts, separator="; ").alias("evidence")).to_series()


def _money(weights: pl.DataFrame, mode: str) -> tuple[pl.Expr, pl.Expr]:
    """(alternative, at_stake) in fen. alternative_group: paid × weight(alternative) ÷ weight(drg), rounded half up;
    whole: nothing would be paid; shifted: the fund would also have paid the shifted amount; none: no estimate."""
    paid_expr = pl.col("paid")
    if mode == "alternative_group":
        ratio = R.weight_of(pl.col("alternative_drg"), weights) / R.weight_of(pl.col("drg"), weights)
        alternative = (paid_expr.cast(pl.Float64) * ratio + 0.5).floor().cast(pl.Int64)
        return alternative, (paid_expr - alternative).clip(lower_bound=0)
    if mode == "whole":
        return pl.lit(0, dtype=pl.Int64), paid_expr
    if mode == "shifted":
        return paid_expr + pl.col("shifted"), pl.col("shifted")
    return pl.lit(None, dtype=pl.Int64), pl.lit(0, dtype=pl.Int64)


def _case_findings(found: pl.DataFrame, cases: pl.DataFrame, rule: Rule, ctx: R.Context, paid: pl.Series,
                   key: bytes) -> pl.DataFrame:
    rows = found["row"]
    base = pl.DataFrame({"row": rows, "paid": paid.gather(rows)})
    for name in ("drg", "alternative_drg", "shifted"):
        if name in found.columns and name not in base.columns:
            base = base.with_columns(found[name])
        elif name == "drg":
            base = base.with_columns(cases["drg"].gather(rows))
    alternative, at_stake = _money(ctx.weights, rule.spec.money)
    base = base.with_columns(alternative.alias("alternative"), at_stake.alias("at_stake"))
    take = lambda c: cases[c].gather(rows) if c in cases.columns else pl.Series(c, [None] * len(rows), dtype=FLAG_SCHEMA[c])  # noqa: E731
    return pl.DataFrame({
        "row": rows, "id": take("id"), "rule": [rule.code] * len(rows), "name": [rule.name] * len(rows),
        "level": [rule.level] * len(rows), "stage": [rule.stage] * len(rows), "hospital": take("hospital"),
        "hospital_level": take("hospital_level"), "dept": take("dept"), "doctor": take("doctor"),
        "patient": take("patient_id").cast(pl.String), "drg": base["drg"],
        "evidence": _evidence(found, cases, rule, key), "paid": base["paid"], "alternative": base["alternative"],
        "at_stake": base["at_stake"]}, schema={"row": pl.UInt32, **FLAG_SCHEMA})


def screen(cases: pl.DataFrame, screens: Screens, *, key: bytes, weights: pl.DataFrame | None = None,
           payment: pl.Series | None = None, console=None) -> Screening:
    """Run every enabled rule of `screens` over a grouped year (`load_cases`); see `Screening`.

    `weights` (drg, weight) gives the groups' weights (default: from the year's own costs); `payment`
    (fen per case, in input order; default: fund_paid) is what each case was paid.
    """
    for name, dtype in GROUPED_SCHEMA.items():
        if name not in cases.columns:
            cases = cases.with_columns(pl.lit(None, dtype=dtype).alias(name))
    cases = cases.with_row_index("row")
    weights_given = weights is not None
    weights = data_weights(cases) if weights is None else weights.select(pl.col("drg").cast(pl.String),
                                                                          pl.col("weight").cast(pl.Float64))
    ctx = R.Context(cases, weights)
    paid = (payment if payment is not None else cases["fund_paid"]).cast(pl.Int64).rename("paid")
    if len(paid) != cases.height:
        raise InputError(f"the payments ({len(paid)}) do not line up with the cases ({cases.height})")
    warnings, ran, skipped = [], [], []
    flag_parts, provider_parts, unscreened_parts = [], [], []
    for rule in screens.rules:
        if not rule.enabled:
            skipped.append({"rule": rule.code, "reason": "disabled in the screens file"})
            continue
        missing = _missing(cases, needed_fields(rule))
        if missing:
            message = (f"rule {rule.code} skipped: the input has no {', '.join(f'`{m}`' for m in missing)} "
                       f"(field{'s' if len(missing) > 1 else ''} {', '.join(missing)} needed by logic {rule.logic})")
            warnings.append(message)
            skipped.append({"rule": rule.code, "reason": message, "fields": missing})
            if console is not None:
                console.print(f"warning: {message}", style="yellow", markup=False)
            continue
        found = R.FUNCTIONS[rule.logic](ctx, rule.params)
        needed = [f for f in needed_fields(rule) if f in cases.columns]
        if rule.spec.kind == "providers":
            if found.height:
                provider_parts.append(found.select(
                    pl.lit(rule.code).alias("rule"), pl.lit(rule.name).alias("name"), pl.lit(rule.level).alias("level"),
                    pl.lit(rule.params["by"]).alias("by"), pl.col("hospital"),
                    (pl.col("dept") if "dept" in found.columns else pl.lit(None, dtype=pl.String)).alias("dept"),
                    (pl.col("doctor") if "doctor" in found.columns else pl.lit(None, dtype=pl.String)).alias("doctor"),
                    "peer_level", pl.col("cases").cast(pl.Int64),
                    (pl.col("target_cases") if "target_cases" in found.columns else pl.lit(None)).cast(pl.Int64).alias("target_cases"),
                    pl.col("rate").round(6), pl.col("limit").round(6), "flagged"))
            ran.append({"rule": rule.code, "kind": "providers", "level": rule.level, "units": found.height,
                        "flagged_units": int(found["flagged"].sum()) if found.height else 0})
            continue
        unscreened = (cases.lazy().filter(pl.any_horizontal([pl.col(f).is_null() for f in needed]))
                      .select("row", pl.lit(rule.code).alias("rule"),
                              pl.concat_str([pl.when(pl.col(f).is_null()).then(pl.lit(f)) for f in needed],
                                            separator=", ", ignore_nulls=True).alias("_m")).collect())
        unscreened_parts.append(unscreened)
        flag_parts.append(_case_findings(found, cases, rule, ctx, paid, key))
        ran.append({"rule": rule.code, "kind": rule.spec.kind, "level": rule.level, "findings": found.height,
                    "screened": cases.height - unscreened.height, "not_screened": unscreened.height})
    flags = (pl.concat(flag_parts) if flag_parts else pl.DataFrame(schema={"row": pl.UInt32, **FLAG_SCHEMA}))
    order = {r.code: i for i, r in enumerate(screens.rules)}
    flags = (flags.with_columns(pl.col("rule").replace_strict(order, return_dtype=pl.Int32).alias("_o"))
             .sort("row", "_o").drop("_o"))
    flags = flags.with_columns(keyed_hash(flags["patient"], key))   # once, over every finding: no patient id leaves in clear
    providers = pl.concat(provider_parts, how="vertical_relaxed") if provider_parts else pl.DataFrame(
        schema={"rule": pl.String, "name": pl.String, "level": pl.String, "by": pl.String, "hospital": pl.String,
                "dept": pl.String, "doctor": pl.String, "peer_level": pl.Int8, "cases": pl.Int64, "target_cases": pl.Int64,
                "rate": pl.Float64, "limit": pl.Float64, "flagged": pl.Boolean})
    unscreened = (pl.concat(unscreened_parts) if unscreened_parts else
                  pl.DataFrame(schema={"row": pl.UInt32, "rule": pl.String, "_m": pl.String}))
    unscreened = unscreened.sort("row", maintain_order=True).select(
        cases["id"].gather(unscreened["row"]).alias("id"), "rule",
        (pl.lit("missing ") + pl.col("_m")).alias("reason"))
    money = _money_table(flags, screens, [r["rule"] for r in ran if r["kind"] != "providers"])
    units = {by: _ranking(ctx, flags, providers, by) for by in ("hospital", "dept", "doctor")}
    scores = _scores(cases, flags, screens)
    summary = {
        "screens": screens.name, "screens_file": str(screens.path), "cases": cases.height,
        "findings": flags.height, "flagged_cases": flags["row"].n_unique() if flags.height else 0,
        "flagged_units": int(providers["flagged"].sum()) if providers.height else 0,
        "at_stake_fen": int(flags["at_stake"].sum() or 0) if flags.height else 0,
        "weights": "given" if weights_given else "from the year's costs",
        "paid": "settled payment" if payment is not None else "fund_paid",
        "rules": ran, "skipped": skipped, "warnings": warnings,
    }
    return Screening(flags.drop("row"), providers, units["hospital"], units["dept"], units["doctor"], money, scores,
                     unscreened, summary, warnings)


def _money_table(flags: pl.DataFrame, screens: Screens, codes: list[str]) -> pl.DataFrame:
    """Per case rule that ran (in file order): findings, cases, and paid, alternative and at_stake summed (fen)."""
    table = flags.group_by("rule").agg(pl.len().alias("findings"), pl.col("row").n_unique().alias("cases"),
                                       pl.col("paid").sum(), pl.col("alternative").sum(), pl.col("at_stake").sum())
    rules = [screens.rule(code) for code in codes]
    meta = pl.DataFrame({"rule": codes, "name": [r.name for r in rules], "level": [r.level for r in rules],
                         "money": [r.spec.money for r in rules]}, schema={c: pl.String for c in ("rule", "name", "level", "money")})
    return (meta.join(table, on="rule", how="left", maintain_order="left")
            .with_columns(pl.col("findings", "cases", "paid", "alternative", "at_stake").cast(pl.Int64).fill_null(0)))


def _ranking(ctx: R.Context, flags: pl.DataFrame, providers: pl.DataFrame, by: str) -> pl.DataFrame:
    cases = ctx.cases
    keys = R.UNIT_KEYS[by]
    if any(k not in cases.columns or cases[k].null_count() == cases.height for k in keys):
        return pl.DataFrame(schema={k: pl.String for k in keys})
    _, units = R.units_of(ctx, by, ["fund_paid"])   # integer group keys
    totals = units.group_by("_u").agg(*[pl.col(k).first() for k in keys], pl.len().alias("cases"),
                                      pl.col("fund_paid").sum().alias("fund_paid")).drop("_u")
    found = flags.lazy().filter(pl.all_horizontal([pl.col(k).is_not_null() for k in keys])).group_by(keys).agg(
        pl.col("row").n_unique().alias("flagged_cases"), pl.len().alias("findings"),
        (pl.col("level") == "违规").sum().alias("violations"), (pl.col("level") == "疑似").sum().alias("suspected"),
        pl.col("at_stake").sum().alias("at_stake"))
    units = providers.lazy().filter(pl.col("flagged") & (pl.col("by") == by)).group_by(keys).agg(
        pl.col("rule").sort().str.join("|").alias("provider_flags"), pl.len().alias("_flags"))
    table = (totals.join(found, on=keys, how="left").join(units, on=keys, how="left")
             .with_columns(pl.col("flagged_cases", "findings", "violations", "suspected", "at_stake", "_flags").fill_null(0))
             .with_columns((pl.col("flagged_cases") / pl.col("cases")).round(6).alias("flagged_share"))
             .sort(["at_stake", "findings", "_flags", *keys], descending=[True, True, True, *[False] * len(keys)])
             .drop("_flags").with_row_index("rank", offset=1).collect())
    return table.with_columns(pl.col("flagged_cases", "findings", "violations", "suspected").cast(pl.Int64),
                              pl.col("at_stake").cast(pl.Int64))


def _scores(cases: pl.DataFrame, flags: pl.DataFrame, screens: Screens) -> pl.DataFrame | None:
    """记分: points per finding by level, at most `case_cap` from one case, added up per doctor and discharge year."""
    s = screens.scores
    if s is None or "doctor" not in cases.columns or cases["doctor"].null_count() == cases.height:
        return None
    points = pl.when(pl.col("level") == "违规").then(s["violation_points"]).otherwise(s["suspect_points"])
    flags = flags.with_columns(cases["discharge_date"].dt.year().gather(flags["row"]).alias("year"))
    per_case = (flags.lazy().filter(pl.col("doctor").is_not_null())
                .with_columns(points.alias("_p"))
                .group_by("doctor", "year", "row")
                .agg(pl.col("_p").sum().clip(upper_bound=s["case_cap"]).alias("points"), pl.len().alias("findings"),
                     pl.col("hospital").first()))
    table = per_case.group_by("doctor", "year").agg(
        pl.col("points").sum(), pl.col("findings").sum(), pl.len().alias("cases"),
        pl.col("hospital").unique().sort().str.join("|").alias("hospitals")).collect()
    status = (pl.when(pl.col("points") >= s["stop_at"]).then(pl.lit("终止 stop"))
              .when(pl.col("points") >= s["pause_at"]).then(pl.lit("暂停 pause"))
              .when(pl.col("points") >= s["warn_at"]).then(pl.lit("约谈 warn")).otherwise(pl.lit("")))
    return (table.with_columns(status.alias("status"), pl.col("points", "findings", "cases").cast(pl.Int64))
            .sort(["points", "doctor", "year"], descending=[True, False, False], nulls_last=True)
            .select("doctor", "year", "hospitals", "cases", "findings", "points", "status"))


# ---- output --------------------------------------------------------------------------------------

def write_screening(screening: Screening, folder: Path, *, case_format: str = "parquet") -> list[str]:
    """Write the outputs into `folder` (which exists); returns the file names written."""
    written = []

    def table(frame: pl.DataFrame, name: str, money=()) -> None:
        out = frame.with_columns(yuan_text(pl.col(c)).alias(c) for c in money if c in frame.columns)
        out.write_csv(folder / name)
        written.append(name)

    if case_format == "csv":
        table(screening.flags, "flags.csv", ("paid", "alternative", "at_stake"))
        table(screening.unscreened, "unscreened.csv")
    else:
        screening.flags.write_parquet(folder / "flags.parquet")
        screening.unscreened.write_parquet(folder / "unscreened.parquet")
        written += ["flags.parquet", "unscreened.parquet"]
    table(screening.providers, "providers.csv")
    table(screening.money, "money.csv", ("paid", "alternative", "at_stake"))
    for by, name in UNIT_FILES.items():
        frame = getattr(screening, {"hospital": "hospitals", "dept": "departments", "doctor": "doctors"}[by])
        if frame.height:
            table(frame, f"{name}.csv", ("fund_paid", "at_stake"))
    if screening.scores is not None:
        table(screening.scores, "scores.csv")
    summary = dict(screening.summary, outputs=sorted(written + ["summary.json"]))
    (folder / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    written.append("summary.json")
    return written
