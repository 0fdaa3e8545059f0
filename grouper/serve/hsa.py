"""The national 医保信息平台 envelope for pre- and in-stay checks: 3101 (明细审核事前分析服务) and
3102 (明细审核事中分析服务).

Request (the platform's common input envelope, its business part under `input.data`):

    {"infno": "3101", "msgid": "...", "fixmedins_code": "...", ..., "input": {"data": {
        "trig_scen": "3", "task_id": "...",
        "patient_dtos": [{"patn_id", "patn_name", "gend", "brdy", "poolarea", "curr_mdtrt_id",
            "fsi_encounter_dtos": [{"mdtrt_id", "medins_id", "medins_lv", "adm_date", "dscg_date",
                "dscg_dept_codg", "adm_dept_codg", "dscg_main_dise_codg", "medfee_sumamt", "insutype",
                "fsi_diagnose_dtos": [{"dise_codg", "maindise_flag", "dias_srt_no", "inout_dise_type", ...}],
                "fsi_operation_dtos": [{"oprn_code", "main_oprn_flag", "oprn_date", ...}],
                "fsi_order_dtos": [...]}]}]}}}

Each encounter becomes one case (the mapping is `encounter_case`; docs/serve.md has the table). Fields
the grouper does not read (orders, names, doctors) are allowed and ignored: hospital systems send the
whole record. A list the platform sends as a single object is accepted as a list of one.

Response: the platform's output envelope (`infcode` 0, `inf_refmsgid`, `refmsg_time`, `respond_time`,
`err_msg`, `output`). `output.result` lists findings in the 3101/3102 result shape (jr_id, rule_id,
rule_name, vola_cont, patn_id, mdtrt_id, sev_deg, …): each validation problem of a case and each cost
warning of its estimate. `output.grouping` (an addition of this server: the platform's own answer has no
group) holds one entry per encounter: patn_id, mdtrt_id and the result of /v1/group.
"""
from __future__ import annotations

import time
import uuid
from datetime import date

from .cases import ShapeError

INFNOS = {"3101": "明细审核事前分析服务", "3102": "明细审核事中分析服务"}


def _list(value, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return value
    raise ShapeError(where, "expected a list of objects")


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ShapeError(where, "expected an object")
    return value


def _scalar(value, where: str):
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    raise ShapeError(where, "expected text or a number")


def _day(text) -> date | None:
    """The date part of the platform's "yyyy-MM-dd HH:mm:ss" (or yyyy-MM-dd); None when absent or unreadable."""
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _age(birth: date | None, on: date) -> tuple[int | None, int | None]:
    """(age in full years, age in days when under one year) on a date."""
    if birth is None or birth > on:
        return None, None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return years, ((on - birth).days if years < 1 else None)


def _serial(item: dict) -> tuple[int, str]:
    number = str(item.get("dias_srt_no") or "")
    return (int(number) if number.isdigit() else 1 << 30, number)


def encounter_case(patient: dict, encounter: dict, where: str, today: date) -> dict:
    """One encounter of one patient → a plain JSON case (grouper.serve.cases)."""
    for key in ("mdtrt_id", "medins_id", "medins_lv", "adm_date", "dscg_date", "dscg_dept_codg", "adm_dept_codg",
                "dscg_main_dise_codg", "medfee_sumamt", "insutype"):
        _scalar(encounter.get(key), f"{where}.{key}")
    for key in ("patn_id", "gend", "brdy"):
        _scalar(patient.get(key), f"{where.rsplit('.fsi_encounter_dtos', 1)[0]}.{key}")
    diagnoses = [_object(d, f"{where}.fsi_diagnose_dtos[{i}]")
                 for i, d in enumerate(_list(encounter.get("fsi_diagnose_dtos"), f"{where}.fsi_diagnose_dtos"))]
    discharge_dx = [d for d in diagnoses if str(d.get("inout_dise_type") or "") == "2"]
    diagnoses = sorted(discharge_dx or diagnoses, key=_serial)   # 出院诊断 when there are any, else 入院诊断
    for i, d in enumerate(diagnoses):
        _scalar(d.get("dise_codg"), f"{where}.fsi_diagnose_dtos[{i}].dise_codg")
    principal = next((d for d in diagnoses if str(d.get("maindise_flag") or "") == "1"), None)
    codes = [str(d.get("dise_codg") or "") for d in diagnoses if d is not principal and d.get("dise_codg")]
    main = str(principal.get("dise_codg") or "") if principal else str(encounter.get("dscg_main_dise_codg") or "")
    if not main and codes:
        main, codes = codes[0], codes[1:]
    dx = [main] + [c for c in codes if c != main]
    operations = [_object(o, f"{where}.fsi_operation_dtos[{i}]")
                  for i, o in enumerate(_list(encounter.get("fsi_operation_dtos"), f"{where}.fsi_operation_dtos"))]
    for i, o in enumerate(operations):
        _scalar(o.get("oprn_code"), f"{where}.fsi_operation_dtos[{i}].oprn_code")
    operations.sort(key=lambda o: str(o.get("main_oprn_flag") or "") != "1")   # the main operation first, stable
    proc = [str(o["oprn_code"]) for o in operations if o.get("oprn_code")]
    admitted, discharged = _day(encounter.get("adm_date")), _day(encounter.get("dscg_date"))
    age, age_days = _age(_day(patient.get("brdy")), admitted or today)
    case = {
        "id": encounter.get("mdtrt_id"), "patient_id": patient.get("patn_id"), "sex": patient.get("gend"),
        "age": age, "age_days": age_days, "dept": encounter.get("dscg_dept_codg") or encounter.get("adm_dept_codg"),
        "los": (discharged - admitted).days if admitted and discharged else None,
        "dx": dx, "proc": proc, "hospital": encounter.get("medins_id"), "hospital_level": encounter.get("medins_lv"),
        "insurance": encounter.get("insutype"), "cost": encounter.get("medfee_sumamt"),
        "admission_date": None if admitted is None else admitted.isoformat(),
        "discharge_date": None if discharged is None else discharged.isoformat(),
    }
    return {k: v for k, v in case.items() if v not in (None, "")}


def read_envelope(body, infno: str, today: date | None = None) -> tuple[dict, list[tuple[str, str, dict]]]:
    """The envelope's `input.data` and its encounters as (patn_id, mdtrt_id, case)."""
    today = today or date.today()
    body = _object(body, "(body)")
    given = body.get("infno")
    if given is not None and str(given) != infno:
        raise ShapeError("infno", f"the envelope says infno {given!r} but was sent to {infno}")
    data = _object(_object(body.get("input"), "input").get("data"), "input.data")
    encounters = []
    for p, patient in enumerate(_list(data.get("patient_dtos"), "input.data.patient_dtos")):
        at = f"input.data.patient_dtos[{p}]"
        patient = _object(patient, at)
        for e, encounter in enumerate(_list(patient.get("fsi_encounter_dtos"), f"{at}.fsi_encounter_dtos")):
            where = f"{at}.fsi_encounter_dtos[{e}]"
            encounter = _object(encounter, where)
            encounters.append((str(patient.get("patn_id") or ""), str(encounter.get("mdtrt_id") or ""),
                               encounter_case(patient, encounter, where, today)))
    if not encounters:
        raise ShapeError("input.data.patient_dtos", "no patient with an encounter (fsi_encounter_dtos)")
    return data, encounters


def _now() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.localtime()) + f"{int(time.time() * 1000) % 1000:03d}"


SEVERITY = {"error": "1", "warning": "2"}   # sev_deg: 1 明确违规, 2 可疑 (as the findings here use them)


def answer(body: dict, data: dict, encounters: list, results: list[dict], received: str) -> dict:
    """The output envelope: findings in the 3101/3102 result shape, and the groups."""
    findings, grouping = [], []
    task = data.get("task_id")
    for (patn_id, mdtrt_id, _), result in zip(encounters, results):
        grouping.append({"patn_id": patn_id, "mdtrt_id": mdtrt_id, **result})
        for problem in result.get("problems", []):
            findings.append(_finding(patn_id, mdtrt_id, task, f"grouper.{problem['reason']}", problem["reason"],
                                     problem.get("detail") or "", SEVERITY.get(problem["level"], "2")))
        est = result.get("estimate")
        if est and est.get("warning") in ("near_standard", "over_standard", "near_high", "high_outlier", "low_outlier"):
            text = f"{est['warning_text']}: 费用 {est['cost']} 元, 支付标准 {est['standard']} 元, 高倍率线 {est['high_line']} 元"
            findings.append(_finding(patn_id, mdtrt_id, task, f"grouper.cost.{est['warning']}", est["warning_text"], text,
                                     "1" if est["warning"] == "high_outlier" else "2"))
    return {"infcode": 0, "inf_refmsgid": uuid.uuid4().hex, "refmsg_time": received, "respond_time": _now(),
            "err_msg": "", "warn_msg": None, "cainfo": None, "signtype": None,
            "output": {"result": findings, "grouping": grouping}}


def _finding(patn_id, mdtrt_id, task, rule_id, rule_name, content, severity) -> dict:
    return {"jr_id": uuid.uuid4().hex, "rule_id": rule_id, "rule_name": rule_name, "vola_cont": content,
            "patn_id": patn_id, "mdtrt_id": mdtrt_id, "judge_result_detail_dtos": [], "vola_amt": 0,
            "vola_amt_stas": "0", "sev_deg": severity, "vola_evid": "", "vola_bhvr_type": "", "task_id": task}


def error_envelope(message: str, received: str) -> dict:
    return {"infcode": -1, "inf_refmsgid": uuid.uuid4().hex, "refmsg_time": received, "respond_time": _now(),
            "err_msg": message, "warn_msg": None, "cainfo": None, "signtype": None, "output": None}
