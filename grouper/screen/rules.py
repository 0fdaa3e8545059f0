"""The screen logics: each turns the year's cases into findings, with Polars expressions only.

A case logic returns one row per finding: ``row`` (the case's position in the input), the logic's
evidence columns, and for the money estimate ``alternative_drg`` or ``shifted`` where it has one. A
provider logic returns one row per unit (hospital, department or doctor) with its rate, its peers'
control limit and whether it is flagged. `Context` holds what several logics share, computed once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from .schema import LOGICS

FEN = pl.Int64
EPOCH = date(1970, 1, 1)


@dataclass
class Context:
    """The cases (with ``row``), the group weights, and lazily built shared tables."""

    cases: pl.DataFrame
    weights: pl.DataFrame          # drg, weight
    _cache: dict = field(default_factory=dict)

    def group_stats(self) -> pl.DataFrame:
        """Per (drg, hospital_level): cases, median cost (fen) and median LOS of the grouped cases."""
        if "stats" not in self._cache:
            self._cache["stats"] = (
                self.cases.lazy().filter(pl.col("drg").is_not_null() & pl.col("cost").is_not_null())
                .group_by("drg", "hospital_level")
                .agg(pl.len().alias("group_cases"), pl.col("cost").median().alias("group_median_cost"),
                     pl.col("los").median().alias("group_median_los"))
                .collect())
        return self._cache["stats"]

    def group_ranges(self, suffixes: tuple[str, ...]) -> pl.DataFrame:
        """Per (drg, hospital_level) of the groups whose code ends with one of `suffixes`: cases, and the first and third
        quartiles of log cost and log LOS (each at least 1 fen / 1 day; linear interpolation)."""
        key = ("ranges", suffixes)
        if key not in self._cache:
            quartiles = [_log_at_least_1(c).quantile(q, interpolation="linear").alias(f"{c}_q{int(q * 4)}")
                         for c in ("cost", "los") for q in (0.25, 0.75)]
            self._cache[key] = (
                self.cases.lazy().filter(pl.any_horizontal([pl.col("drg").str.ends_with(x) for x in suffixes])
                                         & pl.col("cost").is_not_null() & pl.col("los").is_not_null())
                .group_by("drg", "hospital_level").agg(pl.len().alias("cases"), *quartiles).collect())
        return self._cache[key]

    def case_weight(self) -> pl.Series:
        """Each case's group weight (null outside the weights table), looked up once."""
        if "weight" not in self._cache:
            self._cache["weight"] = self.cases.select(weight_of(pl.col("drg"), self.weights)).to_series()
        return self._cache["weight"]

    def mcc_cases(self, suffix: str) -> tuple[pl.Series, pl.Series]:
        """Per case: whether its ADRG has an MCC group (a group code ending in `suffix`), and whether it is in one."""
        if ("mcc", suffix) not in self._cache:
            mcc = self.cases["drg"].str.ends_with(suffix).fill_null(False)
            split = self.cases["adrg"].filter(mcc).unique()
            self._cache[("mcc", suffix)] = (self.cases["adrg"].is_in(split.implode()).fill_null(False), mcc)
        return self._cache[("mcc", suffix)]

    def unit_key(self, by: str) -> pl.Series:
        """One 64-bit hash per case of its unit's codes (null when one is missing): see `units_of`."""
        if ("unit", by) not in self._cache:
            keys = UNIT_KEYS[by]
            present = pl.all_horizontal([pl.col(k).is_not_null() for k in keys])
            key = (self.hash_of(keys[0]) if len(keys) == 1
                   else pl.struct([self.hash_of(k) for k in keys]).hash(seed=HASH_SEED))
            self._cache[("unit", by)] = self.cases.select(pl.when(present).then(key)).to_series().rename("_u")
        return self._cache[("unit", by)]

    def hash_of(self, column: str) -> pl.Series:
        """The 64-bit hash of a code column, one per case (see `hashed`); the patient's is kept (several logics use it),
        the others are cheaper to compute again than to hold."""
        if column != "patient_id":
            return self.cases[column].hash(seed=HASH_SEED)
        if "patient_hash" not in self._cache:
            self._cache["patient_hash"] = self.cases[column].hash(seed=HASH_SEED)
        return self._cache["patient_hash"]

    def stays(self) -> pl.DataFrame:
        """Every dated stay of a known patient (``row``, ``_p`` the patient's hash, admission and discharge dates), sorted
        by patient, admission, discharge and row: the one sort every across-stays logic shares.

        Keys are 64-bit hashes of the codes: sorting and comparing integers instead of 10 M strings. A logic confirms
        what it finds on the codes themselves (`same_codes`), so a hash collision can never make two patients one.
        """
        if "stays" not in self._cache:
            dated = (self.cases.lazy()
                     .filter(pl.col("patient_id").is_not_null() & pl.col("admission_date").is_not_null()
                             & pl.col("discharge_date").is_not_null())
                     .select("row", "admission_date", "discharge_date").collect())
            self._cache["stays"] = _sorted_stays(dated.with_columns(self.hash_of("patient_id").gather(dated["row"]).alias("_p")))
        return self._cache["stays"]

    def stays_with(self, columns: tuple[str, ...]) -> pl.DataFrame:
        """`stays` with the hashes of these code columns beside (named as in `HASHED`)."""
        stays = self.stays()
        return stays.with_columns(self.hash_of(c).gather(stays["row"]).alias(HASHED[c]) for c in columns)

    def stays_by(self, columns: tuple[str, ...]) -> pl.DataFrame:
        """`stays` grouped by the patient and these code columns (``_g``, one combined hash), each group's stays still in
        time order: a stable sort on one integer, cheaper than sorting again by every key and the time (not kept:
        `readmitted` keeps what it finds)."""
        stays = self.stays_with(columns)
        stays = stays.select("row", "admission_date", "discharge_date",
                             pl.struct("_p", *[HASHED[c] for c in columns]).hash(seed=HASH_SEED).alias("_g"))
        return stays.sort("_g", maintain_order=True)

    def same_codes(self, rows: pl.Series, other: pl.Series, columns: list[str]) -> pl.Series:
        """Whether each pair of rows has equal (non-null) values in every column: the exact check behind a hash."""
        if not len(rows):
            return pl.Series([], dtype=pl.Boolean)
        checks = [(self.cases[c].gather(rows) == self.cases[c].gather(other)).fill_null(False) for c in columns]
        out = checks[0]
        for check in checks[1:]:
            out = out & check
        return out

    def readmitted(self, days: int, *, same_hospital: bool, same: str) -> pl.DataFrame:
        """Stays that follow an earlier stay of the same patient (same hospital / ADRG / DRG as asked) within `days`."""
        key = (days, same_hospital, same)
        if key not in self._cache:
            exact = ["patient_id", *(["hospital"] if same_hospital else []), *([same] if same != "any" else [])]
            stays = self.stays_by(tuple(exact[1:])) if exact[1:] else self.stays()
            group = "_g" if exact[1:] else "_p"
            same_key = (pl.col(group) == pl.col(group).shift(1)).fill_null(False)
            gap = (pl.col("admission_date") - pl.col("discharge_date").shift(1)).dt.total_days()
            found = (stays.lazy().with_columns(gap.alias("days_between"), pl.col("row").shift(1).alias("previous_row"))
                     .filter(same_key & (pl.col("days_between") >= 0) & (pl.col("days_between") <= days))
                     .select("row", "previous_row", "days_between").collect())
            found = found.filter(self.same_codes(found["row"], found["previous_row"], exact))
            self._cache[key] = found.with_columns(self.cases["hospital"].gather(found["previous_row"]).alias("previous_hospital"))
        return self._cache[key]


HASHED = {"patient_id": "_p", "hospital": "_h", "adrg": "_a", "drg": "_d"}
HASH_SEED = 20240601


def hashed(column: str, name: str) -> pl.Expr:
    """A 64-bit hash of a code column (fixed seed): a sort and group key far cheaper than the text."""
    return pl.col(column).hash(seed=HASH_SEED).alias(name)


def _sorted_stays(frame: pl.DataFrame) -> pl.DataFrame:
    """row, _p, admission_date, discharge_date sorted by (_p, admission, discharge, row). When the time packs exactly
    into one integer (admission day from the first: 20 bits, LOS: 12, row: 32) only two integer columns are sorted
    and the rest is read back from the packed time; else the four columns are sorted as they are."""
    if frame.height:
        first = frame["admission_date"].min()
        span = (frame["admission_date"].max() - first).days
        los = (pl.col("discharge_date") - pl.col("admission_date")).dt.total_days()
        shortest, longest = frame.select(los.min().alias("shortest"), los.max().alias("longest")).row(0)
        if span < 1 << 19 and shortest >= 0 and longest < 1 << 12 and frame.height < 1 << 32:
            first_day = (first - EPOCH).days
            day = pl.col("_t") // (1 << 44) + first_day
            keyed = frame.select("_p", ((pl.col("admission_date").cast(pl.Int64) - first_day) * (1 << 44)
                                        + los * (1 << 32) + pl.col("row").cast(pl.Int64)).alias("_t"))
            return keyed.sort("_p", "_t").select(
                (pl.col("_t") % (1 << 32)).cast(frame["row"].dtype).alias("row"), "_p",
                day.cast(pl.Int32).cast(pl.Date).alias("admission_date"),
                (day + pl.col("_t") // (1 << 32) % (1 << 12)).cast(pl.Int32).cast(pl.Date).alias("discharge_date"))
    return frame.select("row", "_p", "admission_date", "discharge_date").sort("_p", "admission_date", "discharge_date", "row")


def _log_at_least_1(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64).clip(lower_bound=1).log()


def weight_of(drg: pl.Expr, weights: pl.DataFrame) -> pl.Expr:
    return drg.replace_strict(weights["drg"], weights["weight"], default=None, return_dtype=pl.Float64)


def _with_stats(frame: pl.LazyFrame, stats: pl.DataFrame, min_cases: int, on: str = "drg",
                prefix: str = "group") -> pl.LazyFrame:
    """Join a group's stats (median cost and LOS at the case's hospital level) when the group has enough cases."""
    table = stats.lazy().filter(pl.col("group_cases") >= min_cases).rename(
        {"drg": on, "group_median_cost": f"{prefix}_median_cost", "group_median_los": f"{prefix}_median_los",
         "group_cases": f"{prefix}_cases"})
    return frame.join(table, on=[on, "hospital_level"], how="left")


# ---- per case ------------------------------------------------------------------------------------

def validation_warning(ctx: Context, p: dict) -> pl.DataFrame:
    names = list(p["warnings"])
    hit = pl.col("warnings").list.eval(pl.element().is_in(names)).list.any().fill_null(False)
    if "reason" in ctx.cases.columns:
        hit = hit | pl.col("reason").is_in(names).fill_null(False)
    return ctx.cases.lazy().filter(hit).select(
        "row", pl.col("warnings").list.join("|"), *[c for c in ("reason", "sex", "age") if c in ctx.cases.columns]).collect()


def long_stay(ctx: Context, p: dict) -> pl.DataFrame:
    return ctx.cases.lazy().filter(pl.col("los") >= p["min_los"]).select("row", "los").collect()


def cost_outlier(ctx: Context, p: dict) -> pl.DataFrame:
    ratio = float(p["ratio"])
    frame = _with_stats(ctx.cases.lazy().select("row", "drg", "hospital_level", "cost"), ctx.group_stats(),
                        p["min_group_cases"])
    return (frame.filter(pl.col("cost") >= ratio * pl.col("group_median_cost"))
            .select("row", "cost", pl.col("group_median_cost").round().cast(FEN),
                    (pl.col("cost") / pl.col("group_median_cost")).round(2).alias("cost_ratio")).collect())


def mcc_upcoding(ctx: Context, p: dict) -> pl.DataFrame:
    """高套分组, judged the way a reviewer would: first the units whose MCC share stands above their peers' control
    limit (`within`), then, there, the MCC cases whose cost and stay both lie within the normal range of the group the
    ADRG has without complications (Tukey's fence Q3 + `normal_range` × IQR on the log scale, at the level: costs
    and stays are skewed): cases where nothing but the coded MCC diagnosis points to an MCC. Cost and stay alone cannot
    tell an upcoded case from a genuine MCC case (the two groups' costs overlap); the unit's excess MCC share is
    what makes the list worth reviewing."""
    suffix, k = p["mcc_suffix"], float(p["normal_range"])
    modes = [int(m) for m in p["discharge"]]
    frame = ctx.cases.lazy().filter(pl.col("drg").str.ends_with(suffix) & pl.col("discharge").is_in(modes)).select(
        "row", "drg", "hospital_level", "cost", "los", pl.col("drg").str.slice(0, pl.col("drg").str.len_chars() - len(suffix))
        .alias("_adrg"))
    # each (ADRG, level)'s alternative: the first suffix whose group has enough cases there, with its normal range
    ranges = ctx.group_ranges(tuple(p["alternative_suffixes"])).filter(pl.col("cases") >= p["min_group_cases"])
    fence = lambda c: (pl.col(f"{c}_q3") + k * (pl.col(f"{c}_q3") - pl.col(f"{c}_q1"))).alias(f"_{c}_fence")  # noqa: E731
    alternatives = pl.concat([
        ranges.filter(pl.col("drg").str.ends_with(alt)).select(
            pl.col("drg").str.slice(0, pl.col("drg").str.len_chars() - len(alt)).alias("_adrg"), "hospital_level",
            pl.lit(order).alias("_order"), pl.col("drg").alias("alternative_drg"), fence("cost"), fence("los"))
        for order, alt in enumerate(p["alternative_suffixes"])])   # not empty: the screens file is checked
    alternatives = alternatives.sort("_order").unique(["_adrg", "hospital_level"], keep="first").drop("_order")
    frame = frame.join(alternatives.lazy(), on=["_adrg", "hospital_level"], how="inner")
    # compared on the log scale, as the quartiles were taken (a case exactly at the fence is inside)
    frame = frame.filter((_log_at_least_1("cost") <= pl.col("_cost_fence")) & (_log_at_least_1("los") <= pl.col("_los_fence")))
    shown = ["row", "drg", "alternative_drg", "cost", pl.col("_cost_fence").exp().round().cast(FEN).alias("alternative_cost_limit"),
             "los", pl.col("_los_fence").exp().round(1).alias("alternative_los_limit")]
    if p["within"] != "none":
        keys = UNIT_KEYS[p["within"]]
        units = provider_share(ctx, {"area": "mcc", "mcc_suffix": suffix, "by": p["within"], "control": p["control"],
                                     "fence": p["fence"], "percentile": p["percentile"], "min_cases": p["min_cases"],
                                     "peers": p["peers"]}).filter("flagged")
        units = units.select(*keys, pl.col("rate").round(4).alias("unit_mcc_share"), pl.col("limit").round(4).alias("unit_limit"))
        frame = (frame.join(ctx.cases.lazy().select("row", *keys), on="row", how="left")
                 .join(units.lazy(), on=keys, how="inner"))
        shown += ["unit_mcc_share", "unit_limit"]
    return frame.select(shown).sort("row").collect()


def low_weight_admission(ctx: Context, p: dict) -> pl.DataFrame:
    modes = [int(m) for m in p["discharge"]]
    frame = ctx.cases.lazy().select("row", "drg", "hospital_level", "cost", "los", "discharge",
                                    ctx.case_weight().alias("weight"))
    frame = frame.filter((pl.col("weight") <= float(p["max_weight"])) & (pl.col("los") <= p["max_los"])
                         & pl.col("discharge").is_in(modes))
    frame = _with_stats(frame, ctx.group_stats(), p["min_group_cases"])
    return (frame.filter(pl.col("cost") <= float(p["cost_ratio"]) * pl.col("group_median_cost"))
            .select("row", "drg", pl.col("weight").round(4), "los", "cost", pl.col("group_median_cost").round().cast(FEN))
            .collect())


def self_pay_share(ctx: Context, p: dict) -> pl.DataFrame:
    share = (1 - pl.col("fund_paid") / pl.col("cost")).alias("self_pay_share")
    frame = (ctx.cases.lazy().filter((pl.col("cost") >= max(p["min_cost"], 1)) & pl.col("fund_paid").is_not_null())
             .select("row", "insurance", "hospital_level", "cost", share))
    medians = frame.group_by("insurance", "hospital_level").agg(pl.col("self_pay_share").median().alias("median_self_pay_share"))
    frame = frame.join(medians, on=["insurance", "hospital_level"], how="left", nulls_equal=True)
    excess = pl.col("self_pay_share") - pl.col("median_self_pay_share")
    return (frame.filter(excess >= float(p["excess"]))
            .select("row", pl.col("self_pay_share").round(4), pl.col("median_self_pay_share").round(4),
                    (pl.col("cost") * excess + 0.5).floor().cast(FEN).alias("shifted")).collect())


# ---- across stays --------------------------------------------------------------------------------

def readmission(ctx: Context, p: dict) -> pl.DataFrame:
    found = ctx.readmitted(p["days"], same_hospital=p["same_hospital"], same=p["same"])
    ids = ctx.cases["id"]
    return found.select("row", ids.gather(found["previous_row"]).alias("previous_id"), "previous_hospital",
                        "days_between")


def continuous_stay(ctx: Context, p: dict) -> pl.DataFrame:
    window, min_days = p["window"], p["min_days"]
    days = (pl.col("discharge_date") - pl.col("admission_date")).dt.total_days().clip(lower_bound=1)
    lazy = (ctx.cases.lazy().filter(pl.col("patient_id").is_not_null() & pl.col("admission_date").is_not_null()
                                    & pl.col("discharge_date").is_not_null())
            .select("row", hashed("patient_id", "_p"), days.alias("_days")))
    # candidates: patients whose stays add up to min_days in all (by hash), then exactly, on their few rows
    heavy = lazy.group_by("_p").agg(pl.col("_days").sum()).filter(pl.col("_days") >= min_days).select("_p")
    rows = lazy.join(heavy, on="_p", how="semi").select("row").collect()["row"]
    subset = ctx.cases.select("row", "patient_id", "admission_date", "discharge_date").gather(rows)
    rolling = lambda column: pl.col(column).rolling_sum_by("discharge_date", window_size=f"{window}d").over("patient_id")  # noqa: E731
    return (subset.lazy().with_columns(days.alias("_days"), pl.lit(1).alias("_one"))
            .sort("patient_id", "discharge_date", "row")
            .with_columns(rolling("_days").alias("days_in_hospital"), rolling("_one").alias("stays"))
            .filter(pl.col("days_in_hospital") >= min_days)
            .select("row", pl.col("days_in_hospital").clip(upper_bound=window), "stays").sort("row").collect())


def transfer_chain(ctx: Context, p: dict) -> pl.DataFrame:
    stays = ctx.stays_with(("hospital",))
    gap = (pl.col("admission_date") - pl.col("discharge_date").shift(1)).dt.total_days()
    link = ((pl.col("_p") == pl.col("_p").shift(1)) & (pl.col("_h") != pl.col("_h").shift(1))
            & (gap >= 0) & (gap <= p["days"])).fill_null(False)
    linked = stays.select("row", pl.col("row").shift(1).alias("previous_row"), link.alias("_link"))
    # the exact check of each link: the same patient, another hospital
    candidates = linked.filter("_link")
    confirmed = candidates.filter(ctx.same_codes(candidates["row"], candidates["previous_row"], ["patient_id"])
                                  & ~ctx.same_codes(candidates["row"], candidates["previous_row"], ["hospital"]))
    linked = linked.with_columns(pl.col("row").is_in(confirmed["row"].implode()).alias("_link"))
    chains = linked.with_columns((~pl.col("_link")).cum_sum().alias("_chain"))
    long = (chains.lazy().filter("_link").group_by("_chain").agg((pl.len() + 1).alias("chain_stays"))
            .filter(pl.col("chain_stays") >= p["min_stays"]))
    members = chains.lazy().join(long, on="_chain", how="inner").collect()
    hospitals = ctx.cases["hospital"].gather(members["row"])
    members = members.with_columns(hospitals.alias("_hospital")).with_columns(
        pl.col("_hospital").n_unique().over("_chain").alias("chain_hospitals"))
    return (members.filter("_link").select("row", pl.col("chain_stays").cast(pl.Int64), pl.col("chain_hospitals").cast(pl.Int64))
            .sort("row"))


def shared_contact(ctx: Context, p: dict) -> pl.DataFrame:
    column, least = p["field"], p["min_patients"]
    present = pl.col(column).is_not_null() & (pl.col(column) != "") & pl.col("patient_id").is_not_null()
    keyed = (ctx.cases.lazy().with_columns(ctx.hash_of("patient_id").alias("_p")).filter(present)
             .select("row", hashed(column, "_c"), "_p").collect())
    # candidates by hash, then counted exactly on their rows (a collision can add a candidate, never a finding); a
    # contact on fewer than `least` stays cannot have `least` patients, and counting rows is cheaper than patients
    busy = keyed.lazy().group_by("_c").len().filter(pl.col("len") >= least).select("_c")
    keyed = keyed.lazy().join(busy, on="_c", how="semi")
    shared = keyed.group_by("_c").agg(pl.col("_p").n_unique().alias("_n")).filter(pl.col("_n") >= least).select("_c")
    rows = keyed.join(shared, on="_c", how="semi").select("row").collect()["row"].sort()
    subset = ctx.cases.select("row", "patient_id", pl.col(column).alias("contact")).gather(rows)
    counted = subset.group_by("contact").agg(pl.col("patient_id").n_unique().alias("patients_sharing"))
    return (subset.join(counted.filter(pl.col("patients_sharing") >= least), on="contact", how="inner")
            .sort("row").select("row", "contact", "patients_sharing"))


# ---- across providers ----------------------------------------------------------------------------

UNIT_KEYS = {"hospital": ["hospital"], "dept": ["hospital", "dept"], "doctor": ["hospital", "doctor"]}


def _limits(units: pl.LazyFrame, p: dict) -> pl.DataFrame:
    """Each unit's control limit (a percentile of its eligible peers' rates, or their outlier fence) and whether it is above it."""
    peers = ["peer_level"] if p["peers"] == "hospital_level" else []
    eligible = pl.col("cases") >= p["min_cases"]
    rates = pl.col("rate").filter(eligible)
    if p["control"] == "fence":   # Tukey's outlier fence: Q3 + k × IQR of the peers' rates
        q1, q3 = rates.quantile(0.25, interpolation="linear"), rates.quantile(0.75, interpolation="linear")
        limit = q3 + float(p["fence"]) * (q3 - q1)
    else:
        limit = rates.quantile(float(p["percentile"]) / 100, interpolation="linear")
    units = units.with_columns((limit.over(peers) if peers else limit).alias("limit"))
    return units.with_columns((eligible & (pl.col("rate") > pl.col("limit"))).fill_null(False).alias("flagged")).collect()


def units_of(ctx: Context, by: str, columns=(), **series: pl.Series) -> tuple[list[str], pl.LazyFrame]:
    """The unit's code columns, and the cases that have a unit: those codes, the case columns named, the `series`
    given (one value per case) and ``_u``: the unit's key, one 64-bit hash of its codes (grouping 10 M texts by a few
    thousand units costs seconds, one integer a fraction; the odds of two units' hashes colliding are below 1e-9)."""
    keys = UNIT_KEYS[by]
    named = list(dict.fromkeys([*keys, *columns]))
    frame = ctx.cases.select(named).with_columns(ctx.unit_key(by).alias("_u"), *[v.alias(k) for k, v in series.items()])
    return keys, frame.lazy().filter(pl.col("_u").is_not_null())


def provider_share(ctx: Context, p: dict) -> pl.DataFrame:
    area = p["area"]
    series, columns = {}, ["row", "drg", "hospital_level"]
    if area == "mcc":
        series["_in"], series["_target"] = ctx.mcc_cases(p["mcc_suffix"])
    elif area == "low_weight":
        series["_target"] = (ctx.case_weight() <= float(p["max_weight"])).fill_null(False)
    elif area == "one_day":
        columns += ["los", "discharge"]
    keys, lazy = units_of(ctx, p["by"], columns, **series)
    lazy = lazy.filter(pl.col("drg").is_not_null())
    if area == "mcc":
        lazy = lazy.filter("_in")
    elif area == "one_day":
        lazy = lazy.filter(pl.col("los").is_not_null() & ~pl.col("discharge").is_in([2, 5]).fill_null(False)
                           ).with_columns((pl.col("los") <= 1).alias("_target"))
    elif area == "readmission":
        again = ctx.readmitted(p["days"], same_hospital=False, same="any").select("row")
        lazy = lazy.with_columns(pl.col("row").is_in(again["row"].implode()).alias("_target"))
    units = lazy.group_by("_u").agg(*[pl.col(k).first() for k in keys], pl.col("hospital_level").first().alias("peer_level"),
                                    pl.len().alias("cases"), pl.col("_target").sum().alias("target_cases")).drop("_u")
    units = units.with_columns((pl.col("target_cases") / pl.col("cases")).alias("rate"))
    return _limits(units, p).sort(keys)


def cmi_jump(ctx: Context, p: dict) -> pl.DataFrame:
    keys, lazy = units_of(ctx, p["by"], ["hospital_level", "discharge_date"], _w=ctx.case_weight())
    lazy = lazy.with_columns(pl.col("discharge_date").dt.year().alias("_year")).filter(
        pl.col("_w").is_not_null() & pl.col("_year").is_not_null())
    # the last two discharge years that hold a real year of cases: a few stray discharges (a late record, a stay
    # moved over new year) do not make a year (at least a tenth of the largest year's cases)
    counts = (ctx.cases.lazy().group_by(pl.col("discharge_date").dt.year().alias("year")).len().drop_nulls().sort("year")
              .collect())
    years = counts.filter(pl.col("len") >= pl.col("len").max() / 10)["year"].to_list()
    if len(years) < 2:
        return pl.DataFrame()
    last, before = years[-1], years[-2]
    per_year = lazy.filter(pl.col("_year").is_in([before, last])).group_by("_u", "_year").agg(
        *[pl.col(k).first() for k in keys], pl.col("hospital_level").first().alias("peer_level"), pl.len().alias("n"),
        pl.col("_w").mean().alias("cmi")).drop("_u")
    now = per_year.filter(pl.col("_year") == last).drop("_year")
    then = per_year.filter(pl.col("_year") == before).select(*keys, pl.col("n").alias("n0"), pl.col("cmi").alias("cmi0"))
    units = now.join(then, on=keys, how="inner").with_columns(
        pl.min_horizontal("n", "n0").alias("cases"), (pl.col("cmi") / pl.col("cmi0") - 1).alias("rate"))
    return _limits(units.select(*keys, "peer_level", "cases", "cmi0", "cmi", "rate"), p).sort(keys)


FUNCTIONS = {name: globals()[name] for name in LOGICS}
