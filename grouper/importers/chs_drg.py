"""Import a CHS-DRG table set (the official appendix layout, see README "Importing CHS-DRG")
into a scheme pack: `scheme.grp` plus copies of the CSV tables it references.

The generated scheme is built as an AST and written by the printer, so it always parses back.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from ..errors import GrouperError
from ..lang import ast
from ..lang.parse import parse_text
from ..lang.printer import scheme_text
from .regional import with_regional_columns

GROUPING_TABLES = ("mdc.csv", "mdc_dx.csv", "adrg.csv", "adrg_dx.csv", "adrg_proc.csv", "drg.csv",
                   "cc.csv", "cc_exclusion.csv", "or_proc.csv")
REFERENCE_TABLES = ("dx_dict.csv", "proc_dict.csv", "dx_map.csv", "proc_map.csv")
# Generated at import time from the MDC lists (see `_sex_specific_dx`).
SEX_SPECIFIC_TABLE = "sex_specific_dx.csv"

_OR = ast.SetRef("OR")
_NEONATE = "age_days"


class ImportError_(GrouperError):
    """The table set does not have the expected layout."""


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ImportError_(f"{path} not found: a CHS-DRG table set needs {', '.join(GROUPING_TABLES)}")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def _table(name: str, **filters: str) -> ast.TableFilter | ast.SetRef:
    if not filters:
        return ast.SetRef(name)
    return ast.TableFilter(name, tuple(ast.Filter(k, "=", v) for k, v in filters.items()))


def _all(*items: ast.Cond) -> ast.Cond:
    return items[0] if len(items) == 1 else ast.AllOf(tuple(items))


def _tag_expr(text: str) -> ast.TagExpr:
    # Reuse the scheme parser for the tag expression instead of writing a second parser.
    probe = parse_text(f'scheme "" version "" define t = tag of proc in x matches {text.replace("|", " | ").replace("&", " & ")}')
    return probe.statements[0].cond.expr


class _Importer:
    def __init__(self, table_dir: Path):
        self.dir = table_dir
        self.mdcs = sorted(_rows(table_dir / "mdc.csv"), key=lambda r: int(r["seq"]))
        self.adrgs = _rows(table_dir / "adrg.csv")
        self.drgs = _rows(table_dir / "drg.csv")
        self.proc_lists: dict[str, set[str]] = {}
        for row in _rows(table_dir / "adrg_proc.csv"):
            self.proc_lists.setdefault(row["adrg"], set()).add(row["list"])

    def mdc_entry(self, row: dict[str, str]) -> ast.Cond:
        in_list = ast.OneIn("pdx", _table("mdc_dx", mdc=row["mdc"]))
        entry = row["entry"]
        if entry == "main_or_proc":
            return ast.OneIn("pproc", _OR)
        if entry == "pdx":
            return in_list
        if entry == "pdx_age0":
            return _all(in_list, ast.FieldCmp("age", "=", 0))
        if entry == "pdx_male":
            return _all(in_list, ast.FieldCmp("sex", "=", "male"))
        if entry == "pdx_female":
            return _all(in_list, ast.FieldCmp("sex", "=", "female"))
        if entry == "pdx_multi_trauma":
            sites = ast.CountLabels("site", "dx", _table("mdc_dx", mdc=row["mdc"]), ">=", int(row["min_sites"] or 2))
            return _all(in_list, sites)
        raise ImportError_(f"mdc.csv: MDC {row['mdc']} has an unknown entry rule {entry!r}")

    def proc_list(self, adrg: str, name: str = "proc") -> ast.SetExpr:
        lists = self.proc_lists.get(adrg, set())
        return _table("adrg_proc", adrg=adrg, list=name) if lists - {name} else _table("adrg_proc", adrg=adrg)

    def adrg_rule(self, row: dict[str, str]) -> ast.Cond:
        code, rule = row["adrg"], row["rule"]
        dx_list = _table("adrg_dx", adrg=code)
        pdx = ast.OneIn("pdx", dx_list)
        pproc = ast.OneIn("pproc", self.proc_list(code))
        pair = (ast.ManyIn("any", "proc", self.proc_list(code, "proc")),
                ast.ManyIn("any", "proc", self.proc_list(code, "proc1")))
        neonate = ast.FieldCmp(_NEONATE, "<=", int(row["max_age_days"] or 28)) if row.get("max_age_days") else None
        if rule == "pdx":
            return pdx
        if rule == "pproc":
            return pproc
        if rule == "pdx_pproc":
            return _all(pdx, pproc)
        if rule == "anyproc_pair":
            return _all(*pair)
        if rule == "pdx_anyproc_pair":
            return _all(pdx, *pair)
        if rule == "pdx_tags":
            return _all(pdx, ast.TagsMatch("tag", "proc", self.proc_list(code), _tag_expr(row["tags"])))
        if rule == "pproc_neonate":
            return _all(pproc, neonate)
        if rule == "pdx_neonate":
            return _all(pdx, neonate)
        if rule == "anydx_neonate_weight":
            low, high = row["weight_min_g"], row["weight_max_g"]
            weight: list[ast.Cond] = []
            if not low or int(low) <= 0:
                weight.append(ast.FieldCmp("weight", "!=", 0))  # weight 0 never counts as a birth weight
            if low:
                weight.append(ast.FieldCmp("weight", ">=", int(low)))
            if high:
                weight.append(ast.FieldCmp("weight", "<", int(high)))
            return _all(ast.ManyIn("any", "dx", dx_list), *weight, neonate)
        if rule == "pproc_or":
            return ast.OneIn("pproc", _OR)
        if rule == "anydx_pproc_or":
            return _all(ast.ManyIn("any", "dx", dx_list), ast.OneIn("pproc", _OR))
        if rule == "no_or_proc":
            return ast.ManyIn("no", "proc", _OR)
        if rule == "always":
            return ast.Always()
        raise ImportError_(f"adrg.csv: ADRG {code} has an unknown rule kind {rule!r}")

    def drg_split(self, row: dict[str, str]) -> ast.Cond | None:
        split = row["split"]
        if split == "none":
            return None
        if split in ("mcc", "cc_or_mcc"):
            return ast.DefineRef(split)
        raise ImportError_(f"drg.csv: DRG {row['drg']} has an unknown split {split!r}")

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
        st: list[ast.Statement] = [
            ast.TableDef("mdc_dx", "mdc_dx.csv"),
            ast.TableDef("adrg_dx", "adrg_dx.csv"),
            ast.TableDef("adrg_proc", "adrg_proc.csv"),
            ast.TableDef("cc", "cc.csv"),
            ast.TableDef("cc_exclusion", "cc_exclusion.csv", "pdx"),
            ast.TableDef("or_proc", "or_proc.csv"),
        ]
        for file in reference_tables:
            if file in ("dx_dict.csv", "proc_dict.csv"):
                st.append(ast.TableDef(file[:-4], file))
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
        st.append(ast.SetDef("OR", ast.SetRef("or_proc")))
        unless = ast.Unless("cc", "exclusion_table", "cc_exclusion", "exclusion_table")
        st.append(ast.DefineDef("mcc", ast.ManyIn("any", "secondary dx", _table("cc", level="MCC"), unless)))
        st.append(ast.DefineDef("cc_or_mcc", ast.AnyOf((
            ast.DefineRef("mcc"), ast.ManyIn("any", "secondary dx", _table("cc", level="CC"), unless)))))
        st += [
            ast.InvalidDef("sex_missing", "性别缺失 / sex is missing", ast.FieldPresence("sex", False)),
            ast.InvalidDef("sex_invalid", "性别不是1(男)或2(女) / sex is not 1 (male) or 2 (female)",
                           ast.Negation(ast.FieldIn("sex", (1, 2)))),
            ast.InvalidDef("age_missing", "年龄缺失 / age is missing", ast.FieldPresence("age", False)),
            ast.InvalidDef("age_days_missing", "不足1周岁但缺年龄(天) / age 0 without age in days",
                           _all(ast.FieldCmp("age", "=", 0), ast.FieldPresence("age_days", False))),
            ast.InvalidDef("birth_weight_missing", "新生儿缺出生体重 / newborn without birth weight",
                           _all(ast.FieldCmp("age", "=", 0), ast.FieldCmp("age_days", "<=", 28),
                                ast.FieldPresence("weight", False))),
        ]
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
        adrgs_of: dict[str, list[dict]] = {}
        for row in sorted(self.adrgs, key=lambda r: int(r["seq"])):
            adrgs_of.setdefault(row["mdc"], []).append(row)
        drgs_of: dict[str, list[dict]] = {}
        for row in sorted(self.drgs, key=lambda r: int(r["seq"])):
            drgs_of.setdefault(row["adrg"], []).append(row)
        for mdc in self.mdcs:
            adrgs = []
            for row in adrgs_of.get(mdc["mdc"], []):
                drgs = tuple(ast.DrgDef(d["drg"], d["name"], self.drg_split(d)) for d in drgs_of.get(row["adrg"], []))
                if not drgs:
                    raise ImportError_(f"drg.csv: ADRG {row['adrg']} has no DRG")
                adrgs.append(ast.AdrgDef(row["adrg"], row["name"], self.adrg_rule(row), drgs))
            st.append(ast.MdcDef(mdc["mdc"], mdc["name"], self.mdc_entry(mdc), tuple(adrgs)))
        return ast.Scheme(ast.Header(name, version), tuple(st))


HEADER_COMMENT = """\
# {name} {version}: generated by `grouper import chs-drg` from {source}.
# MDCs are tried in file order; inside an MDC the first ADRG whose condition holds wins and the
# case takes the first DRG of it whose condition holds. An MDC whose entry holds but none of whose
# ADRGs match does not stop grouping: the next MDC is tried (CHS-DRG 1.1 behaviour).
# The ambiguous-group (QY) check is disabled in CHS-DRG 1.1 and is not generated.
"""


def import_chs_drg(table_dir: str | Path, pack_dir: str | Path, *, name: str = "CHS-DRG",
                   version: str = "1.1", with_maps: bool = False) -> Path:
    """Write `pack_dir/scheme.grp` and copy the tables it uses; return the scheme path.

    The scheme also gets plausibility `warn` rules (sex-specific diagnoses, from a generated
    `sex_specific_dx.csv`; newborn diagnoses after the first year). With `with_maps`, codes are
    converted through `dx_map.csv` / `proc_map.csv` (`map dx = dx_map`) before grouping; the
    reference grouper does not convert, so this is off by default.
    """
    table_dir, pack_dir = Path(table_dir), Path(pack_dir)
    importer = _Importer(table_dir)
    reference = [f for f in REFERENCE_TABLES if (table_dir / f).is_file()]
    if with_maps and not any(f in reference for f in ("dx_map.csv", "proc_map.csv")):
        raise ImportError_(f"--with-maps: {table_dir} has neither dx_map.csv nor proc_map.csv")
    dictionary = None
    if "dx_dict.csv" in reference:
        dictionary = {row["code"] for row in _rows(table_dir / "dx_dict.csv")}
    sex_rows = importer.sex_specific_dx(dictionary)
    scheme = importer.scheme(name, version, reference, sex_table=bool(sex_rows), with_maps=with_maps)
    scheme = with_regional_columns(table_dir, scheme)   # a regional set's extra columns and settings.csv
    pack_dir.mkdir(parents=True, exist_ok=True)
    if sex_rows:
        with (pack_dir / SEX_SPECIFIC_TABLE).open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["code", "sex"])
            writer.writerows(sex_rows)
    for file in (*GROUPING_TABLES, *reference):
        if file != "mdc.csv" and file != "adrg.csv" and file != "drg.csv":
            shutil.copyfile(table_dir / file, pack_dir / file)
    comments = {m["mdc"]: f"{m['mdc']} {m['name']} (entry rule: {m['entry']})" for m in importer.mdcs}
    text = HEADER_COMMENT.format(name=name, version=version, source=table_dir.name) + "\n" + scheme_text(scheme, comments)
    path = pack_dir / "scheme.grp"
    path.write_text(text, encoding="utf-8")
    return path
