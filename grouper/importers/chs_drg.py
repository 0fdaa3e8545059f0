"""Import a CHS-DRG table set (the official appendix layout, see docs/chs-drg.md)
into a scheme pack: `scheme.grp` plus copies of the CSV tables it references.

The generated scheme is built as an AST and written by the printer, so it always parses back.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from ..outputs import atomic_output
from ..lang import ast
from ..lang.parse import parse_text
from ..lang.printer import scheme_text
from . import regional_layout
from .tables import GROUPING_TABLES, ImportError_, UnusedRowsError, _rows, with_regional_columns  # noqa: F401

# CHS-DRG 2.0 layout (README §2 of the 2.0 pack): QY lists and the DRG table with weights;
# 3.0 draft (README §2 of the 3.0 pack): the procedure lists of the `other_proc` DRGs.
OPTIONAL_GROUPING_TABLES = ("mdc_qy_dx.csv", "drg_proc.csv")
REFERENCE_TABLES = ("dx_dict.csv", "proc_dict.csv", "dx_map.csv", "proc_map.csv", "drg_name.csv")
# Generated at import time from the MDC lists (see `_sex_specific_dx`).
SEX_SPECIFIC_TABLE = "sex_specific_dx.csv"

_OR = ast.SetRef("OR")
_NEONATE = "age_days"
# DRG-level splits written `kind:value` (CHS-DRG 3.0 draft, README §3.6): (age comparison, severity
# define the split also needs, or None). The severity defines are generated in `scheme`.
_AGE_SPLITS = {"age_ge": (">=", None), "age_lt": ("<", None), "mcc_age_ge": (">=", "mcc"),
               "cc_age_ge": (">=", "has_cc"), "cc_or_mcc_age_ge": (">=", "cc_or_mcc")}


def _table(name: str, **filters: str) -> ast.TableFilter | ast.SetRef:
    if not filters:
        return ast.SetRef(name)
    return ast.TableFilter(name, tuple(ast.Filter(k, "=", v) for k, v in filters.items()))


def _any(*items: ast.Cond) -> ast.Cond:
    return items[0] if len(items) == 1 else ast.AnyOf(tuple(items))


def _all(*items: ast.Cond) -> ast.Cond:
    return items[0] if len(items) == 1 else ast.AllOf(tuple(items))


def _tag_expr(text: str) -> ast.TagExpr:
    # Reuse the scheme parser for the tag expression instead of writing a second parser.
    probe = parse_text(f'scheme "" version "" define t = tag of proc in x matches {text.replace("|", " | ").replace("&", " & ")}')
    return probe.statements[0].cond.expr


class _Importer:
    def __init__(self, table_dir: Path):
        self.dir = table_dir
        # The regional layout (scheme.csv, shared/regional-layouts.md): 1.1 plus regional kinds.
        self.layout = regional_layout.read_scheme_table(table_dir)
        self.regional = self.layout is not None
        self.mdc_proc: dict[str, int] = {}                # MDC → rows in mdc_proc.csv
        if (table_dir / regional_layout.MDC_PROC_TABLE).is_file():
            for row in _rows(table_dir / regional_layout.MDC_PROC_TABLE):
                self.mdc_proc[row["mdc"]] = self.mdc_proc.get(row["mdc"], 0) + 1
        self.used_mdc_proc: set[str] = set()
        self.layout_problems: list[str] = []              # unused cells and rows (the unused-row report)
        self.warnings: list[str] = []                     # accepted as written, but worth a look
        self.mdcs = sorted(_rows(table_dir / "mdc.csv"), key=lambda r: int(r["seq"]))
        self.adrgs = _rows(table_dir / "adrg.csv")
        self.drgs = _rows(table_dir / "drg.csv")
        # The 2.0 layout: QY rules in mdc.csv (active), alternative rule rows (`part`), JavaScript
        # number semantics in the reference (README §3.1 of the 2.0 pack).
        self.v2 = bool(self.mdcs) and "qy" in self.mdcs[0]
        # The 3.0 draft layout: the 2.0 layout plus DRG-level tests (`kind:value` splits, drg_proc.csv).
        self.v3 = self.v2 and ((table_dir / "drg_proc.csv").is_file() or any(":" in r["split"] for r in self.drgs))
        # procedure lists of the `other_proc` DRGs: (drg, list) → rows; which of them a split reads
        self.drg_lists: dict[tuple[str, str], int] = {}
        if (table_dir / "drg_proc.csv").is_file():
            for row in _rows(table_dir / "drg_proc.csv"):
                key = (row["drg"], row["list"])
                self.drg_lists[key] = self.drg_lists.get(key, 0) + 1
        self.used_drg_lists: set[tuple[str, str]] = set()
        self.needs_has_cc = False
        self.cc_rows = _rows(table_dir / "cc.csv")
        # lists of each rule row: (table, adrg, part) → list names present; what the rules use
        self.lists: dict[tuple[str, str, str], set[str]] = {}
        for table in ("adrg_dx", "adrg_proc"):
            for row in _rows(table_dir / f"{table}.csv"):
                self.lists.setdefault((table, row["adrg"], row.get("part") or ""), set()).add(row["list"])
        self.used_lists: set[tuple[str, str, str, str]] = set()
        self.qy_names: dict[str, str] = {}
        self.qy_comments: dict[ast.QyDef, str] = {}
        if (table_dir / "drg_name.csv").is_file():
            self.qy_names = {r["drg"]: r["name"] for r in _rows(table_dir / "drg_name.csv") if r["drg"].endswith("QY")}

    def mdc_list(self, row: dict[str, str]) -> ast.SetExpr:
        return _table("mdc_dx", mdc=row["mdc"])

    def perinatal_dx(self, row: dict[str, str]) -> ast.Cond:
        """The diagnosis part of the 2.0 MDCP entry: pdx in its list, or any diagnosis with the prefix."""
        return _any(ast.OneIn("pdx", self.mdc_list(row)), ast.ManyIn("any", "dx", ast.PrefixSet((row["prefix"],))))

    def mdc_entry(self, row: dict[str, str]) -> ast.Cond:
        in_list = ast.OneIn("pdx", self.mdc_list(row))
        entry = row["entry"]
        if entry == "main_or_proc":
            return ast.OneIn("pproc", _OR)
        if entry == "main_or_proc_plus" and self.regional:
            # the MDC's extra procedures (mdc_proc.csv) only open the MDC; they do not join OR
            if row["mdc"] not in self.mdc_proc:
                return ast.OneIn("pproc", _OR)
            self.used_mdc_proc.add(row["mdc"])
            return _any(ast.OneIn("pproc", _OR), ast.OneIn("pproc", _table("mdc_proc", mdc=row["mdc"])))
        if entry == "always":
            return ast.Always()
        if entry == "pdx":
            return in_list
        if entry == "anydx":
            return ast.ManyIn("any", "dx", self.mdc_list(row))
        if entry == "pdx_age0":
            return _all(in_list, ast.FieldCmp("age", "=", 0))
        if entry == "pdx_or_anydx_prefix_age0" and row.get("prefix"):
            return _all(ast.FieldCmp("age", "=", 0), self.perinatal_dx(row))
        if entry == "pdx_male":
            return _all(in_list, ast.FieldCmp("sex", "=", "male"))
        if entry == "pdx_female":
            return _all(in_list, ast.FieldCmp("sex", "=", "female"))
        if entry == "pdx_multi_trauma":
            sites = ast.CountLabels("site", "dx", self.mdc_list(row), ">=", int(row["min_sites"] or 2))
            return _all(in_list, sites)
        raise ImportError_(f"mdc.csv: MDC {row['mdc']} has an unknown entry rule {entry!r}")

    def rule_list(self, table: str, adrg: str, part: str, name: str) -> ast.SetExpr:
        """The list `name` of one rule row, filtered as narrowly as the table needs."""
        self.used_lists.add((table, adrg, part, name))
        lists = self.lists.get((table, adrg, part), set())
        if name not in lists:
            where = f"ADRG {adrg}" + (f" part {part}" if part else "")
            self.warnings.append(f"{table}.csv: list {name!r} of {where} has no rows: read as an empty list "
                                 "(membership never holds)")
        filters = {"adrg": adrg}
        if part:
            filters["part"] = part
        if lists - {name}:
            filters["list"] = name
        return _table(table, **filters)

    def adrg_rule(self, row: dict[str, str]) -> ast.Cond:
        code, rule, part = row["adrg"], row["rule"], row.get("part") or ""

        def dx(name="dx"):
            return self.rule_list("adrg_dx", code, part, name)

        def proc(name="proc"):
            return self.rule_list("adrg_proc", code, part, name)

        def any_proc(*names):
            return tuple(ast.ManyIn("any", "proc", proc(n)) for n in names)

        pdx = lambda: ast.OneIn("pdx", dx())                                  # noqa: E731
        pproc = lambda: ast.OneIn("pproc", proc())                            # noqa: E731
        secdx = lambda: ast.ManyIn("any", "secondary dx", dx("dx1"))          # noqa: E731
        neonate = lambda: ast.FieldCmp(_NEONATE, "<=", _integer(row, "max_age_days"))  # noqa: E731
        other_proc = lambda: ast.ManyIn("any", "secondary proc", proc("proc1"))  # a repeat of the pproc counts  # noqa: E731
        medical = lambda: ast.Negation(ast.OneIn("pproc", _OR))               # no OR principal procedure  # noqa: E731
        if rule == "pdx":
            return pdx()
        if rule == "pproc":
            return pproc()
        # CHS-DRG 3.0 draft kinds (README §3.5 of the 3.0 pack). "Other procedure" reads the items
        # after the first, so it also implies at least two procedures.
        if rule == "anyproc":
            return _all(*any_proc("proc"))
        if rule == "anyproc_triple":
            return _all(*any_proc("proc", "proc1", "proc2"))
        if rule == "pproc_otherproc":
            return _all(pproc(), other_proc())
        if rule == "secdx_pproc_otherproc":
            return _all(secdx(), pproc(), other_proc())
        if rule == "pdx_secdx_anyproc":
            return _all(pdx(), secdx(), *any_proc("proc"))
        if rule == "pdx_secdx_anyproc_pair":
            return _all(pdx(), secdx(), *any_proc("proc", "proc1"))
        if rule == "pdx_secdx2_anyproc":
            return _all(pdx(), secdx(), ast.ManyIn("any", "secondary dx", dx("dx2")), *any_proc("proc"))
        if rule == "anydx_neonate_weight_lt" and row.get("max_age_days") and row.get("weight_max_g"):
            # no weight > 0 test and no lower bound: an empty weight (read as 0) is the lightest band
            return _all(ast.ManyIn("any", "dx", dx()), ast.FieldCmp("weight", "<", _integer(row, "weight_max_g")),
                        neonate())
        if rule == "anydx_neonate" and row.get("max_age_days"):
            return _all(ast.ManyIn("any", "dx", dx()), neonate())
        # regional kinds (shared/regional-layouts.md §4)
        if rule == "anydx_pproc":
            return _all(ast.ManyIn("any", "dx", dx()), pproc())
        if rule == "pdx_anyproc":
            return _all(pdx(), *any_proc("proc"))
        if rule == "notpdx_pproc":
            return _all(ast.Negation(pdx()), pproc())
        if rule == "pdx_medical":
            return _all(pdx(), medical())
        if rule == "pdx_neonate_medical" and row.get("max_age_days"):
            return _all(pdx(), neonate(), medical())
        if rule == "pdx_neonate_weight_medical" and row.get("max_age_days"):
            return _all(pdx(), *self.birth_weight(row, v2=False), neonate(), medical())
        if rule == "pdx_pproc":
            return _all(pdx(), pproc())
        if rule == "anyproc_pair":
            return _all(*any_proc("proc", "proc1"))
        if rule == "pdx_anyproc_pair":
            return _all(pdx(), *any_proc("proc", "proc1"))
        if rule == "pdx_anyproc_triple":
            return _all(pdx(), *any_proc("proc", "proc1", "proc2"))
        if rule == "pdx_tags":
            return _all(pdx(), ast.TagsMatch("tag", "proc", proc(), _tag_expr(row["tags"])))
        if rule == "secdx":
            return secdx()
        if rule == "secdx_pproc":
            return _all(secdx(), pproc())
        if rule == "pdx_secdx_pproc":
            return _all(pdx(), secdx(), pproc())
        if rule == "secdx_anyproc":
            return _all(secdx(), *any_proc("proc"))
        if rule == "pproc_neonate" and row.get("max_age_days"):
            return _all(pproc(), neonate())
        if rule == "pdx_neonate" and row.get("max_age_days"):
            return _all(pdx(), neonate())
        if rule == "pdx_not_neonate" and row.get("max_age_days"):
            return _all(pdx(), ast.FieldCmp(_NEONATE, ">", _integer(row, "max_age_days")))
        if rule == "anydx_neonate_weight" and row.get("max_age_days"):
            return _all(ast.ManyIn("any", "dx", dx()), *self.birth_weight(row, v2=self.v2), neonate())
        if rule == "pproc_or":
            return ast.OneIn("pproc", _OR)
        if rule == "not_pproc_or":
            return ast.Negation(ast.OneIn("pproc", _OR))
        if rule == "anydx":
            return ast.ManyIn("any", "dx", dx())
        if rule == "anydx_pproc_or":
            return _all(ast.ManyIn("any", "dx", dx()), ast.OneIn("pproc", _OR))
        if rule == "no_or_proc":
            return ast.ManyIn("no", "proc", _OR)
        if rule == "always":
            return ast.Always()
        where = f"ADRG {code}" + (f" part {part}" if part else "") + f" ({row['mdc']} seq {row['seq']})"
        if rule in _NEEDS_PARAMETER:
            raise ImportError_(f"adrg.csv: {where} has rule kind {rule!r} but not its parameter "
                               f"({', '.join(_NEEDS_PARAMETER[rule])})")
        raise ImportError_(f"adrg.csv: {where} has an unknown rule kind {rule!r}")

    @staticmethod
    def birth_weight(row: dict[str, str], *, v2: bool) -> list[ast.Cond]:
        """The birth-weight band of a rule row: weight_min_g inclusive, weight_max_g exclusive, an
        empty cell no bound; 2.0 also needs weight > 0 (an empty weight reads as 0 there), 1.1 and
        the regional layout weight != 0 (a missing weight fails every comparison)."""
        low, high = row["weight_min_g"], row["weight_max_g"]
        weight: list[ast.Cond] = []
        if v2:
            weight.append(ast.FieldCmp("weight", ">", 0))
        elif not low or int(low) <= 0:
            weight.append(ast.FieldCmp("weight", "!=", 0))  # weight 0 never counts as a birth weight
        if low:
            weight.append(ast.FieldCmp("weight", ">=", _integer(row, "weight_min_g")))
        if high:
            weight.append(ast.FieldCmp("weight", "<", _integer(row, "weight_max_g")))
        return weight

    def drg_split(self, row: dict[str, str]) -> ast.Cond | None:
        if self.regional:
            return regional_layout.split_condition(row, self.layout_problems)
        split = row["split"]
        if split == "none":
            return None
        if split in ("mcc", "cc_or_mcc"):
            return ast.DefineRef(split)
        if split == "other_proc":   # 3.0: some procedure after the first in the DRG's drg_proc.csv list
            self.used_drg_lists.add((row["drg"], "proc"))
            return ast.ManyIn("any", "secondary proc", _table("drg_proc", drg=row["drg"], list="proc"))
        kind, _, value = split.partition(":")
        if kind in _AGE_SPLITS:     # 3.0: `age_ge:70` ... (a missing age reads as 0)
            if not value.isdigit():
                raise ImportError_(f"drg.csv: DRG {row['drg']} has split {split!r}: the age after ':' must be a whole number")
            op, severity = _AGE_SPLITS[kind]
            if severity == "has_cc":
                self.needs_has_cc = True
            age = ast.FieldCmp("age", op, int(value))
            return age if severity is None else _all(ast.DefineRef(severity), age)
        raise ImportError_(f"drg.csv: DRG {row['drg']} has an unknown split {split!r}")

    # ---- QY (歧义组), CHS-DRG 2.0 -------------------------------------------------------------
    def qy_rules(self, row: dict[str, str]) -> list[str]:
        rules = [r for r in (row.get("qy") or "").split(";") if r]
        known = ("or_pproc", "neonate_outside", "late_pdx")
        for rule in rules:
            if rule not in known and not rule.startswith("sex_mismatch:"):
                raise ImportError_(f"mdc.csv: MDC {row['mdc']} has an unknown QY rule {rule!r}")
        return rules

    def qy(self, code: str, cond: ast.Cond, mdc: str | None, why: str) -> ast.QyDef:
        node = ast.QyDef(code, self.qy_names.get(code, f"{code[0]}_歧义组"), mdc, cond)
        self.qy_comments[node] = why
        return node

    def qy_before_entry(self, row: dict[str, str]) -> list[ast.QyDef]:
        """QY rules tried before the MDC (they hold only when its entry fails), as top-level rules."""
        out = []
        mdc = row["mdc"]
        for rule in self.qy_rules(row):
            if rule.startswith("sex_mismatch:"):
                code = rule.split(":", 1)[1]
                if row["entry"] not in ("pdx_male", "pdx_female"):
                    raise ImportError_(f"mdc.csv: MDC {mdc} has {rule} but its entry is not by sex")
                own_sex = "male" if row["entry"] == "pdx_male" else "female"
                self.used_qy_lists.add((mdc, "exempt"))
                out.append(self.qy(code, _all(ast.OneIn("pdx", self.mdc_list(row)),
                                              ast.Negation(ast.OneIn("pdx", _table("mdc_qy_dx", mdc=mdc, list="exempt"))),
                                              ast.FieldCmp("sex", "!=", own_sex)), f"MDC{code[0]}",
                                  f"{rule} ({mdc}): a principal diagnosis of {mdc}'s list on a patient who is not "
                                  f"{own_sex} (codes of both sexes' lists exempt)"))
            elif rule == "neonate_outside":
                if row["entry"] != "pdx_or_anydx_prefix_age0":
                    raise ImportError_(f"mdc.csv: MDC {mdc} has neonate_outside but not the MDCP entry")
                out.append(self.qy(f"{mdc[-1]}QY", _all(ast.FieldCmp("age", "=", 0), ast.FieldCmp(_NEONATE, "<=", 28),
                                                        ast.Negation(self.perinatal_dx(row))), mdc,
                                  f"neonate_outside ({mdc}): a newborn (age 0, age_days <= 28) whose diagnoses do not "
                                  f"enter {mdc}"))
        return out

    def qy_inside(self, row: dict[str, str], adrgs: list[ast.AdrgDef]) -> list[ast.AdrgDef | ast.QyDef]:
        """The MDC's ADRGs with its QY rules in place: late_pdx first, or_pproc after row qy_position."""
        rules = self.qy_rules(row)
        mdc = row["mdc"]
        code = f"{mdc[-1]}QY"
        items: list[ast.AdrgDef | ast.QyDef] = list(adrgs)
        if "or_pproc" in rules:
            position = int(row["qy_position"] or 0)
            rows_before = self.rule_rows_before(mdc, position)
            if rows_before is None:
                raise ImportError_(f"mdc.csv: MDC {mdc} places its QY check at row {position}, inside an ADRG's rule rows "
                                   f"or past its last row")
            items.insert(rows_before, self.qy(code, ast.OneIn("pproc", _OR), None,
                                              f"or_pproc: an OR principal procedure that none of the {rows_before} "
                                              f"surgical ADRG(s) above took"))
        if "late_pdx" in rules:
            self.used_qy_lists.add((mdc, "late"))
            items.insert(0, self.qy(code, _all(ast.FieldCmp(_NEONATE, ">", 28),
                                               ast.OneIn("pdx", _table("mdc_qy_dx", mdc=mdc, list="late"))), None,
                                   "late_pdx: a perinatal respiratory-distress diagnosis after 28 days"))
        return items

    def rule_rows_before(self, mdc: str, position: int) -> int | None:
        """How many ADRGs of the MDC lie wholly in its rule rows seq <= position (None: the position splits an ADRG)."""
        rows = sorted((r for r in self.adrgs if r["mdc"] == mdc), key=lambda r: int(r["seq"]))
        if position > len(rows):
            return None
        if 0 < position < len(rows) and rows[position - 1]["adrg"] == rows[position]["adrg"]:
            return None
        return len(dict.fromkeys(r["adrg"] for r in rows[:position]))

    def sex_specific_dx(self, dictionary: set[str] | None) -> list[tuple[str, str]]:
        """(code, sex) of the diagnoses that only one sex can have, from the MDC lists: a code
        listed only under MDCN (female reproductive) or MDCO (pregnancy) is female-only ("2"), one
        listed only under MDCM (male reproductive) is male-only ("1"); a code in both is neither.
        Codes absent from the dictionary (when there is one) are left out."""
        lists: dict[str, set[str]] = {}
        for row in _rows(self.dir / "mdc_dx.csv"):
            lists.setdefault(row["mdc"], set()).add(row["code"])
        male = lists.get("MDCM", set())
        female = lists.get("MDCN", set()) | lists.get("MDCO", set())
        rows = [(code, "1") for code in male - female] + [(code, "2") for code in female - male]
        if dictionary is not None:
            rows = [r for r in rows if r[0] in dictionary]
        return sorted(rows)

    def scheme(self, name: str, version: str, reference_tables: list[str], *, sex_table: bool = False,
               with_maps: bool = False) -> ast.Scheme:
        self.used_qy_lists: set[tuple[str, str]] = set()
        st: list[ast.Statement] = [
            ast.TableDef("mdc_dx", "mdc_dx.csv"),
            ast.TableDef("adrg_dx", "adrg_dx.csv"),
            ast.TableDef("adrg_proc", "adrg_proc.csv"),
            ast.TableDef("cc", "cc.csv"),
            ast.TableDef("cc_exclusion", "cc_exclusion.csv", "pdx"),
            ast.TableDef("or_proc", "or_proc.csv"),
        ]
        if self.v2 and (self.dir / "mdc_qy_dx.csv").is_file():
            st.append(ast.TableDef("mdc_qy_dx", "mdc_qy_dx.csv"))
        if (self.dir / "drg_proc.csv").is_file():
            st.append(ast.TableDef("drg_proc", "drg_proc.csv"))
        if self.regional and self.mdc_proc:
            st.append(ast.TableDef("mdc_proc", regional_layout.MDC_PROC_TABLE))
        for file in reference_tables:
            if file in ("dx_dict.csv", "proc_dict.csv"):
                st.append(ast.TableDef(file[:-4], file))
        if "drg_name.csv" in reference_tables:
            st.append(ast.TableDef("drg_weights", "drg_name.csv", "drg"))
        if sex_table:
            st.append(ast.TableDef(SEX_SPECIFIC_TABLE[:-4], SEX_SPECIFIC_TABLE))
        maps = [f for f in reference_tables if with_maps and f in ("dx_map.csv", "proc_map.csv")]
        for file in maps:
            st.append(ast.TableDef(file[:-4], file, "from"))
        for file in reference_tables:
            if file in ("dx_dict.csv", "proc_dict.csv"):
                st.append(ast.DictionaryDef(file.split("_")[0], file[:-4]))
        for file in maps:  # 临床版 → 医保版 code conversion before validation and grouping
            st.append(ast.MapDef(file.split("_")[0], file[:-4]))
        if "drg_name.csv" in reference_tables:
            st.append(ast.WeightsDef("drg_weights"))
        st.append(ast.SetDef("OR", ast.SetRef("or_proc")))
        hierarchy = self.hierarchy()   # first: it finds which defines the DRG splits need
        st.append(ast.DefineDef("mcc", self.has_level("MCC")))
        if self.needs_has_cc:       # 3.0's cc_age_ge: the CC list alone (an MCC does not count)
            st.append(ast.DefineDef("has_cc", self.has_level("CC")))
            st.append(ast.DefineDef("cc_or_mcc", ast.AnyOf((ast.DefineRef("mcc"), ast.DefineRef("has_cc")))))
        else:
            st.append(ast.DefineDef("cc_or_mcc", ast.AnyOf((ast.DefineRef("mcc"), self.has_level("CC")))))
        st += self.input_rules()
        if self.regional:
            st += regional_layout.settings_statements(self.layout)
        # Plausibility warnings (病案质控): reported with the result, never change it.
        if sex_table:
            sex_dx = ast.SetRef(SEX_SPECIFIC_TABLE[:-4])
            st += [
                ast.WarnDef("female_dx_on_male", "男性患者使用女性专用诊断 / a female-only diagnosis on a male patient",
                            _all(ast.FieldCmp("sex", "=", "male"),
                                 ast.ManyIn("any", "dx", _table(sex_dx.name, sex="2")))),
                ast.WarnDef("male_dx_on_female", "女性患者使用男性专用诊断 / a male-only diagnosis on a female patient",
                            _all(ast.FieldCmp("sex", "=", "female"),
                                 ast.ManyIn("any", "dx", _table(sex_dx.name, sex="1")))),
            ]
        if any(m["mdc"] == "MDCP" for m in self.mdcs):
            st.append(ast.WarnDef(
                "newborn_dx_on_adult", "1岁及以上患者的主要诊断为新生儿疾病 / a newborn principal diagnosis on a patient aged 1 or more",
                _all(ast.FieldCmp("age", ">=", 1), ast.OneIn("pdx", _table("mdc_dx", mdc="MDCP")))))
        st += hierarchy
        return ast.Scheme(ast.Header(name, version), tuple(st))

    def has_level(self, level: str) -> ast.Cond:
        """Some secondary diagnosis is a CC (MCC) code not excluded by the principal diagnosis:
        excluded when its exclusion_table equals the pdx's table in cc_exclusion.csv. A pdx without
        a row has table "" (3.0 README §3.6), so a code with an empty exclusion_table counts only
        when the pdx has a row; tables without such codes (1.1, 2.0) get the plain test."""
        unless = ast.Unless("cc", "exclusion_table", "cc_exclusion", "exclusion_table")
        if not any(r["level"] == level and not r["exclusion_table"] for r in self.cc_rows):
            return ast.ManyIn("any", "secondary dx", _table("cc", level=level), unless)
        with_table = ast.TableFilter("cc", (ast.Filter("level", "=", level), ast.Filter("exclusion_table", "!=", "")))
        return _any(ast.ManyIn("any", "secondary dx", with_table, unless),
                    _all(ast.OneIn("pdx", ast.SetRef("cc_exclusion")),
                         ast.ManyIn("any", "secondary dx", _table("cc", level=level, exclusion_table=""))))

    def input_rules(self) -> list[ast.Statement]:
        """How the reference reads a record and which records it refuses (README §3.1–3.2 of each pack)."""
        if not self.v2:
            # a regional layout's int_or_cn reads 男/女 as `other` (regional_layout.settings_statements):
            # they pass this check but enter neither MDCM nor MDCN, as in the reference
            words = ("other",) if self.regional and self.layout["sex_check"] == "int_or_cn" else ()
            return [
                ast.InvalidDef("sex_missing", "性别缺失 / sex is missing", ast.FieldPresence("sex", False)),
                ast.InvalidDef("sex_invalid", "性别不是1(男)或2(女) / sex is not 1 (male) or 2 (female)",
                               ast.Negation(ast.FieldIn("sex", (1, 2, *words)))),
                ast.InvalidDef("age_missing", "年龄缺失 / age is missing", ast.FieldPresence("age", False)),
                ast.InvalidDef("age_days_missing", "不足1周岁但缺年龄(天) / age 0 without age in days",
                               _all(ast.FieldCmp("age", "=", 0), ast.FieldPresence("age_days", False))),
                ast.InvalidDef("birth_weight_missing", "新生儿缺出生体重 / newborn without birth weight",
                               _all(ast.FieldCmp("age", "=", 0), ast.FieldCmp("age_days", "<=", 28),
                                    ast.FieldPresence("weight", False))),
            ]
        # 2.0: sex is the string "1" or "2" and nothing else; numbers are JavaScript numbers (an
        # empty field is 0, an unreadable one NaN: every comparison false, as a missing value here);
        # an empty diagnosis field is an empty list; no age checks.
        return [
            ast.ReadSex((("1", "male"), ("2", "female"))),
            ast.ReadEmptyNumber(("age", "age_days", "weight"), 0),
            ast.ReadEmptyList("dx"),
            *(ast.ValidateDef(f"malformed_{f}", "warning") for f in ("age", "age_days", "weight", "los", "discharge")),
            ast.InvalidDef("sex_missing", "性别缺失 / sex is missing", ast.FieldPresence("sex", False)),
            ast.InvalidDef("dx_missing", "诊断为空 / no diagnosis", ast.CountItems("dx", "=", 0)),
        ]

    def hierarchy(self) -> list[ast.Statement]:
        """MDC blocks (with top-level QY rules before them), every table row accounted for."""
        unused: list[str] = []
        mdc_codes = [m["mdc"] for m in self.mdcs]
        for code in sorted({c for c in mdc_codes if mdc_codes.count(c) > 1}):
            unused.append(f"mdc.csv: MDC {code} is listed {mdc_codes.count(code)} times")
        rows_of: dict[str, list[dict]] = {}
        for row in sorted(self.adrgs, key=lambda r: (int(r["seq"]), r.get("part") or "")):
            if row["mdc"] not in mdc_codes:
                unused.append(f"adrg.csv: ADRG {row['adrg']} (seq {row['seq']}) belongs to MDC {row['mdc']}, "
                              "which mdc.csv does not list")
                continue
            rows_of.setdefault(row["mdc"], []).append(row)
        drgs_of: dict[str, list[dict]] = {}
        for row in sorted(self.drgs, key=lambda r: int(r["seq"])):
            drgs_of.setdefault(row["adrg"], []).append(row)
        known_adrgs = {r["adrg"] for rows in rows_of.values() for r in rows}
        listed_adrgs = {r["adrg"] for r in self.adrgs}
        for adrg, rows in drgs_of.items():
            if adrg not in known_adrgs:
                why = "which adrg.csv does not list" if adrg not in listed_adrgs else "whose MDC is not imported"
                unused += [f"drg.csv: DRG {r['drg']} belongs to ADRG {adrg}, {why}" for r in rows]
        out: list[ast.Statement] = []
        for mdc in self.mdcs:
            adrgs: list[ast.AdrgDef] = []
            for rows in _consecutive(rows_of.get(mdc["mdc"], []), mdc["mdc"]):
                first = rows[0]
                if self.regional:
                    unused += regional_layout.reachable_problems(drgs_of.get(first["adrg"], []))
                    unused += [p for r in rows for p in regional_layout.rule_parameter_problems(r)]
                drgs = tuple(ast.DrgDef(d["drg"], d["name"], self.drg_split(d)) for d in drgs_of.get(first["adrg"], []))
                if not drgs:
                    raise ImportError_(f"drg.csv: ADRG {first['adrg']} has no DRG")
                # alternative rule rows (`part` 1, 2, ...) of one ADRG: the ADRG holds when any of them does
                adrgs.append(ast.AdrgDef(first["adrg"], first["name"], _any(*(self.adrg_rule(r) for r in rows)), drgs))
            if self.v2:
                out += self.qy_before_entry(mdc)
                items = self.qy_inside(mdc, adrgs)
            else:
                items = adrgs
            out.append(ast.MdcDef(mdc["mdc"], mdc["name"], self.mdc_entry(mdc), tuple(items)))
        unused += self.unused_list_rows(set(mdc_codes), known_adrgs)
        self.unused = unused + self.layout_problems
        return out

    def unused_list_rows(self, mdcs: set[str], adrgs: set[str]) -> list[str]:
        """List rows no generated rule reads: of an unknown MDC/ADRG, or of a list the rule does not use."""
        problems = []
        for mdc, count in _count(_rows(self.dir / "mdc_dx.csv"), "mdc").items():
            if mdc not in mdcs:
                problems.append(f"mdc_dx.csv: {count} row(s) of MDC {mdc}, which mdc.csv does not list")
        for (table, adrg, part), names in sorted(self.lists.items()):
            for name in sorted(names):
                if (table, adrg, part, name) in self.used_lists:
                    continue
                where = f"ADRG {adrg}" + (f" part {part}" if part else "")
                why = "which adrg.csv does not list" if adrg not in adrgs else "whose rule does not use this list"
                problems.append(f"{table}.csv: list {name!r} of {where}, {why}")
        entries = {m["mdc"]: m["entry"] for m in self.mdcs}
        for mdc, count in sorted(self.mdc_proc.items()):
            if mdc not in self.used_mdc_proc:
                why = ("which mdc.csv does not list" if mdc not in entries else
                       f"whose entry {entries[mdc]!r} does not read it (only main_or_proc_plus does)")
                problems.append(f"mdc_proc.csv: {count} row(s) of MDC {mdc}, {why}")
        if self.regional:   # a tag is read only by pdx_tags rules
            rules = {(r["adrg"], r.get("part") or ""): r["rule"] for r in self.adrgs}
            tagged = _count([{"adrg": r["adrg"], "part": r.get("part") or ""}
                             for r in _rows(self.dir / "adrg_proc.csv") if r.get("tag")], "adrg", "part")
            for (adrg, part), count in sorted(tagged.items()):
                if rules.get((adrg, part or "")) not in (None, "pdx_tags"):
                    problems.append(f"adrg_proc.csv: {count} row(s) of ADRG {adrg}" + (f" part {part}" if part else "")
                                    + f" have a tag, which its rule {rules[(adrg, part or '')]!r} does not read")
        drgs = {r["drg"] for r in self.drgs}
        for (drg, name), count in sorted(self.drg_lists.items()):
            if (drg, name) not in self.used_drg_lists:
                why = ("which drg.csv does not list" if drg not in drgs else
                       "whose split does not use this list" if name == "proc" else "a list no split uses")
                problems.append(f"drg_proc.csv: {count} row(s) of list {name!r} of DRG {drg}, {why}")
        if self.v2 and (self.dir / "mdc_qy_dx.csv").is_file():
            for key, count in _count(_rows(self.dir / "mdc_qy_dx.csv"), "mdc", "list").items():
                if key not in self.used_qy_lists:
                    problems.append(f"mdc_qy_dx.csv: {count} row(s) of list {key[1]!r} of MDC {key[0]}, which no QY rule uses")
        return problems


_NEEDS_PARAMETER = {**{k: ("max_age_days",) for k in ("pproc_neonate", "pdx_neonate", "pdx_not_neonate", "anydx_neonate_weight",
                                                       "anydx_neonate", "pdx_neonate_medical", "pdx_neonate_weight_medical")},
                    "anydx_neonate_weight_lt": ("max_age_days", "weight_max_g")}


def _integer(row: dict[str, str], column: str) -> int:
    text = row[column].strip()
    if not text.lstrip("-").isdigit():
        raise ImportError_(f"adrg.csv: ADRG {row['adrg']} (MDC {row['mdc']} seq {row['seq']}) has {column} {row[column]!r}, "
                           "not a whole number")
    return int(text)


def _count(rows: list[dict[str, str]], *columns: str) -> dict:
    counts: dict = {}
    for row in rows:
        key = row[columns[0]] if len(columns) == 1 else tuple(row[c] for c in columns)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _consecutive(rows: list[dict[str, str]], mdc: str) -> list[list[dict[str, str]]]:
    """Rule rows grouped by ADRG; the rows of one ADRG must be consecutive (alternatives, `part`)."""
    groups: list[list[dict[str, str]]] = []
    for row in rows:
        if groups and groups[-1][0]["adrg"] == row["adrg"]:
            groups[-1].append(row)
        elif any(g[0]["adrg"] == row["adrg"] for g in groups):
            raise ImportError_(f"adrg.csv: the rule rows of ADRG {row['adrg']} in {mdc} are not consecutive")
        else:
            groups.append([row])
    return groups


HEADER_COMMENT = """\
# {name} {version}: generated by `grouper import chs-drg` from {source}.
# MDCs are tried in file order; inside an MDC the first ADRG whose condition holds wins and the
# case takes the first DRG of it whose condition holds. An MDC whose entry holds but none of whose
# ADRGs match does not stop grouping: the next MDC is tried (CHS-DRG behaviour).
"""
QY_OFF = "# The ambiguous-group (QY) check is disabled in CHS-DRG 1.1 and is not generated.\n"
QY_ON = """\
# Ambiguous groups (歧义组 QY) are active: a `qy` rule that holds ends grouping with status qy and
# its code, in its place (top level: before the next MDC; inside an MDC: among its ADRGs).
# Input is read as the reference reads it: see the `read` lines; unknown codes match nothing.
"""


def import_chs_drg(table_dir: str | Path, pack_dir: str | Path, *, name: str = "CHS-DRG",
                   version: str | None = None, with_maps: bool = False, allow_unused: bool = False,
                   unused: list[str] | None = None, warnings: list[str] | None = None) -> Path:
    """Write `pack_dir/scheme.grp` and copy the tables it uses; return the scheme path.

    The scheme also gets plausibility `warn` rules (sex-specific diagnoses, from a generated
    `sex_specific_dx.csv`; newborn diagnoses after the first year). With `with_maps`, codes are
    converted through `dx_map.csv` / `proc_map.csv` (`map dx = dx_map`) before grouping; the
    reference grouper does not convert, so this is off by default.

    Every table row must land in the pack: rows the generated rules would never read (an ADRG of
    an MDC that mdc.csv does not list, a DRG of an unknown ADRG, list rows of an unknown ADRG or of
    a list its rule does not use, ...) raise UnusedRowsError before anything is written, unless
    `allow_unused`; then they are appended to `unused` (when given). `version` defaults to "2.0"
    for a table set in the 2.0 layout (QY rules in mdc.csv), "3.0" for one that also has DRG-level
    tests (drg_proc.csv, `kind:value` splits: the 3.0 draft), the `variant` of a regional-layout set
    (scheme.csv, see regional_layout.py), else "1.1". Lists a rule reads that have no rows are read
    as empty lists and reported in `warnings` (when given).
    """
    table_dir, pack_dir = Path(table_dir), Path(pack_dir)
    importer = _Importer(table_dir)
    version = version or (importer.layout["variant"] if importer.regional else
                          "3.0" if importer.v3 else "2.0" if importer.v2 else "1.1")
    reference = [f for f in REFERENCE_TABLES if (table_dir / f).is_file()]
    if with_maps and not any(f in reference for f in ("dx_map.csv", "proc_map.csv")):
        raise ImportError_(f"--with-maps: {table_dir} has neither dx_map.csv nor proc_map.csv")
    dictionary = None
    if "dx_dict.csv" in reference:
        dictionary = {row["code"] for row in _rows(table_dir / "dx_dict.csv")}
    sex_rows = importer.sex_specific_dx(dictionary)
    scheme = importer.scheme(name, version, reference, sex_table=bool(sex_rows), with_maps=with_maps)
    if not importer.regional:   # the older regional columns and settings.csv (regional.py), not this layout's
        scheme = with_regional_columns(table_dir, scheme)
    if importer.unused and not allow_unused:
        raise UnusedRowsError(importer.unused)
    if unused is not None:
        unused.extend(importer.unused)
    if warnings is not None:
        warnings.extend(importer.warnings)
    optional = [f for f in OPTIONAL_GROUPING_TABLES if (importer.v2 or f == "drg_proc.csv") and (table_dir / f).is_file()]
    if importer.regional and importer.mdc_proc:
        optional.append(regional_layout.MDC_PROC_TABLE)
    comments: dict = {m["mdc"]: f"{m['mdc']} {m['name']} (entry rule: {m['entry']}"
                      + (f"; QY rules: {m['qy']})" if m.get("qy") else ")") for m in importer.mdcs}
    comments.update(importer.qy_comments)
    header = HEADER_COMMENT.format(name=name, version=version, source=table_dir.name) + (QY_ON if importer.v2 else QY_OFF)
    text = header + "\n" + scheme_text(scheme, comments)
    with atomic_output(pack_dir, directory=True, kind="DRG pack") as tmp:  # the pack appears whole or not at all
        tmp.chmod(0o755)                                  # mkdtemp makes it private
        if sex_rows:
            with (tmp / SEX_SPECIFIC_TABLE).open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["code", "sex"])
                writer.writerows(sex_rows)
        for file in (*GROUPING_TABLES, *optional, *reference):
            if file != "mdc.csv" and file != "adrg.csv" and file != "drg.csv":
                shutil.copyfile(table_dir / file, tmp / file)
        (tmp / "scheme.grp").write_text(text, encoding="utf-8")
    path = pack_dir / "scheme.grp"
    return path
