"""Planted, labelled anomalies in a synthetic history, so that the screens can be measured.

`plant_anomalies(history, scheme)` takes a history from `grouper synth history` (raw cases with the
settlement fields) and returns it with four more columns: ``doctor`` (a few per hospital department),
``phone`` and ``address`` (one per patient), and ``planted`` (null for a clean case, else the kind of
anomaly planted in it). Each kind is planted at its own seeded set of hospitals (`hospital_share` of
them), in a share of their eligible cases, on clean rows only (no row gets two kinds):

- ``upcoded_mcc`` (高套, 虚增诊断): a case of a group without complications (code ending 5) gains the
  secondary diagnoses of a case of the same ADRG's MCC group (ending 1); its principal diagnosis,
  procedures, patient, cost and stay stay its own. Kept only where the case then really groups into the
  MCC group.
- ``split_stay`` (分解住院): a stay is cut in two: the first part keeps the row (``split_stay_first``),
  another row of the same hospital becomes the second part: same patient, codes and group, admitted
  0–3 days after the first part's discharge and discharged on the original stay's day; stay, cost and
  fund payment are shared out.
- ``shared_phone`` (多人共用电话): groups of 6–12 patients at one hospital get one phone number.
- ``low_weight_admission`` (低标入院): a case is replaced by a one- or two-day stay of a low-weight
  group (weight ≤ 0.6 by the history's own costs) costing 10–35 % of that group's median, discharged home
  on the case's own discharge day.
- ``cost_shift`` (转嫁费用): the fund pays 30–60 % of what it paid; the patient pays the rest.
- ``shared_address`` (多人共用地址): groups of 11–16 patients at one hospital get one address.
- ``transfer_chain`` (转院链): a stay (``transfer_chain_first``, kept) is followed by two more of the same
  patient and record at two other hospitals, each admitted on the day of the previous discharge or the
  next, each billing the first stay's stay and cost (the rows of two clean cases elsewhere become them).

A record that already trips one of the scheme's `warn` rules (e.g. a female-only diagnosis on a man:
possible in a history resampled from a case source) is labelled ``coded_inconsistent``: it is a real
finding for the sex and age screens, so it is not counted as clean.

Nothing here is real data; the planting is seeded (same history and seed: same result).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import polars as pl

KINDS = ("upcoded_mcc", "split_stay", "shared_phone", "low_weight_admission", "cost_shift", "shared_address",
         "transfer_chain")
LABELS = (*KINDS, "split_stay_first", "transfer_chain_first", "coded_inconsistent")


@dataclass(frozen=True)
class PlantOptions:
    hospital_share: float = 0.05      # share of hospitals where each kind is planted (at least one)
    upcoded_mcc: float = 0.5          # share of a planting hospital's eligible cases (ending 5, ADRG has a 1)
    split_stay: float = 0.03          # share of a planting hospital's cases split in two
    shared_phone: float = 0.02        # share of a planting hospital's cases in a shared-phone group
    low_weight_admission: float = 0.08
    cost_shift: float = 0.05
    shared_address: float = 0.03      # share of a planting hospital's cases in a shared-address group
    transfer_chain: float = 0.01      # share of a planting hospital's cases that start a transfer chain
    low_weight: float = 0.6           # weight at most this: a low-weight group
    doctors_per_dept: int = 4


def _dense(expr: pl.Expr) -> pl.Expr:
    return expr.rank("dense").cast(pl.Int64)


def _added_diagnoses(own: str, donor: str) -> str:
    """The case's own diagnoses (principal first), then the donor's secondary diagnoses it does not already have."""
    codes = [c for c in own.split("|") if c]
    return "|".join(codes + [c for c in donor.split("|")[1:] if c and c not in codes])


def _contact_groups(rows: np.ndarray, hospitals: np.ndarray, patients: np.ndarray, rng, low: int, high: int) -> list[np.ndarray]:
    """Groups of `low`-`high` of `rows` at one hospital (hospitals in order, rows in order), of distinct patients."""
    by_h: dict[str, list[int]] = {}
    for r in rows.tolist():
        by_h.setdefault(hospitals[r], []).append(r)
    groups = []
    for h in sorted(by_h):
        members, i = by_h[h], 0
        while len(members) - i >= low:
            size = min(int(rng.integers(low, high + 1)), len(members) - i)
            group = members[i:i + size]
            if len({patients[r] for r in group}) == len(group):
                groups.append(np.array(group, dtype=np.int64))
            i += size
    return groups


def plant_anomalies(history: pl.DataFrame, scheme=None, *, seed: int = 0, options: PlantOptions | None = None,
                    drg: pl.Series | None = None, chunk: int = 0) -> pl.DataFrame:
    """The history with doctor, phone, address and planted columns (see the module doc). `drg`: the rows'
    groups when known (else they are grouped here); `chunk`: the chunk's number when a history is planted
    chunk by chunk (each chunk draws its own rows; the planting hospitals are the same in every chunk)."""
    from ..payment._common import group_cases, loaded_scheme

    o = options or PlantOptions()
    scheme = loaded_scheme(scheme)
    rng = np.random.default_rng([seed, 0x5C4EE, chunk])
    n = history.height
    if drg is None:
        drg = group_cases(history, scheme)["drg"]
    frame = history.with_columns(drg.alias("_drg"), pl.int_range(n, dtype=pl.Int64).alias("_row"))
    # Personal fields from the patient's number (a bijection: one phone and one address per patient) and
    # doctors per department: the same in every chunk of a history written chunk by chunk.
    patient = pl.coalesce(pl.col("patient_id").cast(pl.String).str.extract(r"(\d+)$").cast(pl.Int64, strict=False),
                          _dense(pl.col("patient_id")) + 10**12)
    depts = frame["dept"].cast(pl.String).fill_null("").unique().to_list()
    dept_no = {d: zlib.crc32(d.encode()) % 1000 for d in depts}
    doctor_k = pl.Series(rng.integers(1, o.doctors_per_dept + 1, n))
    frame = frame.with_columns(
        pl.format("{}-D{}-{}", pl.col("hospital"), pl.col("dept").cast(pl.String).fill_null("").replace_strict(
            dept_no, return_dtype=pl.Int64), pl.lit(doctor_k)).alias("doctor"),
        pl.format("13{}", ((patient * 7919 + seed) % 1_000_000_000 + 1_000_000_000).cast(pl.String).str.slice(1)).alias("phone"),
        pl.format("{}路{}号", ((patient * 104729 + seed) % 997).cast(pl.String), (patient % 100_003).cast(pl.String))
        .alias("address"))
    hospitals = frame["hospital"].cast(pl.String).to_numpy()
    unique_h = np.unique(hospitals)
    n_plant = max(1, round(o.hospital_share * len(unique_h)))
    # each kind's hospitals: the first n by a hash of (seed, kind, hospital), so every chunk picks the same ones
    sites = {kind: set(sorted(unique_h, key=lambda h: zlib.crc32(f"{seed}:{kind}:{h}".encode()))[:n_plant]) for kind in KINDS}
    at_site = {kind: np.isin(hospitals, list(sites[kind])) for kind in KINDS}
    drgs = frame["_drg"].fill_null("").to_numpy().astype(str)
    costs = frame["cost"].to_numpy().astype(float)
    updates: dict[str, dict[int, object]] = {}

    planted_codes = np.zeros(n, dtype=np.int8)   # 0 clean, else 1 + the index of the label in LABELS

    def clean(mask):
        return mask & (planted_codes == 0)

    def mark(rows, label):
        planted_codes[rows] = LABELS.index(label) + 1

    def set_values(column, rows, values):
        column_updates = updates.setdefault(column, {})
        values = values.tolist() if isinstance(values, np.ndarray) else list(values)
        for r, v in zip(rows.tolist(), values):
            column_updates[r] = v

    # upcoded MCC: a donor of the ADRG's MCC group at the same hospital level
    level = frame["hospital_level"].cast(pl.Int64).fill_null(0).to_numpy()
    by_drg: dict[str, np.ndarray] = {}
    for code in np.unique(drgs):
        by_drg[code] = np.flatnonzero(drgs == code)
    eligible = np.array([d.endswith("5") and (d[:-1] + "1") in by_drg for d in drgs])
    rows = np.flatnonzero(clean(eligible & at_site["upcoded_mcc"]) & (rng.random(n) < o.upcoded_mcc))
    donors = np.array([rng.choice(by_drg[drgs[r][:-1] + "1"]) for r in rows], dtype=np.int64)
    recoded = ["dx", "proc", "sex", "age", "age_days", "weight"]
    candidates = {"upcoded_mcc": (rows, donors)}
    mark(rows, "upcoded_mcc")

    # low-weight admissions: a donor of a low-weight group; cost from that group's median at the hospital level
    costed = frame.filter(pl.col("_drg").is_not_null() & pl.col("cost").is_not_null())
    overall = costed["cost"].mean() or 1.0
    weights = costed.group_by("_drg").agg((pl.col("cost").mean() / overall).alias("w"), pl.len().alias("k"))
    low = weights.filter((pl.col("w") <= o.low_weight) & (pl.col("k") >= 20))["_drg"].to_list()
    low_rows = np.flatnonzero(np.isin(drgs, low))
    rows = np.flatnonzero(clean(at_site["low_weight_admission"]) & (rng.random(n) < o.low_weight_admission))
    if len(low_rows) and len(rows):
        donors = low_rows[rng.integers(0, len(low_rows), len(rows))]
        candidates["low_weight_admission"] = (rows, donors)
        mark(rows, "low_weight_admission")
    medians = dict(((d, lv), m) for d, lv, m in costed.group_by("_drg", "hospital_level").agg(pl.col("cost").median()).iter_rows())

    # regroup the recoded rows: keep those that land where intended
    moved_rows = np.concatenate([c[0] for c in candidates.values()]) if candidates else np.zeros(0, np.int64)
    moved_donors = np.concatenate([c[1] for c in candidates.values()]) if candidates else np.zeros(0, np.int64)
    if len(moved_rows):
        low_rows_mask = planted_codes[moved_rows] == LABELS.index("low_weight_admission") + 1
        # an upcoded case keeps its own record and gains the donor's secondary diagnoses (虚增诊断); a low-weight
        # admission is the donor's record
        source = np.where(low_rows_mask, moved_donors, moved_rows)
        own_dx = frame["dx"].cast(pl.String).fill_null("").gather(moved_rows).to_list()
        donor_dx = frame["dx"].cast(pl.String).fill_null("").gather(moved_donors).to_list()
        new_dx = [donor if low else _added_diagnoses(own, donor) for own, donor, low in zip(own_dx, donor_dx, low_rows_mask)]
        values = {column: frame[column].gather(source) for column in (*recoded, "dept") if column != "dx"}
        values["dx"] = pl.Series("dx", new_dx, dtype=pl.String)
        trial = frame[moved_rows.tolist()].with_columns(
            series.rename(column).cast(frame[column].dtype) for column, series in values.items())
        trial = trial.with_columns(pl.when(pl.lit(low_rows_mask)).then(pl.lit(1)).otherwise(pl.col("discharge")).alias("discharge"))
        new_drg = group_cases(trial, scheme)["drg"].fill_null("").to_numpy().astype(str)
        ok = new_drg == drgs[moved_donors]
        planted_codes[moved_rows[~ok]] = 0
        keep_rows, keep_donors = moved_rows[ok], moved_donors[ok]
        for column, series in values.items():
            set_values(column, keep_rows, series.filter(pl.Series(ok)).to_list())
        lw = keep_rows[planted_codes[keep_rows] == LABELS.index("low_weight_admission") + 1]
        lw_donor = keep_donors[planted_codes[keep_rows] == LABELS.index("low_weight_admission") + 1]
        if len(lw):
            los = rng.integers(1, 3, len(lw))
            base = np.array([medians.get((drgs[d], level[r]) if level[r] else (drgs[d], None), costs[d])
                             for r, d in zip(lw, lw_donor)], dtype=float)
            cost = np.rint(base * rng.uniform(0.10, 0.35, len(lw))).astype(np.int64)
            ratio = frame["fund_paid"].to_numpy()[lw] / np.maximum(costs[lw], 1)
            set_values("cost", lw, cost)
            set_values("fund_paid", lw, np.floor(cost * ratio).astype(np.int64))
            set_values("los", lw, los)
            set_values("discharge", lw, np.ones(len(lw), dtype=np.int64))
            # the discharge day stays (so the case stays in its year); the admission moves
            discharge_day = frame["discharge_date"].to_numpy()[lw]
            set_values("admission_date", lw, discharge_day - los.astype("timedelta64[D]"))

    # split stays: first part keeps its row; another row of the same hospital becomes the second part
    los_all = frame["los"].to_numpy()
    first = np.flatnonzero(clean(at_site["split_stay"] & (los_all >= 4)) & (rng.random(n) < o.split_stay))
    pool = np.flatnonzero(clean(at_site["split_stay"]))
    pool = pool[~np.isin(pool, first)]
    rng.shuffle(pool)
    # pair each first part with a row of its own hospital
    second = np.full(len(first), -1, dtype=np.int64)
    by_h: dict[str, list[int]] = {}
    for r in pool.tolist():
        by_h.setdefault(hospitals[r], []).append(r)
    for i, r in enumerate(first.tolist()):
        free = by_h.get(hospitals[r])
        if free:
            second[i] = free.pop()
    first, second = first[second >= 0], second[second >= 0]
    if len(first):
        mark(first, "split_stay_first")
        mark(second, "split_stay")
        # the two parts and the days between them fill the original stay: the second part ends on its discharge
        # day (no stay moves into another year), the first keeps its admission and at least a day
        los1 = los_all[first]
        los_b = np.maximum(1, los1 // 2)
        gap = np.minimum(rng.integers(0, 4, len(first)), los1 - los_b - 1)
        los_a = los1 - los_b - gap
        share = los_b / los1
        cost1 = frame["cost"].to_numpy()[first]
        fund1 = frame["fund_paid"].to_numpy()[first]
        cost_b = np.rint(cost1 * share).astype(np.int64)
        fund_b = np.floor(fund1 * share).astype(np.int64)
        admission_a = frame["admission_date"].to_numpy()[first]
        discharge_a = admission_a + los_a.astype("timedelta64[D]")
        discharge_b = frame["discharge_date"].to_numpy()[first]
        admission_b = discharge_b - los_b.astype("timedelta64[D]")
        set_values("los", first, los_a)
        set_values("cost", first, cost1 - cost_b)
        set_values("fund_paid", first, fund1 - fund_b)
        set_values("discharge_date", first, discharge_a)
        for column in ("patient_id", "insurance", "dx", "proc", "sex", "age", "age_days", "weight", "dept", "discharge",
                       "phone", "address"):
            set_values(column, second, frame[column].gather(first).to_list())
        set_values("los", second, los_b)
        set_values("cost", second, cost_b)
        set_values("fund_paid", second, fund_b)
        set_values("admission_date", second, admission_b)
        set_values("discharge_date", second, discharge_b)

    # shared phones: groups of 6-12 clean cases of one hospital, distinct patients
    rows = np.flatnonzero(clean(at_site["shared_phone"]) & (rng.random(n) < o.shared_phone))
    patients = frame["patient_id"].to_numpy()
    groups = _contact_groups(rows, hospitals, patients, rng, 6, 12)
    if groups:
        mark(np.concatenate(groups), "shared_phone")
        set_values("phone", np.concatenate(groups), [f"17{chunk % 100:02d}{g:07d}" for g, group in enumerate(groups) for _ in group])

    # cost shifting: the fund pays 30-60 % of what it paid
    rows = np.flatnonzero(clean(at_site["cost_shift"]) & (rng.random(n) < o.cost_shift))
    if len(rows):
        mark(rows, "cost_shift")
        fund = frame["fund_paid"].to_numpy()[rows]
        set_values("fund_paid", rows, np.floor(fund * rng.uniform(0.3, 0.6, len(rows))).astype(np.int64))

    # shared addresses: groups of 11-16 clean cases of one hospital, distinct patients, given one address
    rows = np.flatnonzero(clean(at_site["shared_address"]) & (rng.random(n) < o.shared_address))
    groups = _contact_groups(rows, hospitals, patients, rng, 11, 16)
    if groups:
        mark(np.concatenate(groups), "shared_address")
        set_values("address", np.concatenate(groups), [f"共用{chunk}巷{g}号" for g, group in enumerate(groups) for _ in group])

    # transfer chains: a stay (the first, kept) is followed by two more of the same patient and record at two other
    # hospitals, each admitted on the day of the previous discharge or the next, with the first's stay, cost and fund
    # payment (each hospital bills the whole stay again); the rows of two clean cases elsewhere become them. A chain
    # that would end after its first stay's year is not planted.
    firsts = np.flatnonzero(clean(at_site["transfer_chain"]) & (rng.random(n) < o.transfer_chain))
    pool = np.flatnonzero(clean(np.ones(n, dtype=bool)))
    pool = pool[~np.isin(pool, firsts)]
    rng.shuffle(pool)
    admission_all, discharge_all = frame["admission_date"].to_numpy(), frame["discharge_date"].to_numpy()
    taken, chains = 0, []
    for first in firsts.tolist():
        chain, seen = [first], {hospitals[first]}
        while len(chain) < 3 and taken < len(pool):
            candidate = int(pool[taken])
            taken += 1
            if hospitals[candidate] not in seen and planted_codes[candidate] == 0:
                chain.append(candidate)
                seen.add(hospitals[candidate])
        if len(chain) == 3:
            chains.append(chain)
    kept = []
    for first, *after in chains:
        gaps = rng.integers(0, 2, 2)
        los = int(los_all[first])
        start = discharge_all[first] + np.timedelta64(int(gaps[0]), "D")
        second_end = start + np.timedelta64(los, "D")
        third_start = second_end + np.timedelta64(int(gaps[1]), "D")
        if (third_start + np.timedelta64(los, "D")).astype("datetime64[Y]") == discharge_all[first].astype("datetime64[Y]"):
            kept.append((first, after, [start, third_start]))
    if kept:
        firsts_kept = np.array([k[0] for k in kept], dtype=np.int64)
        after_rows = np.array([r for k in kept for r in k[1]], dtype=np.int64)
        source = np.repeat(firsts_kept, 2)
        mark(firsts_kept, "transfer_chain_first")
        mark(after_rows, "transfer_chain")
        for column in ("patient_id", "insurance", "dx", "proc", "sex", "age", "age_days", "weight", "dept", "discharge",
                       "phone", "address", "los", "cost", "fund_paid"):
            current = frame[column].gather(source).to_list()
            changed = updates.get(column, {})
            set_values(column, after_rows, [changed.get(int(r), v) for r, v in zip(source.tolist(), current)])
        starts = np.array([d for k in kept for d in k[2]], dtype=admission_all.dtype)
        set_values("admission_date", after_rows, starts)
        set_values("discharge_date", after_rows, starts + los_all[source].astype("timedelta64[D]"))

    columns = []
    for column, changes in updates.items():
        series = frame[column]
        at = pl.Series(list(changes.keys()), dtype=pl.Int64)
        values = pl.Series(list(changes.values()), dtype=series.dtype, strict=False)
        columns.append(series.scatter(at, values))
    frame = frame.with_columns(columns)
    # Records that trip the scheme's `warn` rules (e.g. female_dx_on_male) are real findings, not clean cases.
    warned = group_cases(frame.drop("_drg", "_row"), scheme)["warnings"].list.len().fill_null(0).to_numpy() > 0
    planted_codes[warned & (planted_codes == 0)] = LABELS.index("coded_inconsistent") + 1
    labels = pl.Series("planted", [None, *LABELS], dtype=pl.String).gather(pl.Series(planted_codes.astype(np.int64)))
    return frame.with_columns(labels).drop("_drg", "_row")


def planter(scheme=None, *, seed: int = 0, options: PlantOptions | None = None):
    """A `transform(chunk, number)` for grouper.payment.history.write_history that plants anomalies chunk by chunk."""
    from ..payment._common import loaded_scheme

    scheme = loaded_scheme(scheme)

    def transform(chunk: pl.DataFrame, number: int) -> pl.DataFrame:
        return plant_anomalies(chunk, scheme, seed=seed, options=options, chunk=number)

    return transform
