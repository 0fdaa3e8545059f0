"""Two regional variants derived from the national CHS-DRG 1.1 tables at test time, a case
generator aimed at what they change, and an independent reference interpreter of regional table
sets (README of the 1.1 pack §3 plus the regional columns and settings of grouper/importers/regional.py).

Nothing here is a copy of the national data: the variants are written into a temporary folder
from ../shared/chs-drg-1.1 by the edits below. Used by tests/test_regional_import.py and
benches/bench_regional.py.
"""
from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

TABLES = ("mdc.csv", "mdc_dx.csv", "adrg.csv", "adrg_dx.csv", "adrg_proc.csv", "drg.csv", "cc.csv",
          "cc_exclusion.csv", "or_proc.csv", "dx_dict.csv", "proc_dict.csv")
DRG_COLUMNS = ["adrg", "seq", "drg", "name", "split", "los_min", "los_max", "age_min", "age_max", "dept", "procs_all"]
# the regional layout's columns (../shared/regional-layouts.md §1)
LAYOUT_COLUMNS = {
    "adrg.csv": ["mdc", "seq", "adrg", "name", "rule", "tags", "max_age_days", "weight_min_g", "weight_max_g", "part"],
    "adrg_dx.csv": ["adrg", "list", "code", "part"],
    "adrg_proc.csv": ["adrg", "list", "code", "tag", "part"],
    "drg.csv": ["adrg", "seq", "drg", "name", "split", "age", "los_min", "los_max", "dept", "procs", "reachable"],
    "mdc_proc.csv": ["mdc", "code"],
}


class Tables:
    """The CSV files of a table set as lists of row dicts, edited in memory and written back."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: dict[str, list[dict[str, str]]] = {}
        self.columns: dict[str, list[str]] = {}
        for name in TABLES:
            with (folder / name).open(encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh)
                self.columns[name] = list(reader.fieldnames)
                self.rows[name] = list(reader)

    def __getitem__(self, name: str) -> list[dict[str, str]]:
        return self.rows[name]

    def __setitem__(self, name: str, rows) -> None:
        self.rows[name] = list(rows)

    def write(self, folder: Path, settings: dict[str, str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if settings.get("layout") == "regional":   # the regional layout (regional-layouts.md): scheme.csv
            self.columns.update(LAYOUT_COLUMNS)
            self.rows.setdefault("mdc_proc.csv", [])
            with (folder / "scheme.csv").open("w", encoding="utf-8", newline="") as fh:
                fh.write("key,value\n" + "".join(f"{k},{v}\n" for k, v in settings.items()))
            settings = {}
        else:
            self.columns["drg.csv"] = DRG_COLUMNS
        for name, rows in self.rows.items():
            with (folder / name).open("w", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, self.columns[name], lineterminator="\n", extrasaction="raise")
                writer.writeheader()
                writer.writerows({c: r.get(c, "") for c in self.columns[name]} for r in rows)
        if settings:
            with (folder / "settings.csv").open("w", encoding="utf-8", newline="") as fh:
                fh.write("setting,value\n" + "".join(f"{k},{v}\n" for k, v in settings.items()))


def _drop_adrg(t: Tables, code: str) -> None:
    for name in ("adrg.csv", "adrg_dx.csv", "adrg_proc.csv", "drg.csv"):
        t[name] = [r for r in t[name] if r["adrg"] != code]


def _set_drgs(t: Tables, adrg: str, drgs: list[dict[str, str]]) -> None:
    rows = [r for r in t["drg.csv"] if r["adrg"] != adrg]
    rows += [{"adrg": adrg, "seq": str(i + 1), "split": "none", **d} for i, d in enumerate(drgs)]
    t["drg.csv"] = rows


def _rename_adrg(t: Tables, old: str, new: str) -> None:
    for name in ("adrg.csv", "adrg_dx.csv", "adrg_proc.csv", "drg.csv"):
        for r in t[name]:
            if r["adrg"] == old:
                r["adrg"] = new
                if name == "drg.csv":
                    r["drg"] = new + r["drg"][3:]


def north(t: Tables, rng: random.Random) -> dict[str, str]:
    """LOS and age splits, an ICU split, an all-of-procedures split; a changed, an added, a removed
    and a moved ADRG; MDC order; MDC, CC, exclusion and OR lists changed; no_drg; second attempt."""
    drg_name = {r["drg"]: r["name"] for r in t["drg.csv"]}
    _set_drgs(t, "RC1", [{"drg": "RC12", "name": "恶性增生性疾患放射治疗，住院≥13天", "los_min": "13"},
                         {"drg": "RC14", "name": "恶性增生性疾患放射治疗，住院6-12天", "los_min": "6", "los_max": "12"},
                         {"drg": "RC16", "name": "恶性增生性疾患放射治疗，住院2-5天", "los_min": "2", "los_max": "5"},
                         {"drg": "RC18", "name": "恶性增生性疾患放射治疗，住院1天", "los_min": "1", "los_max": "1"}])
    _set_drgs(t, "ES3", [{"drg": "ES30", "name": "呼吸系统感染/炎症，<17岁", "age_max": "16"}]
              + [{"drg": c, "name": drg_name[c], "split": s} for c, s in (("ES31", "mcc"), ("ES33", "cc_or_mcc"), ("ES35", "none"))])
    _set_drgs(t, "GB1", [{"drg": "GB10", "name": "食管、胃、十二指肠大手术，重症监护", "dept": "ICU;0301"},
                         {"drg": "GB11", "name": drg_name["GB11"], "split": "mcc"}, {"drg": "GB15", "name": drg_name["GB15"]}])
    _set_drgs(t, "AH1", [{"drg": "AH10", "name": "ECMO伴呼吸机支持", "procs_all": "39.6500;96.7201"},
                         {"drg": "AH11", "name": drg_name["AH11"], "split": "mcc"}, {"drg": "AH15", "name": drg_name["AH15"]}])
    for r in t["adrg.csv"]:
        if r["adrg"] == "ES2":
            r["rule"] = "anydx_pproc_or"                      # any diagnosis of the list + an OR procedure
            r["seq"] = "12"
        if r["adrg"] == "ES3":
            r["seq"] = "11"                                   # tried before ES2
    _drop_adrg(t, "EZ1")
    t["adrg.csv"] = [{"mdc": "MDCE", "seq": "0", "adrg": "EB9", "name": "胸腔镜下肺切除", "rule": "pproc"}] + t["adrg.csv"]
    t["adrg_proc.csv"] += [{"adrg": "EB9", "list": "proc", "code": c, "tag": ""} for c in ("32.2000", "32.2000x002", "32.2000x003")]
    t["drg.csv"] += [{"adrg": "EB9", "seq": "1", "drg": "EB91", "name": "胸腔镜下肺切除，伴严重并发症或合并症", "split": "mcc"},
                     {"adrg": "EB9", "seq": "2", "drg": "EB95", "name": "胸腔镜下肺切除，不伴严重并发症或合并症", "split": "none"}]
    for r in t["mdc.csv"]:                                    # MDCY after MDCZ
        r["seq"] = {"3": "4", "4": "3"}.get(r["seq"], r["seq"])
    _edit_lists(t, rng, from_mdc="MDCG", to_mdc="MDCE")
    return {"adrg_without_drg": "no_drg", "second_attempt": "later_procedures"}


def south(t: Tables, rng: random.Random) -> dict[str, str]:
    """A renumbered ADRG with a conditional last DRG (next ADRG tried), an ADRG moved to another MDC,
    a changed ADRG rule, a removed MDC, a changed MDC entry, age splits, a renamed DRG, changed lists,
    and strict sex (only 1 and 2)."""
    _rename_adrg(t, "GZ1", "GY1")
    for r in t["drg.csv"]:
        if r["drg"] == "GY15":
            r["los_min"] = "2"                                # a stay under 2 days: the next ADRG is tried
        if r["drg"] == "ES35":
            r["drg"] = "ES36"
    for r in t["adrg.csv"]:
        if r["adrg"] == "HZ1":
            r["mdc"], r["seq"] = "MDCG", "23"                 # moved into MDCG, before GY1
        if r["adrg"] == "GY1":
            r["seq"] = "24"
        if r["adrg"] == "BB1":
            r["rule"] = "pproc"                               # the principal procedure alone
    t["adrg_dx.csv"] = [r for r in t["adrg_dx.csv"] if r["adrg"] != "BB1"]
    for r in t["mdc.csv"]:
        if r["mdc"] == "MDCX":
            r["entry"] = "pdx_female"
    dropped = {r["adrg"] for r in t["adrg.csv"] if r["mdc"] == "MDCY"}
    for code in dropped:
        _drop_adrg(t, code)
    t["mdc.csv"] = [r for r in t["mdc.csv"] if r["mdc"] != "MDCY"]
    t["mdc_dx.csv"] = [r for r in t["mdc_dx.csv"] if r["mdc"] != "MDCY"]
    drg_name = {r["drg"]: r["name"] for r in t["drg.csv"]}
    for adrg in ("BR2", "DT1"):
        drgs = [r for r in t["drg.csv"] if r["adrg"] == adrg]
        _set_drgs(t, adrg, [{"drg": f"{adrg}0", "name": drg_name[drgs[0]["drg"]].split("，")[0] + "，≤6岁", "age_max": "6"}]
                  + [{"drg": r["drg"], "name": r["name"], "split": r["split"]} for r in drgs])
    _edit_lists(t, rng, from_mdc="MDCB", to_mdc="MDCD")
    return {"read_sex": "1:male;2:female"}                   # 男/女 are not accepted


def _edit_lists(t: Tables, rng: random.Random, from_mdc: str, to_mdc: str) -> None:
    """MDC list codes removed and added, CC levels changed and rows removed, exclusion rows changed,
    OR procedures removed and added: a few dozen rows of each."""
    in_from = [r for r in t["mdc_dx.csv"] if r["mdc"] == from_mdc]
    gone = {r["code"] for r in rng.sample(in_from, 30)}
    t["mdc_dx.csv"] = [r for r in t["mdc_dx.csv"] if not (r["mdc"] == from_mdc and r["code"] in gone)]
    t["mdc_dx.csv"] += [{"mdc": to_mdc, "code": r["code"], "site": ""} for r in rng.sample(in_from, 20)]
    cc = t["cc.csv"]
    for r in rng.sample(cc, 50):
        r["level"] = "MCC" if r["level"] == "CC" else "CC"
    removed = {id(r) for r in rng.sample(cc, 30)}
    t["cc.csv"] = [r for r in cc if id(r) not in removed]
    tables = sorted({r["exclusion_table"] for r in t["cc_exclusion.csv"]})
    for r in rng.sample(t["cc_exclusion.csv"], 20):
        r["exclusion_table"] = rng.choice(tables)
    or_codes = {r["code"] for r in t["or_proc.csv"]}
    removed = {id(r) for r in rng.sample(t["or_proc.csv"], 50)}
    t["or_proc.csv"] = [r for r in t["or_proc.csv"] if id(r) not in removed]
    t["or_proc.csv"] += [{"code": r["code"], "name": r["name"]}
                         for r in rng.sample([r for r in t["proc_dict.csv"] if r["code"] not in or_codes], 10)]


# ---- regional-layout variants: every kind of ../shared/regional-layouts.md ------------------------
def _lists(t: Tables, adrg: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in ("adrg_dx.csv", "adrg_proc.csv"):
        for r in t[name]:
            if r["adrg"] == adrg:
                out.setdefault(r["list"], []).append(r["code"])
    return out


def _set_parts(t: Tables, adrg: str, parts: list[dict]) -> None:
    """Replace an ADRG's rule row(s) by alternative rows `part` 1..n (one row: no part), each
    {"rule": kind, "lists": {list: codes}, other adrg.csv cells}; the MDC's rows are renumbered."""
    old = next(r for r in t["adrg.csv"] if r["adrg"] == adrg)
    for name in ("adrg_dx.csv", "adrg_proc.csv"):
        t[name] = [r for r in t[name] if r["adrg"] != adrg]
    rows = []
    for i, part in enumerate(parts, start=1):
        number = str(i) if len(parts) > 1 else ""
        cells = {k: v for k, v in part.items() if k != "lists"}
        rows.append({**old, "tags": "", "max_age_days": "", "weight_min_g": "", "weight_max_g": "", **cells,
                     "part": number, "seq": f"{old['seq']}.{i}"})
        for name, codes in part.get("lists", {}).items():
            table = "adrg_dx.csv" if name.startswith("dx") else "adrg_proc.csv"
            t[table] += [{"adrg": adrg, "list": name, "code": c, "tag": "", "part": number} for c in codes]
    position = t["adrg.csv"].index(old)
    t["adrg.csv"] = [r for r in t["adrg.csv"] if r["adrg"] != adrg]
    t["adrg.csv"][position:position] = rows
    mdc_rows = sorted((r for r in t["adrg.csv"] if r["mdc"] == old["mdc"]), key=lambda r: float(r["seq"]))
    for n, r in enumerate(mdc_rows, start=1):
        r["seq"] = str(n)


def _fill_reachable(t: Tables) -> None:
    seen_none: set[str] = set()
    for r in sorted(t["drg.csv"], key=lambda r: (r["adrg"], float(r["seq"]))):
        r["reachable"] = "0" if r["adrg"] in seen_none else "1"
        if r["split"] == "none":
            seen_none.add(r["adrg"])


def _drgs(t: Tables, adrg: str) -> list[dict[str, str]]:
    return [{"drg": r["drg"], "name": r["name"], "split": r["split"]}
            for r in sorted(t["drg.csv"], key=lambda r: float(r["seq"])) if r["adrg"] == adrg]


def beijing(t: Tables, rng: random.Random) -> dict[str, str]:
    """Regional layout, `adrg_without_drg = adrg_code` (no_drg), sex int_or_cn, no retry: alternative
    rule rows (`part`) with anyproc, secdx_anyproc, pdx_anyproc, secdx_pproc, secdx; anydx, anydx_pproc;
    LOS bands (LOS 0 → no_drg), age_le, age_le_cc_or_mcc splits, an unreachable DRG; changed lists."""
    ah1, ib1, wb1, wr1 = _lists(t, "AH1"), _lists(t, "IB1"), _lists(t, "WB1"), _lists(t, "WR1")
    _set_parts(t, "AH1", [{"rule": "secdx_anyproc", "lists": {"dx1": ["J96.000", "J96.900", "J80.x00"], "proc": ah1["proc"]}},
                          {"rule": "pproc", "lists": {"proc": ah1["proc"]}},
                          {"rule": "anyproc", "lists": {"proc": ["39.6500", "37.6801"]}}])
    _set_parts(t, "IB1", [{"rule": "pdx_anyproc_pair", "lists": ib1},
                          {"rule": "pdx_anyproc", "lists": {"dx": ib1["dx"][:40], "proc": ib1["proc1"][:20]}}])
    _set_parts(t, "WB1", [{"rule": "pdx_pproc", "lists": wb1}, {"rule": "secdx_pproc", "lists": {"dx1": wb1["dx"], "proc": wb1["proc"]}}])
    _set_parts(t, "WR1", [{"rule": "pdx", "lists": wr1}, {"rule": "secdx", "lists": {"dx1": wr1["dx"]}}])
    _set_parts(t, "YR1", [{"rule": "anydx", "lists": _lists(t, "YR1")}])
    _set_parts(t, "OR1", [{"rule": "secdx", "lists": {"dx1": _lists(t, "OR1")["dx"]}}])
    _set_parts(t, "RB1", [{"rule": "anydx_pproc", "lists": _lists(t, "RB1")}])
    _set_drgs(t, "RC1", [{"drg": "RC12", "name": "恶性增生性疾患放射治疗，住院≥13天", "split": "los", "los_min": "13"},
                         {"drg": "RC14", "name": "恶性增生性疾患放射治疗，住院6-12天", "split": "los", "los_min": "6", "los_max": "13"},
                         {"drg": "RC16", "name": "恶性增生性疾患放射治疗，住院2-5天", "split": "los", "los_min": "2", "los_max": "6"},
                         {"drg": "RC18", "name": "恶性增生性疾患放射治疗，住院1天", "split": "los", "los_min": "1", "los_max": "2"}])
    _set_drgs(t, "CD1", [{"drg": "CD10", "name": "除眼眶外的外眼手术，≤17岁", "split": "age_le", "age": "17"}] + _drgs(t, "CD1"))
    _set_drgs(t, "IT2", [{"drg": "IT20", "name": "慢性炎症性肌肉骨骼结缔组织疾患，≤17岁伴并发症", "split": "age_le_cc_or_mcc",
                          "age": "17"}] + _drgs(t, "IT2"))
    _set_drgs(t, "BR1", _drgs(t, "BR1") + [{"drg": "BR17", "name": "颅内出血性疾患，长住院", "split": "los", "los_min": "30"}])
    _edit_lists(t, rng, from_mdc="MDCG", to_mdc="MDCE")
    _fill_reachable(t)
    return {"variant": "beijing_2022", "layout": "regional", "sex_check": "int_or_cn", "retry": "none",
            "adrg_without_drg": "adrg_code", "qy": "off"}


def zhejiang(t: Tables, rng: random.Random) -> dict[str, str]:
    """Regional layout, `retry = secondary_procs`, `next_adrg`, sex str_1_2: MDCA entered by
    main_or_proc_plus (mdc_proc.csv), MDCY by anydx, MDCZ with merged sites; notpdx_pproc, pdx_medical,
    pdx_neonate_medical, pdx_neonate_weight_medical, a rule list without rows; age_lt, dept_eq,
    procs_all and LOS splits (a band-only ADRG: the next rule row is tried)."""
    or_codes = {r["code"] for r in t["or_proc.csv"]}
    extra = [r["code"] for r in t["proc_dict.csv"] if r["code"] not in or_codes][:200:40]
    t["mdc_proc.csv"] = [{"mdc": "MDCA", "code": c} for c in extra]
    for r in t["mdc.csv"]:
        if r["mdc"] == "MDCA":
            r["entry"] = "main_or_proc_plus"
        if r["mdc"] == "MDCY":
            r["entry"] = "anydx"
    for r in t["mdc_dx.csv"]:
        if r["site"] in ("躯干、脊柱创伤", "骨盆创伤"):
            r["site"] = "躯干脊柱骨盆创伤"
    _set_parts(t, "RE1", [{"rule": "notpdx_pproc", "lists": _lists(t, "RE1")}])
    _set_parts(t, "BR1", [{"rule": "pdx_medical", "lists": _lists(t, "BR1")}])
    zz = [r["code"] for r in t["mdc_dx.csv"] if r["mdc"] == "MDCZ"]
    _set_parts(t, "ZZ1", [{"rule": "pdx_medical", "lists": {"dx": zz}}])
    _set_parts(t, "PR1", [{"rule": "pdx_neonate_medical", "max_age_days": "28", "lists": _lists(t, "PR1")}])
    ps1 = next(r for r in t["adrg.csv"] if r["adrg"] == "PS1")
    _set_parts(t, "PS1", [{"rule": "pdx_neonate_weight_medical", "max_age_days": "28", "weight_max_g": ps1["weight_max_g"],
                           "lists": _lists(t, "PS1")}])
    _set_parts(t, "OR1", [{"rule": "pdx", "lists": {}}])          # a list without rows: never matches
    _set_drgs(t, "ES2", [{"drg": "ES20", "name": "肺真菌病，<18岁", "split": "age_lt", "age": "18"}] + _drgs(t, "ES2"))
    _set_drgs(t, "BR1", [{"drg": "BR10", "name": "颅内出血性疾患，重症监护", "split": "dept_eq", "dept": "ICU"}] + _drgs(t, "BR1"))
    _set_drgs(t, "AH1", [{"drg": "AH10", "name": "ECMO伴呼吸机支持", "split": "procs_all", "procs": "39.6500|96.7201"}]
              + _drgs(t, "AH1"))
    _set_drgs(t, "RC1", [{"drg": "RC12", "name": "恶性增生性疾患放射治疗，住院≥13天", "split": "los", "los_min": "13"},
                         {"drg": "RC16", "name": "恶性增生性疾患放射治疗，住院1-12天", "split": "los", "los_min": "1", "los_max": "13"}])
    _edit_lists(t, rng, from_mdc="MDCB", to_mdc="MDCD")
    _fill_reachable(t)
    return {"variant": "zhejiang_2022", "layout": "regional", "sex_check": "str_1_2", "retry": "secondary_procs",
            "adrg_without_drg": "next_adrg", "qy": "off"}


VARIANTS = {"north": north, "south": south, "beijing": beijing, "zhejiang": zhejiang}
# ADRGs and DRG codes a variant changes: the case generator aims at them
TOUCHED = {"north": ("RC1", "ES2", "ES3", "EZ1", "GB1", "AH1", "MDCY"),
           "south": ("GZ1", "HZ1", "BB1", "BR2", "DT1", "MDCX", "MDCY", "ES3"),
           "beijing": ("AH1", "IB1", "WB1", "WR1", "YR1", "OR1", "RB1", "RC1", "CD1", "IT2", "BR1", "MDCW", "MDCR"),
           "zhejiang": ("MDCA", "MDCY", "MDCZ", "RE1", "BR1", "ZZ1", "PR1", "PS1", "OR1", "ES2", "AH1", "RC1", "MDCR")}


def build_variant(name: str, national: Path, folder: Path, seed: int = 11) -> Path:
    """Write the variant's table set into `folder` (from the national tables); return the folder."""
    tables = Tables(national)
    settings = VARIANTS[name](tables, random.Random(seed))
    tables.write(folder, settings)
    return folder


# ---- cases ---------------------------------------------------------------------------------------
def variant_cases(national: Path, name: str, n: int, seed: int = 5) -> list[dict[str, str]]:
    """n cases resampled from the golden set, half of them among those whose reference group is in
    what the variant touches, with length of stay, department, age and procedure order varied."""
    rng = random.Random(seed)
    with (national / "golden" / "cases.csv").open(encoding="utf-8", newline="") as fh:
        cases = list(csv.DictReader(fh))
    with (national / "golden" / "expected.csv").open(encoding="utf-8", newline="") as fh:
        expected = {r["id"]: r for r in csv.DictReader(fh)}
    touched = set(TOUCHED[name])
    aimed = [c for c in cases if {expected[c["id"]]["adrg"], expected[c["id"]]["mdc"]} & touched]
    out = []
    for i in range(n):
        case = dict(rng.choice(aimed if i % 2 else cases))
        case["id"] = f"{name}{i:06d}"
        case["los"] = rng.choice(["", "0", "1", "2", "5", "6", "12", "13", "40", str(rng.randint(0, 30))])
        case["dept"] = rng.choice(["", "ICU", "0301", "04", case["dept"]])
        if case["age"] not in ("", "0") and rng.random() < 0.4:
            case["age"] = str(rng.choice([1, 5, 6, 7, 16, 17, 40, 80]))
        procs = case["proc"].split("|") if case["proc"] else []
        if len(procs) > 1 and rng.random() < 0.5:
            rng.shuffle(procs)
        if rng.random() < 0.1:
            procs = ["99.9999"] + procs + rng.choice([["39.6500", "96.7201"], ["32.2000"], ["92.2000"]])
        case["proc"] = "|".join(procs)
        if rng.random() < 0.05:
            case["sex"] = {"1": "男", "2": "女"}.get(case["sex"], case["sex"])
        out.append(case)
    return out


# ---- the reference interpreter -------------------------------------------------------------------
def _int(text: str):
    text = (text or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


class Reference:
    """Groups one case from a regional table set's CSV files, independently of the grouper."""

    def __init__(self, folder: Path):
        t = Tables.__new__(Tables)
        t.rows, t.columns = {}, {}
        for name in ("mdc.csv", "mdc_dx.csv", "adrg.csv", "adrg_dx.csv", "adrg_proc.csv", "drg.csv", "cc.csv",
                     "cc_exclusion.csv", "or_proc.csv"):
            with (folder / name).open(encoding="utf-8", newline="") as fh:
                t.rows[name] = list(csv.DictReader(fh))
        self.settings = {"adrg_without_drg": "next_adrg", "second_attempt": "off", "read_sex": ""}
        if (folder / "settings.csv").is_file():
            with (folder / "settings.csv").open(encoding="utf-8", newline="") as fh:
                self.settings.update({r["setting"]: r["value"] for r in csv.DictReader(fh)})
        self.mdcs = sorted(t["mdc.csv"], key=lambda r: float(r["seq"]))
        self.mdc_list: dict[str, set] = {}
        self.site: dict[str, str] = {}
        for r in t["mdc_dx.csv"]:
            self.mdc_list.setdefault(r["mdc"], set()).add(r["code"])
            if r["mdc"] == "MDCZ" and r["site"] and r["code"] not in self.site:
                self.site[r["code"]] = r["site"]
        self.adrgs: dict[str, list] = {}
        for r in sorted(t["adrg.csv"], key=lambda r: float(r["seq"])):
            self.adrgs.setdefault(r["mdc"], []).append(r)
        self.lists: dict[tuple, set] = {}
        self.tags: dict[str, dict] = {}
        for r in t["adrg_dx.csv"]:
            self.lists.setdefault((r["adrg"], "dx"), set()).add(r["code"])
        for r in t["adrg_proc.csv"]:
            self.lists.setdefault((r["adrg"], r["list"]), set()).add(r["code"])
            self.lists.setdefault((r["adrg"], "any proc list"), set()).add(r["code"])
            if r.get("tag"):
                self.tags.setdefault(r["adrg"], {}).setdefault(r["code"], r["tag"])
        self.drgs: dict[str, list] = {}
        for r in sorted(t["drg.csv"], key=lambda r: float(r["seq"])):
            self.drgs.setdefault(r["adrg"], []).append(r)
        self.cc = {}
        for r in t["cc.csv"]:
            self.cc.setdefault(r["code"], (r["level"], r["exclusion_table"]))
        self.exclusion = {}
        for r in t["cc_exclusion.csv"]:
            self.exclusion.setdefault(r["pdx"], r["exclusion_table"])
        self.or_proc = {r["code"] for r in t["or_proc.csv"]}

    def group(self, case: dict[str, str]) -> tuple:
        text = case["sex"].strip()
        if self.settings["read_sex"]:        # only the listed spellings; anything else is unreadable
            spellings = dict(item.split(":") for item in self.settings["read_sex"].split(";"))
            sex = {"male": 1, "female": 2}.get(spellings.get(text, ""))
        else:                                # digits, or 男/女 (as the grouper reads them)
            sex = {"男": 1, "女": 2}.get(text, _int(text))
        age, age_days, weight = _int(case["age"]), _int(case["age_days"]), _int(case["weight"])
        if sex is None or sex not in (1, 2) or age is None or (age == 0 and age_days is None) or (
                age == 0 and age_days <= 28 and weight is None):
            return ("invalid", None, None, None)
        c = {"sex": sex, "age": age, "age_days": age_days, "weight": weight, "los": _int(case["los"]),
             "dept": case["dept"].strip(), "dx": case["dx"].replace(",", "|").split("|"),
             "proc": case["proc"].replace(",", "|").split("|") if case["proc"] else []}
        first = self.attempt(c)
        if first[0] == "grouped" or self.settings["second_attempt"] != "later_procedures":
            return first
        procs = c["proc"]
        for j in range(1, len(procs)):
            again = self.attempt({**c, "proc": [procs[j]] + procs[:j] + procs[j + 1:]})
            if again[0] == "grouped":
                return again
        return first

    def attempt(self, c: dict) -> tuple:
        last = None
        for mdc in self.mdcs:
            if not self.entry(mdc, c):
                continue
            for adrg in self.adrgs.get(mdc["mdc"], []):
                if not self.rule(adrg, c):
                    continue
                for drg in self.drgs.get(adrg["adrg"], []):
                    if self.split(drg, c):
                        return ("grouped", mdc["mdc"], adrg["adrg"], drg["drg"])
                if self.settings["adrg_without_drg"] == "no_drg":
                    return ("no_drg", mdc["mdc"], adrg["adrg"], None)
            last = mdc["mdc"]
        return ("no_adrg", last, None, None) if last else ("ungroupable", None, None, None)

    def entry(self, mdc, c) -> bool:
        pdx_in = c["dx"][0] in self.mdc_list.get(mdc["mdc"], set())
        kind = mdc["entry"]
        if kind == "main_or_proc":
            return bool(c["proc"]) and c["proc"][0] in self.or_proc
        if kind == "pdx_age0":
            return pdx_in and c["age"] == 0
        if kind == "pdx_male":
            return pdx_in and c["sex"] == 1
        if kind == "pdx_female":
            return pdx_in and c["sex"] == 2
        if kind == "pdx_multi_trauma":
            return pdx_in and len({self.site[d] for d in c["dx"] if d in self.site}) >= int(mdc["min_sites"] or 2)
        return pdx_in

    def rule(self, adrg, c) -> bool:
        code, kind = adrg["adrg"], adrg["rule"]
        dx_list, proc_list = self.lists.get((code, "dx"), set()), self.lists.get((code, "proc"), set())
        pdx = c["dx"][0] in dx_list
        pproc = bool(c["proc"]) and c["proc"][0] in proc_list
        neonate = c["age_days"] is not None and c["age_days"] <= int(adrg["max_age_days"] or 28)
        pair = (any(p in self.lists.get((code, "proc"), set()) for p in c["proc"])
                and any(p in self.lists.get((code, "proc1"), set()) for p in c["proc"]))
        if kind == "pdx":
            return pdx
        if kind == "pproc":
            return pproc
        if kind == "pdx_pproc":
            return pdx and pproc
        if kind == "anyproc_pair":
            return pair
        if kind == "pdx_anyproc_pair":
            return pdx and pair
        if kind == "pdx_tags":
            tags = {self.tags[code][p] for p in c["proc"] if p in self.tags.get(code, {})}
            return pdx and _tags_hold(adrg["tags"], tags)
        if kind == "pproc_neonate":
            return pproc and neonate
        if kind == "pdx_neonate":
            return pdx and neonate
        if kind == "anydx_neonate_weight":
            w, low, high = c["weight"], adrg["weight_min_g"], adrg["weight_max_g"]
            return (any(d in dx_list for d in c["dx"]) and w is not None and w != 0 and (not low or w >= int(low))
                    and (not high or w < int(high)) and neonate)
        if kind == "pproc_or":
            return bool(c["proc"]) and c["proc"][0] in self.or_proc
        if kind == "anydx_pproc_or":
            return any(d in dx_list for d in c["dx"]) and bool(c["proc"]) and c["proc"][0] in self.or_proc
        if kind == "no_or_proc":
            return not any(p in self.or_proc for p in c["proc"])
        if kind == "always":
            return True
        raise ValueError(kind)

    def split(self, drg, c) -> bool:
        kind = drg["split"]
        if kind == "mcc" and not self.has(c, ("MCC",)):
            return False
        if kind == "cc_or_mcc" and not self.has(c, ("MCC", "CC")):
            return False
        for field, low, high in (("los", "los_min", "los_max"), ("age", "age_min", "age_max")):
            value = c[field]
            if (drg.get(low) or drg.get(high)) and value is None:
                return False
            if drg.get(low) and value < int(drg[low]):
                return False
            if drg.get(high) and value > int(drg[high]):
                return False
        if drg.get("dept") and c["dept"] not in drg["dept"].split(";"):
            return False
        return all(code in c["proc"] for code in (drg.get("procs_all") or "").split(";") if code)

    def has(self, c, levels) -> bool:
        table = self.exclusion.get(c["dx"][0])
        for d in c["dx"][1:]:
            level, excluded_by = self.cc.get(d, (None, None))
            if level in levels and not (table is not None and excluded_by == table):
                return True
        return False


def _tags_hold(expr: str, tags: set) -> bool:
    """`1|(2&3)` over the set of tags present (a tiny recursive-descent reader)."""
    tokens = [ch for ch in expr.replace(" ", "")]
    pos = 0

    def any_of():
        nonlocal pos
        value = all_of()
        while pos < len(tokens) and tokens[pos] == "|":
            pos += 1
            value = all_of() or value
        return value

    def all_of():
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] == "&":
            pos += 1
            value = atom() and value
        return value

    def atom():
        nonlocal pos
        if tokens[pos] == "(":
            pos += 1
            value = any_of()
            pos += 1
            return value
        start = pos
        while pos < len(tokens) and tokens[pos] not in "|&()":
            pos += 1
        return "".join(tokens[start:pos]) in tags

    return any_of()


def copy_national(national: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        shutil.copyfile(national / name, folder / name)
    return folder


# ---- a hand-written table set of three DRGs, for tests of the import command itself ------------
_TINY = {
    "mdc.csv": "seq,mdc,name,entry,sex,min_sites,qy_position\n1,MDCG,消化系统,pdx,,,\n",
    "mdc_dx.csv": "mdc,code,site\nMDCG,K35.800,\nMDCG,K80.000,\n",
    "adrg.csv": "mdc,seq,adrg,name,rule,tags,max_age_days,weight_min_g,weight_max_g\n"
                "MDCG,1,GB1,阑尾疾患,pdx,,,,\nMDCG,2,GZ1,其他消化系统疾患,always,,,,\n",
    "adrg_dx.csv": "adrg,list,code\nGB1,dx,K35.800\n",
    "adrg_proc.csv": "adrg,list,code,tag\n",
    "drg.csv": "adrg,seq,drg,name,split,los_max\nGB1,1,GB11,阑尾疾患伴MCC,mcc,\nGB1,2,GB15,阑尾疾患,none,{los_max}\n"
               "GZ1,1,GZ19,其他消化系统疾患,none,\n",
    "cc.csv": "code,level,exclusion_table\nJ18.900,MCC,1\n",
    "cc_exclusion.csv": "pdx,exclusion_table\nJ18.900,1\n",
    "or_proc.csv": "code,name\n47.0100,阑尾切除术\n",
}


def write_tiny_table_set(folder: Path, *, regional: bool = False) -> Path:
    """A minimal CHS-DRG table set (one MDC, two ADRGs, three DRGs); `regional` adds a LOS limit
    on GB15, so that imported with `--base` (the plain set's pack) it is a one-line overlay."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in _TINY.items():
        (folder / name).write_text(text.format(los_max="10" if regional else ""), encoding="utf-8")
    return folder


# ---- the reference interpreter of the regional layout (../shared/regional-layouts.md) ------------
def extra_procedures(national: Path) -> list[str]:
    """The non-OR procedures the zhejiang variant lists in mdc_proc.csv (MDCA's extra entry codes)."""
    with (national / "or_proc.csv").open(encoding="utf-8", newline="") as fh:
        or_codes = {r["code"] for r in csv.DictReader(fh)}
    with (national / "proc_dict.csv").open(encoding="utf-8", newline="") as fh:
        return [r["code"] for r in csv.DictReader(fh) if r["code"] not in or_codes][:200:40]


class LayoutReference:
    """Groups one case from a regional-layout table set (scheme.csv) by the note's §2.4 loop and the
    exact conditions of its §3–§5 tables, with 1.1 value semantics; independent of the grouper."""

    def __init__(self, folder: Path):
        def rows(name):
            if not (folder / name).is_file():
                return []
            with (folder / name).open(encoding="utf-8", newline="") as fh:
                return list(csv.DictReader(fh))

        self.settings = {r["key"]: r["value"] for r in rows("scheme.csv")}
        self.mdcs = sorted(rows("mdc.csv"), key=lambda r: int(r["seq"]))
        self.mdc_list: dict[str, set] = {}
        self.site: dict[str, dict] = {}
        for r in rows("mdc_dx.csv"):
            self.mdc_list.setdefault(r["mdc"], set()).add(r["code"])
            if r["site"]:
                self.site.setdefault(r["mdc"], {}).setdefault(r["code"], r["site"])
        self.mdc_proc: dict[str, set] = {}
        for r in rows("mdc_proc.csv"):
            self.mdc_proc.setdefault(r["mdc"], set()).add(r["code"])
        self.rules: dict[str, list] = {}
        for r in sorted(rows("adrg.csv"), key=lambda r: int(r["seq"])):
            self.rules.setdefault(r["mdc"], []).append(r)
        self.lists: dict[tuple, set] = {}
        self.tags: dict[tuple, dict] = {}
        for r in rows("adrg_dx.csv") + rows("adrg_proc.csv"):
            key = (r["adrg"], r.get("part") or "")
            self.lists.setdefault((*key, r["list"]), set()).add(r["code"])
            if r.get("tag"):
                self.tags.setdefault(key, {}).setdefault(r["code"], r["tag"])
        self.drgs: dict[str, list] = {}
        for r in sorted(rows("drg.csv"), key=lambda r: int(r["seq"])):
            self.drgs.setdefault(r["adrg"], []).append(r)
        self.cc = {}
        for r in rows("cc.csv"):
            self.cc.setdefault(r["code"], (r["level"], r["exclusion_table"]))
        self.exclusion = {}
        for r in rows("cc_exclusion.csv"):
            self.exclusion.setdefault(r["pdx"], r["exclusion_table"])
        self.or_proc = {r["code"] for r in rows("or_proc.csv")}

    def group(self, case: dict[str, str]) -> tuple:
        text = case["sex"]
        if self.settings["sex_check"] == "str_1_2":
            sex, passes = text, text in ("1", "2")
        else:
            sex = int(text) if text.isdigit() else text
            passes = sex in (1, 2, "男", "女")
        age, age_days, weight = _int(case["age"]), _int(case["age_days"]), _int(case["weight"])
        if not text or not passes or age is None or (age == 0 and age_days is None) or (
                age == 0 and age_days <= 28 and weight is None):
            return ("invalid", None, None, None)
        c = {"sex": sex, "age": age, "age_days": age_days, "weight": weight, "los": _int(case["los"]),
             "dept": case["dept"], "dx": case["dx"].replace(",", "|").split("|")}
        procs = case["proc"].replace(",", "|").split("|") if case["proc"] else []
        entered: list[str] = []
        result = self.attempt(c, procs, entered)
        if result is None and self.settings["retry"] == "secondary_procs" and len(procs) >= 2:
            for p in procs[1:]:
                result = self.attempt(c, [p], entered)
                if result is not None:
                    break
        if result:
            return result
        return ("no_adrg", entered[-1], None, None) if entered else ("ungroupable", None, None, None)

    def attempt(self, c: dict, procs: list[str], entered: list[str]):
        for mdc in self.mdcs:
            if not self.entry(mdc, c, procs):
                continue
            for row in self.rules.get(mdc["mdc"], []):
                if not self.rule(row, c, procs):
                    continue
                for drg in self.drgs.get(row["adrg"], []):
                    if self.split(drg, c, procs):
                        return ("grouped", mdc["mdc"], row["adrg"], drg["drg"])
                if self.settings["adrg_without_drg"] == "adrg_code":
                    return ("no_drg", mdc["mdc"], row["adrg"], None)
            entered.append(mdc["mdc"])
        return None

    def entry(self, mdc, c, procs) -> bool:
        dx, kind, own = c["dx"], mdc["entry"], self.mdc_list.get(mdc["mdc"], set())
        pdx_in = dx[0] in own
        if kind == "main_or_proc":
            return bool(procs) and procs[0] in self.or_proc
        if kind == "main_or_proc_plus":
            return bool(procs) and (procs[0] in self.or_proc or procs[0] in self.mdc_proc.get(mdc["mdc"], set()))
        if kind == "anydx":
            return any(d in own for d in dx)
        if kind == "pdx_age0":
            return pdx_in and c["age"] == 0
        if kind in ("pdx_male", "pdx_female"):
            want = mdc["sex"] if self.settings["sex_check"] == "str_1_2" else int(mdc["sex"])
            return pdx_in and c["sex"] == want
        if kind == "pdx_multi_trauma":
            sites = self.site.get(mdc["mdc"], {})
            return pdx_in and len({sites[d] for d in set(dx) & own if d in sites}) >= int(mdc["min_sites"])
        if kind == "pdx":
            return pdx_in
        raise ValueError(kind)

    def rule(self, row, c, procs) -> bool:
        key = (row["adrg"], row.get("part") or "")
        L = lambda name: self.lists.get((*key, name), set())  # noqa: E731
        dx, kind = c["dx"], row["rule"]
        pdx = dx[0] in L("dx")
        pproc = bool(procs) and procs[0] in L("proc")
        anyproc = any(p in L("proc") for p in procs)
        secdx = any(d in L("dx1") for d in dx[1:])
        anydx = any(d in L("dx") for d in dx)
        medical = not procs or procs[0] not in self.or_proc
        neonate = row["max_age_days"] and c["age_days"] is not None and c["age_days"] <= int(row["max_age_days"])
        w, low, high = c["weight"], row["weight_min_g"], row["weight_max_g"]
        weight = w is not None and w != 0 and (not low or w >= int(low)) and (not high or w < int(high))
        pair = anyproc and any(p in L("proc1") for p in procs)
        table = {
            "pdx": pdx, "pproc": pproc, "pdx_pproc": pdx and pproc, "anyproc_pair": pair, "pdx_anyproc_pair": pdx and pair,
            "pproc_neonate": pproc and neonate, "pdx_neonate": pdx and neonate,
            "anydx_neonate_weight": anydx and weight and neonate,
            "pproc_or": bool(procs) and procs[0] in self.or_proc,
            "anydx_pproc_or": anydx and bool(procs) and procs[0] in self.or_proc,
            "no_or_proc": not any(p in self.or_proc for p in procs), "always": True,
            "anyproc": anyproc, "anydx": anydx, "secdx": secdx, "secdx_pproc": secdx and pproc,
            "secdx_anyproc": secdx and anyproc, "anydx_pproc": anydx and pproc, "pdx_anyproc": pdx and anyproc,
            "notpdx_pproc": not pdx and pproc, "pdx_medical": pdx and medical,
            "pdx_neonate_medical": pdx and neonate and medical,
            "pdx_neonate_weight_medical": pdx and weight and neonate and medical,
        }
        if kind == "pdx_tags":
            tags = {self.tags[key][p] for p in procs if p in self.tags.get(key, {})}
            return pdx and _tags_hold(row["tags"], tags)
        return bool(table[kind])

    def split(self, drg, c, procs) -> bool:
        kind = drg["split"]
        los, age = c["los"], c["age"]
        if kind == "none":
            return True
        if kind == "mcc":
            return self.has(c, ("MCC",))
        if kind == "cc_or_mcc":
            return self.has(c, ("MCC", "CC"))
        if kind == "los":
            return los is not None and (not drg["los_min"] or los >= int(drg["los_min"])) and (
                not drg["los_max"] or los < int(drg["los_max"]))
        if kind == "age_le":
            return age <= int(drg["age"])
        if kind == "age_lt":
            return age < int(drg["age"])
        if kind == "age_le_cc_or_mcc":
            return age <= int(drg["age"]) and len(c["dx"]) >= 2 and self.has(c, ("MCC", "CC"))
        if kind == "dept_eq":
            return c["dept"] == drg["dept"]
        if kind == "procs_all":
            return all(code in procs for code in drg["procs"].split("|"))
        raise ValueError(kind)

    has = Reference.has      # the 1.1 MCC/CC test with exclusions, unchanged in the layout


def layout_cases(national: Path, name: str, n: int, seed: int = 5) -> list[dict[str, str]]:
    """Cases for a regional-layout variant: `variant_cases` plus what its kinds read — extra MDCA entry
    procedures as principal, several procedures (retries), departments, ages at the split bounds,
    length of stay 0 and the band edges, sex spellings (`01`; `男`/`女`: invalid under str_1_2,
    accepted but neither male nor female under int_or_cn)."""
    rng = random.Random(seed + 1)
    extra = extra_procedures(national)
    out = []
    for case in variant_cases(national, name, n, seed):
        case["dept"] = rng.choice(["", "ICU", "icu", "ICU2", "0301", case["dept"] or ""])
        if case["age"] not in ("", "0") and rng.random() < 0.3:
            case["age"] = str(rng.choice([16, 17, 18, 19, 45]))
        case["los"] = rng.choice(["", "0", "1", "2", "5", "6", "12", "13", "14", "30", case["los"]])
        procs = case["proc"].split("|") if case["proc"] else []
        if rng.random() < 0.15:
            procs = [rng.choice(extra)] + procs
        if rng.random() < 0.15:
            procs = procs + [rng.choice(extra)]
        if rng.random() < 0.03:
            procs = ["39.6500", "96.7201"] + procs          # ECMO with ventilation: procs_all (zhejiang AH10)
        case["proc"] = "|".join(procs)
        spellings = ["01", "1", "2", "男", "女"] + (["0"] if name == "zhejiang" else [])
        if rng.random() < 0.05:
            case["sex"] = rng.choice(spellings)
        out.append(case)
    return out
