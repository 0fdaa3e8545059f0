"""DIP settlement through the project's one settlement engine (grouper/settle): a policy with
`method = "dip"` takes a case's base points from the DIP pack instead of a weights table.

`DipScores` is the engine's base-points source (grouper.settle.engine.BaseSource):

- group = the case's 病种 (`dip`); base points = 病种分值 × the auxiliary factor (`dip.auxiliary`,
  default on); rw = score ÷ `points.scale` (for CMI-style totals);
- group_mean = the catalogue's `mean` (yuan, as `grouper calibrate dip` writes it) in fen, for
  `ratio.reference = "group_mean"`; a catalogue without means can use `ratio.reference = "standard"`
  (the payment standard at the budget point value);
- 基层病种 (primary rows) get `dip.primary_coefficient` at every hospital level when set;
- `dip.extreme`: a case above that many times its group's mean cost is flagged for 特例单议.

Everything else — deviation cases (`cases.low` / `cases.high`: DIP's ≤ 50 % / ≥ 200 % with the
formulas `ratio` and `excess_ratio_coefficient` (Hubei) or `excess_ratio_plus_coefficient`
(Shandong)), level coefficients, budget and settlement point values, special review, sharing,
clearing, the comparison and the report — is the engine's, as for DRG.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..settle.engine import join_groups
from .plan import LEVELS

DIP_SETTLE_COLUMNS = ("id", "status", "dip", "dip_level", "score", "aux", "aux_factor", "los", "discharge", "hospital",
                      "hospital_level", "insurance", "cost", "admission_date", "discharge_date", "patient_id",
                      "special_review")


@dataclass(frozen=True)
class DipScores:
    """Base points of DIP cases (see the module doc); `catalogue` has code, level, score[, mean]."""

    catalogue: pl.DataFrame
    scale: float
    primary_coefficient: float | None = None
    extreme: float | None = None
    auxiliary: bool = True

    @classmethod
    def from_pack(cls, loaded, policy) -> "DipScores":
        rows = [r for level in LEVELS for r in loaded.rows.get(level, ())]
        means: dict[str, float | None] = {}
        for level in LEVELS:
            expr = loaded.ast.level(level)
            if expr is None:
                continue
            table = loaded.store.frame(getattr(expr, "table", None) or expr.name)
            if "mean" in table.columns:
                for code, mean in table.select("code", "mean").iter_rows():
                    try:   # yuan with two decimals, as `grouper calibrate dip` writes it
                        means.setdefault(code, round(float(mean.replace(",", "")) * 100) if mean else None)
                    except ValueError:
                        means.setdefault(code, None)
        frame = pl.DataFrame({"group": [r.code for r in rows], "_level": [r.level for r in rows],
                              "_score": [r.score for r in rows], "group_mean": [means.get(r.code) for r in rows]},
                             schema={"group": pl.String, "_level": pl.String, "_score": pl.Float64,
                                     "group_mean": pl.Float64})
        dip = policy["dip"]
        return cls(frame, float(policy["points"]["scale"]),
                   None if dip["primary_coefficient"] is None else float(dip["primary_coefficient"]),
                   None if dip["extreme"] is None else float(dip["extreme"]), bool(dip["auxiliary"]))

    def attach(self, cases: pl.DataFrame, extra: pl.DataFrame | None = None) -> pl.DataFrame:
        factor = pl.col("aux_factor").fill_null(1.0) if self.auxiliary else pl.lit(1.0)
        out = (join_groups(cases.with_columns(pl.col("drg").alias("group")), self.catalogue, extra)
               .with_columns((pl.col("_score") * factor).alias("base_points"),
                             (pl.col("_score") / self.scale).alias("rw")))
        if self.primary_coefficient is not None:
            out = out.with_columns(pl.when(pl.col("_level") == "primary").then(pl.lit(self.primary_coefficient))
                                   .alias("fixed_coefficient"))
        if self.extreme is not None:
            extreme = (pl.col("cost") > self.extreme * pl.col("group_mean")).fill_null(False)
            out = out.with_columns((pl.col("special_review") | extreme).alias("special_review"))
        return out.drop("_score", "_level")


def dip_grouped(results: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """DIP results followed by the typed settlement fields of `cases` (read with settlement=True)."""
    from ..fields import CARRIED_COLUMNS, typed_fields

    return pl.concat([results, typed_fields(cases).select(CARRIED_COLUMNS)], how="horizontal")


def load_dip_cases(source: str | Path | pl.DataFrame, loaded) -> pl.DataFrame:
    """The settle engine's input for DIP: a DIP grouped file (`grouper group --scheme DIPPACK
    --carry`) read back with its types, or raw cases grouped with the DIP pack; `drg` = the 病种."""
    from ..fields import CARRIED_COLUMNS, typed_fields
    from ..pipeline import case_batches
    from .run import group_dip_frame

    if not isinstance(source, pl.DataFrame):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"no such file: {path}")
        from .. import io

        raw = io._read_raw(path, encoding=None, sheet=None)
        if {"status", "dip"} <= set(raw.columns):
            carried = [c for c in CARRIED_COLUMNS if c in raw.columns]
            typed = typed_fields(raw.select(carried)).select(CARRIED_COLUMNS) if carried else None
            results = raw.select(pl.col(c).cast(pl.String) if c not in ("score", "aux_factor") else
                                 pl.col(c).cast(pl.Float64, strict=False)
                                 for c in ("id", "status", "dip", "dip_level", "score", "aux", "aux_factor"))
            frame = results if typed is None else pl.concat([results, typed], how="horizontal")
            return frame.with_columns(pl.col("dip").alias("drg"))
    frames = [dip_grouped(group_dip_frame(loaded.plan, batch), batch)
              for batch in case_batches(source, settlement=True)]
    return pl.concat(frames, rechunk=True).with_columns(pl.col("dip").alias("drg"))


def settle_dip(cases, policy, scheme, *, policy2=None):
    """Settle DIP cases (a file or frame: raw or DIP-grouped) under a `method = "dip"` policy;
    with `policy2`, also under it and compared. Returns a Settlement, or a Comparison."""
    from ..settle.policy import Policy, load_policy
    from ..settle.run import compare_policies, settle_cases
    from .scheme import load_dip_scheme

    policy = policy if isinstance(policy, Policy) else load_policy(policy)
    loaded = scheme if hasattr(scheme, "rows") else load_dip_scheme(scheme)
    frame = load_dip_cases(cases, loaded)
    for p in (policy, policy2):
        if p is not None and not p.is_dip:
            raise InputError(f"policy {p.name!r} is not a DIP policy (method = \"dip\"); a DIP pack settles under one")
    if policy2 is None:
        return settle_cases(frame, policy, DipScores.from_pack(loaded, policy), column="dip")
    p2 = policy2 if isinstance(policy2, Policy) else load_policy(policy2)
    return compare_policies(frame, policy, p2, DipScores.from_pack(loaded, policy), DipScores.from_pack(loaded, p2),
                            column="dip")
