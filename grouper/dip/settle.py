"""DIP settlement through the project's one settlement engine (grouper/payment/settle.py): a policy with
`method = "dip"` takes a case's base points from the DIP pack instead of a weights table.

`DipScores` is the engine's base-points source (grouper.payment.settle.BaseSource):

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

from decimal import Decimal

from ..errors import InputError
from ..payment.settle import (COEF, MAX_COST, MAX_POINTS, MICRO, POLARS, UNIT, _div_half_up, _wide, decimal_of, half_up,
                               join_groups)
from .plan import LEVELS

DIP_SETTLE_COLUMNS = ("id", "status", "dip", "dip_level", "score", "aux", "aux_factor", "los", "discharge", "hospital",
                      "hospital_level", "insurance", "cost", "admission_date", "discharge_date", "patient_id",
                      "special_review")


@dataclass(frozen=True)
class DipScores:
    """Base points of DIP cases (see the module doc); `catalogue` has group, _level, _score_micro,
    group_mean (fen). Scores and means are checked when the source is made (`from_pack`): a score
    that is not a positive finite number of at most 10⁹ points, a mean that is not a positive
    amount, or a group listed twice is refused, naming the group."""

    catalogue: pl.DataFrame
    scale: float
    primary_coefficient: Decimal | None = None
    extreme: Decimal | None = None
    auxiliary: bool = True

    @property
    def codes(self) -> set[str]:
        return set(self.catalogue["group"].to_list())

    @classmethod
    def from_pack(cls, loaded, policy) -> "DipScores":
        rows = [r for level in LEVELS for r in loaded.rows.get(level, ())]
        means: dict[str, int | None] = {}
        for level in LEVELS:
            expr = loaded.ast.level(level)
            if expr is None:
                continue
            table = loaded.store.frame(getattr(expr, "table", None) or expr.name)
            if "mean" in table.columns:
                for code, mean in table.select("code", "mean").iter_rows():
                    try:   # yuan, as `grouper calibrate dip` writes it: half up to the fen
                        fen = decimal_of(mean)
                        if fen is not None and not (0 < fen * 100 < MAX_COST):
                            raise ValueError
                    except (ValueError, ArithmeticError):
                        raise InputError(f"DIP catalogue, group {code}: mean {mean!r} is not a positive amount in yuan") from None
                    means.setdefault(code, None if fen is None else half_up(fen, 100))
        seen, scores = set(), []
        for r in rows:
            if r.code in seen:
                raise InputError(f"DIP catalogue: group {r.code} is listed twice: one score per group")
            seen.add(r.code)
            try:
                score = Decimal(str(r.score))
                if not score.is_finite() or not 0 < score <= MAX_POINTS:
                    raise ValueError
            except (ValueError, ArithmeticError):
                raise InputError(f"DIP catalogue, group {r.code}: score {r.score!r} is not a positive number of "
                                 f"at most {MAX_POINTS:,} points; it cannot be settled") from None
            scores.append(half_up(score, MICRO))
        frame = pl.DataFrame({"group": [r.code for r in rows], "_level": [r.level for r in rows],
                              "_score_micro": scores, "group_mean": [means.get(r.code) for r in rows]},
                             schema={"group": pl.String, "_level": pl.String, "_score_micro": pl.Int64,
                                     "group_mean": pl.Int64})
        dip = policy["dip"]
        return cls(frame, float(policy["points"]["scale"]), dip["primary_coefficient"], dip["extreme"], bool(dip["auxiliary"]))

    def attach(self, cases: pl.DataFrame, extra: pl.DataFrame | None = None) -> pl.DataFrame:
        """Base points = score × the auxiliary factor (given to six decimals), half up to the micro-point."""
        out = join_groups(cases.with_columns(pl.col("drg").alias("group")), self.catalogue, extra)
        rules = self.case_rules(POLARS)
        out = out.with_columns(rules.pop(name).alias(name) for name in ("base_micro", "rw"))
        for name, expr in rules.items():  # each in its own step, as each reads the columns before it
            out = out.with_columns(expr.alias(name))
        return out.drop("_score_micro", "_level")

    def groups(self) -> pl.DataFrame:
        return self.catalogue

    def case_rules(self, ops) -> dict:
        """base_micro, rw, and fixed_coefficient, special_review when the policy sets them (see `attach`)."""
        score = ops.col("_score_micro")
        if self.auxiliary:
            factor = (ops.col("aux_factor").fill_null(1.0) * UNIT).round(0).cast(pl.Int64)
            base = _div_half_up(_wide(score) * _wide(factor), UNIT)
        else:
            base = score
        rules = {"base_micro": base, "rw": score / MICRO / self.scale}
        if self.primary_coefficient is not None:
            rules["fixed_coefficient"] = ops.when(ops.col("_level") == "primary").then(
                ops.lit(half_up(self.primary_coefficient, COEF)))
        if self.extreme is not None:  # cost > extreme × mean, exactly (extreme has at most six decimals)
            extreme = (_wide(ops.col("cost")) * UNIT > _wide(ops.col("group_mean")) * half_up(self.extreme, UNIT)).fill_null(False)
            rules["special_review"] = ops.col("special_review") | extreme
        return rules


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
            typed = typed_fields(raw.select(carried), integer_money="fen").select(CARRIED_COLUMNS) if carried else None
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
    from ..payment.policy import Policy, load_policy
    from ..payment.api import compare_policies, settle_cases
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
