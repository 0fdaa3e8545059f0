# cython: language_level=3
"""The reader's compiled text loops (grouper.io): GB text (GBK, GB18030, GB2312) to UTF-8 by table,
without the GIL. Its twin is Python's own codec: the tables are made from it (grouper.io._gb_tables),
and whatever they do not hold (a GB18030 four-byte character, a bad byte) is left to it."""
from libc.stdint cimport uint8_t, uint32_t



cdef inline uint32_t _put_utf8(uint8_t* out, uint32_t entry) noexcept nogil:
    """Write a table entry's character (its UTF-8, up to 3 bytes, first byte lowest; its length in the
    top byte) to out; its length."""
    cdef uint32_t length = entry >> 24
    out[0] = entry & 0xFF
    if length > 1:
        out[1] = (entry >> 8) & 0xFF
    if length > 2:
        out[2] = (entry >> 16) & 0xFF
    return length

def gb_to_utf8(const uint8_t[::1] data, Py_ssize_t start, const uint32_t[::1] single,
               const uint32_t[::1] double, uint8_t[::1] out, Py_ssize_t written):
    """Decode data[start:] into out[written:] until the end or the first byte sequence the tables do
    not hold; returns (where decoding stopped in data, where the UTF-8 ends in out).

    A table entry is a character's UTF-8 (up to 3 bytes, first byte lowest) with its length in the top
    byte; 0: not held. `single[b]`: byte b alone; `double[(lead - 0x81) * 256 + trail]`: a two-byte
    character. `out` must have room for 3 bytes per byte of data left."""
    cdef Py_ssize_t i = start, j = written, n = data.shape[0]
    cdef uint32_t entry
    cdef uint8_t b
    if start < 0 or written < 0 or single.shape[0] != 256 or double.shape[0] != 126 * 256 \
            or out.shape[0] - written < 3 * (n - start):
        raise ValueError("gb_to_utf8: bad arguments")
    with nogil:
        while i < n:
            b = data[i]
            if b < 0x80:
                out[j] = b
                i += 1
                j += 1
                continue
            entry = single[b]
            if entry != 0:
                i += 1
            else:
                if b < 0x81 or b > 0xFE or i + 1 >= n:
                    break
                entry = double[(b - 0x81) * 256 + data[i + 1]]
                if entry == 0:
                    break
                i += 2
            j += _put_utf8(&out[j], entry)
    return i, j


# ---- string_view columns (Polars' own layout, as grouper.engine.encode.Text hands it over) -------
# 16 bytes per string, the length first; up to 12 bytes inline, longer ones in a data buffer (index
# at byte 8, offset at byte 12). Checks that let the reader skip a Polars pass over a whole column.

from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy, memset
from libc.stdint cimport int32_t, int64_t, uint64_t

include "_code_keys.pxi"


cdef inline bint _maybe_space(uint8_t b) noexcept nogil:
    """ASCII White_Space (tab, line feed, vertical tab, form feed, carriage return, space), or a byte
    of a non-ASCII character, which may be Unicode whitespace: Polars' strip_chars and regex \\s."""
    return b >= 0x80 or b == 0x20 or (b >= 0x09 and b <= 0x0D)


cdef struct _Column:
    const uint8_t* views
    const uint8_t** data
    const Py_ssize_t* sizes
    Py_ssize_t n_data
    const uint8_t* validity
    Py_ssize_t bit_offset
    Py_ssize_t base       # the index of its first data buffer among all columns' buffers


cdef inline int _cell(const _Column* col, Py_ssize_t i, const uint8_t** s, int32_t* size, int32_t* buf,
                      int32_t* off) noexcept nogil:
    """Cell i of a column: 1 with its bytes (and, for more than 12 bytes, its buffer among all
    columns' buffers and its offset there), 0 when null, -1 when its view points outside its buffers."""
    cdef const uint8_t* v = col.views + 16 * i
    cdef int32_t length, b, o
    cdef Py_ssize_t bit
    if col.validity != NULL:
        bit = col.bit_offset + i
        if not (col.validity[bit >> 3] >> (bit & 7)) & 1:
            return 0
    memcpy(&length, v, 4)
    size[0] = length
    buf[0] = -1
    off[0] = 0
    if length <= 12:
        s[0] = v + 4
        return 1
    memcpy(&b, v + 8, 4)
    memcpy(&o, v + 12, 4)
    if b < 0 or b >= col.n_data or o < 0 or <Py_ssize_t>o + length > col.sizes[b]:
        return -1
    s[0] = col.data[b] + o
    buf[0] = <int32_t>(col.base + b)
    off[0] = o
    return 1


cdef class _Views:
    """A column's string views as the nogil helpers take them (`column`), its buffers held alive."""
    cdef _Column column
    cdef list held

    def __cinit__(self, const uint8_t[::1] views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n):
        cdef const uint8_t[::1] mv
        cdef Py_ssize_t k
        cdef const uint8_t** data
        cdef Py_ssize_t* sizes
        if n < 0 or views.shape[0] < 16 * n or bit_offset < 0:
            raise ValueError("string views: bad arguments")
        self.held = [views]
        self.column.views = &views[0] if views.shape[0] else NULL
        self.column.n_data, self.column.bit_offset, self.column.base = len(buffers), bit_offset, 0
        data = <const uint8_t**>malloc((self.column.n_data + 1) * sizeof(uint8_t*))
        sizes = <Py_ssize_t*>malloc((self.column.n_data + 1) * sizeof(Py_ssize_t))
        self.column.data, self.column.sizes = data, sizes
        if data == NULL or sizes == NULL:
            raise MemoryError()
        for k, buf in enumerate(buffers):
            mv = buf
            self.held.append(mv)
            data[k] = &mv[0] if mv.shape[0] else NULL
            sizes[k] = mv.shape[0]
        self.column.validity = NULL
        if validity is not None:
            mv = validity
            self.held.append(mv)
            if (bit_offset + n + 7) // 8 > mv.shape[0]:
                raise ValueError("validity bitmap too short")
            self.column.validity = &mv[0] if mv.shape[0] else NULL

    def __dealloc__(self):
        free(<void*>self.column.data)
        free(<void*>self.column.sizes)


def strip_needed(views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n) -> bool:
    """Whether stripping whitespace could change a string of the column: one starts or ends with a
    byte that may be whitespace (see _maybe_space). False: strip_chars() would return it unchanged."""
    cdef _Views text = _Views(views, buffers, validity, bit_offset, n)
    cdef Py_ssize_t i
    cdef int32_t size = 0, buf, off
    cdef int state
    cdef const uint8_t* s
    cdef bint found = False
    with nogil:
        for i in range(n):
            state = _cell(&text.column, i, &s, &size, &buf, &off)
            if state < 0:
                found = True   # a view outside its buffers: let Polars look
                break
            if state == 0:
                continue
            if size > 0 and (_maybe_space(s[0]) or _maybe_space(s[size - 1])):
                found = True
                break
    return found


def cleaning_candidates(views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n, uint8_t separator,
                        uint8_t[::1] out not None) -> int:
    """out[i] = 1 where string i may need the wide cells' cleaning (grouper.io._NEEDS_CLEANING: a
    whitespace character, two separators in a row, or a separator at the end): every row that matches
    is marked, and some that do not (non-ASCII text); returns how many are marked."""
    cdef _Views text = _Views(views, buffers, validity, bit_offset, n)
    cdef Py_ssize_t i, marked = 0
    cdef int32_t size = 0, k, buf, off
    cdef int state
    cdef const uint8_t* s
    cdef uint8_t mark
    if out.shape[0] < n:
        raise ValueError("out too short")
    with nogil:
        for i in range(n):
            state = _cell(&text.column, i, &s, &size, &buf, &off)
            mark = 0
            if state < 0:
                mark = 1   # a view outside its buffers: let Polars look
            elif state == 1 and size > 0:
                if s[size - 1] == separator:
                    mark = 1
                else:
                    for k in range(size):
                        if _maybe_space(s[k]) or (s[k] == separator and k + 1 < size and s[k + 1] == separator):
                            mark = 1
                            break
            out[i] = mark
            marked += mark
    return marked


cdef inline void _item_view(uint8_t* v, const uint8_t* item, int32_t length, int32_t buf, int32_t off) noexcept nogil:
    """The 16-byte string view of `item`: inline when it has up to 12 bytes, else (length, first 4
    bytes, buffer, offset)."""
    cdef uint64_t zero = 0
    memcpy(v, &zero, 8)
    memcpy(v + 8, &zero, 8)
    memcpy(v, &length, 4)
    if length <= 12:
        memcpy(v + 4, item, length)
    else:
        memcpy(v + 4, item, 4)
        memcpy(v + 8, &buf, 4)
        memcpy(v + 12, &off, 4)


cdef uint64_t _LOW7 = 0x7F7F7F7F7F7F7F7FULL


cdef inline uint64_t _bytes_equal(uint64_t word, uint64_t pattern) noexcept nogil:
    """0x80 in each byte of `word` equal to that byte of `pattern`, 0 in every other byte (exact: no
    false positives, unlike the usual has-zero-byte test)."""
    cdef uint64_t x = word ^ pattern
    return ~(((x & _LOW7) + _LOW7) | x | _LOW7)


cdef inline void _short_item_view(uint8_t* v, const uint8_t* item, int32_t length) noexcept nogil:
    """_item_view of an item of up to 12 bytes that has 12 readable bytes at `item` (on a little-endian
    machine): two word loads and a mask instead of a copy of `length` bytes."""
    cdef uint64_t head, a, b
    cdef uint32_t tail
    memcpy(&head, item, 8)
    memcpy(&tail, item + 8, 4)
    b = (head >> 32) | ((<uint64_t>tail) << 32)
    if length < 4:
        a = <uint32_t>length | ((head & ((1ULL << (8 * length)) - 1)) << 32) if length > 0 else 0
        b = 0
    else:
        a = <uint32_t>length | (head << 32)
        if length < 12:
            b &= (1ULL << (8 * (length - 4))) - 1
    memcpy(v, &a, 8)
    memcpy(v + 8, &b, 8)


cdef inline Py_ssize_t _separators_in(const uint8_t* s, int32_t size, uint64_t first, uint64_t other,
                                      const uint8_t* is_separator) noexcept nogil:
    """How many bytes of s[:size] are separators (`first`, `other`: the separators in every byte of a
    word), eight bytes at a time."""
    cdef uint64_t word
    cdef int32_t k = 0
    cdef Py_ssize_t count = 0
    while k + 8 <= size:
        memcpy(&word, s + k, 8)
        # (one bit per separator byte, bit 7: summed into the top byte by the multiply)
        count += (((_bytes_equal(word, first) | _bytes_equal(word, other)) >> 7) * 0x0101010101010101ULL) >> 56
        k += 8
    while k < size:
        count += is_separator[s[k]]
        k += 1
    return count


cdef void _intern_items(const CodeTableC* codes, const _Column* col, const uint8_t* views, Py_ssize_t m,
                        uint32_t* ids) noexcept nogil:
    """ids[k] = the code id of item k of `views` (k < m <= INTERN_AHEAD; 0: no code of the table),
    the views as _item_view writes them: zero-padded, so a view is its own key (see _code_keys.pxi),
    but for an item of more than 12 bytes, whose second word is its hash (intern_round)."""
    cdef uint64_t keys_a[INTERN_AHEAD]
    cdef uint64_t keys_b[INTERN_AHEAD]
    cdef int32_t lengths[INTERN_AHEAD]
    cdef const uint8_t* strings[INTERN_AHEAD]
    cdef const uint8_t* v
    cdef int32_t buf, off
    cdef Py_ssize_t k
    for k in range(m):
        v = views + 16 * k
        memcpy(&lengths[k], v, 4)
        memcpy(&keys_a[k], v, 8)
        if lengths[k] <= 12:
            memcpy(&keys_b[k], v + 8, 8)
            strings[k] = v + 4
        else:
            memcpy(&buf, v + 8, 4)
            memcpy(&off, v + 12, 4)
            strings[k] = col.data[buf - col.base] + off
            keys_b[k] = fnv1a(strings[k], lengths[k])
    intern_round(codes, m, keys_a, keys_b, lengths, strings, ids)


def split_codes(views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n, uint8_t separator,
                uint8_t other_separator, bint empty_is_none, codes=None):
    """Each string split at `separator` and `other_separator` (ASCII bytes, so never inside a UTF-8
    character), as Polars' str.split gives it with the other separator replaced first: every item kept,
    empty ones too ('' → [''], 'A||B' → ['A', '', 'B']); a null reads as ''; with `empty_is_none`,
    '' (and null) gives no item at all. Returns (int64 list offsets [n + 1], the items' string views
    [16 per item]), an item of more than 12 bytes pointing into the buffer its string is in (so the
    items are an Arrow string_view array over the same data buffers); None when a view points outside
    its buffers (the caller lets Polars split).

    With `codes`, the (table, bytes, offsets) of a plan's code table (_kernel.code_table), each item
    is also looked up there as it is split, and a third array is returned: uint32 code ids, one per
    item, exactly what _kernel.intern_codes gives for the items (0: not a code of the plan)."""
    import numpy as np
    cdef _Views text = _Views(views, buffers, validity, bit_offset, n)
    cdef Py_ssize_t i, items = 0, j, start, at, sep_at, interned = 0
    cdef int32_t size = 0, buf = -1, off = 0
    cdef uint64_t first = 0x0101010101010101ULL * separator, other = 0x0101010101010101ULL * other_separator
    cdef uint64_t word, found
    cdef int state
    cdef const uint8_t* s
    cdef uint8_t* out
    cdef uint8_t is_separator[256]
    cdef bint bad = False, interning = codes is not None
    cdef CodeTableC table
    cdef uint32_t[::1] ids_view
    cdef uint32_t* ids_out = NULL
    memset(&table, 0, sizeof(CodeTableC))
    if interning:
        code_table_c(&table, codes[0], codes[1], codes[2])
    memset(is_separator, 0, 256)
    is_separator[separator] = 1
    is_separator[other_separator] = 1
    list_offsets = np.empty(n + 1, np.int64)
    cdef int64_t[::1] lo = list_offsets
    with nogil:
        lo[0] = 0
        for i in range(n):
            state = _cell(&text.column, i, &s, &size, &buf, &off)
            if state < 0:
                bad = True
                break
            if state == 0:
                size = 0
            if size == 0 and empty_is_none:
                lo[i + 1] = items
                continue
            items += 1 + _separators_in(s, size, first, other, is_separator)
            lo[i + 1] = items
    if bad:
        return None
    item_views = np.empty(16 * items, np.uint8)
    ids = np.empty(items if interning else 0, np.uint32)
    if items == 0:
        return (list_offsets, item_views, ids) if interning else (list_offsets, item_views)
    cdef uint8_t[::1] written = item_views
    out = &written[0]
    if interning:
        ids_view = ids
        ids_out = &ids_view[0]
    with nogil:
        j = 0
        for i in range(n):
            if lo[i + 1] == lo[i]:
                continue
            if _cell(&text.column, i, &s, &size, &buf, &off) != 1:
                size = 0
            start = 0
            at = 0
            if LITTLE_ENDIAN:   # eight bytes at a time: a separator's byte is the lowest set bit's
                while at + 8 <= size:
                    memcpy(&word, s + at, 8)
                    found = _bytes_equal(word, first) | _bytes_equal(word, other)
                    while found:
                        sep_at = at + (grouper_lowest_bit(found) >> 3)
                        if sep_at - start <= 12 and start + 12 <= size:
                            _short_item_view(out + 16 * j, s + start, <int32_t>(sep_at - start))
                        else:
                            _item_view(out + 16 * j, s + start, <int32_t>(sep_at - start), buf, <int32_t>(off + start))
                        j += 1
                        start = sep_at + 1
                        found &= found - 1
                    at += 8
            while at < size:
                if is_separator[s[at]]:
                    _item_view(out + 16 * j, s + start, <int32_t>(at - start), buf, <int32_t>(off + start))
                    j += 1
                    start = at + 1
                at += 1
            _item_view(out + 16 * j, s + start, <int32_t>(size - start), buf, <int32_t>(off + start))
            j += 1
            while interning and j - interned >= INTERN_AHEAD:   # the views just written, still in the cache
                _intern_items(&table, &text.column, out + 16 * interned, INTERN_AHEAD, ids_out + interned)
                interned += INTERN_AHEAD
        if interning and j > interned:
            _intern_items(&table, &text.column, out + 16 * interned, j - interned, ids_out + interned)
    return (list_offsets, item_views, ids) if interning else (list_offsets, item_views)


# ---- the wide shape: a row's code cells → its code list (grouper.io._wide_lists) ----------------

cdef inline int32_t _space_at(const uint8_t* s, int32_t n) noexcept nogil:
    """Bytes of the Unicode White_Space character s starts with (what Polars' strip_chars and regex
    \\s take for whitespace), 0 when it starts with none."""
    cdef uint8_t b = s[0]
    if b == 0x20 or (b >= 0x09 and b <= 0x0D):
        return 1
    if b == 0xC2 and n >= 2 and (s[1] == 0x85 or s[1] == 0xA0):
        return 2
    if n >= 3:
        if b == 0xE1 and s[1] == 0x9A and s[2] == 0x80:
            return 3
        if b == 0xE2 and s[1] == 0x80 and (s[2] <= 0x8A or s[2] == 0xA8 or s[2] == 0xA9 or s[2] == 0xAF):
            return 3   # U+2000–U+200A, U+2028, U+2029, U+202F (s[2] is a continuation byte: >= 0x80)
        if b == 0xE2 and s[1] == 0x81 and s[2] == 0x9F:
            return 3
        if b == 0xE3 and s[1] == 0x80 and s[2] == 0x80:
            return 3
    return 0


cdef inline int32_t _space_before(const uint8_t* s, int32_t n) noexcept nogil:
    """Bytes of the White_Space character s[:n] ends with, 0 when it ends with none."""
    cdef uint8_t b = s[n - 1]
    if b < 0x80:
        return _space_at(s + n - 1, 1)
    if n >= 2 and s[n - 2] == 0xC2:
        return _space_at(s + n - 2, 2)
    if n >= 3:
        return _space_at(s + n - 3, 3)
    return 0


cdef inline (int32_t, int32_t) _stripped(const uint8_t* s, int32_t length) noexcept nogil:
    """(start, end) of s[:length] without the White_Space it starts and ends with (_space_at)."""
    cdef int32_t a = 0, got
    while a < length:
        got = _space_at(s + a, length - a)
        if got == 0:
            break
        a += got
    while length > a:
        got = _space_before(s + a, length - a)
        if got == 0:
            break
        length -= got
    return a, length


cdef Py_ssize_t _wide_row(const _Column* columns, Py_ssize_t n_columns, Py_ssize_t i, bint empty_is_none,
                          uint8_t* out) noexcept nogil:
    """The items of row i, their views written to out: one per cell, the principal always ('' when
    null), the other cells when not null; each stripped of whitespace; the first item always kept, a
    later one only when not empty (what grouper.io._split_wide's cleaning does to the joined text);
    with `empty_is_none`, a row of one empty item has none. -1 when a cell's view points outside its
    buffers."""
    cdef const uint8_t* s
    cdef Py_ssize_t c, count = 0
    cdef int32_t size = 0, buf = -1, off = 0, a, b, k, first_size = -1, found
    for c in range(n_columns):
        found = _cell(&columns[c], i, &s, &size, &buf, &off)
        if found < 0:
            return -1
        if found == 0:
            if c > 0:
                continue
            s, size, buf, off = <const uint8_t*>"", 0, -1, 0
        a, b = _stripped(s, size)
        if count == 0 or b > a:
            _item_view(out + 16 * count, s + a, b - a, buf, off + a)
            if count == 0:
                first_size = b - a
            count += 1
    if empty_is_none and count == 1 and first_size == 0:
        return 0
    return count


cdef bint _holds(const _Column* col, Py_ssize_t n, uint8_t byte) noexcept nogil:
    """Whether a string of the column holds `byte` (null or unreadable ones aside)."""
    cdef const uint8_t* s
    cdef int32_t size = 0, buf, off
    cdef Py_ssize_t i
    for i in range(n):
        if _cell(col, i, &s, &size, &buf, &off) == 1 and size > 0 and memchr(s, byte, size) != NULL:
            return True
    return False


def wide_lists(list columns, Py_ssize_t n, uint8_t separator, bint empty_is_none, Py_ssize_t capacity):
    """The code lists of wide rows: `columns` the (views, buffers, validity, bit_offset) of the
    principal column, then of the other code columns, in order (see _wide_row): the cells joined with
    `separator` and split at it, as grouper.io does, when no cell holds the separator. Returns (int64
    list offsets [n + 1], the items' string views [16 per item]), an item of more than 12 bytes
    pointing into its column's buffer, counted over all columns' buffers in order (so the items are an
    Arrow string_view array over the buffers of every column, concatenated). `capacity`: the rows
    plus the other cells that are not null. None when a cell holds the separator (a control
    character: more items than cells) or a view points outside its buffers: the caller lets Polars
    do it."""
    import numpy as np
    cdef Py_ssize_t n_columns = len(columns), c, i, items = 0, base = 0, got
    cdef list held = []
    cdef _Views text
    cdef _Column* cols = <_Column*>malloc(max(n_columns, 1) * sizeof(_Column))
    cdef bint bad = False
    cdef uint8_t* out
    cdef int64_t* lo
    cdef int64_t[::1] offsets_view
    cdef uint8_t[::1] written
    if cols == NULL:
        raise MemoryError()
    try:
        for c, (views, buffers, validity, bit_offset) in enumerate(columns):
            text = _Views(views, buffers, validity, bit_offset, n)
            held.append(text)
            cols[c] = text.column
            cols[c].base = base
            base += text.column.n_data
        list_offsets = np.empty(n + 1, np.int64)
        offsets_view = list_offsets
        lo = &offsets_view[0]
        item_views = np.empty(16 * max(capacity, 1), np.uint8)
        written = item_views
        out = &written[0]
        with nogil:
            for c in range(n_columns):
                if _holds(&cols[c], n, separator):
                    bad = True
                    break
            lo[0] = 0
            for i in range(n):
                if bad:
                    break
                got = _wide_row(cols, n_columns, i, empty_is_none, out + 16 * items) \
                    if items + n_columns <= capacity or _fits(cols, n_columns, i, capacity - items) else -1
                if got < 0:
                    bad = True
                    break
                items += got
                lo[i + 1] = items
        if bad:
            return None
        return list_offsets, item_views[:16 * items]
    finally:
        free(cols)


cdef bint _fits(const _Column* columns, Py_ssize_t n_columns, Py_ssize_t i, Py_ssize_t room) noexcept nogil:
    """Whether row i's items (at most one per cell present, the principal always) fit in `room`."""
    cdef const uint8_t* s
    cdef int32_t size = 0, buf, off
    cdef Py_ssize_t c, cells = 1
    for c in range(1, n_columns):
        if _cell(&columns[c], i, &s, &size, &buf, &off) != 0:
            cells += 1
    return cells <= room


# ---- GB CSV records straight to the columns the reader needs (grouper.io._GbRecords) --------------
# GB encodings never use the bytes of '"', the separator or a line break inside a character (a lead
# byte is 0x81-0xFE, a trail 0x40-0xFE), so the records of a GB file are found on its bytes. A cell
# of ASCII bytes is its own UTF-8: its view points into the file's bytes (no transcoding, no copy);
# a cell with other characters, or with doubled quotes, is decoded into a side buffer. What this
# does not hold (a byte sequence the tables lack, a quote inside an unquoted cell, more cells than
# the header, a lone carriage return, a code cell with the join separator) stops it at that record:
# the caller reads on by Polars and Python's codec, which give the text and every error.

cdef enum:
    _ORD = 0
    _SEP = 1
    _LF = 2
    _CR = 3
    _QUOTE = 4
    _HIGH = 5
    _UNIT = 6         # the join separator of wide cells (grouper.io._CELL_SEPARATOR, 0x1F)

cdef enum:
    _FULL = 0
    _MORE = 1
    _DONE = 2
    _STOP = 3

# what read_gb_records returns as its first value
RECORDS_FULL = _FULL    # max_rows rows read; more may follow
RECORDS_MORE = _MORE    # the data ends inside a record: call again with more data from `end`
RECORDS_DONE = _DONE    # the data (the file's last bytes) is read to its end
RECORDS_STOP = _STOP    # a record at `end` this does not read: the caller reads from there

cdef enum:
    _PRESENT = 1      # not null: has bytes, or quoted
    _ESCAPED = 2      # quoted, with doubled quotes inside
    _WIDE = 4         # has bytes of 0x80 and above
    _JOINED = 8       # holds the join separator of wide cells


cdef struct _Span:
    Py_ssize_t start
    Py_ssize_t end
    int flags


cdef inline int _gb_char(const uint8_t* data, Py_ssize_t i, Py_ssize_t n, const uint32_t* single,
                         const uint32_t* double) noexcept nogil:
    """Bytes of the GB character at data[i] (a byte >= 0x80) the tables hold: 1 or 2; 0 when they
    hold none; -1 when the data ends after its first byte."""
    cdef uint8_t b = data[i]
    if single[b] != 0:
        return 1
    if b < 0x81 or b > 0xFE:
        return 0
    if i + 1 >= n:
        return -1
    return 2 if double[(b - 0x81) * 256 + data[i + 1]] != 0 else 0



cdef inline Py_ssize_t _past_gb_char(const uint8_t* d, Py_ssize_t i, Py_ssize_t n, bint at_end,
                                     const uint32_t* single, const uint32_t* double, int* status) noexcept nogil:
    """Where the GB character at d[i] ends; -1 when the tables hold none, `status` then set: _MORE when
    the data ends inside it and more follows, else _STOP."""
    cdef int got = _gb_char(d, i, n, single, double)
    if got <= 0:
        status[0] = _MORE if got < 0 and not at_end else _STOP
        return -1
    return i + got

cdef Py_ssize_t _decoded(const uint8_t* data, const _Span* cell, const uint32_t* single, const uint32_t* double,
                         uint8_t* out) noexcept nogil:
    """The cell's text as UTF-8 in out (doubled quotes made one, GB characters by the tables); its bytes."""
    cdef Py_ssize_t i = cell.start, j = 0
    cdef uint8_t b
    cdef uint32_t entry
    while i < cell.end:
        b = data[i]
        if b < 0x80:
            out[j] = b
            j += 1
            i += 2 if (b == 0x22 and cell.flags & _ESCAPED) else 1
            continue
        entry = single[b]
        if entry != 0:
            i += 1
        else:
            entry = double[(b - 0x81) * 256 + data[i + 1]]
            i += 2
        j += _put_utf8(out + j, entry)
    return j


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* Bit k set where p[k] (k < 64, k < avail) is the separator, a quote, a line feed, a carriage return,
       0x1F (the wide cells' join separator) or a byte >= 0x80: what ends or interrupts a CSV cell; bit k
       of *seps set where p[k] is the separator. */
    static inline uint64_t grouper_csv_specials(const uint8_t* p, Py_ssize_t avail, uint8_t sep, uint64_t* seps) {
        uint8_t padded[64];
        uint64_t m = 0, s = 0;
        int k;
        if (avail < 64) {
            memset(padded, 0, 64);
            memcpy(padded, p, avail > 0 ? (size_t)avail : 0);
            p = padded;
        }
    #if defined(__SSE2__)
        {
            __m128i vs = _mm_set1_epi8((char)sep), vq = _mm_set1_epi8('"');
            __m128i vl = _mm_set1_epi8('\\n'), vr = _mm_set1_epi8('\\r'), vu = _mm_set1_epi8(0x1F);
            for (k = 0; k < 4; k++) {
                __m128i x = _mm_loadu_si128((const __m128i*)(p + 16 * k));
                __m128i is_sep = _mm_cmpeq_epi8(x, vs);
                __m128i e = _mm_or_si128(_mm_or_si128(is_sep, _mm_cmpeq_epi8(x, vq)),
                                         _mm_or_si128(_mm_cmpeq_epi8(x, vl), _mm_cmpeq_epi8(x, vr)));
                e = _mm_or_si128(e, _mm_cmpeq_epi8(x, vu));
                m |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_or_si128(e, x)) << (16 * k);
                s |= (uint64_t)(uint16_t)_mm_movemask_epi8(is_sep) << (16 * k);
            }
        }
    #else
        for (k = 0; k < 64; k++) {
            uint8_t b = p[k];
            if (b == sep || b == '"' || b == '\\n' || b == '\\r' || b == 0x1F || b >= 0x80) m |= (uint64_t)1 << k;
            if (b == sep) s |= (uint64_t)1 << k;
        }
    #endif
        *seps = s;
        return m;
    }
    /* The 16-byte string view of s[:n], n <= 12 (inline, zero-padded); s[:12] may be read when it ends
       before `end`. */
    static inline void grouper_short_view(uint8_t* v, const uint8_t* s, int32_t n, const uint8_t* end) {
        uint8_t bytes[12] = {0};
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (s + 12 <= end) {
            uint64_t lo;
            uint32_t hi;
            memcpy(&lo, s, 8);
            memcpy(&hi, s + 8, 4);
            if (n < 8) {
                lo = n ? lo & (~(uint64_t)0 >> (64 - 8 * n)) : 0;
                hi = 0;
            } else {
                hi = n == 8 ? 0 : hi & (~(uint32_t)0 >> (32 - 8 * (n - 8)));
            }
            memcpy(v, &n, 4);
            memcpy(v + 4, &lo, 8);
            memcpy(v + 12, &hi, 4);
            return;
        }
    #endif
        memcpy(bytes, s, (size_t)n);
        memcpy(v, &n, 4);
        memcpy(v + 4, bytes, 12);
    }
    static inline int grouper_lowest_bit(uint64_t m) {
    #if defined(__GNUC__) || defined(__clang__)
        return __builtin_ctzll(m);
    #else
        int k = 0;
        while (!(m & 1)) { m >>= 1; k++; }
        return k;
    #endif
    }
    """
    uint64_t grouper_csv_specials(const uint8_t* p, Py_ssize_t avail, uint8_t sep, uint64_t* seps) nogil
    void grouper_short_view(uint8_t* v, const uint8_t* s, int32_t n, const uint8_t* end) nogil
    int grouper_lowest_bit(uint64_t m) nogil


cdef inline void _view(uint8_t* v, const uint8_t* s, int32_t length, int32_t buf, int32_t off,
                       const uint8_t* end) noexcept nogil:
    """_item_view, a short string copied by two word loads when s[:12] ends before `end`."""
    if length <= 12:
        grouper_short_view(v, s, length, end)
    else:
        _item_view(v, s, length, buf, off)


cdef struct _Scan:
    const uint8_t* d
    Py_ssize_t n
    uint8_t separator
    Py_ssize_t base       # the first byte of the block `mask` covers
    uint64_t mask         # the block's special bytes not passed yet
    uint64_t seps         # the block's separators


cdef inline Py_ssize_t _next_special(_Scan* scan, Py_ssize_t i) noexcept nogil:
    """Where the first byte at or after i that ends or interrupts a cell is (grouper_csv_specials),
    64 bytes looked at a time; n when none is left."""
    if i < scan.base or i >= scan.base + 64:
        if i >= scan.n:
            return scan.n
        scan.base = i
        scan.mask = grouper_csv_specials(scan.d + i, scan.n - i, scan.separator, &scan.seps)
    else:
        scan.mask &= (<uint64_t>0xFFFFFFFFFFFFFFFF) << (i - scan.base)
    while scan.mask == 0:
        scan.base += 64
        if scan.base >= scan.n:
            return scan.n
        scan.mask = grouper_csv_specials(scan.d + scan.base, scan.n - scan.base, scan.separator, &scan.seps)
    return scan.base + grouper_lowest_bit(scan.mask)


cdef inline bint _at_separator(const _Scan* scan, Py_ssize_t i) noexcept nogil:
    """Whether i, a position _next_special returned (< n), holds the separator: a bit test, no load."""
    return (scan.seps >> (i - scan.base)) & 1


def read_gb_records(const uint8_t[::1] data, Py_ssize_t start, bint at_end, uint8_t separator, Py_ssize_t width,
                    const int32_t[::1] slot_columns, const int32_t[::1] list_columns, const int32_t[::1] list_starts,
                    const int32_t[::1] proc_lists, const uint32_t[::1] single, const uint32_t[::1] double,
                    Py_ssize_t max_rows):
    """Read the CSV records of `data` from `start` (the first byte of a record; `width` cells each, as
    Polars reads them: an empty unquoted cell is null, a quoted one text, missing cells at the end
    null, a record with no text at all not a row) until `max_rows` rows.

    `slot_columns`: the cells wanted as text columns (0-based cell numbers). `list_columns[list_starts[k]:
    list_starts[k + 1]]`: the cells of code list k, principal first (as grouper.io._wide_lists makes
    them: each stripped of whitespace, the principal always an item, '' when null, another only when
    not empty; list k in `proc_lists` has no item when its only one is ''). `single`/`double`: the
    decoding tables of gb_to_utf8.

    Returns (status, end, rows, views [slots, 16 * max_rows], validity bitmaps [slots, (max_rows + 7) // 8],
    null counts [slots], list offsets [lists, max_rows + 1] (int64), [item views of each list], side
    buffer): see RECORDS_*; `end` is where the next record starts (or the record this did not read).
    A view of more than 12 bytes points into `data` (buffer 0) or the side buffer (buffer 1)."""
    import numpy as np
    cdef Py_ssize_t n = data.shape[0], n_slots = slot_columns.shape[0], n_lists = list_starts.shape[0] - 1
    cdef Py_ssize_t i, k, c, s, row_start, rows = 0, nf, cs, ce, used = 0, first, cap
    cdef Py_ssize_t item_counts[8]
    cdef int status = _DONE, flags, kind
    cdef bint any_text, stop = False, proc
    cdef uint8_t b
    cdef uint8_t cls[256]
    cdef int32_t length, a, z, w
    cdef const uint8_t* p
    cdef const uint8_t* d
    cdef uint8_t* v
    cdef _Span empty
    cdef _Scan scan
    if n_lists < 0 or n_lists > 8 or width < 1 or start < 0 or start > n or max_rows < 1 \
            or single.shape[0] != 256 or double.shape[0] != 126 * 256:
        raise ValueError("read_gb_records: bad arguments")
    for k in range(n_slots):
        if not 0 <= slot_columns[k] < width:
            raise ValueError("read_gb_records: bad slot column")
    for k in range(list_columns.shape[0]):
        if not 0 <= list_columns[k] < width:
            raise ValueError("read_gb_records: bad list column")
    for k in range(n_lists):
        if not 0 <= list_starts[k] <= list_starts[k + 1] <= list_columns.shape[0]:
            raise ValueError("read_gb_records: bad list starts")
    views = np.empty((max(n_slots, 1), 16 * max_rows), np.uint8)
    validity = np.zeros((max(n_slots, 1), (max_rows + 7) // 8), np.uint8)
    nulls = np.zeros(max(n_slots, 1), np.int64)
    list_offsets = np.zeros((max(n_lists, 1), max_rows + 1), np.int64)
    items = [np.empty(16 * max_rows * max(list_starts[k + 1] - list_starts[k], 1), np.uint8) for k in range(n_lists)]
    side = np.empty(3 * (n - start) + 16, np.uint8)
    cdef uint8_t[:, ::1] views_out = views
    cdef uint8_t[:, ::1] validity_out = validity
    cdef int64_t[::1] nulls_out = nulls
    cdef int64_t[:, ::1] offsets_out = list_offsets
    cdef uint8_t* item_out[8]
    cdef uint8_t[::1] one
    for k in range(n_lists):
        one = items[k]
        item_out[k] = &one[0]
        item_counts[k] = 0
    cdef uint8_t[::1] side_view = side
    cdef uint8_t* extra = &side_view[0]
    cdef const uint8_t* side_end = extra + side_view.shape[0]
    cdef _Span* cells = <_Span*>malloc(width * sizeof(_Span))
    cdef bint* proc_of = <bint*>malloc(max(n_lists, 1) * sizeof(bint))
    if cells == NULL or proc_of == NULL:
        free(cells)
        free(proc_of)
        raise MemoryError()
    for k in range(n_lists):
        proc_of[k] = False
    for k in range(proc_lists.shape[0]):
        if 0 <= proc_lists[k] < n_lists:
            proc_of[proc_lists[k]] = True
    memset(cls, _ORD, 256)
    for k in range(0x80, 0x100):
        cls[k] = _HIGH
    cls[separator] = _SEP
    cls[0x0A] = _LF
    cls[0x0D] = _CR
    cls[0x22] = _QUOTE
    cls[0x1F] = _UNIT
    empty.start, empty.end, empty.flags = 0, 0, 0
    d = &data[0] if n else <const uint8_t*>""
    scan.d, scan.n, scan.separator, scan.base, scan.mask = d, n, separator, -64, 0
    i = start
    try:
        with nogil:
            while True:
                if rows == max_rows:
                    status = _FULL
                    break
                if i >= n:
                    status = _DONE if at_end else _MORE
                    break
                # ---- one record: its cells' spans
                row_start = i
                nf = 0
                any_text = False
                while True:
                    if i < n and d[i] == 0x22:
                        i += 1
                        cs = i
                        flags = _PRESENT
                        while True:
                            i = _next_special(&scan, i)
                            if i >= n:
                                status = _STOP if at_end else _MORE   # never closed
                                stop = True
                                break
                            b = d[i]
                            if b >= 0x80:
                                i = _past_gb_char(d, i, n, at_end, &single[0], &double[0], &status)
                                if i < 0:
                                    stop = True
                                    break
                                flags |= _WIDE
                                continue
                            if b != 0x22:   # a separator, line break or 0x1F inside the quotes
                                if b == 0x1F:
                                    flags |= _JOINED
                                i += 1
                                continue
                            if i + 1 < n and d[i + 1] == 0x22:
                                flags |= _ESCAPED
                                i += 2
                                continue
                            if i + 1 >= n and not at_end:
                                status = _MORE
                                stop = True
                                break
                            ce = i
                            i += 1
                            break
                        if stop:
                            break
                        kind = cls[d[i]] if i < n else _ORD
                        if i < n and kind != _SEP and kind != _LF and kind != _CR:
                            status = _STOP   # text after the closing quote
                            stop = True
                            break
                    else:
                        cs = i
                        flags = 0
                        while True:
                            i = _next_special(&scan, i)
                            if i >= n:
                                break
                            if _at_separator(&scan, i):
                                kind = _SEP
                                break
                            kind = cls[d[i]]
                            if kind == _HIGH:
                                i = _past_gb_char(d, i, n, at_end, &single[0], &double[0], &status)
                                if i < 0:
                                    stop = True
                                    break
                                flags |= _WIDE
                                continue
                            if kind == _UNIT:
                                flags |= _JOINED
                                i += 1
                                continue
                            if kind == _QUOTE:
                                status = _STOP   # a quote inside an unquoted cell
                                stop = True
                            break
                        if stop:
                            break
                        if i >= n and not at_end:
                            status = _MORE
                            stop = True
                            break
                        ce = i
                        flags |= <int>(ce > cs)   # _PRESENT, without a branch
                    if nf >= width:
                        status = _STOP   # more cells than the header
                        stop = True
                        break
                    cells[nf].start, cells[nf].end, cells[nf].flags = cs, ce, flags
                    any_text |= flags & _PRESENT
                    nf += 1
                    if i >= n:   # at_end: the file's last record, without a line break
                        break
                    if kind == _SEP:   # (kind: the class of d[i], where the cell ended)
                        i += 1
                        continue
                    if kind == _LF:
                        i += 1
                        break
                    # a carriage return: only before a line feed
                    if i + 1 < n and d[i + 1] == 0x0A:
                        i += 2
                        break
                    status = _MORE if i + 1 >= n and not at_end else _STOP
                    stop = True
                    break
                if stop:
                    i = row_start
                    break
                if not any_text:
                    continue   # a blank line, or separators only: not a record
                for c in range(nf, width):
                    cells[c] = empty
                # ---- the row's code lists (first: they may stop it)
                for k in range(n_lists):
                    first = item_counts[k]
                    cap = first
                    for c in range(list_starts[k], list_starts[k + 1]):
                        flags = cells[list_columns[c]].flags
                        if not flags & _PRESENT:
                            if c > list_starts[k]:
                                continue
                            p, length = <const uint8_t*>"", 0
                            w, a = -1, 0
                        elif flags & (_ESCAPED | _WIDE):
                            p = extra + used
                            length = <int32_t>_decoded(d, &cells[list_columns[c]], &single[0], &double[0], extra + used)
                            used += length
                            w, a = 1, <int32_t>(p - extra)
                        else:
                            p = d + cells[list_columns[c]].start
                            length = <int32_t>(cells[list_columns[c]].end - cells[list_columns[c]].start)
                            w, a = 0, <int32_t>cells[list_columns[c]].start
                        if flags & _JOINED:
                            stop = True   # the join separator (grouper.io._CELL_SEPARATOR) in a cell
                            break
                        z = 0
                        if length and 0x20 < p[0] < 0x80 and 0x20 < p[length - 1] < 0x80:
                            pass   # nothing to strip
                        else:
                            z, length = _stripped(p, length)
                        if cap == first or length > z:
                            _view(item_out[k] + 16 * cap, p + z, length - z, w, a + z, d + n if w == 0 else side_end)
                            cap += 1
                    if stop:
                        break
                    if proc_of[k] and cap == first + 1 and (<int32_t*>(item_out[k] + 16 * first))[0] == 0:
                        cap = first
                    item_counts[k] = cap
                    offsets_out[k, rows + 1] = cap
                if stop:
                    status = _STOP
                    for k in range(n_lists):
                        item_counts[k] = offsets_out[k, rows]
                    i = row_start
                    break
                # ---- the text columns
                for s in range(n_slots):
                    v = &views_out[s, 16 * rows]
                    flags = cells[slot_columns[s]].flags
                    if not flags & _PRESENT:
                        memset(v, 0, 16)
                        nulls_out[s] += 1
                        continue
                    validity_out[s, rows >> 3] |= 1 << (rows & 7)
                    if flags & (_ESCAPED | _WIDE):
                        length = <int32_t>_decoded(d, &cells[slot_columns[s]], &single[0], &double[0], extra + used)
                        _view(v, extra + used, length, 1, <int32_t>used, side_end)
                        used += length
                    else:
                        cs = cells[slot_columns[s]].start
                        _view(v, d + cs, <int32_t>(cells[slot_columns[s]].end - cs), 0, <int32_t>cs, d + n)
                rows += 1
    finally:
        free(cells)
        free(proc_of)
    return (status, i, rows, views, validity, nulls, list_offsets,
            [items[k][:16 * item_counts[k]] for k in range(n_lists)], side[:used])
