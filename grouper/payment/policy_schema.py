"""Every key a settlement policy file may hold: its type, allowed values, default and meaning.

The schema is data: the validator walks it (unknown keys, wrong types, impossible values), the
docs/settlement.md's key-by-key reference is generated from it (`python -m grouper.payment.policy_schema`), and a
test checks that it lists every key. A key's `doc` names its source where one exists
(see `../shared/settlement.md`); a default marked "regional" is a choice, not a national rule.
"""
from __future__ import annotations

from decimal import Decimal

from ..tomlcheck import REQUIRED, Bands, Section, Spec, dotted, range_text  # noqa: F401  (the schema's building blocks)


HIGH_FORMULAS = ("excess_ratio", "excess_ratio_coefficient", "excess_ratio_plus_coefficient", "excess_cost",
                 "cost", "standard", "fee_for_service")
LOW_FORMULAS = ("ratio", "ratio_capped", "ratio_no_coefficient", "ratio_capped_no_coefficient", "cost", "standard",
                "fee_for_service")
INCOMPLETE_FORMULAS = ("ratio_capped", "ratio_capped_no_coefficient", "ratio", "cost", "standard", "fee_for_service")


def _share(doc: str, default=None, **kw) -> Spec:
    return Spec("number", doc, default, low=0.0, high=1.0, **kw)


SCHEMA = Section("a settlement policy", {
    "policy": Section("what the policy is", {
        "name": Spec("str", "a name shown in outputs and the report", REQUIRED),
        "method": Spec("choice", "`points` (点数法: a regional budget shared by points), `rate` (费率法: a base rate in yuan per unit of weight) "
                                 "or `dip` (按病种分值付费: points from a DIP pack's scores, then as `points`)",
                       REQUIRED, choices=("points", "rate", "dip")),
        "region": Spec("str", "the region it models (documentation only)"),
        "source": Spec("str", "the legal text or notes it follows (documentation only)"),
        "extends": Spec("path", "a base policy file (relative to this one) whose keys this file overrides: tables merge key by key, "
                                "arrays and values are replaced; use it for a reform to compare against its baseline"),
    }, required=True),
    "dip": Section("DIP settings (method = dip; the base points of a case are its 病种分值 × its auxiliary factor)", {
        "primary_coefficient": Spec("number", "coefficient of 基层病种 (primary-care groups) at every hospital level; absent: the level's coefficient",
                                    low=0.0, low_open=True),
        "extreme": Spec("number", "a case costing more than this many times its group's mean cost is flagged for 特例单议 (expert review) "
                                  "and follows `cases.special_review`; absent: no such flag", low=1.0),
        "auxiliary": Spec("bool", "apply the auxiliary catalogue's factor (辅助目录) to the base points", True),
    }),
    "points": Section("点数法 settings (method = points)", {
        "scale": Spec("number", "base points of a group = RW × scale (×100 confirmed in Jinhua, Zigong)", Decimal(100), low=0.0, low_open=True),
        "budget_point_value": Spec("number", "预算点值 in yuan per point; absent: the distributable budget ÷ the standard points of the year's "
                                             "point-paid cases (every such case counted at base points × coefficient)",
                                   low=0.0, low_open=True),
    }),
    "rate": Section("费率法 settings (method = rate)", {
        "base_rate": Spec("number", "base rate in yuan per unit of RW, per insurance type (`employee`, `resident`, other codes, or `all`) "
                                    "and hospital level (`1`, `2`, `3`, `default`); a single number applies everywhere",
                          low=0.0, low_open=True, by="insurance/level", decimals=2),
    }),
    "budget": Section("the annual budget (总额预算)", {
        "annual": Spec("money", "annual budget in yuan per insurance type (`employee`, `resident`, …); one key `all` pools every type. "
                                "Each key is a pool with its own point value. Required by the points method; the rate method reports against it",
                       by="insurance"),
        "reserve_share": _share("share held back as 调剂金 (adjustment fund) before points are valued (5%: 360docs study note, settlement.md §1.1)",
                                Decimal("0.05"), high_open=True),
        "fee_for_service_inside": Spec("bool", "true: fee-for-service payments (exclusions, ungrouped cases) are paid out of the pool's "
                                               "distributable budget before the point value is set; false: they are paid outside it", False),
    }),
    "coefficients": Section("hospital and group coefficients (医疗机构系数, 病组差异系数)", {
        "level": Spec("number", "coefficient per hospital level; a single number applies to every level", Decimal(1), low=0.0, low_open=True,
                      by="level"),
        "hospitals": Spec("path", "CSV with columns `hospital, coefficient`: a hospital's own coefficient, replacing its level's"),
        "drgs": Spec("path", "CSV with columns `drg, coefficient`: a per-group 差异系数, multiplied in (Zhejiang)"),
    }),
    "basic_groups": Section("基础病组: groups paid the same at every level (同病同价)", {
        "drgs": Spec("codes", "the groups (a list, or a CSV path with a `drg` column)"),
        "level": Spec("int", "the level whose base rate and level coefficient every hospital gets for these groups "
                             "(hospital coefficients do not apply)", 2, low=1),
    }),
    "ratio": Section("the cost ratio that classifies high and low cases", {
        "reference": Spec("choice", "`group_mean`: case cost ÷ the group's mean cost (column `mean` of the weights table, yuan; Hangzhou, "
                                    "Jinhua); `standard`: case cost ÷ the case's payment standard at the budget point value or base rate",
                          "group_mean", choices=("group_mean", "standard")),
    }),
    "cases": Section("case classification (病例分类), tried in the order documented in docs/settlement.md", {
        "outliers": Spec("choice", "how high and low cases are found and paid: `cost_ratio` (the cost ratio against `cases.high` / "
                                   "`cases.low` thresholds and formulas; Chinese practice), `fixed_loss` (CMS IPPS cost outliers: high "
                                   "when cost × `cases.high.cost_to_charge` exceeds the payment standard + `cases.high.fixed_loss`, "
                                   "paid the standard + `marginal` × the excess; no low cases) or `los_limits` (G-DRG: length-of-stay "
                                   "deductions and surcharges from the weights table's `los_low`, `los_low_weight`, `los_high`, "
                                   "`los_high_weight` columns)", "cost_ratio", choices=("cost_ratio", "fixed_loss", "los_limits")),
        "high": Section("高倍率: cost ratio above a threshold", {
            "threshold": Spec("number", "ratio threshold per hospital level (national default 3× for tertiary, 2× for secondary; regions set their own)",
                              {3: Decimal(3), 2: Decimal(2), 1: Decimal(2)}, low=1.0, by="level"),
            "inclusive": Spec("bool", "true: ratio ≥ threshold is high; false: ratio > threshold (boundaries differ by region)", False),
            "formula": Spec("choice", "how a high case is paid (see the formula table)", "excess_ratio", choices=HIGH_FORMULAS),
            "marginal": _share("excess_cost and outliers = fixed_loss: the share of the cost above the threshold that is paid "
                               "(CMS pays 80%)", Decimal(1), low_open=True),
            "fixed_loss": Spec("money", "outliers = fixed_loss: the fixed-loss amount in yuan added to the payment standard to make the "
                                        "outlier threshold (CMS FY2005: 25,800 dollars)"),
            "cost_to_charge": _share("outliers = fixed_loss: the cost-to-charge ratio turning the case's charges (`cost`) into cost",
                                     Decimal(1), low_open=True),
        }),
        "low": Section("低倍率: cost ratio below a threshold", {
            "threshold": Spec("number", "ratio threshold per hospital level (0.4× in an explainer; 0.3–0.5 usual)", Decimal("0.4"),
                              low=0.0, by="level"),
            "inclusive": Spec("bool", "true: ratio ≤ threshold is low; false: ratio < threshold", True),
            "formula": Spec("choice", "how a low case is paid", "ratio", choices=LOW_FORMULAS),
        }),
        "incomplete": Section("不完整住院: death or discharge against advice within a number of days", {
            "discharge": Spec("list", "离院方式 codes that make a stay incomplete (4 非医嘱离院, 5 死亡); an empty list disables the type", ["4", "5"]),
            "max_los": Spec("int", "only stays of at most this many days (absent: any length)", low=0),
            "formula": Spec("choice", "how an incomplete stay is paid (Hangzhou: ratio_capped; Jinhua: ratio_capped_no_coefficient)",
                            "ratio_capped", choices=INCOMPLETE_FORMULAS),
        }),
        "transfer": Section("transfers (转院) paid per diem: the standard ÷ the group's mean LOS per day, capped at the standard "
                            "(CMS-style; settlement.md §3.2)", {
            "discharge": Spec("list", "离院方式 codes of a transfer (2 医嘱转院 is usual); empty: no transfer rule", []),
            "mean_los": Spec("str", "the weights table column with the group's mean LOS: `los_mean` (arithmetic, as calibrate writes "
                                    "it) or another, e.g. a geometric mean column `gmlos`", "los_mean"),
            "extra_days": Spec("int", "days added to the stay: 1 pays the first day twice (Washington), 0 none (Oregon)", 1, low=0),
        }),
        "los_limits": Section("outliers = los_limits (G-DRG): how the stay is counted", {
            "count": Spec("choice", "`los`: the `los` field as given; `nights`: discharge date − admission date (the discharge day is "
                                    "not counted, as in G-DRG)", "los", choices=("los", "nights")),
        }),
        "per_diem": Section("床日付费: groups paid per bed-day", {
            "per_day": Spec("per_day", "points per day (points method) or yuan per day (rate method) per group: a table `DRG = value` "
                                       "or a CSV path with columns `drg, per_day`"),
            "coefficient": Spec("bool", "multiply per-diem points by the hospital coefficient (Hangzhou's formula has none)", False),
        }),
        "exclusions": Section("cases paid by fee-for-service (按项目付费) instead of by group", {
            "los_at_most": Spec("int", "stays of this many days or fewer (Qingyang: 2)", low=0),
            "los_at_least": Spec("int", "stays of this many days or more (Qingyang: 60)", low=0),
            "cost_below": Spec("money", "total cost below this many yuan (5 元 in one region)"),
            "drgs": Spec("codes", "listed groups (a list, or a CSV path with a `drg` column)"),
        }),
        "special_review": Section("特例单议: cases flagged `special_review` in the input", {
            "cap": _share("at most this share of DRG-paid cases is accepted (national 2.0: 5% DRG, 5‰ DIP)", Decimal("0.05")),
            "cap_scope": Spec("choice", "the cap counts per `hospital` or over the whole `region`", "hospital", choices=("hospital", "region")),
            "pay": Spec("choice", "`cost`: points worth the actual cost at the budget point value (or base rate); `standard`: the normal "
                                  "points; `fee_for_service`: the actual cost, paid like an exclusion", "cost",
                        choices=("cost", "standard", "fee_for_service")),
            "over_cap": Spec("choice", "flagged cases past the cap (the lowest cost ratios): `classify` as if unflagged, or `fee_for_service`",
                             "classify", choices=("classify", "fee_for_service")),
        }),
        "ungrouped": Section("cases that did not group (no_adrg, ungroupable) or were invalid", {
            "pay": Spec("choice", "`fee_for_service` (the actual cost), `cost` (points worth the cost, inside the budget: Zhejiang sends "
                                  "them to 特病单议) or `none` (not paid)", "fee_for_service", choices=("fee_for_service", "cost", "none")),
        }),
    }),
    "readmission": Section("再入院: a second stay soon after the first reduces the first stay's points", {
        "days": Spec("int", "window in days from discharge to the next admission (Zhejiang 15, Jinhua 10); absent: no rule", low=0),
        "same": Spec("choice", "the two stays must share this: `adrg` or `drg`", "adrg", choices=("adrg", "drg")),
        "factor": _share("the earlier stay's points are multiplied by this (Zhejiang: 0.5)", Decimal("0.5")),
        "same_hospital": Spec("bool", "only stays at the same hospital count", False),
        "exceptions": Spec("codes", "groups (DRG or ADRG codes, of either stay) never reduced, e.g. chemo- and radiotherapy"),
    }),
    "sharing": Section("结余留用、超支分担 per hospital: bands on (payment − cost) ÷ payment", {
        "surplus": Bands("surplus bands, in order", {
            "upto": _share("the band ends at this surplus share of the payment; absent on the last band (no end)", high_open=True),
            "retain": _share("share of the surplus in this band that the hospital keeps (the rest is recovered)", REQUIRED),
        }),
        "deficit": Bands("overspend bands, in order", {
            "upto": Spec("number", "the band ends at this overspend share of the payment; absent on the last band", low=0.0, low_open=True),
            "fund": _share("share of the overspend in this band that the fund bears (paid from the 调剂金)", REQUIRED),
        }),
    }),
    "prepayment": Section("月度预拨 and 年终清算", {
        "ratio": _share("each month the hospital is prepaid this share of the month's amount (Zhejiang: at least 85%)", Decimal("0.85")),
        "basis": Spec("choice", "the month's amount: `standard` (its cases at the budget point value or base rate) or `cost` (their actual cost)",
                      "standard", choices=("standard", "cost")),
    }),
})


def walk(section: Section = SCHEMA, prefix: tuple = ()):
    """Every leaf spec as (path, spec), bands as (path + ("[]", key), spec), in schema order."""
    for name, node in section.keys.items():
        path = (*prefix, name)
        if isinstance(node, Section):
            yield from walk(node, path)
        elif isinstance(node, Bands):
            for key, spec in node.keys.items():
                yield (*path, "[]", key), spec
        else:
            yield path, node


def _default_text(spec: Spec) -> str:
    if spec.default is REQUIRED:
        return "required"
    if spec.default is None:
        return "—"
    if isinstance(spec.default, dict):
        return ", ".join(f"{k}: {v}" for k, v in spec.default.items())
    if isinstance(spec.default, bool):
        return str(spec.default).lower()
    if isinstance(spec.default, list):
        return "[" + ", ".join(spec.default) + "]"
    return str(spec.default)


def _type_text(spec: Spec) -> str:
    text = {"str": "text", "choice": " \\| ".join(f"`{c}`" for c in spec.choices), "number": "number", "int": "integer",
            "bool": "true/false", "money": "yuan", "codes": "codes or CSV", "list": "list of codes", "per_day": "table or CSV", "path": "file"}[spec.kind]
    if spec.kind in ("number", "int") and (spec.low is not None or spec.high is not None):
        text += " " + range_text(spec)
    if spec.by:
        text += f", per {spec.by}"
    return text


def reference_markdown() -> str:
    """The key reference of docs/settlement.md: one row per key."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for path, spec in walk():
        rows.append(f"| `{dotted(path)}` | {_type_text(spec)} | {_default_text(spec)} | {spec.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_markdown())
