import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "chs-drg-1.1"


def shared_or_skip() -> Path:
    """The national CHS-DRG 1.1 tables beside the checkout; under CI their absence is a failure."""
    if not (SHARED / "golden" / "expected.csv").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the CHS-DRG 1.1 tables are missing at {SHARED}")
        pytest.skip(f"CHS-DRG 1.1 tables not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Tests never read or fill the user's plan cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GROUPER_CACHE_DIR", str(tmp_path_factory.mktemp("plan-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def chs_tables() -> Path:
    return shared_or_skip()


@pytest.fixture(scope="session")
def chs_pack(chs_tables, tmp_path_factory) -> Path:
    from grouper.importers.chs_drg import import_chs_drg

    pack = tmp_path_factory.mktemp("chs-drg-1.1")
    import_chs_drg(chs_tables, pack)
    return pack


@pytest.fixture(scope="session")
def chs_scheme(chs_pack):
    from grouper.scheme import load_scheme

    return load_scheme(chs_pack)


@pytest.fixture(scope="session")
def golden_cases(chs_tables):
    from grouper.io import read_cases

    return read_cases(chs_tables / "golden" / "cases.csv")
