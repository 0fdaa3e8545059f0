"""The resampling generator of benchmark data: seeded, unique ids, chunk-independent."""
import polars as pl
import pytest

from grouper.synth import BLOCK_ROWS, read_source, resample_cases, resample_indices, write_resampled

DEMO = pl.DataFrame({
    "id": [f"S{i:03d}" for i in range(1, 8)],
    "sex": ["1", "2", None, "1", "2", "1", "2"],
    "age": ["40", "3", "70", None, "12", "0", "55"],
    "dx": ["K35.800|J18.900", "", "|A", "J18.900", "S06.000|S27.000", "P07.100", "N70.900"],
    "proc": ["47.0100", None, "", "51.2300", "", "", "68.4100"],
})


@pytest.fixture
def source_csv(tmp_path):
    path = tmp_path / "cases.csv"
    DEMO.write_csv(path)
    return path


def test_deterministic_for_a_seed():
    a = resample_cases(DEMO, 1000, seed=7)
    assert a.equals(resample_cases(DEMO, 1000, seed=7))
    assert not a.equals(resample_cases(DEMO, 1000, seed=8))


def test_shape_ids_and_source_rows():
    out = resample_cases(DEMO, 5000, seed=1)
    assert out.height == 5000
    assert out.columns == ["id", "sex", "age", "dx", "proc", "src_id"]
    assert out["id"].n_unique() == 5000
    assert out["id"].head(2).to_list() == ["R000000001", "R000000002"]
    assert out["id"][-1] == "R000005000"
    # every row is a copy of its source row
    back = out.join(DEMO.rename({"id": "src_id"}), on="src_id", suffix="_src")
    for col in ("sex", "age", "dx", "proc"):
        assert back[col].equals(back[f"{col}_src"].alias(col))
    # with replacement, and all source rows get drawn
    assert set(out["src_id"]) == set(DEMO["id"])


def test_prefix_and_zero_rows():
    out = resample_cases(DEMO, 3, seed=0, id_prefix="X")
    assert out["id"].to_list() == ["X000000001", "X000000002", "X000000003"]
    assert resample_cases(DEMO, 0).height == 0
    with pytest.raises(ValueError):
        resample_cases(DEMO, -1)


def test_chunks_equal_one_shot():
    n = 2 * BLOCK_ROWS + 123
    whole = resample_cases(DEMO, n, seed=3)
    for size in (1000, BLOCK_ROWS, BLOCK_ROWS + 1):
        parts = pl.concat([resample_cases(DEMO, min(size, n - s), seed=3, start=s) for s in range(0, n, size)])
        assert parts.equals(whole)
    # a shorter draw is a prefix of a longer one
    assert resample_cases(DEMO, 1000, seed=3).equals(whole.head(1000))
    assert (resample_indices(7, 10, 20, seed=3) == resample_indices(7, 0, 30, seed=3)[10:20]).all()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_chunked_writing_equals_one_shot(source_csv, tmp_path, suffix):
    n = 10_007
    chunked = write_resampled(source_csv, n, tmp_path / f"chunked{suffix}", seed=5, chunk_rows=999)
    whole = write_resampled(source_csv, n, tmp_path / f"whole{suffix}", seed=5, chunk_rows=n)
    read = pl.read_parquet if suffix == ".parquet" else lambda p: pl.read_csv(p, infer_schema=False)
    expected = resample_cases(read_source(source_csv), n, seed=5)
    assert read(chunked).equals(expected)
    assert read(whole).equals(expected)
    assert not list(tmp_path.glob("*.partial"))


def test_csv_and_parquet_hold_the_same_text(source_csv, tmp_path):
    pq_file = write_resampled(source_csv, 500, tmp_path / "r.parquet", seed=2)
    csv_file = write_resampled(source_csv, 500, tmp_path / "r.csv", seed=2)
    from_pq = pl.read_parquet(pq_file)
    assert all(dtype == pl.String for dtype in from_pq.dtypes)  # dx/proc stay |-joined text
    assert from_pq.equals(pl.read_csv(csv_file, infer_schema=False))


def test_bad_arguments(source_csv, tmp_path):
    with pytest.raises(ValueError):
        write_resampled(source_csv, 10, tmp_path / "r.xlsx")
    with pytest.raises(ValueError):
        write_resampled(source_csv, 10, tmp_path / "r.csv", chunk_rows=0)


def test_resampled_golden_set_still_conforms(chs_scheme, chs_tables, tmp_path):
    """Resampled golden cases group exactly as their source cases, in memory and streaming."""
    from grouper import api

    path = write_resampled(chs_tables / "golden" / "cases.csv", 60_000, tmp_path / "r.parquet", seed=11,
                           chunk_rows=25_000)
    expected = pl.read_csv(chs_tables / "golden" / "expected.csv", infer_schema=False).rename({"id": "src_id"})
    src = pl.read_parquet(path, columns=["id", "src_id"])
    in_memory = api.group(path, chs_scheme)
    streamed = pl.concat(api.group_batches(path, chs_scheme, batch_size=17_000))
    compared = ["id", "status", "mdc", "adrg", "drg", "reason"]
    assert streamed.select(compared).equals(in_memory.select(compared))
    got = in_memory.select("id", "status", "mdc", "adrg", "drg").join(src, on="id").join(expected, on="src_id",
                                                                                          suffix="_want")
    assert got.height == 60_000
    for col in ("status", "mdc", "adrg", "drg"):
        assert (got[col].fill_null("") == got[f"{col}_want"].fill_null("")).all(), col
