"""The JSON shape of a case, and the one step from JSON to the project's reader.

A JSON case is a flat object: the grouping fields of a discharge record (`id`, `sex`, `age`, `age_days`,
`weight`, `dept`, `los`, `discharge`, `dx`, `proc`) and, optionally, its settlement fields (`hospital`,
`hospital_level`, `insurance`, `cost`, `fund_paid`, `admission_date`, `discharge_date`, `patient_id`,
`special_review`) — the canonical names of grouper.io, so a JSON case and a CSV row are the same record.

Only the *shape* is checked here (unknown fields, JSON types that no CSV cell could hold: objects,
arrays where a single value belongs, a code list holding a number). The values themselves — an age of
"abc", a code outside the dictionaries, a cost with three decimals — are the reader's and the
validation's business, exactly as for a CSV row: the case comes back with a status and a reason, never
a 4xx. Every JSON value becomes the text a CSV cell would hold (an integral number prints without
".0"), and the frame goes through `grouper.pipeline` like a file's batch.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from ..engine.encode import series_from_arrow
from ..engine.kernel import companion
from ..io import CANONICAL_COLUMNS, SCALAR_COLUMNS, SETTLEMENT_COLUMNS

CODE_LISTS = ("dx", "proc")
FIELDS = (*SCALAR_COLUMNS, *CODE_LISTS, *SETTLEMENT_COLUMNS)
assert set(CANONICAL_COLUMNS) <= set(FIELDS)

# What each field holds (the OpenAPI document shows these).
FIELD_DOCS = {
    "id": "病案号 / case id (default: the case's position, from 1)",
    "sex": "性别: 1 男, 2 女 (or 男/女, M/F)",
    "age": "年龄 (岁)",
    "age_days": "年龄不足1周岁的年龄 (天)",
    "weight": "新生儿出生体重 (克)",
    "dept": "出院科别",
    "los": "住院天数",
    "discharge": "离院方式 (1 医嘱离院 … 5 死亡)",
    "dx": "诊断编码, 主要诊断 first: an array of codes, or one text separated by | or ,",
    "proc": "手术操作编码, 主要手术 first: an array of codes, or one text separated by | or ,",
    "hospital": "定点医疗机构编码",
    "hospital_level": "医疗机构等级: 3 / 2 / 1 (or 三级, 三级甲等 …)",
    "insurance": "险种: 310 / employee (职工), 390 / resident (居民), other codes as given",
    "cost": "医疗总费用, yuan (at most two decimals)",
    "fund_paid": "统筹基金支付, yuan",
    "admission_date": "入院日期 (2025-01-05, 20250105, …)",
    "discharge_date": "出院日期; selects the pack in force (absent: today's pack)",
    "patient_id": "个人编码",
    "special_review": "特例单议 flag (true/false, 1/0, 是/否)",
}
assert set(FIELD_DOCS) == set(FIELDS)

_MAX_TEXT = 200  # longer than any code, name or date a record holds; a longer value is not a field
_MAX_CODES = 100   # codes in one list
_MAX_CODES_TEXT = _MAX_CODES * _MAX_TEXT   # a list given as one joined text


@dataclass
class ShapeError(Exception):
    """A request that is not the documented shape: which field (a JSON path), and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def _text(value, where: str) -> str | None:
    """A scalar JSON value as the text a CSV cell would hold."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > _MAX_TEXT:
            raise ShapeError(where, f"text longer than {_MAX_TEXT} characters")
        return value
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) >= 1 << 63:
            raise ShapeError(where, "number out of range")
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ShapeError(where, "not a finite number")
        if abs(value) >= 2.0**63:   # as an integer beyond 64 bits (which a JSON parser may read as this float)
            raise ShapeError(where, "number out of range")
        return str(int(value)) if value.is_integer() else repr(value)
    raise ShapeError(where, f"expected text or a number, got {_json_type(value)}")


def _codes(value, where: str) -> str | None:
    """A code list as the reader's list-shape text: codes joined with '|'."""
    if value is None or isinstance(value, str):
        if isinstance(value, str) and len(value) > _MAX_CODES_TEXT:
            raise ShapeError(where, "code list too long")
        return value
    if not isinstance(value, list):
        raise ShapeError(where, f"expected an array of codes or a text, got {_json_type(value)}")
    if len(value) > _MAX_CODES:
        raise ShapeError(where, f"{len(value)} codes; at most {_MAX_CODES}")
    for i, code in enumerate(value):
        if not isinstance(code, str):
            raise ShapeError(f"{where}[{i}]", f"a code is text, got {_json_type(code)}")
        if "|" in code or "," in code:
            raise ShapeError(f"{where}[{i}]", "a code cannot contain '|' or ','")
        if len(code) > _MAX_TEXT:
            raise ShapeError(f"{where}[{i}]", f"text longer than {_MAX_TEXT} characters")
    return "|".join(value)


def _json_type(value) -> str:
    return {dict: "an object", list: "an array", bool: "true/false", str: "text", type(None): "null"}.get(
        type(value), "a number")


def unknown_field(name: str, where: str) -> ShapeError:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ShapeError(f"{where}.{name}", f"unknown field{hint}; a case has {', '.join(FIELDS)}")


def case_columns(cases: list, where: str = "cases") -> dict[str, list]:
    """Check the shape of JSON cases; their fields as text columns (every field, null where absent)."""
    given = given_columns(cases, where)
    return {name: given[name] if name in given else [None] * len(cases) for name in FIELDS}


def given_columns(cases: list, where: str = "cases") -> dict[str, list]:
    """`case_columns` without the fields no case gives (not a value, or only nulls)."""
    if len(cases) >= _COLUMNWISE:
        if _compiled is not None:
            found = _compiled.plain_columns(cases, _SLOTS, *_LIMITS)
            if found is not None:
                return {name: found[_SLOTS[name]] for name in FIELDS if found[_SLOTS[name]] is not None}
        else:
            columns = _plain_columns(cases)
            if columns is not None:
                return _given(columns)
    columns = {name: [None] * len(cases) for name in FIELDS}
    for i, case in enumerate(cases):
        _case_into(columns, i, case, f"{where}[{i}]")
    return _given(columns)


def _given(columns: dict[str, list]) -> dict[str, list]:
    return {name: column for name, column in columns.items() if column.count(None) != len(column)}


_COLUMNWISE = 64   # from this many cases a batch is first tried column by column
_NONE = type(None)


def _plain_columns(cases: list) -> dict[str, list] | None:
    """`case_columns` of a batch whose values all have the common shapes — objects with known fields;
    text within the limits; integers within 64 bits; code lists as text, or as arrays of text codes
    without '|' or ',' — worked out a column at a time (C loops over each column instead of a Python
    step per value); None for any other batch, which `case_columns` then reads case by case (and
    refuses with the first offending field)."""
    if set(map(type, cases)) != {dict} or not set().union(*cases) <= _FIELD_SET:
        return None
    given: dict[str, list] = {name: [None] * len(cases) for name in FIELDS}
    for i, case in enumerate(cases):   # a case's own fields only (a third fewer steps than a lookup per field)
        for name, value in case.items():
            given[name][i] = value
    columns = {}
    for name, column in given.items():
        kinds = set(map(type, column))
        if name in CODE_LISTS:
            if kinds <= {str, _NONE}:
                if max(map(len, filter(None, column)), default=0) > _MAX_CODES_TEXT:
                    return None
            elif kinds <= {list, _NONE}:
                column = _joined_codes(column)
                if column is None:
                    return None
            else:
                return None
        elif kinds <= {str, _NONE}:
            if max(map(len, filter(None, column)), default=0) > _MAX_TEXT:
                return None
        elif kinds <= {int, _NONE}:
            numbers = list(filter(None, column))
            if numbers and not -_INT_LIMIT < min(numbers) <= max(numbers) < _INT_LIMIT:
                return None
            column = [None if value is None else str(value) for value in column]
        else:
            return None   # floats, booleans, a mix of text and numbers: case by case
        columns[name] = column
    return columns


_compiled = companion("_cases", None)   # ext/_cases.pyx: _plain_columns in one C pass (None: not built, or the Python kernel)
_SLOTS = {name: slot for slot, name in enumerate((*CODE_LISTS, *(n for n in FIELDS if n not in CODE_LISTS)))}
_SLOT_NAMES = [name.encode() for name in _SLOTS]
_LIMITS = (len(CODE_LISTS), _MAX_TEXT, _MAX_CODES_TEXT, _MAX_CODES)   # the compiled readers' shape limits


def _joined_codes(column: list) -> list | None:
    """Code lists (arrays of text, or null) as the reader's text joined with '|'; None when one is not
    plain (over 100 codes, a code that is not text, too long, or holding '|' or ',')."""
    out = []
    for codes in column:
        if codes is None:
            out.append(None)
            continue
        if len(codes) > _MAX_CODES or set(map(type, codes)) - {str}:
            return None
        joined = "|".join(codes)
        if "," in joined or joined.count("|") != max(len(codes) - 1, 0) or max(map(len, codes), default=0) > _MAX_TEXT:
            return None
        out.append(joined)
    return out


def check_case(case, where: str = "case") -> dict[str, str | None]:
    """Check the shape of one JSON case (a ShapeError names the field, e.g. case.age); its fields as
    text (every field, None where absent), as `case_columns` gives them."""
    columns = {name: [None] for name in FIELDS}
    _case_into(columns, 0, case, where)
    return {name: values[0] for name, values in columns.items()}


def _case_into(columns: dict[str, list], i: int, case, at: str) -> None:
    if type(case) is not dict:
        raise ShapeError(at, f"a case is a JSON object, got {_json_type(case)}")
    for name, value in case.items():
        column = columns.get(name)
        if column is None:
            raise unknown_field(name, at)
        kind = type(value)
        # the common shapes inline (a batch of 10,000 cases has ~100,000 values); the rest, and every
        # error, through _text / _codes
        if kind is str and len(value) <= _MAX_TEXT and name not in CODE_LISTS:
            column[i] = value
        elif kind is int and -_INT_LIMIT < value < _INT_LIMIT:
            column[i] = str(value)
        elif kind is list and name in CODE_LISTS and len(value) <= _MAX_CODES and all(type(c) is str for c in value):
            joined = "|".join(value)
            if "," in joined or joined.count("|") != max(len(value) - 1, 0) or any(len(c) > _MAX_TEXT for c in value):
                column[i] = _codes(value, f"{at}.{name}")   # raises, naming the code
            else:
                column[i] = joined
        else:
            column[i] = _codes(value, f"{at}.{name}") if name in CODE_LISTS else _text(value, f"{at}.{name}")


_INT_LIMIT = 1 << 63
_FIELD_SET = frozenset(FIELDS)


def batch_frame(body: bytes, max_cases: int) -> pl.DataFrame | None:
    """`case_frame` of the cases of a batch request body ({"cases": [...]}), read straight from its JSON
    bytes into text columns by the compiled reader (ext/_cases.pyx), without a Python object per case
    and value; None when the body is not in the plain shape it reads (see batch_columns: malformed
    JSON, no cases or more than `max_cases`, a field given twice, a value other than text, an integer
    or null, a text beyond its limit, ...) or the reader is not built: then the body is parsed as JSON
    and its cases read by `case_frame`, with their errors."""
    if _compiled is None:
        return None
    found = _compiled.batch_columns(body, _SLOT_NAMES, *_LIMITS, max_cases, _SLOTS["id"])
    if found is None:
        return None
    count, columns = found
    return pl.DataFrame([_text_series(name, count, *columns[_SLOTS[name]]) for name in FIELDS])


def _text_series(name: str, count: int, validity: bytes | None, views: bytes, data: bytes, nulls: int) -> pl.Series:
    array = pa.Array.from_buffers(pa.string_view(), count, [None if validity is None else pa.py_buffer(validity),
                                                            pa.py_buffer(views), pa.py_buffer(data)], null_count=nulls)
    return series_from_arrow(array, name)


def case_frame(cases: list, where: str = "cases") -> pl.DataFrame:
    """JSON cases → the raw frame the project's reader canonicalises (grouper.pipeline.case_batches)."""
    columns = given_columns(cases, where)
    ids = columns.setdefault("id", [None] * len(cases))
    if None in ids:
        for i, value in enumerate(ids):
            if value is None:   # a case without an id: its position in the request, from 1
                ids[i] = str(i + 1)
    frame = pl.DataFrame(columns, schema={name: pl.String for name in columns})
    # a field no case gives (the settlement fields, mostly) costs a constant, not a value per case
    absent = [name for name in FIELDS if name not in columns]
    if absent:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(name) for name in absent)
    return frame.select(FIELDS)
