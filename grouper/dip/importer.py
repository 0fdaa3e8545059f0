"""`grouper import dip CATALOGUE -o PACK`: a published DIP catalogue (目录库, CSV or Excel, as
regions publish it) → a DIP pack (scheme.dip, catalogue.csv, proc_types.csv, and dropped.csv
listing every row that could not be imported, with the reason).

Accepted headers (case-insensitive; full-width brackets alike), first match wins:

| field | headers |
|---|---|
| code | 病种编码, 病种代码, DIP编码, 病组编码, code |
| name | 病种名称, 病组名称, name |
| dx | 主要诊断编码, 主要诊断代码, 主诊断编码, 诊断编码, 疾病编码, dx |
| procs | 主要手术操作编码, 主要手术编码, 手术操作编码, 主要操作编码, 操作编码, procs |
| related | 相关手术操作编码, 相关手术编码, 相关操作编码, related |
| score | 病种分值, 分值, 基准分值, score |
| level | 病种类型, 病种分类, 类型, level |
| primary | 是否基层病种, 基层病种 |
| treatment | 治疗方式, 手术操作类型, 操作类型, treatment |

Values: `level` 核心/核心病种/1/core → core, 综合/综合病种/2/comprehensive → comprehensive, 基层/基层病种/3/
primary → primary (absent: core); `primary` 是/1/Y makes a row primary.

Procedure cells are read as the published layout means them (Node-DIP region.base.service.ts):
`+` (also `＋`) separates the terms that must all be present and `/` (also `／`, `;`, `；`, `、`)
separates the choices within one term, so `/` binds tighter: `c/d+e` is (c or d) and e. The
`related` cell adds its terms to those of `procs`: procs `a`, related `c/d+e` → `a+(c/d)+e` in
the pack's notation; procs `a/b`, related `c` → `(a/b)+c`; procs `a/b` alone → `a/b`.

Diagnosis keys: core and primary rows keep the most common length among them (5 for a 亚目 such as
`K80.1`); a row of another length is dropped and listed. A 3-character core or primary key (a 类目
such as `K35`) is the documented exception: DIP core keys are 亚目 × procedures (domain.md §3.2;
Node-DIP looks core rows up by the first 5 characters of the diagnosis), so such a row could never
be reached; it is listed as dropped with that reason (a 类目 × treatment type is a comprehensive
row). Comprehensive keys are prefixes (`K80`, `K8`, `K`) or ICD-10 chapter ranges (`A00-B99`;
`－`, `–`, `—`, `~`, `～` read as `-`). Scores must be numbers > 0 and at most 1,000,000; a
duplicate 病种编码 stops the import (both lines named). A comprehensive row needs a treatment type:
its `treatment` cell, or a type named in its name (`K80 综合病种(相关手术)`).

Procedure types: every code a row names becomes a qualifying procedure. Its treatment type comes from
`--procedures TABLE` when given, else from the treatment cell of the first row naming it, else 相关手术
(documented default: a catalogue names the operations that define a group). The procedure table is
CSV or Excel with a code column (code, 手术操作编码, 手术操作代码, 编码) and a type column (type — the
医保 2.0 dictionary's header —, treatment, 手术操作类型, 操作类型, 类别), optionally qualifying (1/0).
Its types are 保守治疗, 诊断性操作, 治疗性操作, 相关手术 and 介入治疗, which counts as 相关手术
(domain.md §3.2, Node-DIP getOprnSort); any other value stops the import, naming each row; an
empty one leaves the code without a type. proc_types.csv keeps the published value in `type`.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import polars as pl

from .. import io
from ..errors import InputError
from ..outputs import atomic_output
from .procedures import TREATMENTS, TYPE_ALIASES, canonical_treatment, read_procedure_types
from .catalogue import format_procs, parse_procs, reachable_key, score_problem
from .scheme import DIP_FILE

HEADERS = {
    "code": ("病种编码", "病种代码", "dip编码", "病组编码", "code"),
    "name": ("病种名称", "病组名称", "name"),
    "dx": ("主要诊断编码", "主要诊断代码", "主诊断编码", "诊断编码", "疾病编码", "dx"),
    "procs": ("主要手术操作编码", "主要手术编码", "手术操作编码", "主要操作编码", "操作编码", "procs"),
    "related": ("相关手术操作编码", "相关手术编码", "相关操作编码", "related"),
    "score": ("病种分值", "分值", "基准分值", "score"),
    "level": ("病种类型", "病种分类", "类型", "level"),
    "primary": ("是否基层病种", "基层病种"),
    "treatment": ("治疗方式", "手术操作类型", "操作类型", "treatment"),
}
LEVEL_WORDS = {"核心": "core", "核心病种": "core", "1": "core", "core": "core",
               "综合": "comprehensive", "综合病种": "comprehensive", "2": "comprehensive",
               "comprehensive": "comprehensive", "基层": "primary", "基层病种": "primary", "3": "primary",
               "primary": "primary"}
YES = ("是", "1", "y", "yes", "true")
DEFAULT_TREATMENT = "相关手术"
DASHES = str.maketrans({"－": "-", "–": "-", "—": "-", "~": "-", "～": "-"})

SCHEME_TEMPLATE = '''# {name} {version}: imported by `grouper import dip` from {source}
scheme "{name}" version "{version}"

table proc_types = "proc_types.csv"              # code, treatment, qualifying, type (as published)
table catalogue  = "catalogue.csv"               # level, code, name, dx, procs, treatment, score

dip {{
  diagnosis length {dx_length}
  qualifying = proc_types[qualifying = "1"]
  treatment = proc_types.treatment
  treatments {treatments}
{levels}}}
'''


def _find_columns(headers: list[str]) -> dict[str, str]:
    by_key = {}
    for h in headers:
        by_key.setdefault(h.strip().replace("（", "(").replace("）", ")").lower(), h)
    found = {}
    for field, names in HEADERS.items():
        for name in names:
            if name.lower() in by_key:
                found[field] = by_key[name.lower()]
                break
    missing = [f for f in ("code", "dx", "score") if f not in found]
    if missing:
        raise InputError(f"the catalogue has no {', '.join(missing)} column; accepted headers: "
                         + "; ".join(f"{f}: {', '.join(HEADERS[f])}" for f in missing))
    return found


def published_terms(cell: str) -> tuple[tuple[str, ...], ...]:
    """A published procedure cell → its terms (all needed), each a tuple of choices (any one):
    `c/d+e` → (("c", "d"), ("e",)). Raises ValueError on an empty code."""
    text = cell.replace("＋", "+").replace("／", "/")
    text = re.sub(r"[()（）]", "", re.sub(r"\s*[;；、]\s*", "/", text)).strip().strip("/")
    if not text:
        return ()
    terms = []
    for term in text.split("+"):
        choices = tuple(dict.fromkeys(c.strip() for c in term.split("/")))
        if any(not c for c in choices):
            raise ValueError(f"empty procedure code in {cell!r} (a stray '/' or '+')")
        terms.append(choices)
    return tuple(dict.fromkeys(terms))


def _combine(main: str, related: str) -> str:
    """procs `a`, related `c/d+e` → `a+(c/d)+e`: the terms of both cells, all needed."""
    terms = tuple(dict.fromkeys(published_terms(main) + published_terms(related)))
    return format_procs((terms,)) if terms else ""


def import_dip(catalogue: str | Path, output: str | Path, *, procedures: str | Path | None = None,
               name: str = "DIP", version: str = "imported", sheet: str | int | None = None,
               encoding: str | None = None) -> tuple[Path, pl.DataFrame]:
    """Write a DIP pack from a published catalogue; returns (scheme path, dropped rows: line, code, reason)."""
    source = Path(catalogue)
    raw = io._read_raw(source, encoding=encoding, sheet=sheet)
    cols = _find_columns(raw.columns)
    text = raw.select(io._as_text(pl.col(c), raw.schema[c]).alias(c) for c in raw.columns)
    rows, dropped = [], []
    for i, rec in enumerate(text.iter_rows(named=True)):
        get = lambda f: (rec.get(cols[f]) or "").strip() if f in cols else ""  # noqa: E731
        line, code = i + 2, get("code")          # the header is line 1
        if not any((v or "").strip() for v in rec.values()):
            continue                                                # a blank line is not a row
        level = LEVEL_WORDS.get(get("level").lower(), None) if get("level") else "core"
        if level is None:
            dropped.append((line, code, f"unknown 病种类型 {get('level')!r}"))
            continue
        if get("primary").lower() in YES:
            level = "primary"
        try:
            procs = _combine(get("procs"), get("related"))
        except ValueError as exc:
            dropped.append((line, code, str(exc)))
            continue
        score, why = score_problem(get("score"))
        if why is not None:
            dropped.append((line, code, why))
            continue
        treatment = canonical_treatment(get("treatment"))
        if level == "comprehensive" and treatment not in TREATMENTS:
            treatment = next((t for t in (*TREATMENTS, *TYPE_ALIASES) if t in get("name") or t in get("treatment")), "")
            treatment = canonical_treatment(treatment)
            if not treatment:
                dropped.append((line, code, "comprehensive row without a treatment type (治疗方式)"))
                continue
        dx = get("dx").translate(DASHES)
        if not code or not dx:
            dropped.append((line, code, "no 病种编码" if not code else "no 主要诊断编码"))
            continue
        if re.search(r"[/／;；、+＋]", dx):
            dropped.append((line, code, f"several principal diagnoses in one row ({dx!r}): one row per diagnosis"))
            continue
        if level != "comprehensive" and "-" in dx:
            dropped.append((line, code, f"a {level} key names one 亚目, not a range ({dx!r}): a chapter range is "
                                        "a comprehensive (综合病种) key"))
            continue
        if level == "comprehensive" and (why := reachable_key(dx)) is not None:
            dropped.append((line, code, f"no diagnosis code can reach the key: {why}"))
            continue
        rows.append({"line": line, "level": level, "code": code, "name": get("name"), "dx": dx, "procs": procs,
                     "treatment": treatment if treatment in TREATMENTS else "", "score": score})
    _refuse_duplicates(source, rows)
    keyed = [r for r in rows if r["level"] != "comprehensive"]
    if not keyed:
        raise InputError(f"{source}: no core or primary row could be imported")
    dx_length = Counter(len(r["dx"]) for r in keyed).most_common(1)[0][0]
    kept = []
    for r in rows:
        if r["level"] == "comprehensive" or len(r["dx"]) == dx_length:
            kept.append(r)
        elif len(r["dx"]) == 3 and dx_length > 3:
            dropped.append((r["line"], r["code"], f"core key {r['dx']!r} is a 类目 (3 characters): DIP core keys are "
                                                  "亚目 × procedures (domain.md §3.2), so no case could reach it; "
                                                  "a 类目 × treatment type is a comprehensive row"))
        else:
            dropped.append((r["line"], r["code"], f"diagnosis {r['dx']!r} is not {dx_length} characters long "
                                                  "like the other core rows"))
    catalogue_frame = pl.DataFrame(kept, schema={"line": pl.Int64, "level": pl.String, "code": pl.String,
                                                 "name": pl.String, "dx": pl.String, "procs": pl.String,
                                                 "treatment": pl.String, "score": pl.Float64}).drop("line")
    proc_types = _proc_types(kept, procedures)
    dropped_frame = pl.DataFrame(sorted(dropped), schema={"line": pl.Int64, "code": pl.String, "reason": pl.String},
                                 orient="row")
    levels = "".join(f'  {lvl} = catalogue[level = "{lvl}"]\n' for lvl in ("core", "primary", "comprehensive")
                     if any(r["level"] == lvl for r in kept))
    output = Path(output)
    with atomic_output(output, directory=True, kind="DIP pack") as tmp:
        (tmp / DIP_FILE).write_text(SCHEME_TEMPLATE.format(
            name=name, version=version, source=source.name, dx_length=dx_length, levels=levels,
            treatments=" < ".join(f'"{t}"' for t in TREATMENTS)), encoding="utf-8")
        catalogue_frame.with_columns(pl.col(pl.String).replace("", None)).write_csv(tmp / "catalogue.csv")
        proc_types.write_csv(tmp / "proc_types.csv")
        dropped_frame.write_csv(tmp / "dropped.csv")
    return output / DIP_FILE, dropped_frame


def _refuse_duplicates(source: Path, rows: list[dict]) -> None:
    """A 病种编码 on two rows is an error: the group's score would depend on which row is read."""
    lines: dict[str, list[int]] = {}
    for r in rows:
        lines.setdefault(r["code"], []).append(r["line"])
    twice = [f"{source}:{', '.join(map(str, at))}: 病种编码 {code} is listed {len(at)} times"
             for code, at in lines.items() if len(at) > 1]
    if twice:
        raise InputError("duplicate group codes (one row per 病种编码):\n" + "\n".join(twice))


def _proc_types(rows: list[dict], procedures: str | Path | None) -> pl.DataFrame:
    table_rows = read_procedure_types(procedures) if procedures is not None else []
    given = {t["code"]: t["treatment"] for t in table_rows}
    named = {}
    for r in rows:
        for alt in parse_procs(r["procs"]):
            for term in alt:
                for c in term:
                    named.setdefault(c, r["treatment"] if r["level"] != "comprehensive" and r["treatment"] else "")
    out = {t["code"]: t for t in table_rows}
    for c, treatment in named.items():
        if c in out:
            out[c]["qualifying"] = "1"      # a code the catalogue names always forms the key
        else:
            out[c] = {"code": c, "treatment": given.get(c) or treatment or DEFAULT_TREATMENT, "qualifying": "1",
                      "type": ""}
    return pl.DataFrame(list(out.values()), schema={"code": pl.String, "treatment": pl.String, "qualifying": pl.String,
                                                    "type": pl.String})
