"""Every key a screens file may hold, and the catalogue of screen logics with their parameters.

A screens file states each rule the way the national rule framework (两库, 国家医保局《医疗保障基金
智能审核和监控知识库、规则库管理办法(试行)》2022) defines one: a logic, its parameters and
thresholds, and a judgment level. The schema is data, walked by the validator the settlement policy uses
(grouper.tomlcheck), so a screens file is checked exactly like a policy file: unknown keys,
wrong types and impossible values are reported at file:line:column with a hint.

A logic is the code a rule runs; `LOGICS` lists each one with its kind (case, stays, providers),
the input fields it needs, its parameters (with defaults) and the evidence it can show.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tomlcheck import REQUIRED, Bands, Section, Spec

LEVELS = ("疑似", "违规")            # suspected / violation (两库 判断等级)
STAGES = ("事前", "事中", "事后")     # before, during, after the stay (监管环节)
UNITS = ("hospital", "dept", "doctor")
PERSONAL_FIELDS = ("patient_id", "phone", "address")
EXTRA_FIELDS = ("doctor", "phone", "address")   # not in the grouped-file contract: read beside it
MONEY = ("none", "whole", "alternative_group", "shifted")
CONTROLS = ("percentile", "fence")
DISCHARGE_MODES = ("1", "2", "3", "4", "5", "9")   # 离院方式: 医嘱离院, 转院, 转社区, 非医嘱离院, 死亡, 其他


@dataclass(frozen=True)
class Logic:
    kind: str                  # "case", "stays" or "providers"
    doc: str
    fields: tuple[str, ...]    # input fields the logic needs (a missing one skips the rule)
    params: dict[str, Spec]
    evidence: tuple[str, ...]  # what a finding can show besides the case fields
    money: str = "none"        # how the money at stake is estimated (see grouper.screen.money)


def _share(doc: str, default) -> Spec:
    return Spec("number", doc, default, low=0.0, high=1.0)


_PROVIDER_PARAMS = {
    "by": Spec("choice", "the unit compared with its peers: hospital, dept (a department of a hospital) or doctor",
               "hospital", choices=UNITS),
    "control": Spec("choice", "the control limit: `percentile` (a unit is flagged above that percentile of its peers' rates: "
                              "PEPPER's way, which flags a fixed share of the units) or `fence` (above Q3 + `fence` × IQR of its "
                              "peers' rates: Tukey's outlier fence, which flags only the units that stand apart)",
                    "percentile", choices=CONTROLS),
    "percentile": Spec("number", "control = percentile: the percentile of the peers' rates (PEPPER uses the 80th)", 80,
                       low=0.0, high=100.0, high_open=True),
    "fence": Spec("number", "control = fence: the multiple of the peers' interquartile range above their Q3 (Tukey: 1.5)",
                  1.5, low=0.0),
    "min_cases": Spec("int", "units with fewer cases (in the denominator) are neither flagged nor used for the limit", 30, low=1),
    "peers": Spec("choice", "who a unit is compared with: units of the same hospital level, or all units",
                  "hospital_level", choices=("hospital_level", "all")),
}

CASE_FIELDS = ("id", "status", "drg", "adrg", "hospital", "hospital_level", "dept", "cost", "fund_paid", "los", "sex",
               "age", "discharge", "insurance", "admission_date", "discharge_date", "patient_id")

LOGICS: dict[str, Logic] = {
    "validation_warning": Logic(
        "case", "the case carries one of these validation warnings or invalid reasons of the scheme (性别/年龄与诊断不符 ...)",
        ("warnings",),
        {"warnings": Spec("list", "warning or reason names of the scheme's `warn`/`invalid` rules", REQUIRED)},
        ("warnings", "reason", "sex", "age")),
    "long_stay": Logic(
        "case", "a stay of at least `min_los` days (超长住院)", ("los",),
        {"min_los": Spec("int", "days", 60, low=1)}, ("los",)),
    "cost_outlier": Logic(
        "case", "cost at least `ratio` times the median cost of its DRG at its hospital level", ("drg", "cost", "hospital_level"),
        {"ratio": Spec("number", "times the group's median cost", 10, low=1.0, low_open=True),
         "min_group_cases": Spec("int", "groups with fewer cases are not judged", 20, low=1)},
        ("cost", "group_median_cost", "cost_ratio")),
    "mcc_upcoding": Logic(
        "case", "a case in an MCC group, at a unit (hospital, department or doctor) whose MCC share is above its peers' "
                "control limit, whose cost and stay are both within the normal range of the same ADRG's group without "
                "complications (高套分组: the MCC diagnosis came without the care an MCC brings)",
        ("drg", "adrg", "cost", "los", "hospital_level", "discharge"),
        {"mcc_suffix": Spec("str", "last character of an MCC group's code (CHS-DRG: 1)", "1"),
         "alternative_suffixes": Spec("list", "the group it is compared with: the first of these suffixes the ADRG has "
                                              "(CHS-DRG: 5 no CC/MCC, then 3 CC)", ["5", "3"]),
         "normal_range": Spec("number", "the alternative group's normal range: log cost and log LOS at most Q3 + this × IQR "
                                        "of its cases at the same hospital level (Tukey's fence: 1.5; on the log scale, as costs "
                                        "and stays are skewed)", 1.5, low=0.0),
         "discharge": Spec("list", "discharge modes judged (default: every mode: the test asks for MCC-level care, so a "
                                   "stay short for its own reasons explains nothing)", list(DISCHARGE_MODES)),
         "within": Spec("choice", "the unit whose MCC share is judged first (only its cases are listed), or none: every MCC "
                                  "case within the normal range (most genuine MCC cases too: a list, not a screen)",
                        "hospital", choices=("none", *UNITS)),
         "control": Spec("choice", "the unit's control limit: fence (Q3 + `fence` × IQR of its peers' MCC shares) or "
                                   "percentile", "fence", choices=CONTROLS),
         "fence": Spec("number", "control = fence: the multiple of the peers' IQR (Tukey: 1.5)", 1.5, low=0.0),
         "percentile": Spec("number", "control = percentile: the percentile of the peers' MCC shares", 80, low=0.0,
                            high=100.0, high_open=True),
         "peers": _PROVIDER_PARAMS["peers"],
         "min_cases": Spec("int", "units with fewer cases (of ADRGs with an MCC group) are not judged", 100, low=1),
         "min_group_cases": Spec("int", "alternative groups with fewer cases (at the level) are not used", 20, low=1)},
        ("drg", "alternative_drg", "cost", "alternative_cost_limit", "los", "alternative_los_limit", "unit_mcc_share",
         "unit_limit"), "alternative_group"),
    "low_weight_admission": Logic(
        "case", "a stay of at most `max_los` days, ordinary discharge, in a low-weight group, costing at most `cost_ratio` of "
                "the group's median (低标入院)", ("drg", "cost", "los", "discharge", "hospital_level"),
        {"max_weight": Spec("number", "groups whose weight (relative to the mean case) is at most this are low-weight",
                            0.6, low=0.0, low_open=True),
         "max_los": Spec("int", "days", 2, low=0),
         "cost_ratio": Spec("number", "flag when cost <= this × the group's median cost (same hospital level)", 0.4,
                            low=0.0, low_open=True),
         "discharge": Spec("list", "discharge modes counted (1 医嘱离院)", ["1"]),
         "min_group_cases": Spec("int", "groups with fewer cases are not judged", 20, low=1)},
        ("drg", "weight", "los", "cost", "group_median_cost"), "whole"),
    "self_pay_share": Logic(
        "case", "the patient's share of the cost (1 − fund_paid / cost) is at least `excess` above the median share of cases "
                "of the same insurance type and hospital level (转嫁费用)", ("cost", "fund_paid", "insurance", "hospital_level"),
        {"excess": _share("share points above the median", 0.2),
         "min_cost": Spec("money", "cases cheaper than this (yuan) are not judged", 100)},
        ("self_pay_share", "median_self_pay_share"), "shifted"),
    "readmission": Logic(
        "stays", "the same patient admitted again within `days` days of a discharge, into the same ADRG (分解住院)",
        ("patient_id", "hospital", "admission_date", "discharge_date", "adrg"),
        {"days": Spec("int", "days from the previous discharge to this admission", 15, low=0),
         "same_hospital": Spec("bool", "only readmissions to the same hospital", True),
         "same": Spec("choice", "what must match: the ADRG, the DRG, or nothing", "adrg", choices=("adrg", "drg", "any"))},
        ("previous_id", "previous_hospital", "days_between"), "whole"),
    "continuous_stay": Logic(
        "stays", "a patient in hospital for at least `min_days` days within `window` days (长期住院, 挂床)",
        ("patient_id", "admission_date", "discharge_date"),
        {"min_days": Spec("int", "days in hospital", 300, low=1), "window": Spec("int", "days", 365, low=1)},
        ("days_in_hospital", "stays")),
    "transfer_chain": Logic(
        "stays", "a chain of at least `min_stays` stays of one patient at different hospitals, each admitted within `days` days "
                 "of the previous discharge (转院链)", ("patient_id", "hospital", "admission_date", "discharge_date"),
        {"min_stays": Spec("int", "stays in the chain", 3, low=2), "days": Spec("int", "days between stays", 1, low=0)},
        ("chain_stays", "chain_hospitals")),
    "shared_contact": Logic(
        "stays", "at least `min_patients` different patients give the same contact (phone or address) in the year "
                 "(多人共用联系电话)", ("patient_id",),
        {"field": Spec("choice", "the contact field", "phone", choices=("phone", "address")),
         "min_patients": Spec("int", "patients sharing it", 5, low=2)},
        ("contact", "patients_sharing")),
    "provider_share": Logic(
        "providers", "a unit's share of cases in a risk area above the percentile control limit of its peers (PEPPER)",
        ("hospital",),
        {**_PROVIDER_PARAMS,
         "area": Spec("choice", "mcc: MCC groups among cases of ADRGs with an MCC group; one_day: stays of at most 1 day "
                                "(transfers and deaths left out); readmission: readmissions within `days`; low_weight: "
                                "cases in low-weight groups", REQUIRED, choices=("mcc", "one_day", "readmission", "low_weight")),
         "days": Spec("int", "readmission window (area = readmission)", 15, low=0),
         "max_weight": Spec("number", "low-weight groups (area = low_weight)", 0.6, low=0.0, low_open=True),
         "mcc_suffix": Spec("str", "last character of an MCC group's code (area = mcc)", "1")},
        ("rate", "limit", "cases", "target_cases")),
    "cmi_jump": Logic(
        "providers", "a unit's CMI change from the previous year above the percentile control limit of its peers",
        ("hospital", "discharge_date", "drg"), dict(_PROVIDER_PARAMS),
        ("rate", "limit", "cases")),
}

RULE_KEYS = {
    "code": Spec("str", "a unique code, e.g. SPLIT_STAY (outputs and the score table use it)", REQUIRED),
    "name": Spec("str", "a name shown in outputs", REQUIRED),
    "logic": Spec("choice", "the screen it runs (see the catalogue)", REQUIRED, choices=tuple(LOGICS)),
    "level": Spec("choice", "判断等级: 疑似 (suspected: to review) or 违规 (violation)", REQUIRED, choices=LEVELS),
    "stage": Spec("choice", "监管环节: 事前, 事中 or 事后", "事后", choices=STAGES),
    "source": Spec("str", "the policy text or practice the rule follows", REQUIRED),
    "enabled": Spec("bool", "false: the rule is listed but not run", True),
    "evidence": Spec("list", "evidence fields shown with a finding (default: the logic's)"),
}

SCHEMA = Section("a screens file", {
    "screens": Section("what the screens file is", {
        "name": Spec("str", "a name shown in outputs", REQUIRED),
        "region": Spec("str", "the region it models (documentation only)"),
        "source": Spec("str", "notes on where the rules come from (documentation only)"),
    }, required=True),
    "scores": Section("the doctor score table (医保支付资格 记分); absent: none is written", {
        "violation_points": Spec("int", "points per 违规 finding", 2, low=0),
        "suspect_points": Spec("int", "points per 疑似 finding", 0, low=0),
        "case_cap": Spec("int", "at most this many points from one case", 6, low=0),
        "warn_at": Spec("int", "a year's points from which the doctor is to be talked to (约谈)", 3, low=1),
        "pause_at": Spec("int", "... suspended (暂停医保支付资格)", 9, low=1),
        "stop_at": Spec("int", "... terminated (终止医保支付资格)", 12, low=1),
    }),
    "rule": Bands("a rule ([[rule]]): common keys, plus [rule.params] checked against its logic", {}),
})
