"""A seeded **synthetic** DIP catalogue and case set (not real data): the benchmark's 10,000-row
catalogue and the large generated set on which the batch kernel is checked against the reference.

The catalogue has `rows` rows (80 % core/primary) over categories `A00.0`..`Z99.9`: per category a
conservative row and a few procedure rows (one code, `a+b` all of, `a/b` any of, or `a+(b/c)`)
drawn from a small per-category pool, so rows overlap and every tie-break occurs; 5 % of
categories also have primary rows; comprehensive rows for some 3-character prefixes × treatment,
every chapter letter from E on × treatment, and the chapter ranges A00-B99 and C00-D48 ×
treatment. Half the rows carry a reference cost (`mean`); the others get score × the point value
(10). Cases are drawn from the rows (the codes of one alternative, sometimes an extra, a repeated
or an unknown procedure), plus diagnoses no row lists and empty ones; their `cost` (Int64 fen) is
drawn around the group's reference cost, sometimes missing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from .procedures import TREATMENTS
from .scheme import DIP_FILE

SCHEME = '''# synthetic DIP scheme (grouper.dip.synth): not a real catalogue
scheme "synthetic DIP" version "{seed}"

table proc_types = "proc_types.csv"
table catalogue  = "catalogue.csv"

dip {{
  diagnosis length 5
  qualifying = proc_types[qualifying = "1"]
  treatment = proc_types.treatment
  treatments {treatments}
  core = catalogue[level = "core"]
  primary = catalogue[level = "primary"]
  comprehensive = catalogue[level = "comprehensive"]
  reference cost = mean
  point value 10
}}
'''
RANGES = ("A00-B99", "C00-D48")


def write_synthetic_pack(folder: str | Path, *, rows: int = 10_000, procedures: int = 3_000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    codes = [f"{a:02d}.{b:04d}" for a, b in zip(rng.integers(0, 100, procedures * 2), rng.integers(0, 10000, procedures * 2))]
    codes = list(dict.fromkeys(codes))[:procedures]
    kinds = rng.choice(np.arange(1, 4), size=len(codes), p=[0.3, 0.3, 0.4])
    qualifying = rng.random(len(codes)) < 0.9
    pd = pl.DataFrame({"code": codes, "treatment": [TREATMENTS[k] for k in kinds],
                       "qualifying": np.where(qualifying, "1", "0")})
    pd.write_csv(folder / "proc_types.csv")
    qual_codes = [c for c, q in zip(codes, qualifying) if q]
    letters = "ABCDEFGHIJKLMNOPQRSTVWXYZ"
    all_cats = rng.permutation([f"{l}{n:02d}.{d}" for l in letters for n in range(100) for d in range(10)])
    out = []
    for cat in all_cats:
        if len(out) >= rows * 0.8:
            break
        pool = list(rng.choice(qual_codes, size=6, replace=False))
        levels = ["core"] + (["primary"] if rng.random() < 0.05 else [])
        for level in levels:
            out.append((level, f"{cat}-{level[0]}00", cat, ""))
            for k in range(int(rng.integers(2, 7))):
                r = rng.random()
                if r < 0.6:
                    expr = pool[int(rng.integers(0, 6))]
                elif r < 0.9:
                    a, b = sorted(rng.choice(pool, size=2, replace=False))
                    expr = f"{a}+{b}" if r < 0.8 else f"{a}/{b}"
                else:
                    a, *choices = rng.choice(pool, size=3, replace=False)
                    b, c = sorted(choices)
                    expr = f"{a}+({b}/{c})"
                out.append((level, f"{cat}-{level[0]}{k + 1:02d}", cat, expr))
    frame = pl.DataFrame(out, schema=["level", "code", "dx", "procs"], orient="row").unique(
        ["level", "dx", "procs"], keep="first", maintain_order=True)
    cats = frame["dx"].unique().to_list()
    prefixes = sorted({c[:3] for c in cats}) + sorted({c[:1] for c in cats})
    chapters = [p for p in prefixes if len(p) == 1 and p > "D"] + list(RANGES)   # A-D: only by range
    candidates = [(p, t) for p in prefixes if len(p) == 3 for t in range(4)]
    keep = max(rows - frame.height - 4 * len(chapters), 0)
    chosen = [candidates[i] for i in sorted(rng.choice(len(candidates), size=min(keep, len(candidates)), replace=False))]
    comp = pl.DataFrame([("comprehensive", f"{p}-Z{t}", p, "", TREATMENTS[t])
                         for p, t in chosen + [(c, t) for c in chapters for t in range(4)]],
                        schema=["level", "code", "dx", "procs", "treatment"], orient="row")
    catalogue = pl.concat([frame.with_columns(pl.lit(None, dtype=pl.String).alias("treatment")), comp])
    score = np.round(rng.lognormal(6.5, 0.8, catalogue.height), 2)
    mean = np.where(rng.random(catalogue.height) < 0.5, np.round(score * rng.uniform(8, 12, catalogue.height), 2), np.nan)
    catalogue = catalogue.with_columns(
        pl.col("code").alias("name"), pl.Series("score", score),
        pl.Series("mean", mean).fill_nan(None).map_elements(lambda m: f"{m:.2f}", return_dtype=pl.String))
    catalogue.with_columns(pl.col("procs").replace("", None)).write_csv(folder / "catalogue.csv")
    (folder / DIP_FILE).write_text(SCHEME.format(seed=seed, treatments=" < ".join(f'"{t}"' for t in TREATMENTS)),
                                   encoding="utf-8")
    return folder


def synthetic_cases(folder: str | Path, n: int, *, seed: int = 1) -> pl.DataFrame:
    """`n` canonical cases (id, dx, proc) drawn from the pack written by `write_synthetic_pack`."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    cat = pl.read_csv(folder / "catalogue.csv", infer_schema=False).filter(pl.col("level") != "comprehensive")
    procs = pl.read_csv(folder / "proc_types.csv", infer_schema=False)["code"].to_list()
    # the first choice of every term of the first alternative: a+(b/c)/d → a+b
    first_alt = cat["procs"].fill_null("").str.replace_all(r"\(([^/)]+)[^)]*\)", "$1").str.split("/").list.first()
    first_alt = first_alt.str.split("+")
    first_alt = first_alt.list.eval(pl.element().filter(pl.element() != ""))
    row = pl.Series(rng.integers(0, cat.height, n))
    pdx = (cat["dx"].gather(row) + pl.Series(rng.choice(["00", "01", "00x001"], n)))
    kind = rng.random(n)
    pdx = pl.select(pl.when(pl.Series(kind < 0.05)).then(pl.lit("U99.900"))
                    .when(pl.Series(kind < 0.07)).then(pl.lit(""))
                    .otherwise(pdx)).to_series()
    extra = pl.Series("e", rng.choice(procs + ["99.9999", "00.0000x000"], n)).to_frame().select(
        pl.concat_list("e")).to_series()
    draw = rng.random(n)
    alt = first_alt.gather(row)
    proc = pl.select(pl.when(pl.Series(draw < 0.3)).then(alt.list.concat(extra))
                     .when(pl.Series(draw < 0.4)).then(alt.list.concat(alt.list.head(1)))     # a repeated procedure
                     .otherwise(alt)).to_series()
    score = cat["score"].cast(pl.Float64).gather(row).to_numpy()
    cost = np.round(score * 10 * rng.lognormal(0, 0.5, n) * 100).astype(np.int64)
    cost = pl.Series("cost", cost).set(pl.Series(rng.random(n) < 0.05), None)
    return pl.DataFrame({"id": pl.int_range(0, n, eager=True).cast(pl.String), "pdx": pdx, "proc": proc,
                         "cost": cost}).select("id", pl.concat_list("pdx").alias("dx"), "proc", "cost")
