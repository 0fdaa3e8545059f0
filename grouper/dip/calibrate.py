"""Build a DIP catalogue (目录库) from a cost history: `grouper calibrate dip HISTORY -o PACK`.

1. **Key** of each case: its principal diagnosis category (the first `dx_length` characters) ×
   its distinct qualifying procedures (from the procedure table), and its treatment type (the
   highest-ranked type among its procedures).
2. **Core groups** (核心病种): every (category, procedure combination) with at least `min_cases`
   cases (default 15, the DIP 1.0 threshold) becomes a core row; its expression is the
   combination, all of (`a+b`); no procedure gives a conservative row.
3. **Comprehensive groups** (综合病种): every other case is pooled by (the first
   `comprehensive_length` characters of its diagnosis, its treatment type).
4. The history is then **regrouped** with the new catalogue by the batch engine, and every statistic
   comes from the cases each group actually receives (a case whose own combination is too rare may
   land in a core group whose codes it contains: that is how it will be paid). A row that receives
   no case is dropped: it has no cost to score, and a 病种分值 must be above 0.
5. **Scores:** score_g = m_g ÷ M × scale, where m_g is the group's mean cost and M the mean cost of
   all grouped cases, both weighted by discharge year: a case of the k-th most recent year counts
   `year_weights[-k]` times (e.g. 1:2:7 oldest → latest); without weights every case counts once.
   `years` restricts the history to a range of discharge years (the others are not used at all).
   Scores are rounded half-even to 4 decimals; means (`mean`, yuan) half-up to the fen.
   Per group: n (cases, unweighted), mean, cv (weighted standard deviation ÷ weighted mean,
   population form, 4 decimals). The summary gives the share of cases in core groups.
6. **Auxiliary catalogue** (optional, `auxiliary`/`auxiliary_lists`): the subtype table is copied into
   the pack. With `calibrate_auxiliary`, each subtype's factor becomes Σ w·cost ÷ Σ w·m_g over the
   grouped cases for which it holds (its cases cost that many times their group's mean), rounded
   half-even to 4 decimals, when it holds for at least `auxiliary_min_cases` cases (default 30);
   otherwise the table's factor is kept. The written table gains `n` and `factor_source`
   (`history` / `table`).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InputError
from ..fields import yuan_text
from ..outputs import atomic_output
from .procedures import TREATMENTS, procedure_table
from .scheme import DIP_FILE, load_dip_scheme

CATALOGUE_COLUMNS = ("level", "code", "name", "dx", "procs", "treatment", "score", "n", "mean", "cv")


@dataclass(frozen=True)
class CalibrationParams:
    min_cases: int = 15                          # DIP 1.0: combinations with ≥ 15 cases are core groups
    scale: int = 1000                            # score scale: 100 or 1000 (regions publish either)
    dx_length: int = 5                           # 亚目, K80.100 → K80.1
    comprehensive_length: int = 3                # 类目, K80.100 → K80
    year_weights: tuple[float, ...] = ()         # oldest → latest, e.g. (1, 2, 7); () = every case once
    years: tuple[int, int] | None = None         # discharge years used (inclusive); None = all
    auxiliary: str | None = None                 # subtype table (辅助目录) copied into the pack
    auxiliary_lists: str | None = None           # its code lists
    calibrate_auxiliary: bool = False            # factors from the history (see the module doc)
    auxiliary_min_cases: int = 30                # fewer cases: the table's factor is kept
    name: str = "DIP"
    version: str = "calibrated"


def year_weight_column(years: pl.Series, weights: tuple[float, ...]) -> pl.Series:
    """Each case's weight: the k-th most recent year present gets weights[-k]."""
    if not weights:
        return pl.Series("w", np.ones(len(years)))
    present = sorted(years.drop_nulls().unique().to_list())
    if len(present) > len(weights):
        raise InputError(f"the history spans {len(present)} years ({present[0]}–{present[-1]}) but only "
                         f"{len(weights)} year weights were given")
    by_year = dict(zip(present, weights[len(weights) - len(present):]))
    return years.replace_strict(by_year, default=0.0, return_dtype=pl.Float64).alias("w")


def _keys(history: pl.DataFrame, procs: pl.DataFrame, params: CalibrationParams) -> pl.DataFrame:
    """Per case: pdx, category, comprehensive category, combo (sorted qualifying codes, '+'-joined), treatment."""
    qualifying = procs.filter(pl.col("qualifying") == "1")["code"].unique().to_list()
    rank = {t: i for i, t in enumerate(TREATMENTS)}
    rank_of = dict(zip(procs["code"].to_list(), (rank.get(t, -1) for t in procs["treatment"].fill_null("").to_list())))
    pdx = pl.col("dx").list.first()
    return history.select(
        pdx.alias("pdx"),
        pdx.str.slice(0, params.dx_length).alias("category"),
        pdx.str.slice(0, params.comprehensive_length).alias("comp_category"),
        pl.col("proc").list.eval(pl.element().filter(pl.element().is_in(qualifying)).unique().sort())
        .list.join("+").alias("combo"),
        pl.col("proc").list.eval(pl.element().replace_strict(rank_of, default=-1, return_dtype=pl.Int32))
        .list.max().fill_null(0).clip(0).alias("rank"),
    )


def build_rows(history: pl.DataFrame, procs: pl.DataFrame, params: CalibrationParams) -> pl.DataFrame:
    """The catalogue rows before scoring: core rows for combinations with ≥ min_cases cases, one
    comprehensive row per (comprehensive category, treatment) of the other cases."""
    keys = _keys(history, procs, params).filter(pl.col("pdx").is_not_null() & (pl.col("pdx") != ""))
    keys = keys.filter(pl.col("category").str.len_chars() == params.dx_length)
    counts = keys.group_by("category", "combo").agg(pl.len().alias("count"), pl.col("rank").max())
    core = counts.filter(pl.col("count") >= params.min_cases).sort("category", "combo")
    core = core.with_columns(
        (pl.col("category") + "-" + (pl.int_range(pl.len()).over("category") + 1).cast(pl.String).str.zfill(3))
        .alias("code"))
    core_rows = core.select(
        pl.lit("core").alias("level"), "code",
        (pl.col("category") + " " + pl.when(pl.col("combo") == "").then(pl.lit("保守治疗")).otherwise(pl.col("combo")))
        .alias("name"),
        pl.col("category").alias("dx"), pl.col("combo").alias("procs"), pl.lit("").alias("treatment"))
    pooled = keys.join(core.select("category", "combo"), on=["category", "combo"], how="anti")
    comp = pooled.select("comp_category", "rank").unique().sort("comp_category", "rank")
    comp_rows = comp.select(
        pl.lit("comprehensive").alias("level"),
        (pl.col("comp_category") + "-Z" + pl.col("rank").cast(pl.String)).alias("code"),
        (pl.col("comp_category") + " 综合病种 " + pl.col("rank").replace_strict(dict(enumerate(TREATMENTS)),
                                                                                return_dtype=pl.String)).alias("name"),
        pl.col("comp_category").alias("dx"), pl.lit("").alias("procs"),
        pl.col("rank").replace_strict(dict(enumerate(TREATMENTS)), return_dtype=pl.String).alias("treatment"))
    return pl.concat([core_rows, comp_rows])


SCHEME_TEMPLATE = '''# {name} {version}: built by `grouper calibrate dip` from a cost history
# (core groups: combinations with at least {min_cases} cases; scores: group mean / overall mean x {scale}).
scheme "{name}" version "{version}"

table proc_types = "proc_types.csv"              # code, name, treatment, qualifying, type (as published)
table catalogue  = "catalogue.csv"               # level, code, name, dx, procs, treatment, score, n, mean, cv
{aux_tables}
dip {{
  diagnosis length {dx_length}
  qualifying = proc_types[qualifying = "1"]
  treatment = proc_types.treatment
  treatments {treatments}
  core = catalogue[level = "core"]
  comprehensive = catalogue[level = "comprehensive"]
{aux_settings}}}
'''


def _round4(x: float) -> float:
    return float(Decimal(repr(x)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


def _write_pack(folder: Path, rows: pl.DataFrame, procs: pl.DataFrame, params: CalibrationParams,
                aux: pl.DataFrame | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    aux_tables = aux_settings = ""
    if params.auxiliary:
        aux_tables = 'table aux        = "aux.csv"                     # 辅助目录 (auxiliary subtypes)\n'
        aux_settings = "  auxiliary = aux\n"
        if params.auxiliary_lists:
            aux_tables += 'table aux_lists  = "aux_lists.csv"\n'
            aux_settings += "  auxiliary lists = aux_lists\n"
            shutil.copyfile(params.auxiliary_lists, folder / "aux_lists.csv")
        if aux is None:
            shutil.copyfile(params.auxiliary, folder / "aux.csv")
        else:
            aux.write_csv(folder / "aux.csv")
    (folder / DIP_FILE).write_text(SCHEME_TEMPLATE.format(
        name=params.name, version=params.version, min_cases=params.min_cases, scale=params.scale,
        dx_length=params.dx_length, treatments=" < ".join(f'"{t}"' for t in TREATMENTS),
        aux_tables=aux_tables, aux_settings=aux_settings), encoding="utf-8")
    # As read (UTF-8, English headers, types canonical). An empty cell is written empty, not as a quoted "".
    procs.with_columns(pl.col(pl.String).replace("", None)).write_csv(folder / "proc_types.csv")
    rows.with_columns(pl.col(pl.String).replace("", None)).write_csv(folder / "catalogue.csv")


def group_stats(grouped: pl.DataFrame, weights: pl.Series, scale: int) -> tuple[pl.DataFrame, float]:
    """Per `dip`: n, weighted mean cost (fen, float), cv, score; and M, the overall weighted mean."""
    frame = grouped.select("dip", pl.col("cost").cast(pl.Float64).alias("c"), weights.alias("w")).filter(
        pl.col("dip").is_not_null() & pl.col("c").is_not_null())
    total_w = frame["w"].sum()
    if not total_w:
        raise InputError("no grouped case with a cost (and a non-zero year weight) in the history")
    overall = float((frame["c"] * frame["w"]).sum() / total_w)
    stats = frame.group_by("dip").agg(
        pl.len().alias("n"),
        ((pl.col("c") * pl.col("w")).sum() / pl.col("w").sum()).alias("mean"),
        pl.col("w").sum().alias("sw"),
        (pl.col("c") * pl.col("c") * pl.col("w")).sum().alias("sccw"))
    stats = stats.with_columns(
        ((pl.col("sccw") / pl.col("sw") - pl.col("mean") ** 2).clip(0).sqrt() / pl.col("mean")).alias("cv"))
    stats = stats.with_columns(pl.col("mean").map_elements(lambda m: _round4(m / overall * scale),
                                                           return_dtype=pl.Float64).alias("score"))
    return stats.select("dip", "n", "mean", "cv", "score"), overall


def calibrate_dip(history: pl.DataFrame, procedures: str | Path, output: str | Path,
                  params: CalibrationParams = CalibrationParams()) -> tuple[pl.DataFrame, dict]:
    """Write a DIP pack built from `history` (canonical cases: dx, proc lists, `cost` Int64 fen,
    `discharge_date` Date or `year`) and return (catalogue frame, summary)."""
    from .run import group_dip_frame

    if params.scale not in (100, 1000):
        raise InputError(f"the score scale is 100 or 1000, not {params.scale}")
    if "cost" not in history.columns:
        raise InputError("the history has no cost column (医疗总费用)")
    procs = procedure_table(procedures)
    if "year" in history.columns:
        years = history["year"]
    elif "discharge_date" in history.columns:
        years = history["discharge_date"].dt.year()
    else:
        years = pl.Series([None] * history.height, dtype=pl.Int32)
    if params.years is not None:
        used = years.is_between(*params.years).fill_null(False)
        history, years = history.filter(used), years.filter(used)
        if history.height == 0:
            raise InputError(f"no case was discharged in {params.years[0]}–{params.years[1]}")
    rows = build_rows(history, procs, params)
    weights = year_weight_column(years, params.year_weights)
    output = Path(output)
    with atomic_output(output, directory=True, kind="DIP pack") as tmp:
        # First pass: the pack without scores, to regroup the history with it.
        _write_pack(tmp, rows.with_columns(pl.lit("1").alias("score")), procs, params)  # placeholder > 0
        grouped = group_dip_frame(load_dip_scheme(tmp).plan, history).with_columns(history["cost"])
        stats, overall = group_stats(grouped, weights, params.scale)
        scored = rows.join(stats, left_on="code", right_on="dip", how="left")
        scored = scored.filter(pl.col("n").is_not_null())   # a row no case regroups into has no score
        catalogue = scored.select(
            "level", "code", "name", "dx", "procs", "treatment",
            pl.col("score").fill_null(0.0), pl.col("n").fill_null(0).cast(pl.Int64),
            (pl.col("mean").fill_null(0) + 0.5).floor().cast(pl.Int64).alias("mean_fen"),
            pl.col("cv").map_elements(_round4, return_dtype=pl.Float64))
        aux = None
        if params.auxiliary and params.calibrate_auxiliary:
            aux = _calibrated_auxiliary(load_dip_scheme(tmp).plan.auxiliary, params, history, grouped, stats, weights)
        _write_pack(tmp, catalogue.with_columns(yuan_text(pl.col("mean_fen")).alias("mean")).select(CATALOGUE_COLUMNS),
                    procs, params, aux)
    n_grouped = int(grouped["dip"].is_not_null().sum())
    n_core = int(catalogue.filter(pl.col("level") == "core")["n"].sum())
    summary = {"cases": history.height, "grouped": n_grouped, "core_groups": int((catalogue["level"] == "core").sum()),
               "comprehensive_groups": int((catalogue["level"] == "comprehensive").sum()),
               "core_cases": n_core, "core_share": n_core / n_grouped if n_grouped else 0.0,
               "overall_mean_fen": overall}
    return catalogue, summary


def _calibrated_auxiliary(aux, params: CalibrationParams, history: pl.DataFrame, grouped: pl.DataFrame,
                          stats: pl.DataFrame, weights: pl.Series) -> pl.DataFrame:
    """The subtype table with factors from the history (module doc, step 6), `n` and `factor_source`."""
    from .auxiliary import subtype_masks

    masks = subtype_masks(aux, history, grouped["dip"])
    base = grouped.select("dip", pl.col("cost").cast(pl.Float64).alias("c"), weights.alias("w")).join(
        stats.select("dip", pl.col("mean").alias("m")), on="dip", how="left", maintain_order="left")
    table = pl.read_csv(params.auxiliary, infer_schema=False, encoding="utf8")
    factors, counts, sources = [], [], []
    by_code = {s.code: s for s in aux.subtypes}
    for code in table["code"].to_list():
        s = by_code.get(code)
        if s is None:
            factors.append(None), counts.append(0), sources.append("table")
            continue
        held = base.filter(masks[code] & pl.col("m").is_not_null() & pl.col("c").is_not_null())
        n = held.height
        counts.append(n)
        expected = float((held["w"] * held["m"]).sum()) if n else 0.0
        if n >= params.auxiliary_min_cases and expected > 0:
            factors.append(_round4(float((held["w"] * held["c"]).sum()) / expected))
            sources.append("history")
        else:
            factors.append(s.factor)
            sources.append("table")
    return table.with_columns(pl.Series("factor", factors, dtype=pl.Float64), pl.Series("n", counts, dtype=pl.Int64),
                              pl.Series("factor_source", sources, dtype=pl.String))


def read_history(source: str | Path | pl.DataFrame, *, encoding: str | None = None) -> pl.DataFrame:
    """A cost history (a case file or frame with the settlement fields) as canonical cases (id, dx,
    proc) followed by the typed settlement fields (cost in fen, discharge_date, ...), read with the
    project's reader (grouper.io, grouper.fields)."""
    from ..fields import CARRIED_COLUMNS, typed_fields
    from ..pipeline import case_batches

    frames = [pl.concat([batch.select("id", "dx", "proc"), typed_fields(batch).select(CARRIED_COLUMNS)],
                        how="horizontal")
              for batch in case_batches(source, encoding=encoding, settlement=True)]
    return pl.concat(frames, rechunk=True)
