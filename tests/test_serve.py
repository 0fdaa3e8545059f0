"""`grouper serve`: the real server on a free loopback port — every endpoint, both envelopes, the
golden set against `grouper group` / `grouper explain`, reload (good and bad pack) without dropped
requests, limits and errors (never a 500 for bad input, fuzzed), graceful SIGTERM shutdown."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "tables" / "policies"
DEMO = ROOT / "tables" / "demo"
CASE = {"id": "A01", "sex": 1, "age": 67, "dept": "ICU", "los": 21, "discharge": 1, "dx": ["J80.x00", "J96.000"],
        "proc": ["39.6500", "38.9300"], "cost": "12000.00", "hospital_level": 3, "insurance": "310"}
TOKEN = "s3cret-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None, headers: dict | None = None,
                timeout: float = 60):
        data = raw if raw is not None else (None if body is None else json.dumps(body, ensure_ascii=False).encode())
        head = {"Content-Type": "application/json"} if data is not None else {}
        head.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=head)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, _lower(response.headers), _decode(response.read(), response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, _lower(exc.headers), _decode(exc.read(), exc.headers)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body, **kw)


def _lower(headers) -> dict:
    return {k.lower(): v for k, v in headers.items()}


def _decode(content: bytes, headers):
    kind = headers.get("Content-Type", "")
    return json.loads(content) if "json" in kind else content.decode("utf-8", errors="replace")


@contextmanager
def running_server(tmp_path: Path, *args: str, env: dict | None = None):
    """`grouper serve ARGS` on a free loopback port; yields a Server once /readyz answers."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    command = [sys.executable, "-m", "grouper", "serve", "--port", str(port), "--log-level", "warning", *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, **(env or {})})
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited ({process.returncode}): {log.read_text()}")
            try:
                if server.get("/readyz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    token = tmp / "token"
    token.write_text(TOKEN + "\n")
    with running_server(tmp, "--policy", str(POLICIES / "zhejiang-points.toml"), "--point-value", "9.5",
                        "--weights", str(tmp / "weights.csv") if _weights(tmp) else "", "--token-file", str(token)) as s:
        yield s


def _weights(tmp: Path) -> bool:
    """The demo weights with mean costs (yuan), so estimates have high/low lines."""
    frame = pl.read_csv(DEMO / "drg_weights.csv", infer_schema=False)
    frame.with_columns((pl.col("weight").cast(pl.Float64) * 1000).round(2).cast(pl.String).alias("mean")) \
        .write_csv(tmp / "weights.csv")
    return True


# ---- endpoints -----------------------------------------------------------------------------

def test_group_one_case_matches_the_cli(demo_server, tmp_path):
    status, headers, result = demo_server.post("/v1/group", CASE)
    assert status == 200 and headers["content-type"] == "application/json"
    assert (result["status"], result["mdc"], result["adrg"], result["drg"]) == ("grouped", "MDCA", "AH1", "AH11")
    assert result["weight"] == 8.7 and result["scheme"] == "演示方案 Demo"
    est = result["estimate"]
    # 870 base points × coefficient 1.05 (level 1.0 × the DRG's 差异系数) × 9.5 yuan: exact to the fen
    assert est["case_type"] == "normal" and est["payment"] == "8678.25" and est["standard"] == "8678.25"
    assert est["reference"] == "8700.00" and est["high_line"] == "26100.00" and est["low_line"] == "3480.00"
    assert est["warning"] == "over_standard"
    cases = tmp_path / "one.csv"
    cases.write_text("id,sex,age,dept,los,discharge,dx,proc\nA01,1,67,ICU,21,1,J80.x00|J96.000,39.6500|38.9300\n")
    out = tmp_path / "out.csv"
    subprocess.run([sys.executable, "-m", "grouper", "group", str(cases), "-o", str(out), "-q"], check=True, cwd=ROOT)
    assert pl.read_csv(out, infer_schema=False).row(0, named=True)["drg"] == result["drg"]


def test_a_json_case_is_read_like_a_csv_row(demo_server):
    """The same values as text, numbers, a |-separated text or an array give the same result; a bad value
    is a case status (as for a CSV row), not a 4xx."""
    as_text = {**CASE, "sex": "1", "age": "67", "los": "21", "dx": "J80.x00|J96.000", "proc": "39.6500,38.9300"}
    assert demo_server.post("/v1/group", as_text)[2]["drg"] == demo_server.post("/v1/group", CASE)[2]["drg"]
    status, _, result = demo_server.post("/v1/group?problems=true", {**CASE, "age": "abc", "dx": []})
    assert status == 200 and result["status"] == "invalid"
    assert {p["reason"] for p in result["problems"]} >= {"missing_dx", "malformed_age"}


def test_a_case_without_id_is_numbered_by_its_place_in_the_request(demo_server):
    anonymous = {k: v for k, v in CASE.items() if k != "id"}
    results = []
    threads = [threading.Thread(target=lambda: results.append(demo_server.post("/v1/group", anonymous)[2]["id"]))
               for _ in range(8)]   # grouped together or not, each is alone in its request
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["1"] * 8
    batch = demo_server.post("/v1/group/batch", {"cases": [CASE, anonymous, anonymous]})[2]["results"]
    assert [r["id"] for r in batch] == ["A01", "2", "3"]


def test_batch_keeps_order_and_count(demo_server):
    cases = [{**CASE, "id": f"c{i}"} for i in range(50)] + [{"id": "bad", "dx": ["ZZZ"]}]
    status, _, body = demo_server.post("/v1/group/batch", {"cases": cases})
    assert status == 200 and body["count"] == 51
    assert [r["id"] for r in body["results"]] == [c["id"] for c in cases]
    assert body["results"][-1]["status"] != "grouped"
    status, _, body = demo_server.post("/v1/group/batch?estimate=true&problems=true", {"cases": cases[:2]})
    assert status == 200 and body["results"][0]["estimate"]["payment"] == "8678.25"


def test_explain_equals_grouper_explain_json(demo_server):
    status, _, got = demo_server.post("/v1/explain", CASE)
    assert status == 200
    cli = subprocess.run([sys.executable, "-m", "grouper", "explain", "--dx", "J80.x00|J96.000", "--proc",
                          "39.6500|38.9300", "--sex", "1", "--age", "67", "--dept", "ICU", "--los", "21",
                          "--discharge", "1", "--id", "A01", "--json"], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    expected = json.loads(cli.stdout)
    assert got["steps"] == expected["steps"]
    assert {k: got[k] for k in ("status", "mdc", "adrg", "drg", "weight")} == \
           {k: expected[k] for k in ("status", "mdc", "adrg", "drg", "weight")}
    assert got["estimate"]["payment"] == "8678.25"


def test_explain_of_a_dip_case_equals_grouper_explain_json(tmp_path):
    """Explain on a DIP pack (was 501): the structured decision of `grouper explain --json`, one function
    for both; the case's cost feeds the cost step, as `grouper explain --cases` gives it."""
    pack = ROOT / "tables" / "dip-demo"
    case = {"id": "D1", "sex": 2, "age": 54, "los": 12, "discharge": 1, "dx": ["C53.900", "P39.101"],
            "proc": ["68.4900x006"], "cost": "23165.24"}
    cases = tmp_path / "one.csv"
    cases.write_text("id,sex,age,los,discharge,dx,proc,cost\nD1,2,54,12,1,C53.900|P39.101,68.4900x006,23165.24\n",
                     encoding="utf-8")
    cli = subprocess.run([sys.executable, "-m", "grouper", "explain", "--scheme", str(pack), "--cases", str(cases),
                          "--id", "D1", "--json"], capture_output=True, text=True, cwd=ROOT, check=True)
    expected = json.loads(cli.stdout)
    with running_server(tmp_path, "--scheme", str(pack)) as s:
        status, _, got = s.post("/v1/explain", case)
        assert status == 200, got
        assert {k: v for k, v in got.items() if k not in ("scheme", "scheme_version")} == expected
        assert got["dip"] and got["candidates"] and got["scheme"]
        status, _, problem = s.post("/v1/explain", {**case, "age": [1]})
        assert status == 422 and problem["field"] == "case.age"


def test_what_if_equals_grouper_explain_try(demo_server):
    status, _, body = demo_server.post("/v1/what-if", {"case": CASE, "try": ["each", "+dx:A41.900"]})
    assert status == 200
    cli = subprocess.run([sys.executable, "-m", "grouper", "explain", "--dx", "J80.x00|J96.000", "--proc",
                          "39.6500|38.9300", "--sex", "1", "--age", "67", "--los", "21", "--json", "--try", "each",
                          "--try", "+dx:A41.900"], capture_output=True, text=True, cwd=ROOT, check=True)
    expected = json.loads(cli.stdout)["what_if"]
    assert [(r["changes"], r["drg"], r["weight"]) for r in body["what_if"]] == \
           [(r["changes"], r["drg"], r["weight"]) for r in expected]
    assert all("payment" in r for r in body["what_if"])
    status, _, problem = demo_server.post("/v1/what-if", {"case": CASE, "try": ["-dx:NOPE"]})
    assert status == 422 and problem["field"] == "try[0]"


def test_recommend_lists_single_changes_that_move_the_group(demo_server):
    status, _, body = demo_server.post("/v1/recommend", {"case": CASE, "candidates": {"dx": ["A41.900"]}})
    assert status == 200 and body["as_recorded"]["drg"] == "AH11"
    changes = {s["changes"]: s for s in body["suggestions"]}
    # without J96.000 (an MCC) the case falls to AH15; every suggestion really moves the group
    assert changes["-dx:J96.000"]["drg"] != "AH11"
    assert all(s["changed"] and s["drg"] != "AH11" for s in body["suggestions"])
    weights = [s["weight"] or 0 for s in body["suggestions"]]
    assert weights == sorted(weights, reverse=True)
    assert body["tried"] >= 4   # 1 secondary dx + 2 procedures removed, pdx/pproc swaps, 1 candidate


def test_estimate_levels(demo_server):
    high = demo_server.post("/v1/estimate", {**CASE, "cost": "30000.00"})[2]["estimate"]
    assert high["case_type"] == "high" and high["warning"] == "high_outlier"
    # excess_ratio: 870 × 1.05 + 870 × (30000/8700 − 3) points, × 9.5 yuan, half up to the fen
    from decimal import ROUND_HALF_UP, Decimal
    points = Decimal(870) * Decimal("1.05") + Decimal(870) * (Decimal(3000000) / Decimal(870000) - 3)
    assert high["payment"] == str((points * Decimal("9.5")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    low = demo_server.post("/v1/estimate", {**CASE, "cost": "3000.00"})[2]["estimate"]
    assert low["case_type"] == "low" and low["warning"] == "low_outlier"
    ok = demo_server.post("/v1/estimate", {**CASE, "cost": "5000.00"})[2]["estimate"]
    assert ok["warning"] == "ok"
    near = demo_server.post("/v1/estimate", {**CASE, "cost": "7000.00"})[2]["estimate"]
    assert near["warning"] == "near_standard"
    unknown = demo_server.post("/v1/estimate", {k: v for k, v in CASE.items() if k != "cost"})[2]["estimate"]
    # no cost yet (in the ward): the standard and the lines; type and payment wait for the cost
    assert unknown["warning"] == "unknown" and unknown["payment"] is None and unknown["standard"] == "8678.25"


def test_packs_codes_probes_metrics_openapi_page(demo_server):
    status, _, packs = demo_server.get("/v1/packs")
    assert status == 200 and packs["packs"]["drg"][0]["version"] == "2026.1"
    assert packs["policy"]["point_value"] == "9.5"
    status, _, found = demo_server.get("/v1/codes?q=" + urllib.parse.quote("肺炎") + "&limit=5")
    assert status == 200 and found["codes"] and all("肺炎" in c["name"] or "肺炎" in c["code"] for c in found["codes"])
    assert demo_server.get("/v1/codes?q=J18&kind=dx")[2]["codes"][0]["code"].startswith("J18")
    assert demo_server.get("/healthz")[0] == 200 and demo_server.get("/readyz")[2]["status"] == "ready"
    status, headers, text = demo_server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'grouper_http_requests_total{route="group",code="200"}' in text and "grouper_pack_info{" in text
    assert 'grouper_cases_total{kind="drg",status="grouped"}' in text
    status, _, spec = demo_server.get("/openapi.json")
    assert spec["openapi"].startswith("3.") and "/v1/group/batch" in spec["paths"]
    assert set(spec["components"]["schemas"]["Case"]["properties"]) >= {"dx", "proc", "cost", "discharge_date"}
    status, headers, html = demo_server.get("/")
    assert status == 200 and '<html lang="zh-CN">' in html and "预分组" in html
    assert "http://" not in html and "https://" not in html   # offline: no CDN, nothing fetched elsewhere


# ---- the 医保信息平台 envelope ------------------------------------------------------------------

def envelope(infno: str, encounters: list[dict], patient: dict | None = None) -> dict:
    patient = {"patn_id": "P001", "patn_name": "张三", "gend": "1", "brdy": "1958-03-01", "poolarea": "330100",
               "curr_mdtrt_id": "M001", **(patient or {}), "fsi_encounter_dtos": encounters}
    return {"infno": infno, "msgid": "H33010000001202512061200000001", "mdtrtarea_admvs": "330100", "insuplc_admdvs": "330100",
            "recer_sys_code": "FSI", "infver": "V1.0", "opter_type": "1", "opter": "001", "opter_name": "王医生",
            "inf_time": "2025-12-06 12:00:00", "fixmedins_code": "H33010000001", "fixmedins_name": "示例医院",
            "input": {"data": {"trig_scen": "5", "task_id": "T1", "rule_ids": [], "patient_dtos": [patient]}}}


ENCOUNTER = {"mdtrt_id": "M001", "medins_id": "H33010000001", "medins_name": "示例医院", "medins_lv": "3",
             "adm_date": "2025-11-15 08:00:00", "dscg_date": "2025-12-06 10:00:00", "dscg_dept_codg": "ICU",
             "dscg_main_dise_codg": "J80.x00", "medfee_sumamt": 30000.00, "insutype": "310", "med_type": "21",
             "fsi_diagnose_dtos": [
                 {"dise_id": "1", "inout_dise_type": "1", "maindise_flag": "1", "dias_srt_no": "1", "dise_codg": "J18.900"},
                 {"dise_id": "2", "inout_dise_type": "2", "maindise_flag": "0", "dias_srt_no": "2", "dise_codg": "J96.000"},
                 {"dise_id": "3", "inout_dise_type": "2", "maindise_flag": "1", "dias_srt_no": "1", "dise_codg": "J80.x00"}],
             "fsi_operation_dtos": [
                 {"setl_list_oprn_id": "2", "oprn_code": "38.9300", "main_oprn_flag": "0", "oprn_date": "2025-11-15"},
                 {"setl_list_oprn_id": "1", "oprn_code": "39.6500", "main_oprn_flag": "1", "oprn_date": "2025-11-16"}],
             "fsi_order_dtos": [{"rx_id": "1", "hilist_code": "X", "sumamt": "1.00"}]}


@pytest.mark.parametrize("infno", ["3101", "3102"])
def test_hsa_envelope(demo_server, infno):
    status, _, body = demo_server.post(f"/v1/hsa/{infno}", envelope(infno, [ENCOUNTER]))
    assert status == 200 and body["infcode"] == 0 and body["err_msg"] == ""
    (grouping,) = body["output"]["grouping"]
    assert (grouping["patn_id"], grouping["mdtrt_id"]) == ("P001", "M001")
    # discharge diagnoses (inout_dise_type 2), the main one first; the main operation first; los 21 days
    plain = demo_server.post("/v1/group", {**CASE, "id": "M001", "cost": "30000.00", "los": 21})[2]
    assert (grouping["drg"], grouping["estimate"]["payment"]) == (plain["drg"], plain["estimate"]["payment"])
    findings = body["output"]["result"]
    assert any(f["rule_id"] == "grouper.cost.high_outlier" and f["mdtrt_id"] == "M001" and f["sev_deg"] == "1"
               for f in findings)


def test_hsa_envelope_errors_answer_in_the_envelope(demo_server):
    status, _, body = demo_server.post("/v1/hsa/3101", envelope("3102", [ENCOUNTER]))
    assert status == 422 and body["infcode"] == -1 and "infno" in body["err_msg"]
    bad = {**ENCOUNTER, "fsi_diagnose_dtos": [{"dise_codg": {"x": 1}}]}
    status, _, body = demo_server.post("/v1/hsa/3101", envelope("3101", [bad]))
    assert status == 422 and "fsi_diagnose_dtos[0].dise_codg" in body["err_msg"]
    assert demo_server.post("/v1/hsa/3103", envelope("3103", [ENCOUNTER]))[0] == 404


def test_hsa_mapping_of_ages_and_admission_diagnoses():
    from datetime import date

    from grouper.serve.hsa import read_envelope

    baby = {**ENCOUNTER, "adm_date": "2025-03-11 08:00:00", "dscg_date": "",
            "fsi_diagnose_dtos": [{"inout_dise_type": "1", "maindise_flag": "1", "dise_codg": "P07.300"}]}
    _, [(_, _, case)] = read_envelope(envelope("3102", [baby], {"brdy": "2025-03-01"}), "3102", date(2025, 3, 20))
    assert case["age"] == 0 and case["age_days"] == 10 and case["dx"] == ["P07.300"]
    assert "los" not in case and "discharge_date" not in case   # still in the ward


# ---- errors and limits -----------------------------------------------------------------------

def test_bad_requests_are_4xx_problems_naming_the_field(demo_server):
    cases = [
        ("/v1/group", {"raw": b"{not json"}, 400, None),
        ("/v1/group", {"raw": b""}, 400, None),
        ("/v1/group", {"body": [1, 2]}, 422, "case"),
        ("/v1/group", {"body": {**CASE, "agee": 3}}, 422, "case.agee"),
        ("/v1/group", {"body": {**CASE, "age": {"years": 3}}}, 422, "case.age"),
        ("/v1/group", {"body": {**CASE, "dx": ["J18.900", 5]}}, 422, "case.dx[1]"),
        ("/v1/group", {"body": {**CASE, "dx": ["J18.900|X"]}}, 422, "case.dx[0]"),
        ("/v1/group?kind=dip", {"body": CASE}, 400, "kind"),
        ("/v1/group?verbose=1", {"body": CASE}, 400, "verbose"),
        ("/v1/group/batch", {"body": {"cases": {}}}, 422, "cases"),
        ("/v1/group/batch", {"body": {"cases": [CASE], "extra": 1}}, 422, "extra"),
        ("/v1/group/batch", {"body": {"cases": [CASE, {"sex": [1]}]}}, 422, "cases[1].sex"),
        ("/v1/what-if", {"body": {"case": CASE}}, 422, "try"),
        ("/v1/recommend", {"body": {"case": CASE, "candidates": {"ops": []}}}, 422, "candidates.ops"),
        ("/v1/codes?limit=0", {"method": "GET"}, 400, "limit"),
    ]
    for path, how, code, field in cases:
        if how.get("method") == "GET":
            status, headers, body = demo_server.get(path)
        else:
            status, headers, body = demo_server.post(path, how.get("body"), raw=how.get("raw"))
        assert status == code, (path, how, body)
        assert headers["content-type"] == "application/problem+json", (path, how)
        assert body["status"] == code and body["detail"]
        if field:
            assert body["field"] == field, (path, how, body)
    status, headers, body = demo_server.post("/v1/group", raw=b"a=1", headers={"Content-Type": "text/plain"})
    assert status == 415 and headers["content-type"] == "application/problem+json"
    assert demo_server.get("/v1/nowhere")[0] == 404 and demo_server.get("/v1/group")[0] == 405


def test_admin_token(demo_server):
    assert demo_server.post("/v1/admin/reload")[0] == 401
    assert demo_server.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"})[0] == 401
    status, _, body = demo_server.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body["generation"] >= 2
    status, _, body = demo_server.post("/v1/admin/reload", {"scheme": "/etc"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and "no body" in body["detail"]   # a request never names a file


def test_limits_cors_and_no_token(tmp_path):
    with running_server(tmp_path, "--max-body", "4096", "--max-cases", "3", "--cors-origin", "http://his.example",
                        "--timeout", "2") as s:
        status, _, body = s.post("/v1/group/batch", {"cases": [CASE] * 4})
        assert status == 413 and body["field"] == "cases"
        status, _, body = s.post("/v1/group/batch", {"cases": [{**CASE, "id": "x" * 150}] * 30})
        assert status == 413 and "4,096 bytes" in body["detail"]
        status, headers, _ = s.post("/v1/group", CASE, headers={"Origin": "http://his.example"})
        assert status == 200 and headers.get("access-control-allow-origin") == "http://his.example"
        status, headers, _ = s.post("/v1/group", CASE, headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in headers
        assert s.post("/v1/admin/reload", headers={"Authorization": "Bearer x"})[0] == 403   # no token: admin off
        assert "estimate" not in s.post("/v1/group", CASE)[2]   # no policy served
        assert s.post("/v1/estimate", CASE)[0] == 501
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as slow:   # a body that never completes
            slow.sendall(b"POST /v1/group HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"id\":")
            answer = slow.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408") and b"application/problem+json" in answer


def test_cors_is_off_by_default(demo_server):
    _, headers, _ = demo_server.post("/v1/group", CASE, headers={"Origin": "http://his.example"})
    assert "access-control-allow-origin" not in headers


def test_fuzzed_requests_never_get_a_500(demo_server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from grouper.serve.cases import FIELDS

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                        st.text(max_size=30))
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                          max_leaves=8)
    keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12))
    cases = st.dictionaries(keys, values, max_size=8)
    bodies = st.one_of(cases, values, st.fixed_dictionaries({"cases": st.lists(cases, max_size=3)}),
                       st.fixed_dictionaries({"case": cases, "try": values}))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, path=st.sampled_from(["/v1/group", "/v1/group/batch", "/v1/explain", "/v1/what-if",
                                              "/v1/recommend", "/v1/estimate", "/v1/hsa/3101"]))
    def check(body, path):
        try:
            raw = json.dumps(body, allow_nan=True).encode()
        except (ValueError, RecursionError):
            return
        status, _, answer = demo_server.post(path, raw=raw)
        assert status < 500, (path, body, answer)

    check()


# ---- golden sets -----------------------------------------------------------------------------

def test_golden_set_over_http_equals_grouper_group(chs_tables, chs_pack, tmp_path):
    """All 20,000 golden cases through /v1/group/batch (10,000 a request) equal `grouper group` and the
    expected results; explain over HTTP equals `grouper explain` for a sample."""
    from grouper.explain import explain_case
    from grouper.io import read_cases
    from grouper.scheme import load_scheme

    out = tmp_path / "cli.csv"
    subprocess.run([sys.executable, "-m", "grouper", "group", str(chs_tables / "golden" / "cases.csv"), "-o", str(out),
                    "--scheme", str(chs_pack), "-q"], check=True, cwd=ROOT)
    cli = pl.read_csv(out, infer_schema=False).select("id", "status", "mdc", "adrg", "drg")
    raw = pl.read_csv(chs_tables / "golden" / "cases.csv", infer_schema=False)
    records = [{k: v for k, v in r.items() if v is not None} for r in raw.to_dicts()]
    with running_server(tmp_path, "--scheme", str(chs_pack)) as s:
        got = []
        for start in range(0, len(records), 10_000):
            status, _, body = s.post("/v1/group/batch", {"cases": records[start:start + 10_000]})
            assert status == 200
            got += body["results"]
        http = pl.DataFrame([{c: r[c] for c in ("id", "status", "mdc", "adrg", "drg")} for r in got],
                            schema={c: pl.String for c in ("id", "status", "mdc", "adrg", "drg")})
        assert http.equals(cli)
        expected = pl.read_csv(chs_tables / "golden" / "expected.csv", infer_schema=False)
        assert http.select(expected.columns).equals(expected)
        scheme = load_scheme(chs_pack)
        canonical = read_cases(chs_tables / "golden" / "cases.csv")
        for i in range(0, len(records), 997):
            status, _, explained = s.post("/v1/explain", records[i])
            assert status == 200
            local = explain_case(scheme, canonical[i:i + 1]).to_dict()
            assert explained["steps"] == json.loads(json.dumps(local["steps"], ensure_ascii=False))
            assert explained["drg"] == local["drg"] == expected["drg"][i]


# ---- versions by discharge date, reload, shutdown --------------------------------------------

def _pack_copy(tmp_path: Path, version: str) -> Path:
    pack = tmp_path / f"pack-{version}"
    shutil.copytree(DEMO, pack)
    scheme = pack / "scheme.grp"
    scheme.write_text(scheme.read_text(encoding="utf-8").replace('version "2026.1"', f'version "{version}"', 1),
                      encoding="utf-8")
    return pack


def test_packs_by_discharge_date(tmp_path):
    old, new = _pack_copy(tmp_path, "2024"), _pack_copy(tmp_path, "2025")
    with running_server(tmp_path, "--scheme", f"2024-01-01={old}", "--scheme", f"2025-01-01={new}") as s:
        packs = s.get("/v1/packs")[2]["packs"]["drg"]
        assert [(p["version"], p["from"]) for p in packs] == [("2024", "2024-01-01"), ("2025", "2025-01-01")]
        cases = [{**CASE, "discharge_date": d} for d in ("2024-06-30", "2025-01-01", "2023-12-31", "2025/13/01")]
        cases.append({**CASE, "discharge_date": "0000-01-01"})   # was a 500: year 0 is no Python date
        results = s.post("/v1/group/batch", {"cases": cases + [CASE]})[2]["results"]
        assert [r["scheme_version"] for r in results] == ["2024", "2025", None, None, None, "2025"]
        assert [r["reason"] for r in results[2:5]] == ["no_scheme_in_force"] * 3
        for case, result in zip(cases + [CASE], results):   # one case alone: the same pack and result
            assert s.post("/v1/group", case)[2] == result
    with running_server(tmp_path, "--scheme", f"2025-01-01={new}") as s:   # one dated pack: earlier cases have none
        results = s.post("/v1/group/batch", {"cases": [CASE, {**CASE, "discharge_date": "2024-12-31"}]})[2]["results"]
        assert [(r["status"], r["scheme_version"]) for r in results] == [("grouped", "2025"), ("invalid", None)]


def test_reload_refuses_a_bad_pack_and_never_drops_a_request(tmp_path):
    pack = _pack_copy(tmp_path, "v1")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    scheme = pack / "scheme.grp"
    good = scheme.read_text(encoding="utf-8")
    with running_server(tmp_path, "--scheme", str(pack), "--token-file", str(token)) as s:
        failures, done = [], threading.Event()

        def hammer():
            while not done.is_set():
                status, _, body = s.post("/v1/group", CASE)
                if status != 200 or body.get("drg") != "AH11":
                    failures.append((status, body))

        clients = [threading.Thread(target=hammer) for _ in range(4)]
        for c in clients:
            c.start()
        try:
            scheme.write_text(good + "\nmdc MDCZ \"broken\" when pdx in no_such_table\n", encoding="utf-8")
            status, _, body = s.post("/v1/admin/reload", headers=auth)
            assert status == 422 and body["title"] == "Reload refused"
            assert body["diagnostics"] and any("scheme.grp" in (d.get("file") or "") for d in body["diagnostics"])
            assert s.get("/v1/packs")[2]["packs"]["drg"][0]["version"] == "v1"   # the old pack keeps serving
            scheme.write_text(good.replace('version "v1"', 'version "v2"', 1), encoding="utf-8")
            status, _, body = s.post("/v1/admin/reload", headers=auth)
            assert status == 200 and body["packs"]["drg"][0]["version"] == "v2"
            assert s.post("/v1/group", CASE)[2]["scheme_version"] == "v2"
            time.sleep(0.5)
        finally:
            done.set()
            for c in clients:
                c.join()
        assert not failures
        metrics = s.get("/metrics")[2]
        assert 'grouper_reloads_total{result="refused"} 1' in metrics and 'grouper_reloads_total{result="ok"} 1' in metrics


def test_sigterm_lets_requests_in_flight_finish(tmp_path, golden_cases):
    records = [{k: v for k, v in r.items() if v is not None and k != "dx" and k != "proc"} |
               {"dx": r["dx"], "proc": r["proc"]} for r in golden_cases.head(10_000).to_dicts()]
    with running_server(tmp_path) as s:
        answers = []
        worker = threading.Thread(target=lambda: answers.append(s.post("/v1/group/batch", {"cases": records})))
        worker.start()
        time.sleep(0.3)   # the request is being read or grouped
        s.process.send_signal(signal.SIGTERM)
        worker.join(timeout=120)
        assert answers and answers[0][0] == 200 and answers[0][2]["count"] == 10_000
        assert s.process.wait(timeout=60) == 143   # the CLI's exit code after SIGTERM (128 + 15)
        with pytest.raises(OSError):
            s.get("/healthz", timeout=5)


def test_a_bad_pack_or_policy_stops_the_command_before_it_listens(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\nname = \"x\"\nmethod = \"pointz\"\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "grouper", "serve", "--policy", str(bad), "--port", str(free_port())],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and f"{bad}:3:" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "grouper", "serve", "--scheme", "2025-13-01=tables/demo"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and "not a date" in run.stderr


def test_the_lean_path_answers_as_starlette(tmp_path):
    """/v1/group and /v1/estimate skip Starlette's routing (grouper.serve.app.Front) unless CORS is on:
    both ways give the same answers, limits and errors, and the lean way times out a slow body too."""
    requests = [("/v1/group", {"body": CASE}), ("/v1/group?problems=true&estimate=false", {"body": CASE}),
                ("/v1/group", {"raw": b"{not json"}), ("/v1/group", {"raw": b'{"age": NaN}'}),
                ("/v1/group", {"raw": b'{"age": 123456789012345678901234}'}), ("/v1/group?verbose=1", {"body": CASE}),
                ("/v1/group", {"raw": b"a=1", "headers": {"Content-Type": "text/plain"}}),
                ("/v1/group", {"body": {**CASE, "dx": ["J18.900"] * 100}}),
                ("/v1/group", {"body": {**CASE, "dx": "J18.900|X"}}), ("/v1/estimate", {"body": CASE})]
    answers = []
    for extra in ((), ("--cors-origin", "http://his.example")):
        with running_server(tmp_path, "--max-body", "1024", "--timeout", "2", *extra) as s:
            answers.append([s.post(path, how.get("body"), raw=how.get("raw"), headers=how.get("headers"))
                            for path, how in requests])
            if not extra:
                with socket.create_connection(("127.0.0.1", s.port), timeout=30) as slow:   # a body that never completes
                    slow.sendall(b"POST /v1/group HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n{\"id\":")
                    answer = slow.recv(65536)
                assert answer.startswith(b"HTTP/1.1 408") and b"application/problem+json" in answer
    lean, starlette = answers
    assert [(status, body) for status, _, body in lean] == [(status, body) for status, _, body in starlette]
    assert [status for status, _, _ in lean] == [200, 200, 400, 422, 422, 400, 415, 413, 200, 501]
    assert all(headers["content-type"] == starlette[i][1]["content-type"] for i, (_, headers, _) in enumerate(lean))
