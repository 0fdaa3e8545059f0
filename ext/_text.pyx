# cython: language_level=3
"""The reader's compiled text loops (grouper.io): GB text (GBK, GB18030, GB2312) to UTF-8 by table,
without the GIL. Its twin is Python's own codec: the tables are made from it (grouper.io._gb_tables),
and whatever they do not hold (a GB18030 four-byte character, a bad byte) is left to it."""
from libc.stdint cimport uint8_t, uint32_t


def gb_to_utf8(const uint8_t[::1] data, Py_ssize_t start, const uint32_t[::1] single,
               const uint32_t[::1] double, uint8_t[::1] out, Py_ssize_t written):
    """Decode data[start:] into out[written:] until the end or the first byte sequence the tables do
    not hold; returns (where decoding stopped in data, where the UTF-8 ends in out).

    A table entry is a character's UTF-8 (up to 3 bytes, first byte lowest) with its length in the top
    byte; 0: not held. `single[b]`: byte b alone; `double[(lead - 0x81) * 256 + trail]`: a two-byte
    character. `out` must have room for 3 bytes per byte of data left."""
    cdef Py_ssize_t i = start, j = written, n = data.shape[0]
    cdef uint32_t entry, length
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
            length = entry >> 24
            out[j] = entry & 0xFF
            if length > 1:
                out[j + 1] = (entry >> 8) & 0xFF
            if length > 2:
                out[j + 2] = (entry >> 16) & 0xFF
            j += length
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


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil

cdef int _one = 1
cdef bint _LITTLE_ENDIAN = (<uint8_t*>&_one)[0] == 1
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
    but for an item of more than 12 bytes, whose second word is its hash. Each slot is fetched before
    the first probe (the table of a national plan is a few MB: a lookup is a cache miss)."""
    cdef uint64_t keys_a[INTERN_AHEAD]
    cdef uint64_t keys_b[INTERN_AHEAD]
    cdef uint64_t slots[INTERN_AHEAD]
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
        slots[k] = key_hash(keys_a[k], keys_b[k]) & codes.mask
        __builtin_prefetch(codes.slots + slots[k] * SLOT_WIDTH)
    for k in range(m):
        ids[k] = probe_code(codes, slots[k], keys_a[k], keys_b[k], lengths[k], strings[k])


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
            if _LITTLE_ENDIAN:   # eight bytes at a time: a separator's byte is the lowest set bit's
                while at + 8 <= size:
                    memcpy(&word, s + at, 8)
                    found = _bytes_equal(word, first) | _bytes_equal(word, other)
                    while found:
                        sep_at = at + (__builtin_ctzll(found) >> 3)
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
        a, b = 0, size
        while a < b:
            k = _space_at(s + a, b - a)
            if k == 0:
                break
            a += k
        while b > a:
            k = _space_before(s + a, b - a)
            if k == 0:
                break
            b -= k
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
