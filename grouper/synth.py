"""Synthetic case files: the golden set resampled with replacement to any size, seeded.

Used by the benchmarks (`benches/`) and the large-file tests. Rows are drawn with replacement
from a source case frame by a seeded numpy Generator; every drawn row gets a fresh unique id
(`R000000001`, ...) and keeps the source row's id in a `src_id` column, so results can be
compared with the source's expected results by a join on `src_id`.

The draw for global row i depends only on (seed, i // BLOCK_ROWS), never on how the output is
chunked: `write_resampled(..., chunk_rows=k)` writes the same rows for every k, and
`resample_cases(cases, n, seed=s)` equals the concatenation of the chunks
`resample_cases(cases, k, seed=s, start=j)`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

__all__ = ["BLOCK_ROWS", "read_source", "resample_cases", "resample_indices", "write_resampled"]

# Rows per independently seeded block of draws (the unit of chunk-independence).
BLOCK_ROWS = 1 << 16
ID_DIGITS = 9
# Parquet row groups of the written files: what `pl.DataFrame.write_parquet` picks for this data
# (~125 k rows), so the files look like ones Polars users write.
PARQUET_ROW_GROUP_ROWS = 131_072


def resample_indices(n_source: int, start: int, stop: int, *, seed: int = 0) -> np.ndarray:
    """Source row numbers (int64) drawn for the global output rows start..stop-1."""
    if n_source < 1:
        raise ValueError("cannot resample from an empty source")
    if not 0 <= start <= stop:
        raise ValueError(f"bad row range {start}..{stop}")
    out = np.empty(stop - start, dtype=np.int64)
    first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS if stop > start else start // BLOCK_ROWS - 1
    for block in range(first, last + 1):
        rng = np.random.default_rng([seed, block])
        draws = rng.integers(0, n_source, size=BLOCK_ROWS, dtype=np.int64)
        lo = max(start, block * BLOCK_ROWS)
        hi = min(stop, (block + 1) * BLOCK_ROWS)
        out[lo - start:hi - start] = draws[lo - block * BLOCK_ROWS:hi - block * BLOCK_ROWS]
    return out


def _ids(prefix: str, start: int, n: int) -> pl.Expr:
    """prefix + zero-padded 1-based global row number, e.g. R000000001."""
    width = max(ID_DIGITS, len(str(start + n)))
    number = pl.int_range(start + 1, start + n + 1, dtype=pl.Int64).cast(pl.String).str.zfill(width)
    return (pl.lit(prefix) + number)


def resample_cases(cases: pl.DataFrame, n: int, *, seed: int = 0, id_prefix: str = "R",
                   start: int = 0) -> pl.DataFrame:
    """`n` rows drawn with replacement from `cases` (seeded), with unique ids and `src_id`.

    Columns: `id` (new, unique: id_prefix + 9+ digits, numbered from start + 1), the source's
    other columns unchanged and in order, then `src_id` (the drawn row's source id). `start` is
    the global row number of the first row, for writing a large file in chunks.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if "id" not in cases.columns:
        cases = cases.with_row_index("id", offset=1).with_columns(pl.col("id").cast(pl.String))
    idx = pl.Series("idx", resample_indices(cases.height, start, start + n, seed=seed))
    drawn = cases.select(pl.all().gather(idx))
    return drawn.select(
        _ids(id_prefix, start, n).alias("id"),
        pl.all().exclude("id"),
        pl.col("id").alias("src_id"),
    )


def read_source(source_csv: str | Path) -> pl.DataFrame:
    """A case CSV as text columns exactly as written (empty cells read as null)."""
    return pl.read_csv(source_csv, infer_schema=False)


def write_resampled(source_csv: str | Path, n: int, out_path: str | Path, *, seed: int = 0,
                    chunk_rows: int = 1_000_000, id_prefix: str = "R",
                    row_group_rows: int = PARQUET_ROW_GROUP_ROWS) -> Path:
    """Write `n` resampled cases of `source_csv` to `out_path` (.parquet or .csv) chunk by chunk.

    Only one chunk of `chunk_rows` rows is in memory at a time, so 50 M rows are fine. The
    list-shape columns stay `|`-joined text as in the source, so the CSV and the Parquet file of
    the same (source, n, seed) hold the same data. Parquet is zstd-compressed in row groups of
    `row_group_rows` (default as Polars' own writer would cut this data). Returns `out_path`.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"cannot write {out_path}: use .parquet or .csv")
    source = read_source(source_csv)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    starts = range(0, n, chunk_rows) if n else [0]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        writer = None
        try:
            for start in starts:
                chunk = resample_cases(source, min(chunk_rows, n - start), seed=seed, id_prefix=id_prefix,
                                       start=start)
                table = chunk.to_arrow(compat_level=pl.CompatLevel.oldest())
                if writer is None:
                    writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
                writer.write_table(table.cast(writer.schema), row_group_size=row_group_rows)
        finally:
            if writer is not None:
                writer.close()
    else:
        with partial.open("wb") as fh:
            for i, start in enumerate(starts):
                chunk = resample_cases(source, min(chunk_rows, n - start), seed=seed, id_prefix=id_prefix,
                                       start=start)
                chunk.write_csv(fh, include_header=(i == 0))
    partial.replace(out_path)
    return out_path


WIDE_HEADERS = {"id": "病案号", "sex": "性别", "age": "年龄", "age_days": "年龄不足1周岁的年龄(天)",
                "weight": "新生儿出生体重(克)", "dept": "出院科别", "los": "实际住院天数", "discharge": "离院方式"}


def to_wide(cases: pl.DataFrame, *, n_dx: int | None = None, n_proc: int | None = None) -> pl.DataFrame:
    """A list-shape text frame (dx/proc `|`-joined, as `read_source` gives) as a hospital-style wide
    export: Chinese headers, 主要诊断编码 + 其他诊断编码1..n_dx, 主要手术操作编码 + 其他手术操作编码1..n_proc.

    Item i of a list lands in slot i (an empty item is a blank cell); n_dx / n_proc default to the
    longest list; longer lists raise ValueError rather than lose codes.
    """
    dx = cases["dx"].fill_null("").str.split("|")
    proc = pl.select(pl.when(cases["proc"].fill_null("") == "").then(pl.lit([], dtype=pl.List(pl.String)))
                     .otherwise(cases["proc"].str.split("|"))).to_series()
    longest_dx, longest_proc = int(dx.list.len().max() or 1), int(proc.list.len().max() or 0)
    n_dx = longest_dx - 1 if n_dx is None else n_dx
    n_proc = max(longest_proc - 1, 0) if n_proc is None else n_proc
    if longest_dx > n_dx + 1 or longest_proc > n_proc + 1:
        raise ValueError(f"lists up to {longest_dx} dx / {longest_proc} proc do not fit {n_dx} + {n_proc} other columns")
    scalars = [pl.col(name).alias(header) for name, header in WIDE_HEADERS.items() if name in cases.columns]
    slots = pl.DataFrame({"dx": dx, "proc": proc})
    wide = slots.select(
        pl.col("dx").list.get(0, null_on_oob=True).alias("主要诊断编码"),
        *(pl.col("dx").list.get(i, null_on_oob=True).alias(f"其他诊断编码{i}") for i in range(1, n_dx + 1)),
        pl.col("proc").list.get(0, null_on_oob=True).alias("主要手术操作编码"),
        *(pl.col("proc").list.get(i, null_on_oob=True).alias(f"其他手术操作编码{i}") for i in range(1, n_proc + 1)),
    )
    return pl.concat([cases.select(scalars), wide], how="horizontal")
