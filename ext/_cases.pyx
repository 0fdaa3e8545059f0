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


# ---- a batch body read straight from its JSON bytes ---------------------------------------------
# (grouper.serve.cases.batch_frame). A request of 10,000 cases is ~1.6 MB of JSON: a general JSON
# parser makes ~120,000 Python objects of it (10,000 dicts, their keys and texts) only for the columns
# to be copied out of them again. This reads the one common shape, {"cases": [{field: value}, ...]},
# into Arrow string_view columns (Polars' own layout: taken over without a copy) in one pass without the GIL,
# and declines (None) anything else, which the general parser then reads with its errors.

from libc.stdint cimport int32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

cdef enum Outcome:
    READ, DECLINED, NO_MEMORY

cdef struct Growable:
    char *data
    Py_ssize_t size
    Py_ssize_t capacity

cdef struct Column:
    Growable text       # the UTF-8 bytes of the values longer than 12 bytes, one after another
    Growable views      # 16 bytes per case: Arrow's string view (length, then the value itself up to 12
                        # bytes, else its first 4 bytes, buffer 0 and its offset in `text`)
    Growable validity   # a bit per case (Arrow's bitmap, least significant bit first)
    Py_ssize_t nulls
    Py_ssize_t last     # where in `text` the value of the case being read starts

cdef struct Field:
    const char *name
    Py_ssize_t length

cdef struct Limits:
    Py_ssize_t code_slots, max_text, max_codes_text, max_codes, max_cases, id_slot



cdef inline bint _reserve(Growable *b, Py_ssize_t extra) noexcept nogil:
    cdef Py_ssize_t need = b.size + extra, capacity
    cdef char *grown
    if need <= b.capacity:
        return True
    capacity = b.capacity * 2 if b.capacity else 1 << 14
    while capacity < need:
        capacity *= 2
    grown = <char *>realloc(b.data, capacity)
    if grown == NULL:
        return False
    b.data, b.capacity = grown, capacity
    return True


cdef inline bint _append(Growable *b, const char *src, Py_ssize_t n) noexcept nogil:
    if not _reserve(b, n):
        return False
    memcpy(b.data + b.size, src, n)
    b.size += n
    return True


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    return c == 32 or c == 10 or c == 13 or c == 9


cdef inline Py_ssize_t _skip(const unsigned char *s, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    while i < end and _is_space(s[i]):
        i += 1
    return i


cdef inline int _hex4(const unsigned char *s, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """The value of four hex digits at s[i:i+4]; -1 when they are not."""
    cdef int value = 0, k
    cdef unsigned char c
    if i + 4 > end:
        return -1
    for k in range(4):
        c = s[i + k]
        if 48 <= c <= 57:
            value = value * 16 + c - 48
        elif 97 <= c <= 102:
            value = value * 16 + c - 87
        elif 65 <= c <= 70:
            value = value * 16 + c - 55
        else:
            return -1
    return value


cdef inline Py_ssize_t _utf8_length(const unsigned char *s, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, at most
    U+10FFFF) starting with the byte s[i] >= 0x80; 0 when it is not one."""
    cdef unsigned char c = s[i], low = 0x80, high = 0xBF
    cdef Py_ssize_t n, k
    if 0xC2 <= c <= 0xDF:
        n = 2
    elif 0xE0 <= c <= 0xEF:
        n = 3
        if c == 0xE0:
            low = 0xA0
        elif c == 0xED:
            high = 0x9F
    elif 0xF0 <= c <= 0xF4:
        n = 4
        if c == 0xF0:
            low = 0x90
        elif c == 0xF4:
            high = 0x8F
    else:
        return 0
    if i + n > end or not (low <= s[i + 1] <= high):
        return 0
    for k in range(2, n):
        if not (0x80 <= s[i + k] <= 0xBF):
            return 0
    return n


cdef unsigned char _PLAIN[256]   # 1: a byte that stands for itself in a JSON string, 2: the same, '|' or ','
for _byte in range(256):
    _PLAIN[_byte] = 0 if _byte in (34, 92) or _byte < 0x20 or _byte >= 0x80 else 2 if _byte in (124, 44) else 1


cdef inline Py_ssize_t _string(const unsigned char *s, Py_ssize_t *at, Py_ssize_t end, Growable *out,
                               bint *separator) noexcept nogil:
    """Read the JSON string whose opening quote is at s[at[0] - 1] into `out` as UTF-8, at[0] past its
    closing quote; its length in characters (code points, as Python's len), -1 when it is not a string
    this reader takes (malformed, or a lone surrogate escape), -2 out of memory. `separator` is set when
    it holds '|' or ','."""
    cdef Py_ssize_t i = at[0], start, chars = 0, n
    cdef unsigned char c
    cdef int code, low
    cdef char encoded[4]
    while True:
        start = i
        while i < end and _PLAIN[s[i]]:
            i += 1
            if _PLAIN[s[i - 1]] == 2:
                separator[0] = True
        if i > start:
            if not _append(out, <const char *>s + start, i - start):
                return -2
            chars += i - start
        if i >= end:
            return -1
        c = s[i]
        if c == 34:   # the closing quote
            at[0] = i + 1
            return chars
        if c < 0x20:  # a raw control character: not JSON
            return -1
        if c >= 0x80:
            n = _utf8_length(s, i, end)
            if n == 0:
                return -1
            if not _append(out, <const char *>s + i, n):
                return -2
            i += n
            chars += 1
            continue
        # an escape
        if i + 1 >= end:
            return -1
        c = s[i + 1]
        i += 2
        if c == 117:   # \uXXXX, a surrogate pair as two
            code = _hex4(s, i, end)
            if code < 0:
                return -1
            i += 4
            if 0xD800 <= code <= 0xDBFF:
                if i + 6 > end or s[i] != 92 or s[i + 1] != 117:
                    return -1
                low = _hex4(s, i + 2, end)
                if not 0xDC00 <= low <= 0xDFFF:
                    return -1
                i += 6
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            elif 0xDC00 <= code <= 0xDFFF:
                return -1
            if code < 0x80:
                encoded[0] = <char>code
                n = 1
                if code == 124 or code == 44:
                    separator[0] = True
            elif code < 0x800:
                encoded[0] = <char>(0xC0 | (code >> 6))
                encoded[1] = <char>(0x80 | (code & 0x3F))
                n = 2
            elif code < 0x10000:
                encoded[0] = <char>(0xE0 | (code >> 12))
                encoded[1] = <char>(0x80 | ((code >> 6) & 0x3F))
                encoded[2] = <char>(0x80 | (code & 0x3F))
                n = 3
            else:
                encoded[0] = <char>(0xF0 | (code >> 18))
                encoded[1] = <char>(0x80 | ((code >> 12) & 0x3F))
                encoded[2] = <char>(0x80 | ((code >> 6) & 0x3F))
                encoded[3] = <char>(0x80 | (code & 0x3F))
                n = 4
        else:
            n = 1
            if c == 34 or c == 92 or c == 47:
                encoded[0] = <char>c
            elif c == 98:
                encoded[0] = 8
            elif c == 102:
                encoded[0] = 12
            elif c == 110:
                encoded[0] = 10
            elif c == 114:
                encoded[0] = 13
            elif c == 116:
                encoded[0] = 9
            else:
                return -1
        if not _append(out, encoded, n):
            return -2
        chars += 1


cdef inline bint _named(const unsigned char *s, Py_ssize_t start, Py_ssize_t length, const Field *field) noexcept nogil:
    cdef Py_ssize_t k
    if field.length != length:
        return False
    for k in range(length):   # (names are a few bytes: a loop beats a call to memcmp)
        if <unsigned char>field.name[k] != s[start + k]:
            return False
    return True


cdef inline Py_ssize_t _slot(const unsigned char *s, Py_ssize_t start, Py_ssize_t length, const Field *fields,
                             Py_ssize_t width, Py_ssize_t guess) noexcept nogil:
    """The field named s[start:start+length] (-1: none); `guess` is tried first (the cases of a batch
    mostly give their fields in the same order)."""
    cdef Py_ssize_t slot
    if 0 <= guess < width and _named(s, start, length, &fields[guess]):
        return guess
    for slot in range(width):
        if _named(s, start, length, &fields[slot]):
            return slot
    return -1


cdef inline int _next_item(const unsigned char *s, Py_ssize_t *at, Py_ssize_t end, unsigned char closer) noexcept nogil:
    """After an item of an array or object: past the ',' and blanks (1: another item follows), past
    `closer` (0: that was the last), or -1 for anything else."""
    cdef Py_ssize_t i = _skip(s, at[0], end)
    if i < end and s[i] == 44:
        at[0] = _skip(s, i + 1, end)
        return 1
    if i < end and s[i] == closer:
        at[0] = i + 1
        return 0
    return -1


cdef Outcome _case(const unsigned char *s, Py_ssize_t *at, Py_ssize_t end, Column *columns, const Field *fields,
                   Py_ssize_t width, const Limits *limits, Py_ssize_t number, Py_ssize_t *after) noexcept nogil:
    """Read one case object (its '{' at s[at[0]]) into the columns, as row `number` (from 0). `after`
    (width + 1 slots): the field that followed each field (the first: after[width]) in the cases before."""
    cdef Py_ssize_t i = at[0] + 1, start, slot, chars, count, before, digits, previous = width, position_number
    cdef int more
    cdef int32_t length
    cdef char *view
    cdef uint64_t seen = 0, valid = 0
    cdef bint separator
    cdef unsigned char c
    cdef Column *column
    cdef char position[24]
    i = _skip(s, i, end)
    if i < end and s[i] == 125:   # {}
        i += 1
    else:
        while True:
            if i >= end or s[i] != 34:
                return DECLINED
            start = i + 1
            i = start
            while i < end and s[i] != 34:
                if s[i] == 92 or s[i] < 0x20 or s[i] >= 0x80:   # a field name is plain ASCII
                    return DECLINED
                i += 1
            if i >= end:
                return DECLINED
            slot = _slot(s, start, i - start, fields, width, after[previous])
            if slot < 0 or seen & (<uint64_t>1 << slot):   # unknown, or given twice
                return DECLINED
            after[previous] = slot
            previous = slot
            seen |= <uint64_t>1 << slot
            i = _skip(s, i + 1, end)
            if i >= end or s[i] != 58:
                return DECLINED
            i = _skip(s, i + 1, end)
            if i >= end:
                return DECLINED
            column = &columns[slot]
            c = s[i]
            if c == 34:   # text
                i += 1
                separator = False
                chars = _string(s, &i, end, &column.text, &separator)
                if chars == -2:
                    return NO_MEMORY
                if chars < 0 or chars > (limits.max_codes_text if slot < limits.code_slots else limits.max_text):
                    return DECLINED
                valid |= <uint64_t>1 << slot
            elif c == 110:   # null
                if i + 4 > end or memcmp(s + i, b"null", 4) != 0:
                    return DECLINED
                i += 4
            elif c == 91:   # an array of codes
                if slot >= limits.code_slots:
                    return DECLINED
                i = _skip(s, i + 1, end)
                count = 0
                if i < end and s[i] == 93:
                    i += 1
                else:
                    while True:
                        if i >= end or s[i] != 34 or count == limits.max_codes:
                            return DECLINED
                        if count and not _append(&column.text, b"|", 1):
                            return NO_MEMORY
                        i += 1
                        separator = False
                        chars = _string(s, &i, end, &column.text, &separator)
                        if chars == -2:
                            return NO_MEMORY
                        if chars < 0 or chars > limits.max_text or separator:
                            return DECLINED
                        count += 1
                        more = _next_item(s, &i, end, 93)
                        if more < 0:
                            return DECLINED
                        if not more:
                            break
                valid |= <uint64_t>1 << slot
            elif c == 45 or 48 <= c <= 57:   # an integer, as Python's str(int) writes it
                if slot < limits.code_slots:
                    return DECLINED
                start = i
                if c == 45:
                    i += 1
                before = i
                if i < end and s[i] == 48:
                    i += 1
                else:
                    while i < end and 48 <= s[i] <= 57:
                        i += 1
                digits = i - before
                if digits == 0 or digits > 18 or (i < end and (s[i] == 46 or s[i] == 101 or s[i] == 69)):
                    return DECLINED   # not a number, beyond 18 digits, or a fraction / exponent
                if digits == 1 and s[before] == 48:
                    start = before   # -0 is 0
                if not _append(&column.text, <const char *>s + start, i - start):
                    return NO_MEMORY
                valid |= <uint64_t>1 << slot
            else:
                return DECLINED   # true / false, an object, an array outside the code lists
            more = _next_item(s, &i, end, 125)
            if more < 0:
                return DECLINED
            if not more:
                break
    if not valid & (<uint64_t>1 << limits.id_slot):   # no id: the case's position, from 1
        count = 0
        position_number = number + 1
        while position_number:
            position[23 - count] = <char>(48 + position_number % 10)
            position_number //= 10
            count += 1
        if not _append(&columns[limits.id_slot].text, position + 24 - count, count):
            return NO_MEMORY
        valid |= <uint64_t>1 << limits.id_slot
    for slot in range(width):
        column = &columns[slot]
        if not _reserve(&column.views, 16) or (number % 8 == 0 and not _reserve(&column.validity, 1)):
            return NO_MEMORY
        view = column.views.data + column.views.size
        memset(view, 0, 16)
        column.views.size += 16
        if number % 8 == 0:
            column.validity.data[column.validity.size] = 0
            column.validity.size += 1
        if not valid & (<uint64_t>1 << slot):
            column.nulls += 1
            continue
        column.validity.data[number // 8] |= <char>(1 << (number % 8))
        length = column.text.size - column.last
        if column.text.size > 0x7FFFFFFF:
            return DECLINED   # beyond a view's 32-bit offsets (a body is megabytes, not gigabytes)
        memcpy(view, &length, 4)
        if length <= 12:   # inline: the bytes leave `text`
            memcpy(view + 4, column.text.data + column.last, length)
            column.text.size = column.last
        else:
            memcpy(view + 4, column.text.data + column.last, 4)
            memcpy(view + 12, &column.last, 4)
        column.last = column.text.size
    at[0] = i
    return READ


cdef Outcome _batch(const unsigned char *s, Py_ssize_t end, Column *columns, const Field *fields, Py_ssize_t width,
                    const Limits *limits, Py_ssize_t *cases) noexcept nogil:
    cdef Py_ssize_t i = _skip(s, 0, end)
    cdef Outcome outcome
    cdef int more
    cdef Py_ssize_t slot
    cdef Py_ssize_t after[65]
    for slot in range(width + 1):
        after[slot] = -1
    if i >= end or s[i] != 123:
        return DECLINED
    i = _skip(s, i + 1, end)
    if i + 7 > end or memcmp(s + i, b'"cases"', 7) != 0:
        return DECLINED
    i = _skip(s, i + 7, end)
    if i >= end or s[i] != 58:
        return DECLINED
    i = _skip(s, i + 1, end)
    if i >= end or s[i] != 91:
        return DECLINED
    i = _skip(s, i + 1, end)
    cases[0] = 0
    while True:
        if i >= end or s[i] != 123 or cases[0] == limits.max_cases:
            return DECLINED   # (an empty batch, or too many cases: the general reader answers)
        outcome = _case(s, &i, end, columns, fields, width, limits, cases[0], after)
        if outcome != READ:
            return outcome
        cases[0] += 1
        more = _next_item(s, &i, end, 93)
        if more < 0:
            return DECLINED
        if not more:
            break
    i = _skip(s, i, end)
    if i >= end or s[i] != 125:   # "cases" is the only member of the body
        return DECLINED
    i = _skip(s, i + 1, end)
    return READ if i == end else DECLINED


def batch_columns(bytes body, list names, Py_ssize_t code_slots, Py_ssize_t max_text, Py_ssize_t max_codes_text,
                  Py_ssize_t max_codes, Py_ssize_t max_cases, Py_ssize_t id_slot):
    """(number of cases, [(validity bitmap or None, views, data, nulls) per field: Arrow string_view
    buffers]) of a body
    {"cases": [case, ...]} whose every case is an object of known fields holding text, integers of
    up to 18 digits, null, or (the first `code_slots` fields) arrays of text codes — the text columns
    grouper.serve.cases.case_frame makes of the parsed body, an absent or null id as the case's
    position — or None for any other body (malformed JSON too): an empty batch, more than
    `max_cases`, a field given twice, true / false, a fraction, a text beyond its limit, a code with
    '|' or ',', a lone surrogate, bytes that are not UTF-8. `names`: the fields (bytes) in slot order."""
    cdef Py_ssize_t width = len(names), slot, cases = 0
    cdef Field fields[64]
    cdef Column columns[64]
    cdef Limits limits
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(body)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(body)
    cdef Outcome outcome
    if width > 64 or not 0 <= id_slot < width:
        raise ValueError("batch_columns: at most 64 fields, and the id among them")
    for slot in range(width):
        fields[slot].name = PyBytes_AS_STRING(names[slot])
        fields[slot].length = PyBytes_GET_SIZE(names[slot])
        columns[slot].text = Growable(NULL, 0, 0)
        columns[slot].views = Growable(NULL, 0, 0)
        columns[slot].validity = Growable(NULL, 0, 0)
        columns[slot].nulls = 0
        columns[slot].last = 0
    limits = Limits(code_slots, max_text, max_codes_text, max_codes, max_cases, id_slot)
    try:
        with nogil:
            outcome = _batch(s, end, columns, fields, width, &limits, &cases)
        if outcome == NO_MEMORY:
            raise MemoryError()
        if outcome == DECLINED:
            return None
        return cases, [(PyBytes_FromStringAndSize(columns[slot].validity.data, columns[slot].validity.size)
                        if columns[slot].nulls else None,
                        PyBytes_FromStringAndSize(columns[slot].views.data, columns[slot].views.size),
                        PyBytes_FromStringAndSize(columns[slot].text.data, columns[slot].text.size),
                        columns[slot].nulls) for slot in range(width)]
    finally:
        for slot in range(width):
            free(columns[slot].text.data)
            free(columns[slot].views.data)
            free(columns[slot].validity.data)


# ---- a batch answer written straight from its result columns -----------------------------------
# (grouper.serve.jsonio.frame_json). The rows of a result frame as JSON objects, byte for byte as
# Polars' DataFrame.write_json writes them, in one pass over the columns' own buffers: text columns
# (Arrow string views), columns whose values the caller rendered already (an index per row into
# fragments: numbers, as Polars renders them), and lists of text.

from libc.stdint cimport int64_t, uint8_t

cdef enum Kind2:
    TEXT_COLUMN = 0, RENDERED_COLUMN = 1, TEXT_LIST_COLUMN = 2

cdef struct Views:
    const uint8_t *views
    const uint8_t **data
    Py_ssize_t *sizes
    Py_ssize_t n_data
    const uint8_t *validity
    Py_ssize_t bit_offset

cdef struct OutColumn:
    int kind
    const char *key          # '"name":' (with the leading ',' for all but the first column)
    Py_ssize_t key_length
    Views text               # TEXT_COLUMN, and the values of TEXT_LIST_COLUMN
    const int32_t *index     # RENDERED_COLUMN: the fragment of each row (-1: null)
    const char *fragments
    const int64_t *fragment_offsets
    Py_ssize_t n_fragments
    const int64_t *list_offsets   # TEXT_LIST_COLUMN: row i's values are list_offsets[i] .. list_offsets[i + 1]

cdef unsigned char _ESCAPE[256]   # 0: written as is; else the letter of its short escape, or 'u' (\u00xx)
for _byte in range(256):
    _ESCAPE[_byte] = (ord("u") if _byte < 0x20 else 0)
for _byte, _letter in ((34, '"'), (92, "\\"), (8, "b"), (12, "f"), (10, "n"), (13, "r"), (9, "t")):
    _ESCAPE[_byte] = ord(_letter)


cdef inline const uint8_t *_view(const Views *text, Py_ssize_t i, int32_t *length) noexcept nogil:
    """String i of a string_view column; NULL for a null (or a view outside its buffers: `length` -1)."""
    cdef const uint8_t *v = text.views + 16 * i
    cdef int32_t buffer, offset
    cdef Py_ssize_t bit
    length[0] = 0
    if text.validity != NULL:
        bit = text.bit_offset + i
        if not (text.validity[bit >> 3] >> (bit & 7)) & 1:
            return NULL
    memcpy(length, v, 4)
    if length[0] <= 12:
        return v + 4
    memcpy(&buffer, v + 8, 4)
    memcpy(&offset, v + 12, 4)
    if buffer < 0 or buffer >= text.n_data or offset < 0 or <Py_ssize_t>offset + length[0] > text.sizes[buffer]:
        length[0] = -1
        return NULL
    return text.data[buffer] + offset


cdef inline void _put(Growable *out, const char *src, Py_ssize_t n) noexcept nogil:
    """Append to `out`, whose room the caller reserved."""
    memcpy(out.data + out.size, src, n)
    out.size += n


cdef inline bint _json_text(Growable *out, const uint8_t *s, Py_ssize_t n) noexcept nogil:
    """s[:n] as a JSON string (escaped as Polars escapes: the short escapes, \\u00xx for other control
    characters, everything else as it is)."""
    cdef Py_ssize_t i = 0, start
    cdef unsigned char e, c
    cdef char *w
    if not _reserve(out, 6 * n + 2):   # every byte escaped as \u00xx at worst
        return False
    w = out.data + out.size
    w[0] = 34
    w += 1
    while True:
        start = i
        while i < n and _ESCAPE[s[i]] == 0:
            i += 1
        if i > start:
            memcpy(w, s + start, i - start)
            w += i - start
        if i >= n:
            break
        c = s[i]
        e = _ESCAPE[c]
        w[0] = 92
        if e == 117:
            w[1], w[2], w[3] = 117, 48, 48
            w[4] = b"0123456789abcdef"[c >> 4]
            w[5] = b"0123456789abcdef"[c & 15]
            w += 6
        else:
            w[1] = <char>e
            w += 2
        i += 1
    w[0] = 34
    out.size = w + 1 - out.data
    return True


cdef int _rows(Growable *out, OutColumn *columns, Py_ssize_t width, Py_ssize_t rows) noexcept nogil:
    """0, -1 out of memory, -2 a view outside its buffers."""
    cdef Py_ssize_t i, k, item, size
    cdef OutColumn *column
    cdef const uint8_t *s
    cdef int32_t length, which
    size = 2
    for k in range(width):   # room for the keys and ~16 bytes of each value: grown once or twice at most
        size += columns[k].key_length + 16
    if not _reserve(out, rows * size) or not _append(out, b"[", 1):
        return -1
    for i in range(rows):
        if not _reserve(out, 2):
            return -1
        _put(out, b",{" if i else b"{", 2 if i else 1)
        for k in range(width):
            column = &columns[k]
            if not _reserve(out, column.key_length + 4):   # the key, and null
                return -1
            _put(out, column.key, column.key_length)
            if column.kind == TEXT_COLUMN:
                s = _view(&column.text, i, &length)
                if length < 0:
                    return -2
                if s == NULL:
                    _put(out, b"null", 4)
                elif not _json_text(out, s, length):
                    return -1
            elif column.kind == RENDERED_COLUMN:
                which = column.index[i]
                if which < 0:
                    _put(out, b"null", 4)
                elif which >= column.n_fragments:
                    return -2
                else:
                    size = column.fragment_offsets[which + 1] - column.fragment_offsets[which]
                    if not _reserve(out, size):
                        return -1
                    _put(out, column.fragments + column.fragment_offsets[which], size)
            else:
                _put(out, b"[", 1)
                for item in range(column.list_offsets[i], column.list_offsets[i + 1]):
                    if not _reserve(out, 5):
                        return -1
                    if item > column.list_offsets[i]:
                        _put(out, b",", 1)
                    s = _view(&column.text, item, &length)
                    if length < 0:
                        return -2
                    if s == NULL:
                        _put(out, b"null", 4)
                    elif not _json_text(out, s, length):
                        return -1
                if not _reserve(out, 1):
                    return -1
                _put(out, b"]", 1)
        if not _reserve(out, 1):
            return -1
        _put(out, b"}", 1)
    return 0 if _append(out, b"]", 1) else -1


cdef void _hold_views(Views *text, tuple args, list held) except *:
    """Point `text` at the buffers of Text.kernel_args() (views, data buffers, validity, bit offset)."""
    cdef const uint8_t[::1] memory
    cdef Py_ssize_t k
    views, buffers, validity, bit_offset = args
    memory = views
    held.append(memory)
    text.views = &memory[0] if memory.shape[0] else NULL
    text.n_data = len(buffers)
    text.data = <const uint8_t **>malloc((text.n_data + 1) * sizeof(uint8_t *))
    text.sizes = <Py_ssize_t *>malloc((text.n_data + 1) * sizeof(Py_ssize_t))
    if text.data == NULL or text.sizes == NULL:
        raise MemoryError()
    for k in range(text.n_data):
        memory = buffers[k]
        held.append(memory)
        text.data[k] = &memory[0] if memory.shape[0] else NULL
        text.sizes[k] = memory.shape[0]
    text.validity = NULL
    text.bit_offset = bit_offset
    if validity is not None:
        memory = validity
        held.append(memory)
        text.validity = &memory[0] if memory.shape[0] else NULL


def json_rows(list columns, Py_ssize_t rows):
    """The rows as a JSON array of objects, as Polars' write_json writes a frame. `columns`: per
    column (key, 0, Text.kernel_args() of its values, None) for text; (key, 1, int32 fragment index
    per row (-1: null), (fragments joined, int64 offsets)) for values rendered already; (key, 2, the
    values' Text.kernel_args(), int64 list offsets (rows + 1)) for lists of text. `key`: the bytes
    before the value ('"name":', and the separating comma)."""
    cdef Py_ssize_t width = len(columns), k, item, strings
    cdef OutColumn *out_columns = <OutColumn *>malloc((width + 1) * sizeof(OutColumn))
    cdef Growable out = Growable(NULL, 0, 0)
    cdef list held = []
    cdef const int32_t[::1] index
    cdef const int64_t[::1] offsets
    cdef const uint8_t[::1] fragments
    cdef int outcome
    if out_columns == NULL:
        raise MemoryError()
    for k in range(width):
        out_columns[k].text.data = NULL
        out_columns[k].text.sizes = NULL
    try:
        for k in range(width):
            key, kind, values, extra = columns[k]
            held.append(key)
            out_columns[k].kind = kind
            out_columns[k].key = PyBytes_AS_STRING(key)
            out_columns[k].key_length = PyBytes_GET_SIZE(key)
            if kind == TEXT_COLUMN or kind == TEXT_LIST_COLUMN:
                _hold_views(&out_columns[k].text, values, held)
                if kind == TEXT_LIST_COLUMN:
                    offsets = extra
                    held.append(offsets)
                    if offsets.shape[0] != rows + 1:
                        raise ValueError("json_rows: list offsets of another length")
                    out_columns[k].list_offsets = &offsets[0]
                    for item in range(rows):
                        if offsets[item] > offsets[item + 1]:
                            raise ValueError("json_rows: list offsets that go back")
                    if rows and (offsets[0] < 0 or 16 * offsets[rows] > values[0].shape[0]):
                        raise ValueError("json_rows: list offsets outside the values")
                    strings = offsets[rows] if rows else 0
                elif 16 * rows > values[0].shape[0]:
                    raise ValueError("json_rows: a text column shorter than the rows")
                else:
                    strings = rows
                if values[2] is not None and (values[3] + strings + 7) // 8 > len(values[2]):
                    raise ValueError("json_rows: a validity bitmap shorter than the values")
            elif kind == RENDERED_COLUMN:
                index = values
                fragments = extra[0]
                offsets = extra[1]
                held.extend((index, fragments, offsets))
                if index.shape[0] < rows or offsets.shape[0] < 1:
                    raise ValueError("json_rows: a rendered column shorter than the rows")
                out_columns[k].index = &index[0] if index.shape[0] else NULL
                out_columns[k].fragments = <const char *>&fragments[0] if fragments.shape[0] else NULL
                out_columns[k].fragment_offsets = &offsets[0]
                out_columns[k].n_fragments = offsets.shape[0] - 1
            else:
                raise ValueError(f"json_rows: unknown column kind {kind}")
        with nogil:
            outcome = _rows(&out, out_columns, width, rows)
        if outcome == -1:
            raise MemoryError()
        if outcome == -2:
            raise ValueError("json_rows: a value outside its buffers")
        return PyBytes_FromStringAndSize(out.data, out.size)
    finally:
        for k in range(width):
            free(out_columns[k].text.data)
            free(out_columns[k].text.sizes)
        free(out_columns)
        free(out.data)
