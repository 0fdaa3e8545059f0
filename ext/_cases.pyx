# cython: language_level=3
"""The server's compiled batch reading (grouper.serve.cases): JSON cases (a list of dicts, as the
JSON parser gave them) to text columns in one C pass, instead of a Python step per value. Its twin is
grouper.serve.cases._plain_columns, which gives the same columns, or None for the same batches (the
tests compare the two)."""
from cpython.dict cimport PyDict_Next
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.limits cimport LLONG_MIN

cdef enum Kind:   # what a column holds so far
    EMPTY, TEXT, NUMBER, CODES


def plain_columns(list cases, dict slots, Py_ssize_t code_slots, Py_ssize_t max_text, Py_ssize_t max_codes_text,
                  Py_ssize_t max_codes):
    """The text columns of `cases` (a list per field, in slot order, None where a case lacks the field;
    None instead of a list for a field no case gives), or None when a value is not of a common shape
    (see _plain_columns). `slots`: field name → its column; the first `code_slots` are code lists."""
    cdef Py_ssize_t n = PyList_GET_SIZE(cases), width = len(slots), i, pos, slot, k, count, size
    cdef PyObject *key_ptr
    cdef PyObject *value_ptr
    cdef object case, value, slot_object, joined, code
    cdef list column, codes
    cdef int overflow
    cdef long long number
    cdef list columns = [[None] * n for _ in range(width)]
    cdef int[64] kinds
    if width > 64:
        raise ValueError("plain_columns: at most 64 fields")
    for slot in range(width):
        kinds[slot] = EMPTY
    for i in range(n):
        case = <object>PyList_GET_ITEM(cases, i)
        if type(case) is not dict:
            return None
        pos = 0
        while PyDict_Next(case, &pos, &key_ptr, &value_ptr):
            slot_object = slots.get(<object>key_ptr)
            if slot_object is None:
                return None
            slot = slot_object
            value = <object>value_ptr
            if value is None:
                continue
            column = columns[slot]
            if type(value) is str:
                size = PyUnicode_GET_LENGTH(value)
                if kinds[slot] == EMPTY:
                    kinds[slot] = TEXT
                elif kinds[slot] != TEXT:
                    return None
                if size > (max_codes_text if slot < code_slots else max_text):
                    return None
                column[i] = value
            elif slot < code_slots:
                if type(value) is not list:
                    return None
                if kinds[slot] == EMPTY:
                    kinds[slot] = CODES
                elif kinds[slot] != CODES:
                    return None
                codes = <list>value
                count = PyList_GET_SIZE(codes)
                if count > max_codes:
                    return None
                for k in range(count):
                    code = <object>PyList_GET_ITEM(codes, k)
                    if type(code) is not str or PyUnicode_GET_LENGTH(code) > max_text:
                        return None
                joined = "|".join(codes)
                if "," in joined or joined.count("|") != (count - 1 if count > 1 else 0):
                    return None
                column[i] = joined
            elif type(value) is int:
                if kinds[slot] == EMPTY:
                    kinds[slot] = NUMBER
                elif kinds[slot] != NUMBER:
                    return None
                number = PyLong_AsLongLongAndOverflow(value, &overflow)
                if overflow != 0 or number == LLONG_MIN:   # within (-2**63, 2**63), as the twin
                    return None
                column[i] = str(value)
            else:
                return None   # floats, booleans, objects, arrays outside the code lists
    for slot in range(width):
        if kinds[slot] == EMPTY:
            columns[slot] = None   # no case has the field (or only nulls): the caller needs no list of them
    return columns
