"""What a switch of scheme version costs (版本切换测算): one year of cases grouped under two versions,
relative weights calibrated from that year for each, both settled under the same policy, and the
two settlements compared per hospital and per group.

Built on the other wings' entry functions: grouping (the pipeline's batch function
`grouper.pipeline.group_frame`, the settlement fields carried by `grouper.fields.carry_fields`),
weights (`grouper.payment.weights.calibrate_weights`), settlement (`grouper.payment.api.settle_cases`) and comparison (`grouper.payment.impact.compare`). The result
is a policy comparison like `grouper settle --compare` (the same folder layout, so `grouper report`
shows it), plus what only a version switch has:

- per hospital: CMI under each version and its change, and `outcome` (winner: payment after
  sharing rises, loser: falls, unchanged);
- per source group: where the cases of each group of the old version went and what they are paid
  under each (`source_groups`), since the group codes of the two versions differ;
- the weights calibrated for each version.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from ..scheme import LoadedScheme, load_scheme

# What settlement and weight calibration read of a grouped year: the columns each version's grouping
# gives, and the settlement fields of the cases, the same under both versions (typed once).
_VERSION_COLUMNS = ("status", "mdc", "adrg", "drg")
_CASE_COLUMNS = ("id", "los", "discharge", "age", "hospital", "hospital_level", "insurance", "cost", "admission_date",
                 "discharge_date", "patient_id", "special_review")
_TYPED = tuple(c for c in _CASE_COLUMNS if c != "id")


@dataclass(frozen=True)
class Migration:
    from_version: str          # "name version" of each scheme
    to_version: str
    comparison: object         # grouper.payment.impact.Comparison (base = old version, change = new)
    source_groups: pl.DataFrame
    weights_from: pl.DataFrame  # calibrated weights, one row per DRG (grouper.payment.weights)
    weights_to: pl.DataFrame

    @property
    def hospitals(self) -> pl.DataFrame:
        return self.comparison.hospitals

    def summary(self) -> dict:
        """The key figures: cases, CMI under each version (grouped cases with a weight), payment and
        winners/losers among hospitals."""
        h = self.hospitals
        base, change = self.comparison.base.cases, self.comparison.change.cases
        return {
            "from": self.from_version, "to": self.to_version, "cases": base.height,
            "grouped_from": int((base["status"] == "grouped").sum()),
            "grouped_to": int((change["status"] == "grouped").sum()),
            "cmi_from": _cmi(base), "cmi_to": _cmi(change),
            "payment_from": int(h["payment_before"].sum() or 0), "payment_to": int(h["payment_after"].sum() or 0),
            "winners": int((h["outcome"] == "winner").sum()), "losers": int((h["outcome"] == "loser").sum()),
            "unchanged": int((h["outcome"] == "unchanged").sum()),
        }


def _cmi(cases: pl.DataFrame) -> float | None:
    """Case-mix index: the mean RW over grouped cases with a weight (as the settlement's hospital CMI)."""
    # one column filtered, not the whole case table (10^7 rows of a dozen columns)
    mean = cases.select(pl.col("rw").filter((pl.col("status") == "grouped") & pl.col("rw").is_not_null()).mean()).item()
    return None if mean is None else round(float(mean), 4)


def _grouped_year(cases, schemes: tuple[LoadedScheme, ...], *, columns=None, encoding=None,
                  threads=None) -> list[pl.DataFrame]:
    """The year grouped under each scheme (grouped frames of `_CASE_COLUMNS` + `_VERSION_COLUMNS`).

    Read once, batch by batch: each batch is canonicalised and its settlement fields typed once
    (they do not depend on the version), then grouped by the pipeline's batch function under each
    scheme and carried as `grouped_batches(carry=True)` carries them (a scheme may raise a settlement
    problem to error: the case is then invalid under that version only).
    """
    from ..fields import carry_fields, settlement_fields
    from ..pipeline import case_batches, group_frame

    shared, sides = [], [[] for _ in schemes]
    for batch in case_batches(cases, columns=columns, encoding=encoding, settlement=True):
        fields = settlement_fields(batch, _TYPED)
        for scheme, side in zip(schemes, sides):
            grouped, _ = carry_fields(scheme.plan, batch, group_frame(scheme.plan, batch, threads=threads), fields)
            side.append(grouped.select(_VERSION_COLUMNS))
        shared.append(grouped.select(_CASE_COLUMNS))
    year = pl.concat(shared, rechunk=True)
    return [pl.concat([year, pl.concat(side, rechunk=True)], how="horizontal").select(*_CASE_COLUMNS[:1],
                                                                                       *_VERSION_COLUMNS,
                                                                                       *_CASE_COLUMNS[1:])
            for side in sides]


def _with_hospital_changes(comparison) -> pl.DataFrame:
    """The comparison's hospital table with CMI per version, its change and the outcome."""
    cmi = (comparison.base.hospitals.select("hospital", pl.col("cmi").alias("cmi_before"))
           .join(comparison.change.hospitals.select("hospital", pl.col("cmi").alias("cmi_after")),
                 on="hospital", how="full", coalesce=True, nulls_equal=True))
    delta = pl.col("payment_change")
    return (comparison.hospitals.join(cmi, on="hospital", how="left", nulls_equal=True, maintain_order="left")
            .with_columns((pl.col("cmi_after") - pl.col("cmi_before")).alias("cmi_change"),
                          pl.when(delta > 0).then(pl.lit("winner")).when(delta < 0).then(pl.lit("loser"))
                          .otherwise(pl.lit("unchanged")).alias("outcome")))


def _source_groups(comparison) -> pl.DataFrame:
    """Per group of the old version (ungrouped cases as `(status)`): cases, the payment under each
    version, its change, and the group most of its cases land in under the new version.

    One pass over the cases: they are counted and summed per flow (old DRG and status → new DRG and
    status, a few thousand flows); the labels and everything else are worked out on the flows."""
    base, change = comparison.base.cases, comparison.change.cases
    cases = pl.DataFrame({"_from": base["drg"], "_from_status": base["status"], "_to": change["drg"],
                          "_to_status": change["status"], "payment_before": base["payment"],
                          "payment_after": change["payment"]})
    flows = cases.group_by("_from", "_from_status", "_to", "_to_status").agg(
        pl.len().alias("len"), pl.col("payment_before").sum(), pl.col("payment_after").sum())
    label = lambda code, status: (pl.when(pl.col(code).is_not_null()).then(pl.col(code))  # noqa: E731
                                  .otherwise(pl.format("({})", pl.col(status))))
    flows = flows.select(label("_from", "_from_status").alias("from_group"), label("_to", "_to_status").alias("to_group"),
                         "len", "payment_before", "payment_after")
    main = (flows.group_by("from_group", "to_group").agg(pl.col("len").sum())
            .sort(["from_group", "len", "to_group"], descending=[False, True, False])
            .group_by("from_group", maintain_order=True).agg(pl.col("to_group").first().alias("main_to_group"),
                                                            (pl.col("len").first()).alias("main_to_cases"),
                                                            pl.len().alias("to_groups")))
    totals = flows.group_by("from_group").agg(pl.col("len").sum().alias("cases"), pl.col("payment_before").sum(),
                                              pl.col("payment_after").sum())
    return (totals.join(main, on="from_group", how="left")
            .with_columns((pl.col("payment_after") - pl.col("payment_before")).alias("payment_change"))
            .select("from_group", "cases", "payment_before", "payment_after", "payment_change", "main_to_group",
                    "main_to_cases", "to_groups")
            .sort(["payment_change", "from_group"]))


def migration_impact(cases: pl.DataFrame | str | Path, from_scheme: LoadedScheme | str | Path,
                     to_scheme: LoadedScheme | str | Path, policy, *, weight_options=None, columns=None,
                     encoding: str | None = None, threads: int | None = None,
                     on_stage: Callable[[str], None] | None = None) -> Migration:
    """Group `cases` (raw cases carrying the settlement fields: hospital, cost, ...) under both
    schemes, calibrate weights from them for each (`weight_options`: grouper.payment.weights.
    WeightOptions, default its defaults), settle both under `policy` (a Policy or a policy file)
    and compare (base = `from_scheme`). Every case is settled under both versions: rows in = rows out.
    `on_stage(name)` is called as each stage starts ("group", "calibrate and settle" — both versions
    side by side —, "compare"): benches/bench_migration.py times them.

    The two versions are calibrated and settled at once, each in its own thread: they share nothing
    but the read-only cases and policy, and Polars and the settle kernel release the GIL, so the
    stretches where one settlement keeps a single core busy (its Python steps, the kernel's loops)
    leave the other core to the other version. Each result is what it would be alone."""
    from concurrent.futures import ThreadPoolExecutor

    from ..payment.api import settle_cases
    from ..payment.impact import compare
    from ..payment.policy import Policy, load_policy
    from ..payment.weights import calibrate_weights

    stage = on_stage or (lambda name: None)
    before = from_scheme if isinstance(from_scheme, LoadedScheme) else load_scheme(from_scheme)
    after = to_scheme if isinstance(to_scheme, LoadedScheme) else load_scheme(to_scheme)
    policy = policy if isinstance(policy, Policy) else load_policy(policy)   # read once for both threads

    def settled(grouped: pl.DataFrame):
        weights = calibrate_weights(grouped, weight_options).weights
        return settle_cases(grouped, policy, weights.select("drg", "weight", "mean")), weights

    stage("group")
    years = _grouped_year(cases, (before, after), columns=columns, encoding=encoding, threads=threads)
    stage("calibrate and settle")
    with ThreadPoolExecutor(max_workers=2) as versions:
        sides = [versions.submit(settled, grouped) for grouped in years]
        del years
        (base, weights_from), (change, weights_to) = (side.result() for side in sides)
    stage("compare")
    comparison = compare(base, change)
    comparison = replace(comparison, hospitals=_with_hospital_changes(comparison))
    name = lambda s: f"{s.ast.header.name} {s.ast.header.version}"  # noqa: E731
    return Migration(name(before), name(after), comparison, _source_groups(comparison), weights_from, weights_to)


def write_migration(migration: Migration, folder: str | Path, *, case_format: str = "parquet") -> Path:
    """The comparison folder of `grouper settle --compare` (base = old version, `change/` = new),
    plus migration.json (the key figures), source_groups.csv and the two weight tables."""
    import json

    from ..payment.settle_files import COMPARE_MONEY, write_comparison, write_table

    folder = Path(folder)
    write_comparison(migration.comparison, folder, case_format=case_format)
    write_table(migration.source_groups, folder / "source_groups.csv", COMPARE_MONEY)
    migration.weights_from.write_csv(folder / "weights_from.csv")
    migration.weights_to.write_csv(folder / "weights_to.csv")
    (folder / "migration.json").write_text(json.dumps(migration.summary(), ensure_ascii=False, indent=2),
                                           encoding="utf-8")
    return folder
