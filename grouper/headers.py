"""The input column spellings grouper recognises: one table for every field it reads.

Collected from the exports hospitals actually have:

* 医疗保障基金结算清单 (the national settlement list, 医保办发〔2021〕34号 and its 填写规范): 主要诊断编码,
  其他诊断编码1..N, 主要手术及操作编码, 其他手术及操作编码1..N, 出院科别, 离院方式, 医疗总费用, ...;
* 住院病案首页 exports (卫统4-1, and the HQMS upload's pinyin codes: JBDM = principal diagnosis,
  JBDM1..15 = other diagnoses, SSJCZBM1..N = procedures, the first being the principal one);
* HIS report exports, which spell the same fields freely: 其它 for 其他, 次要诊断编码, 代码 for 编码,
  疾病编码, 出院主要诊断编码, 其他诊断1 without 编码, 手术1;
* the national 医保 interface's English names (mdtrt_id, setl_id, fixmedins_code, medfee_sumamt, ...).

Headers are compared after `header_key` (blanks trimmed, full-width brackets made ASCII, lower case).
A numbered column may write its number as `1`, `_1`, `-1`, ` 1` or `(1)` (also `（1）`).

Wide diagnosis and procedure columns come in *families*: a principal header plus numbered other
headers (principal_headers + other_stems), or numbered headers only, the lowest being the principal
one (numbered_stems). An other-stem header without a number holds a list of other codes in one cell
(separated like a list column). The first family with a column in the input is used; its columns
of lower-priority spellings are listed as unused (e.g. 其他诊断1 beside 其他诊断编码1 is usually the name).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Scalar and settlement fields: canonical name -> spellings, best first (the first present wins).
SPELLINGS: dict[str, tuple[str, ...]] = {
    "id": ("id", "病案号", "住院号", "病案首页号", "结算清单号", "清单流水号", "住院流水号", "就诊流水号", "bah", "zyh",
           "mdtrt_id", "setl_id"),
    "sex": ("sex", "gender", "性别", "性别代码", "xb", "gend"),
    "age": ("age", "年龄", "年龄(岁)", "nl"),
    "age_days": (
        "age_days", "ageday", "年龄(天)", "年龄不足1周岁的年龄(天)", "年龄不足1周岁年龄(天)", "新生儿年龄(天)",
        "年龄(不足1周岁的)", "bzyzsnl", "bzyzs_nl", "nwb_age",
    ),
    "weight": ("weight", "新生儿出生体重", "新生儿出生体重(克)", "出生体重", "出生体重(克)", "xsecstz", "nwb_bir_wt"),
    "dept": ("dept", "科室", "出院科别", "出院科室", "出院科别代码", "cykb", "dscg_caty"),
    "los": ("los", "住院天数", "实际住院天数", "实际住院天数(天)", "sjzyts", "act_ipt_days"),
    "discharge": ("discharge", "离院方式", "离院方式代码", "lyfs", "dscg_way"),
    # list shape: one cell of |-separated codes, principal first
    "dx": ("dx", "diagnoses", "诊断编码", "诊断", "诊断代码", "出院诊断编码", "出院诊断"),
    "proc": ("proc", "procedures", "手术编码", "手术操作编码", "手术及操作编码", "手术", "手术操作"),
    # settlement fields (结算清单 and the 医保 interface's names)
    "hospital": ("hospital", "定点医疗机构编码", "医疗机构编码", "定点医药机构编号", "机构编码", "组织机构代码",
                 "fixmedins_code"),
    "hospital_level": ("hospital_level", "医疗机构等级", "医院等级", "机构等级", "hosp_lv"),
    "insurance": ("insurance", "险种类型", "险种", "医保类型", "insutype"),
    "cost": ("cost", "医疗总费用", "住院总费用", "总费用", "medfee_sumamt"),
    "fund_paid": ("fund_paid", "统筹基金支付", "基金支付", "hifp_pay"),
    "admission_date": ("admission_date", "入院日期", "入院时间", "adm_time", "begndate"),
    "discharge_date": ("discharge_date", "出院日期", "出院时间", "dscg_time", "enddate"),
    "patient_id": ("patient_id", "个人编码", "人员编号", "证件号码", "身份证号", "psn_no", "certno"),
    "special_review": ("special_review", "特例单议", "特病单议"),
}


@dataclass(frozen=True)
class WideFamily:
    """One naming scheme of wide code columns."""

    principal_headers: tuple[str, ...]  # the principal code, best first
    other_stems: tuple[str, ...]        # numbered other codes (or, unnumbered, a list of them), best first
    numbered_stems: tuple[str, ...] = ()  # numbered codes without a principal header: the lowest is principal


DX_FAMILIES = (
    WideFamily(
        ("主要诊断编码", "主要诊断代码", "主诊断编码", "主要诊断疾病编码", "出院主要诊断编码", "主要疾病编码",
         "主要诊断icd编码", "jbdm", "主要诊断"),
        ("其他诊断编码", "其它诊断编码", "次要诊断编码", "其他诊断代码", "其它诊断代码", "次要诊断代码",
         "其他诊断疾病编码", "出院其他诊断编码", "其他疾病编码", "其他诊断icd编码", "jbdm", "其他诊断", "其它诊断",
         "次要诊断"),
    ),
    WideFamily((), (), ("诊断编码", "诊断代码", "出院诊断编码", "疾病编码", "诊断", "出院诊断", "dx", "diag",
                        "diagnosis")),
)
PROC_FAMILIES = (
    WideFamily(
        ("主要手术操作编码", "主要手术及操作编码", "主要手术操作代码", "主要手术编码", "主手术操作编码", "主手术编码",
         "主要手术操作", "主要手术"),
        ("其他手术操作编码", "其他手术及操作编码", "其它手术操作编码", "其它手术及操作编码", "次要手术操作编码",
         "其他手术操作代码", "其他手术编码", "其它手术编码", "其他操作编码", "其他手术操作", "其他手术"),
    ),
    WideFamily((), (), ("手术操作编码", "手术及操作编码", "手术操作代码", "手术编码", "操作编码", "ssjczbm",
                        "手术操作", "手术", "proc", "procedure")),
)

# Code columns of a discharge record that grouping does not use: listed as unused, never an error.
OTHER_CODE_COLUMNS = (
    "入院诊断编码", "入院诊断", "门(急)诊诊断编码", "门急诊诊断编码", "门诊诊断编码", "门(急)诊诊断", "门急诊诊断",
    "门诊诊断", "病理诊断编码", "病理诊断", "病理号", "中医诊断编码", "中医诊断", "中医主病编码", "中医主证编码",
    "中医主病代码", "中医主证代码", "损伤中毒外部原因编码", "损伤、中毒的外部原因编码", "损伤中毒的外部原因编码",
    "外部原因编码", "肿瘤形态学编码", "形态学编码", "主要诊断入院病情", "其他诊断入院病情",
    "手术切口类别", "手术级别", "手术操作日期", "手术及操作日期",
)

# A header that names a diagnosis or procedure code (after its number is taken off): checked for
# unused columns only, so an export's unknown spelling is an error, not silently lost codes.
_CODE_WORDS = re.compile(r"诊断|疾病|手术|操作|dx|diag|icd|proc|oprn")
_CODE_ENDINGS = re.compile(r"(编码|代码|编号|码|code|codg|cd|诊断|手术|操作|dx|diag|diagnosis|proc|procedure)$")
_NUMBER = re.compile(r"^(.*?)[\s_\-]*(?:\((\d+)\)|(\d+))$")


def header_key(header: str) -> str:
    return header.strip().replace("（", "(").replace("）", ")").lower()


def split_number(key: str) -> tuple[str, int | None]:
    """`其他诊断编码_1` → (`其他诊断编码`, 1); a key without a number → (key, None)."""
    match = _NUMBER.fullmatch(key)
    if not match or not match.group(1):
        return key, None
    return match.group(1), int(match.group(2) or match.group(3))


def looks_like_code_column(header: str) -> bool:
    """Whether a header seems to hold diagnosis or procedure codes (see _CODE_WORDS)."""
    stem, _ = split_number(header_key(header))
    return bool(_CODE_WORDS.search(stem) and _CODE_ENDINGS.search(stem))


def is_other_code_column(header: str) -> bool:
    stem, _ = split_number(header_key(header))
    return stem in {header_key(h) for h in OTHER_CODE_COLUMNS}


def known_spelling(header: str) -> bool:
    """Whether the header is one of this table's spellings (any field, any family)."""
    key = header_key(header)
    stem, _ = split_number(key)
    if any(key in map(header_key, names) for names in SPELLINGS.values()):
        return True
    for family in DX_FAMILIES + PROC_FAMILIES:
        if key in family.principal_headers or stem in family.other_stems + family.numbered_stems:
            return True
    return is_other_code_column(header)
