"""Compile: parse + check + compile the CHS-DRG 1.1 pack, cold and from the plan cache."""
import os
from pathlib import Path

from conftest import median_of, record
from grouper.scheme import load_scheme


def test_compile_cold(benchmark, pack):
    benchmark.group = "compile"
    loaded = benchmark.pedantic(load_scheme, args=(pack,), kwargs={"cache": False},
                                rounds=7, iterations=1, warmup_rounds=1)
    assert len(loaded.plan.drg_codes) == 628
    record(benchmark, target="compile CHS-DRG 1.1, cold (`load_scheme(cache=False)`)", value=median_of(benchmark),
           unit="s", op="<=", threshold=1.0, order=6)


def test_compile_cached(benchmark, pack, scheme):
    benchmark.group = "compile"
    load_scheme(pack, cache=True)  # the entry exists (the `scheme` fixture made it); warm the file
    cache = Path(os.environ["GROUPER_CACHE_DIR"])
    assert list(cache.glob("*.npz")), f"no plan cache entry in {cache}"
    loaded = benchmark.pedantic(load_scheme, args=(pack,), kwargs={"cache": True},
                                rounds=20, iterations=1, warmup_rounds=2)
    assert len(loaded.plan.drg_codes) == 628
    record(benchmark, target="compile CHS-DRG 1.1, from cache (`load_scheme(cache=True)`)",
           value=median_of(benchmark), unit="s", op="<=", threshold=0.1, order=7)
