import os
from pathlib import Path

import pytest

# Child Pythons the tests start (`python -m grouper serve`, Spark's Python workers) run with the
# checkout as their working directory; without this the source tree, which holds no compiled
# kernel in a fresh clone, would shadow the installed package (Python >= 3.11).
os.environ.setdefault("PYTHONSAFEPATH", "1")

ROOT = Path(__file__).resolve().parents[1]
# The national tables: GROUPER_SHARED_DIR names the folder holding chs-drg-1.1/, chs-drg-2.0/, ...;
# by default ../shared beside the checkout.
SHARED_ROOT = Path(os.environ.get("GROUPER_SHARED_DIR") or ROOT.parent / "shared")
SHARED = SHARED_ROOT / "chs-drg-1.1"
SHARED_20 = SHARED_ROOT / "chs-drg-2.0"


def shared_or_skip(tables: Path = SHARED) -> Path:
    """National CHS-DRG tables (see SHARED_ROOT); under CI their absence is a failure."""
    if not (tables / "golden" / "expected.csv").is_file():
        where = "GROUPER_SHARED_DIR" if os.environ.get("GROUPER_SHARED_DIR") else "../shared beside the checkout"
        message = (f"{tables.name} tables not found at {tables} (from {where}); "
                   "set GROUPER_SHARED_DIR to the folder holding chs-drg-1.1/ to run the conformance tests")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return tables


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Tests never read or fill the user's plan cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GROUPER_CACHE_DIR", str(tmp_path_factory.mktemp("plan-cache")))
    # nor the user's default scheme and policy (grouper.config)
    for name in ("GROUPER_SCHEME", "GROUPER_POLICY", "GROUPER_CONFIG", "SOURCE_DATE_EPOCH"):
        mp.delenv(name, raising=False)
    mp.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def chs_tables() -> Path:
    return shared_or_skip()


def _import(tables: Path, tmp_path_factory) -> Path:
    from grouper.importers.chs_drg import import_chs_drg

    pack = tmp_path_factory.mktemp(tables.name)
    import_chs_drg(tables, pack)
    return pack


def _golden_cases(tables: Path):
    from grouper.io import read_cases

    return read_cases(tables / "golden" / "cases.csv")


@pytest.fixture(scope="session")
def chs_pack(chs_tables, tmp_path_factory) -> Path:
    return _import(chs_tables, tmp_path_factory)


@pytest.fixture(scope="session")
def chs_scheme(chs_pack):
    from grouper.scheme import load_scheme

    return load_scheme(chs_pack)


@pytest.fixture(scope="session")
def golden_cases(chs_tables):
    return _golden_cases(chs_tables)


@pytest.fixture(scope="session")
def chs20_tables() -> Path:
    return shared_or_skip(SHARED_20)


@pytest.fixture(scope="session")
def chs20_pack(chs20_tables, tmp_path_factory) -> Path:
    return _import(chs20_tables, tmp_path_factory)


@pytest.fixture(scope="session")
def chs20_scheme(chs20_pack):
    from grouper.scheme import load_scheme

    return load_scheme(chs20_pack)


@pytest.fixture(scope="session")
def golden20_cases(chs20_tables):
    return _golden_cases(chs20_tables)


@pytest.fixture(autouse=True)
def settled_cases_priced_alike(request, monkeypatch):
    """In the settlement tests, every `settle` also checks that the one-case pricer of `grouper serve`'s
    estimates (CasePricer) prices each of its cases (up to 2,000) exactly as `price_cases` does
    (tests/settle_helpers.assert_priced_alike): every policy the tests build is compared."""
    if not request.module.__name__.split(".")[-1].startswith(("test_settle", "test_dip_settle")):
        yield
        return
    from grouper.payment import settle as engine
    from settle_helpers import assert_priced_alike

    original, busy = engine._attached, []

    def attached(cases, policy, source):
        if not busy and cases.height <= 2000:
            busy.append(True)
            try:
                assert_priced_alike(cases, policy, source)
            finally:
                busy.pop()
        return original(cases, policy, source)

    monkeypatch.setattr(engine, "_attached", attached)
    yield
