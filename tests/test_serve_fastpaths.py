"""The server's fast paths give what the plain ones give: batches read column by column
(grouper.serve.cases._plain_columns) equal case by case reading, or are left to it; JSON bodies read
and written by orjson equal the standard library's (grouper.serve.jsonio)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouper.serve import cases as case_shapes
from grouper.serve.cases import FIELDS, ShapeError, case_columns
from grouper.serve.jsonio import dumps, loads


def _case_by_case(batch: list, where: str = "cases"):
    columns = {name: [None] * len(batch) for name in FIELDS}
    try:
        for i, case in enumerate(batch):
            case_shapes._case_into(columns, i, case, f"{where}[{i}]")
    except ShapeError as exc:
        return exc
    return columns


def _read(batch: list):
    try:
        return case_columns(batch)
    except ShapeError as exc:
        return exc


codes = st.one_of(st.none(), st.text(max_size=12), st.lists(st.one_of(st.text(max_size=10), st.integers()), max_size=4))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(allow_nan=False),
                    st.text(max_size=12), st.text(min_size=199, max_size=202))
plain = st.one_of(st.none(), st.text(max_size=12), st.integers(-10**6, 10**6))


def _cases(values):
    return st.dictionaries(st.sampled_from(FIELDS), values, max_size=8).map(
        lambda case: {k: (v if k not in ("dx", "proc") or not isinstance(v, (bool, float, int)) else str(v))
                      for k, v in case.items()})


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(_cases(st.one_of(plain, codes)), min_size=64, max_size=80),
       odd=st.one_of(st.none(), _cases(st.one_of(scalars, codes)), st.integers(), st.just({"agee": 1})),
       at=st.integers(0, 79))
def test_columnwise_reading_equals_case_by_case(batch, odd, at):
    if odd is not None:
        batch.insert(min(at, len(batch)), odd)
    expected, found = _case_by_case(batch), _read(batch)
    if isinstance(expected, ShapeError):
        assert isinstance(found, ShapeError) and (found.field, found.reason) == (expected.field, expected.reason)
    else:
        assert found == expected


def test_plain_batches_are_read_column_by_column():
    batch = [{"id": f"C{i}", "age": 60 + i % 20, "sex": "1", "dx": ["J18.900", "I10.x00"], "proc": "39.6500|38.9300"}
             for i in range(100)]
    columns = case_shapes._plain_columns(batch)
    assert columns is not None and columns == _case_by_case(batch)
    assert columns["age"][3] == "63" and columns["dx"][0] == "J18.900|I10.x00"
    assert case_shapes._plain_columns(batch + [{"id": "x", "age": 6.5}]) is None   # a float: case by case


@pytest.mark.parametrize("body", [b'{"a": 1, "b": [1, 2.5, "x"], "c": null}', b'{"age": NaN}', b'[1e400, 1.5, -0.0]', b'{"id": "12345678901234567890", "n": 1.5}',
                                  b'{"s": "\\ud800"}', b'{"a": 1, "a": 2}', '{"名": "肺炎"}'.encode("utf-16"),
                                  b'[' * 2000 + b']' * 2000])
def test_json_bodies_read_as_the_standard_library_reads_them(body):
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            loads(body)
        return
    found = loads(body)
    assert json.dumps(found) == json.dumps(expected) and repr(found) == repr(expected)


@pytest.mark.parametrize("written", [b"123456789012345678901234", b"-9223372036854775809", b"1e19", b"-1.5e300"])
def test_numbers_beyond_64_bits_are_refused_however_written(written):
    """orjson reads 123456789012345678901234 as a float, the standard library as an integer: a case
    field refuses both (and 1e19, which no CSV cell of a case holds either)."""
    for parsed in (json.loads(b'{"age": %s}' % written), loads(b'{"age": %s}' % written)):
        with pytest.raises(ShapeError, match="number out of range") as refused:
            case_columns([parsed], "case")
        assert refused.value.field == "case[0].age"


@pytest.mark.parametrize("body", [b'{"a": 1', b'{"a": 1,}', b"\xff\xfe{", b"nul"])
def test_malformed_json_gets_the_standard_librarys_message(body):
    with pytest.raises(ValueError) as expected:
        json.loads(body)
    with pytest.raises(ValueError) as found:
        loads(body)
    assert (type(found.value), str(found.value)) == (type(expected.value), str(expected.value))


def test_answers_written_as_the_standard_library_writes_them():
    plain = {"id": "A01", "weight": 1.2345, "warnings": [], "name": "肺炎", "n": 3, "none": None, "nested": {"x": [0.25]}}
    assert dumps(plain) == json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(dumps([1.5e-7, 1e300, 0.1])) == [1.5e-7, 1e300, 0.1]   # "1.5e-7" for Python's "1.5e-07": the same number
    big = {"n": 2**70}   # beyond orjson's integers: the standard library writes it
    assert dumps(big) == b'{"n":1180591620717411303424}'
    with pytest.raises(TypeError):
        dumps({"money": Decimal("12.50")})   # as json.dumps: not JSON


@pytest.mark.skipif(case_shapes._compiled is None, reason="the compiled batch reader (ext/_cases.pyx) is not built")
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(_cases(st.one_of(plain, codes)), min_size=1, max_size=40),
       odd=st.one_of(st.none(), _cases(st.one_of(scalars, codes)), st.integers(), st.just({"agee": 1}),
                     st.just({"dx": ["A|B"]}), st.just({"proc": ["A,B"]}), st.just({"age": -2**63}),
                     st.just({"age": 2**63 - 1}), st.just({"dx": ["x"] * 101}), st.just({"dx": "x" * 20_001}),
                     st.just({"dept": "x" * 201}), st.just({"dx": []}), st.just({"age": True}), st.just({"dx": 5})),
       at=st.integers(0, 40))
def test_compiled_columnwise_reading_equals_its_python_twin(batch, odd, at):
    if odd is not None:
        batch.insert(min(at, len(batch)), odd)
    found = case_shapes._compiled.plain_columns(batch, case_shapes._SLOTS, 2, 200, 20_000, 100)
    expected = case_shapes._plain_columns(batch)
    if expected is None:
        assert found is None
    else:   # the compiled one leaves out the fields no case gives
        assert {name: found[case_shapes._SLOTS[name]] or [None] * len(batch) for name in FIELDS} == expected


# ---- batch bodies read straight from their bytes (cases.batch_frame, ext/_cases.pyx) ------------

def _parsed_frame(body: bytes):
    """What the general path makes of a batch body: its cases parsed as JSON, then case_frame."""
    return case_shapes.case_frame(json.loads(body)["cases"])


def _dumped(batch: list, style: int) -> bytes:
    if style == 0:
        return json.dumps({"cases": batch}).encode()   # \\uXXXX escapes for every non-ASCII character
    if style == 1:
        return json.dumps({"cases": batch}, ensure_ascii=False, separators=(",", ":")).encode()
    return json.dumps({"cases": batch}, ensure_ascii=False, indent=1).encode()   # new lines and indents


needs_reader = pytest.mark.skipif(case_shapes._compiled is None, reason="the compiled batch reader (ext/_cases.pyx) is not built")
texts = st.one_of(st.text(max_size=12), st.text(alphabet="J18.9|,x 肺炎\"\\/\n\t\u2028😀\x00", max_size=12),
                  st.text(min_size=199, max_size=202))
code_lists = st.one_of(st.none(), texts, st.lists(st.one_of(st.text(max_size=10), st.text(alphabet="AB|,", max_size=3)),
                                                  max_size=4))
values = st.one_of(st.none(), texts, st.integers(-10**19, 10**19), st.just(0), st.floats(allow_nan=False),
                   st.booleans())


@needs_reader
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=8).flatmap(
           lambda case: st.fixed_dictionaries({k: code_lists for k in ("dx", "proc") if k in case}).map(
               lambda codes: {**case, **codes})), min_size=1, max_size=30),
       style=st.integers(0, 2))
def test_batch_bodies_read_from_bytes_equal_the_parsed_cases(batch, style):
    body = _dumped(batch, style)
    try:
        expected = _parsed_frame(body)
    except ShapeError:   # the general path refuses the batch: the compiled reader must have declined it
        assert case_shapes.batch_frame(body, 10_000) is None
        return
    found = case_shapes.batch_frame(body, 10_000)
    if found is not None:
        assert found.schema == expected.schema and found.equals(expected)


@needs_reader
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(st.dictionaries(st.sampled_from(FIELDS), st.one_of(
           st.none(), st.text(max_size=20).filter(lambda t: "|" not in t and "," not in t),
           st.integers(-10**17, 10**17)), max_size=10).map(
               lambda case: {k: ([v] if isinstance(v, str) else None) if k in ("dx", "proc") else v
                             for k, v in case.items()}), min_size=1, max_size=30),
       style=st.integers(0, 2))
def test_plain_batch_bodies_are_read_from_bytes(batch, style):
    """Text, integers up to 18 digits, null and code arrays: the compiled reader takes every such body."""
    body = _dumped(batch, style)
    found = case_shapes.batch_frame(body, 10_000)
    assert found is not None and found.equals(_parsed_frame(body))


@needs_reader
@pytest.mark.parametrize("body, ids", [
    (b'{"cases":[{"age":5},{"id":null,"age":-0},{"id":7,"dx":["A","B"]},{}]}', ["1", "2", "7", "4"]),
    (b' \n{ "cases" : [ { "id" : "x\\u00e9\\ud83d\\ude00\\n\\"" , "dx" : [ ] } ] } \r\n', ["x\u00e9\U0001F600\n\""]),
    ('{"cases":[{"id":"肺炎","dept":"%s"}]}' % ("内" * 200), ["肺炎"]),
])
def test_batch_bodies_read_from_bytes_examples(body, ids):
    body = body if isinstance(body, bytes) else body.encode()
    found = case_shapes.batch_frame(body, 10_000)
    assert found is not None and found["id"].to_list() == ids and found.equals(_parsed_frame(body))


@needs_reader
@pytest.mark.parametrize("body", [
    b'{"cases":[]}',                                    # no cases: the general path answers
    b'{"cases":[{"age":1},{"age":2},{"age":3}]}',       # more than max_cases (2 here)
    b'{"cases":[{"age":1}],"extra":1}',                 # another member: refused by the general path
    b'{"cases":[{"age":1}]} x',                         # trailing bytes: malformed
    b'{"cases":[{"age":1}]',                            # cut short
    b'{"cases":[{"age":1,}]}',                          # a trailing comma
    b'{"cases":[{"age":1,"age":2}]}',                   # a field twice (JSON takes the last one)
    b'{"cases":[{"agee":1}]}',                          # an unknown field: refused, naming it
    b'{"cases":[{"\\u0061ge":1}]}',                     # an escaped field name
    b'{"cases":[{"age":1.5}]}', b'{"cases":[{"age":1e3}]}', b'{"cases":[{"age":true}]}',
    b'{"cases":[{"age":01}]}', b'{"cases":[{"age":1234567890123456789}]}', b'{"cases":[{"age":-}]}',
    b'{"cases":[{"dx":5}]}', b'{"cases":[{"dx":["A|B"]}]}', b'{"cases":[{"dx":["A,B"]}]}', b'{"cases":[{"dx":[1]}]}',
    b'{"cases":[{"dx":["A\\u007cB"]}]}', b'{"cases":[{"sex":["1"]}]}', b'{"cases":[{"sex":{"a":1}}]}',
    b'{"cases":[{"dept":"\\ud800"}]}', b'{"cases":[{"dept":"\\udc00x"}]}', b'{"cases":[{"dept":"\\x"}]}',
    b'{"cases":[{"dept":"a\tb"}]}',                     # a raw control character
    b'{"cases":[{"dept":"\xff"}]}', b'{"cases":[{"dept":"\xed\xa0\x80"}]}', b'{"cases":[{"dept":"\xc0\xaf"}]}',
    b'\xef\xbb\xbf{"cases":[{"age":1}]}',               # a byte order mark
    b'{"cases":[null]}', b'{"cases":[[1]]}', b'{"cases":{}}', b'[{"age":1}]',
    ('{"cases":[{"dept":"%s"}]}' % ("内" * 201)).encode(), ('{"cases":[{"dx":["%s"]}]}' % ("A" * 201)).encode(),
    ('{"cases":[{"dx":%s}]}' % json.dumps(["A"] * 101)).encode(), ('{"cases":[{"dx":"%s"}]}' % ("A" * 20_001)).encode(),
])
def test_other_batch_bodies_are_left_to_the_json_parser(body):
    assert case_shapes.batch_frame(body, 2) is None


def _taken_as_parsed(body: bytes) -> None:
    """A body from the network, however damaged: the compiled reader declines it or reads what JSON reads."""
    found = case_shapes.batch_frame(body, 10_000)
    if found is not None:
        assert found.equals(_parsed_frame(body))


_DAMAGE_BASE = ('{"cases":[{"id":"a\\u00e9","age":61,"sex":"1","dx":["J18.900","I10.x00"],"proc":[]},'
                '{"id":2,"dept":"内科","los":-3,"dx":"K80.100x001|E11.900"}]}').encode()


@needs_reader
def test_every_cut_of_a_body_is_declined_or_read_as_json():
    """The reader walks bytes a client sent: cut short anywhere it must stop inside the body."""
    assert case_shapes.batch_frame(_DAMAGE_BASE, 10_000) is not None   # whole, it is read
    for end in range(len(_DAMAGE_BASE) + 1):
        _taken_as_parsed(_DAMAGE_BASE[:end])


@needs_reader
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.integers(0, len(_DAMAGE_BASE) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_bodies_are_declined_or_read_as_json(edits):
    body = bytearray(_DAMAGE_BASE)
    for at, byte in edits:
        body[at] = byte
    _taken_as_parsed(bytes(body))


# ---- batch answers written straight from the result columns (jsonio.frame_json) -----------------

def _polars_json(frame) -> bytes:
    import io

    out = io.BytesIO()
    frame.write_json(out)
    return out.getvalue()


@needs_reader
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=20)),
                               st.one_of(st.none(), st.floats(width=64), st.sampled_from([1.0, 0.1, 1e16, 1e-7, 2.5e-5,
                                                                                          123456.789, 0.0, -0.0])),
                               st.lists(st.one_of(st.text(max_size=8), st.none()), max_size=3),
                               st.text(alphabet="\"\\/\n\t\b\f\r\x00\x01\x1f\x7f\u2028é😀 a", max_size=14)),
                     max_size=40))
def test_answers_written_from_columns_equal_polars_write_json(rows):
    import polars as pl

    from grouper.serve.jsonio import frame_json

    frame = pl.DataFrame(rows, schema={"id": pl.String, "weight": pl.Float64, "warnings": pl.List(pl.String),
                                       "name": pl.String}, orient="row").with_columns(pl.lit(None).alias("reason"))
    for part in (frame, frame.slice(1), frame.select("id", "name", "reason")):   # a slice: offsets not from 0
        assert frame_json(part) == _polars_json(part)


@needs_reader
def test_result_frames_are_written_by_the_compiled_writer():
    import polars as pl

    from grouper.serve import jsonio

    frame = pl.DataFrame({"id": ["A01", "A02"], "weight": [1.5, None], "warnings": [["x"], []], "scheme": ["CHS-DRG"] * 2},
                         schema_overrides={"warnings": pl.List(pl.String)}).with_columns(pl.lit(None).alias("reason"))
    assert jsonio._row_columns(frame) is not None and jsonio.frame_json(frame) == _polars_json(frame)
    assert jsonio._row_columns(frame.with_columns(pl.lit(0.0).alias("weight"))) is None   # zero: Polars writes it
    assert jsonio._row_columns(frame.with_columns(pl.lit(3).alias("n"))) is None          # integers: Polars writes them
