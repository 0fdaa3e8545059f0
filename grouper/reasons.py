"""The catalogue of built-in validation checks (病案质控): stable reason codes, default severity,
and messages in Chinese and English. Schemes change a severity with `validate CODE = error|warning|off`.

"error" blocks grouping (status invalid, the code in `reason`); "warning" is reported beside the
result; "off" skips the check. Defaults never change a reference grouping result: only input that
cannot be read at all is an error by default.
"""
from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("error", "warning", "off")
# every grouping status a case can end with (a grouped file's `status` column)
STATUSES = ("grouped", "qy", "no_drg", "no_adrg", "ungroupable", "invalid")
FIXED_LEVEL = frozenset({"malformed_line"})  # checks a scheme cannot lower


@dataclass(frozen=True)
class Reason:
    code: str
    level: str
    zh: str
    en: str


CATALOGUE: dict[str, Reason] = {r.code: r for r in (
    # a CSV line that is not a record (more fields than the header, an unbalanced quote): always
    # an error, since its values cannot be trusted to be in their columns (FIXED_LEVEL)
    Reason("malformed_line", "error", "该行无法按表头读取(字段数不符或引号不成对)",
           "the line cannot be read against the header (field count or unbalanced quote)"),
    # unreadable fields (a value that is not a number)
    Reason("malformed_sex", "error", "性别无法识别", "sex is not a recognised value"),
    Reason("malformed_age", "error", "年龄不是整数", "age is not a whole number"),
    Reason("malformed_age_days", "error", "年龄(天)不是整数", "age in days is not a whole number"),
    Reason("malformed_weight", "error", "出生体重不是整数", "birth weight is not a whole number"),
    Reason("malformed_los", "error", "住院天数不是整数", "length of stay is not a whole number"),
    Reason("malformed_discharge", "error", "离院方式不是整数", "discharge mode is not a whole number"),
    # missing or implausible values
    Reason("missing_dx", "warning", "缺少主要诊断", "the principal diagnosis is missing"),
    Reason("implausible_age", "warning", "年龄超出合理范围(0-150岁)", "age outside 0-150 years"),
    Reason("implausible_age_days", "warning", "年龄(天)与年龄(岁)不符", "age in days does not agree with age in years"),
    Reason("implausible_weight", "warning", "出生体重超出合理范围(100-10000克)", "birth weight outside 100-10000 g"),
    Reason("implausible_los", "warning", "住院天数为负数", "length of stay is negative"),
    Reason("unknown_discharge", "warning", "离院方式不在1-5、9之内", "discharge mode is not 1-5 or 9"),
    # code format and dictionaries
    Reason("bad_dx_format", "warning", "诊断编码格式不符合医保版ICD-10", "diagnosis code is not in ICD-10 医保版 format"),
    Reason("bad_proc_format", "warning", "手术操作编码格式不符合医保版ICD-9-CM-3", "procedure code is not in ICD-9-CM-3 医保版 format"),
    Reason("unknown_dx", "warning", "诊断编码不在方案字典中", "diagnosis code is not in the scheme's dictionary"),
    Reason("unknown_proc", "warning", "手术操作编码不在方案字典中", "procedure code is not in the scheme's dictionary"),
    Reason("unmapped_dx", "warning", "诊断编码无法转换为分组器编码", "diagnosis code has no entry in the conversion table"),
    Reason("unmapped_proc", "warning", "手术操作编码无法转换为分组器编码", "procedure code has no entry in the conversion table"),
    Reason("not_principal_dx", "warning", "该编码不能作为主要诊断(星号编码或损伤中毒外因编码)",
           "this code may not be the principal diagnosis (asterisk code or external cause)"),
    Reason("duplicate_dx", "warning", "诊断编码重复", "a diagnosis code is listed twice"),
    Reason("duplicate_proc", "warning", "手术操作编码重复", "a procedure code is listed twice"),
    # settlement fields (read with `grouper group --carry`; see grouper.fields): warnings by
    # default, since grouping does not use them
    Reason("malformed_hospital_level", "warning", "医疗机构等级无法识别", "hospital level is not 三级/二级/一级 or 3/2/1"),
    Reason("malformed_cost", "warning", "医疗总费用不是金额", "total cost is not an amount in yuan"),
    Reason("malformed_fund_paid", "warning", "统筹基金支付不是金额", "fund payment is not an amount in yuan"),
    Reason("malformed_admission_date", "warning", "入院日期无法识别", "admission date is not a date"),
    Reason("malformed_discharge_date", "warning", "出院日期无法识别", "discharge date is not a date"),
    Reason("malformed_special_review", "warning", "特例单议标志无法识别", "special-review flag is not yes/no"),
    Reason("implausible_cost", "warning", "费用为负数", "a cost is negative"),
    Reason("implausible_dates", "warning", "出院日期早于入院日期", "discharge date is before admission date"),
)}


def message(code: str, lang: str = "both") -> str:
    reason = CATALOGUE[code]
    if lang == "zh":
        return reason.zh
    if lang == "en":
        return reason.en
    return f"{reason.zh} / {reason.en}"
