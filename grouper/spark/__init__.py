"""grouper on Spark: group and settle Spark DataFrames with the single-machine engine.

The results are those of a single run on the same rows, whatever the partitioning:

- `group(df, scheme)` runs `grouper.api.arrow_grouper` inside `DataFrame.mapInArrow`: Spark hands
  each Python worker Arrow batches, the kernel groups them, the input's columns come back with the
  result columns added. The scheme is loaded (and checked) once on the driver and shipped to the
  executors once as a broadcast variable; each worker process builds its grouper from it once and
  keeps it for every later batch.
- `settle(df, policy, weights)` settles each *region* (统筹区: one policy, one budget) as a whole on
  one executor (`groupBy(region).applyInArrow`, or `applyInPandas` on a Spark without it). A
  region is the unit a settlement needs whole: its point values share its budget over all its
  cases, readmissions look across its hospitals, special-review caps count per hospital or over
  the region. Regions are independent, so a national year splits into some 400 tasks.

Install with the `spark` extra (`pip install "grouper[spark]"`); on a cluster, the same wheel (with
its compiled kernels) must be installed on every executor (docs/spark.md).
"""
from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from ..api import _any_scheme, arrow_grouper

try:  # the optional extra
    from pyspark.sql import DataFrame, functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("grouper.spark needs PySpark: pip install \"grouper[spark]\"") from error

__all__ = ["SparkSettlement", "group", "settle"]

# Each Python worker keeps what it built from a broadcast, by its key: a batch after the first pays
# nothing for the scheme (Spark reuses its Python workers between tasks by default).
_WORKER_CACHE: dict[str, object] = {}


def _ship(spark, payload) -> tuple[str, object]:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(data).hexdigest(), spark.sparkContext.broadcast(data)


def _received(key: str, shipped, build):
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = build(pickle.loads(shipped.value))
    return _WORKER_CACHE[key]


_SIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(), pa.uint64(): pa.int64()}


def _arrow_for_spark(schema: pa.Schema):
    """(Spark schema, the Arrow schema Spark expects back) for an Arrow schema of ours (Spark has no
    unsigned integers: each becomes the signed type that holds it; row counts fit in int64)."""
    schema = pa.schema([f.with_type(_SIGNED.get(f.type, f.type)) for f in schema])
    spark_schema = from_arrow_schema(schema)
    return spark_schema, to_arrow_schema(spark_schema)


# -- grouping ------------------------------------------------------------------------------------

def group(df: DataFrame, scheme=None, *, columns: Mapping[str, str] | None = None, carry: bool = False,
          prefix: str = "", keep_input: bool = True) -> DataFrame:
    """Group a Spark DataFrame of cases (either input shape; the column names `grouper group` reads,
    Chinese and national ones included, or `columns=` as its `--column`) with a DRG or DIP pack.

    Returns the input's columns followed by the result columns (as `grouper.api.group_arrow`):
    one row per input row; a bad row gets the status and reason it gets on the command line.
    The frame needs an `id` column (a case's identity across partitions; Spark numbers nothing).
    """
    loaded = _any_scheme(scheme)
    names = set(df.columns) | {dict(columns or {}).get("id", "id")}
    if not ({"id", "病案号", "住院号", "mdtrt_id", "setl_id"} & set(df.columns)) and "id" not in (columns or {}):
        raise ValueError(f"group on Spark needs an id column (none of {sorted(names)[:8]}...): add one, "
                         "e.g. df.withColumn('id', F.monotonically_increasing_id().cast('string'))")
    options = dict(columns=columns, carry=carry, prefix=prefix, keep_input=keep_input)
    runner = arrow_grouper(loaded, **options)
    spark_schema, expected = _arrow_for_spark(runner.schema(to_arrow_schema(df.schema)))
    key, shipped = _ship(df.sparkSession, (loaded, options))

    def build(payload):
        scheme_, options_ = payload
        return arrow_grouper(scheme_, threads=1, **options_)

    def run(batches):
        grouper = _received(key, shipped, build)
        for batch in batches:
            yield grouper(batch).cast(expected)

    return df.mapInArrow(run, spark_schema)


# -- settlement ----------------------------------------------------------------------------------

TABLES = ("cases", "hospitals", "groups", "pools")


@dataclass
class SparkSettlement:
    """The four settlement tables of `settle` as Spark DataFrames, each with the region column first
    (when settled by region). They are filtered from one persisted frame: the settlement runs once
    however many of them are read. `unpersist()` frees it."""

    frame: DataFrame
    schemas: dict[str, list[str]]

    def table(self, name: str) -> DataFrame:
        columns = self.schemas[name]
        return self.frame.filter(F.col("_table") == name).select(
            *[F.col(f"{name}__{c}").alias(c) for c in columns])

    @property
    def cases(self) -> DataFrame:
        return self.table("cases")

    @property
    def hospitals(self) -> DataFrame:
        return self.table("hospitals")

    @property
    def groups(self) -> DataFrame:
        return self.table("groups")

    @property
    def pools(self) -> DataFrame:
        return self.table("pools")

    def unpersist(self) -> None:
        self.frame.unpersist()


def _by_region(value, region: str | None, name: str):
    """A per-region mapping from a single value (every region) or a mapping."""
    if isinstance(value, Mapping) and not isinstance(value, pl.DataFrame):
        if region is None:
            raise ValueError(f"{name} given per region: name the region column (region=...)")
        return dict(value)
    return {None: value}


def _settler(policies: dict, weights: dict, scheme):
    """region → (policy, base-points source, group column), every file read once (on the driver)."""
    from ..payment.policy import Policy, load_policy
    from ..payment.api import weights_source

    loaded = _any_scheme(scheme) if scheme is not None else None
    out = {}
    for region, policy in policies.items():
        policy = policy if isinstance(policy, Policy) else load_policy(policy)
        if policy.is_dip:
            from ..dip.scheme import LoadedDip
            from ..dip.settle import DipScores

            if not isinstance(loaded, LoadedDip):
                raise ValueError(f"policy {policy.name!r} is a DIP policy: pass the DIP pack as scheme=")
            out[region] = (policy, DipScores.from_pack(loaded, policy), "dip")
        else:
            table = weights.get(region, weights.get(None))
            if table is None:
                raise ValueError(f"no weights for region {region!r}")
            if isinstance(table, (str, Path)):
                table = weights_source(table, policy)
            out[region] = (policy, weights_source(table, policy), "drg")
    return out


def _settlement_frames(frame: pl.DataFrame, policy, source, column: str) -> dict[str, pl.DataFrame]:
    from ..payment.settle import settle as settle_engine

    if column == "dip":
        frame = frame.with_columns(pl.col("dip").alias("drg"))
    result = settle_engine(frame, policy, source, column=column)
    return {"cases": result.cases, "hospitals": result.hospitals, "groups": result.groups, "pools": result.pools}


def _long(tables: dict[str, pl.DataFrame], region_column: str | None, region) -> pl.DataFrame:
    """The four tables as one frame: `_table` names the table, `{table}__{column}` its columns."""
    parts = []
    for name, table in tables.items():
        table = table.with_columns(pl.col(c).cast(pl.String) for c, t in table.schema.items()
                                   if isinstance(t, (pl.Enum, pl.Categorical)))
        if region_column is not None:
            table = table.select(pl.lit(region, pl.String).alias(region_column), pl.all())
        parts.append(table.rename({c: f"{name}__{c}" for c in table.columns})
                     .with_columns(pl.lit(name).alias("_table")))
    return pl.concat(parts, how="diagonal_relaxed")


def settle(df: DataFrame, policy, weights=None, *, scheme=None, region: str | None = None) -> SparkSettlement:
    """Settle a grouped Spark DataFrame (the columns `grouper group --carry` writes; money as
    Int64 fen, as in a grouped Parquet file) under a policy, as `grouper settle` does.

    `region` names the column of the 统筹区: each region is settled whole on one executor, under
    `policy[region]` with `weights[region]` when they are mappings (else one policy and weights
    for all). Without `region` the whole frame is one settlement (one task). A DIP policy takes
    its scores from `scheme` (the DIP pack). Returns a `SparkSettlement` (cases, hospitals,
    groups, pools), each table with the region column first; a region with no policy is an error.
    """
    policies = _by_region(policy, region, "policy")
    weight_map = _by_region(weights, region, "weights") if weights is not None else {None: None}
    settlers = _settler(policies, weight_map, scheme)
    if region is not None and None in settlers:
        only = settlers[None]
        regions = [r[0] for r in df.select(region).distinct().collect()]
        settlers = {r: only for r in regions}
    # The output schema: the tables of an empty year (every column present, its type known).
    empty = pl.from_arrow(to_arrow_schema(df.schema).empty_table())
    sample_region = next(iter(settlers))
    schema_frame = _long(_settlement_frames(empty, *settlers[sample_region]), region, sample_region)
    spark_schema, expected = _arrow_for_spark(schema_frame.to_arrow().schema)
    schemas = {name: [c.split("__", 1)[1] for c in schema_frame.columns if c.startswith(f"{name}__")]
               for name in TABLES}
    key, shipped = _ship(df.sparkSession, settlers)
    order = [f.name for f in spark_schema.fields]

    def settle_one(table: pa.Table) -> pa.Table:
        todo = _received(key, shipped, lambda payload: payload)
        frame = pl.from_arrow(table)
        name = frame[region][0] if region is not None and frame.height else None
        if name not in todo:
            raise ValueError(f"no policy for region {name!r}")
        out = _long(_settlement_frames(frame, *todo[name]), region, name)
        out = out.select(pl.col(c) if c in out.columns else pl.lit(None).alias(c) for c in order)
        return out.to_arrow().cast(expected)

    keyed = df.groupBy(region) if region is not None else df.groupBy(F.lit(0).alias("_region"))
    if hasattr(keyed, "applyInArrow"):
        result = keyed.applyInArrow(settle_one, spark_schema)
    else:  # pragma: no cover - Spark < 4.0
        result = keyed.applyInPandas(lambda pdf: settle_one(pa.Table.from_pandas(pdf, preserve_index=False))
                                     .to_pandas(), spark_schema)
    return SparkSettlement(result.persist(), schemas)
