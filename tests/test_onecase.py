"""grouper.onecase (one case in plain Python, what `grouper serve` answers a single case with) equals
the batch pipeline case by case: status, mdc, adrg, drg, reason, warnings, every validation problem
(reason, level, detail, in order) and the typed settlement fields. Over the golden sets of CHS-DRG
1.1 / 2.0 / 3.0-draft (code maps, prefixes, `read` statements, qy rules) and over a bad-input corpus
(hand-written and fuzzed values) on the demo pack, the demo pack with every check an error, and a
demo pack with `read` statements and a `map dx` table. A case onecase declines (a value not in a
plain spelling) is the batch pipeline's; the tests check that it declines only those."""
from __future__ import annotations

import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouper import reasons
from grouper.onecase import group_one
from grouper.pipeline import grouped_batches
from grouper.scheme import load_scheme
from grouper.serve.cases import case_columns, case_frame

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tables" / "demo"
SHARED = ROOT.parent / "shared"

# settlement fields, cycled over the golden cases: plain spellings, unreadable and implausible values,
# and spellings onecase leaves to the batch pipeline (money with separators, other date forms)
SETTLEMENT = [
    {},
    {"cost": "12345.67", "hospital_level": "三级甲等", "insurance": "310", "hospital": " H1 ", "discharge_date": "2024-03-01",
     "admission_date": "2024-03-05", "special_review": "是", "fund_paid": "100"},
    {"cost": "-5", "fund_paid": "abc", "special_review": "maybe", "hospital_level": "x", "insurance": "城乡居民",
     "admission_date": "20240230", "discharge_date": "不详"},
    {"cost": 880.5, "hospital_level": 2, "insurance": "employee", "patient_id": "P1", "discharge_date": "2024-1-5"},
    {"cost": "1,234.50", "admission_date": "2024/01/05"},
]
DECLINED = {"1,234.50", "2024/01/05"}


def batch_and_one(plan, records: list[dict], *, settlement: bool = True) -> tuple[int, int, list[str]]:
    """(cases, declined, differences): every case grouped in one batch and alone."""
    frame = case_frame(records)
    g = next(iter(grouped_batches(frame, plan, batch_size=max(len(records), 1), problems=True, carry=settlement)))
    results = g.results.with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts()   # year 0 is no Python date
    problems: dict[int, list] = {}
    for p in g.problems.iter_rows(named=True):
        problems.setdefault(p["row"], []).append((p["reason"], p["level"], p["detail"]))
    columns = case_columns(records)
    declined, differences = 0, []
    for i in range(len(records)):
        one = {name: values[i] for name, values in columns.items()}
        one["id"] = frame["id"][i]
        mine = group_one(plan, one, settlement=settlement)
        if mine is None:
            declined += 1
            continue
        fields = {k: v.isoformat() if isinstance(v, date) else v for k, v in mine.fields.items()}
        got = {"id": mine.id, "status": mine.status, "mdc": mine.mdc, "adrg": mine.adrg, "drg": mine.drg,
               "reason": mine.reason, "warnings": mine.warnings, **fields, "problems": mine.problems}
        want = {**{k: results[i][k] for k in got if k != "problems"}, "problems": problems.get(i, [])}
        if got != want:
            differences.append(f"{records[i]}\n  one:   {got}\n  batch: {want}")
    return len(records), declined, differences


def golden_records(version: str) -> list[dict]:
    source = SHARED / f"chs-drg-{version}" / "golden" / "cases.csv"
    if not source.is_file():
        pytest.skip(f"no golden set at {source}")
    raw = pl.read_csv(source, infer_schema=False)
    return [{**{k: v for k, v in r.items() if v is not None}, **SETTLEMENT[i % len(SETTLEMENT)]}
            for i, r in enumerate(raw.to_dicts())]


@pytest.mark.parametrize("version", ["1.1", "2.0", "3.0-draft"])
def test_golden_set_alone_equals_the_batch(version, tmp_path_factory):
    from grouper.importers.chs_drg import import_chs_drg

    tables = SHARED / f"chs-drg-{version}"
    if not (tables / "golden" / "cases.csv").is_file():
        pytest.skip(f"no tables at {tables}")
    pack = tmp_path_factory.mktemp(f"pack-{version}")
    import_chs_drg(tables, pack)
    records = golden_records(version)
    n, declined, differences = batch_and_one(load_scheme(pack).plan, records)
    assert not differences, f"{len(differences)} of {n} differ:\n" + "\n".join(differences[:5])
    planned = sum(1 for r in records if DECLINED & {str(v) for v in r.values()})
    assert declined == planned, f"declined {declined}, expected only the {planned} cases with a declined spelling"


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    strict = tmp_path_factory.mktemp("strict")
    reads = tmp_path_factory.mktemp("reads")
    for folder in (strict, reads):
        for file in DEMO.iterdir():
            if file.is_file():
                shutil.copyfile(file, folder / file.name)
    with (strict / "scheme.grp").open("a", encoding="utf-8") as fh:
        fh.write("\n" + "\n".join(f"validate {code} = error" for code in reasons.CATALOGUE
                                  if code not in reasons.FIXED_LEVEL) + "\n")
    (reads / "dx_map.csv").write_text("from,to\nJ18.9,J18.900\nK35.8,K35.800\nX99,\n", encoding="utf-8")
    with (reads / "scheme.grp").open("a", encoding="utf-8") as fh:
        fh.write('\ntable dx_map = "dx_map.csv" key from\nmap dx = dx_map\n'
                 'read sex "1" as male, "2" as female, "男" as male\nread empty age, los as 0\nread empty dx as none\n'
                 "validate unknown_discharge = off\nvalidate duplicate_dx = error\n")
    return {"demo": load_scheme(DEMO).plan, "strict": load_scheme(strict).plan, "reads": load_scheme(reads).plan}


BAD = [
    {"sex": "x", "age": "abc", "los": "-1", "dx": "K35.800", "proc": ""},
    {"sex": "男", "age": "40", "age_days": "3", "dx": ["K35.800", "K35.800", "", "Q99"], "proc": ["47.0100", "47.0100", ""]},
    {"sex": "F", "age": "0", "age_days": "400", "weight": "50", "discharge": "7", "dx": "|J18.900,J18.900"},
    {"sex": "2", "age": "200", "age_days": "-3", "weight": "20000", "los": "99999999999", "dx": "", "proc": "51.2300|"},
    {"sex": "1", "age": "12.0", "dx": ["S06.000", "W01.000"], "proc": None, "dept": " ICU "},
    {"sex": "1", "age": "40", "dx": ["W01.000", "A01.001+K77.0*"], "discharge": "-2147483648"},
    {"sex": "2147483648", "age": "-0", "los": "0", "dx": "j18.900|K35.9|J18.9|K35.8|X99|X99", "proc": "39.6500"},
    {"sex": " ", "age": "", "dx": [], "proc": []},
    {"sex": "١", "age": "４０", "dx": "J18.900"},
    {"sex": "male", "age": "+5", "dx": "J18.900"},
    {"age": "1e9", "los": "0x10", "dx": "P07.300x001"},
    {"sex": "1", "age": "40", "dx": "K35.800\n", "proc": "47.0100\x1f"},
    {"id": "  ", "sex": 1, "age": 40, "dx": ["C56.x00"], "cost": "0.005"},
    {"id": "a", "sex": 2, "age": 30.0, "los": 3, "dx": ["C56.x00"], "cost": "-0.05", "fund_paid": "-12"},
    {"sex": "女", "age": 30, "dx": "C56.x00", "cost": "¥100", "hospital_level": "一级", "discharge_date": "2024年1月5日"},
]


@pytest.mark.parametrize("which", ["demo", "strict", "reads"])
def test_bad_input_corpus_alone_equals_the_batch(plans, which):
    records = [{**r, **SETTLEMENT[i % len(SETTLEMENT)]} for i, r in enumerate(BAD)]
    n, declined, differences = batch_and_one(plans[which], records)
    assert not differences, f"{len(differences)} of {n} differ:\n" + "\n".join(differences[:5])
    assert declined < n // 2


CODES = ["J18.900", "K35.800", "P07.300x001", "S06.000", "S27.000", "C56.x00", "47.0100", "39.6500", "51.2300",
         "K80.100x001", "A01.001+K77.0*", "W01.000", "j18.900", "K35.9", "J18.9", "X99", ""]
NUMBERS = ["0", "1", "2", "9", "-1", "12.0", "12.5", "1e9", "99999999999", "-2147483648", "2147483647", "2147483648",
           " 40 ", "NaN", "١٢", "４０", "1,000", "男", "女", "F", "male", "x", "", "-0", "007"]
MONEY = ["0", "12.3", "-1", "1.005", "abc", "12345678901234567", "1,234", "+3.10", "3.", ".5", ""]
DATES = ["2024-01-05", "20240105", "2024-02-30", "x", "2024/1/5", "0000-01-01", "45000", ""]
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
scalar = st.one_of(st.none(), st.sampled_from(NUMBERS), st.integers(-5, 200), text)


@st.composite
def json_case(draw) -> dict:
    case = {name: draw(scalar) for name in ("sex", "age", "age_days", "weight", "los", "discharge")
            if draw(st.booleans())}
    case["dept"] = draw(st.one_of(st.none(), st.sampled_from(["ICU", " ICU", "04", ""]), text))
    for name in ("dx", "proc"):
        items = draw(st.lists(st.sampled_from(CODES), max_size=5))
        case[name] = items if draw(st.booleans()) else draw(st.sampled_from(["|", ","])).join(items)
    case["cost"] = draw(st.one_of(st.none(), st.sampled_from(MONEY), text))
    case["hospital_level"] = draw(st.one_of(st.none(), st.sampled_from(["3", "三级", "2", "x", " 1"]), text))
    case["insurance"] = draw(st.one_of(st.none(), st.sampled_from(["310", "390", "职工", "Employee", "9"]), text))
    for name in ("admission_date", "discharge_date"):
        case[name] = draw(st.one_of(st.none(), st.sampled_from(DATES), text))
    case["special_review"] = draw(st.one_of(st.none(), st.sampled_from(["1", "否", "Yes", "?"]), text))
    return case


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases=st.lists(json_case(), min_size=1, max_size=8), which=st.sampled_from(["demo", "strict", "reads"]))
def test_fuzzed_cases_alone_equal_the_batch(plans, cases, which):
    _, _, differences = batch_and_one(plans[which], cases)
    assert not differences, "\n".join(differences[:3])


def test_serve_answers_one_case_like_a_batch_of_one():
    """grouper.serve's single-case answer (result, problems, estimate) is its batch answer."""
    from grouper.serve import service

    state = service.load_state(service.Settings(policy=ROOT / "tables" / "policies" / "zhejiang-points.toml",
                                                point_value=Decimal("9.5")))
    records = [{**r, **SETTLEMENT[i % len(SETTLEMENT)]} for i, r in enumerate(BAD)]
    records += [{"dx": ["J80.x00", "J96.000"], "proc": ["39.6500"], "sex": 1, "age": 67, "los": 21, "cost": cost,
                 "hospital_level": 3, "insurance": "310"} for cost in ("100", "30000", "900000", None)]
    fast = 0
    for case in records:
        for estimate in (False, True):
            for problems in (False, True):
                one = service.group_one_fast(state, case, problems=problems) if not estimate else \
                    service.group_many(state, [case], estimate=True, problems=problems)[0]
                batch = service.result_dicts(state, service.group_cases(state, [case], problems=problems,
                                                                        settlement=estimate, where="case"),
                                             with_estimate=estimate)[0]
                assert service.group_one(state, case, estimate=estimate, problems=problems) == batch
                if one is not None:
                    fast += 1
                    assert one == batch, case
                    assert list(one) == list(batch)
    assert fast > len(records) * 2


def test_the_kernel_checks_a_plan_once_and_a_changed_plan_again(plans):
    """run_kernel skips the plan checks of a plan it has grouped with (they cost more than one case);
    a plan made with dataclasses.replace is a new plan: checked again, and a broken one refused."""
    import dataclasses

    import numpy as np

    from grouper.engine import run
    from grouper.engine.encode import encode_cases
    from grouper.io import cases_from_frame

    plan = plans["demo"]
    batch = encode_cases(plan, cases_from_frame(pl.DataFrame({"id": ["1"], "sex": ["1"], "age": ["67"],
                                                              "dx": ["J80.x00|J96.000"], "proc": ["39.6500"]})))
    first = run.run_kernel(plan, batch)
    assert run._PLAN_CHECKED[id(plan)][0]() is plan
    again = run.run_kernel(plan, batch)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    broken = dataclasses.replace(plan, cond_start=np.array([0, 10**6], dtype=np.int32))
    if run.KERNEL.__name__.endswith("_kernel_py"):
        pytest.skip("the Python kernel checks no plan up front")
    with pytest.raises(ValueError, match="cond_start"):
        run.run_kernel(broken, batch)
