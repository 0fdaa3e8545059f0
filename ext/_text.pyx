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
from libc.string cimport memcpy, memset
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef inline bint _maybe_space(uint8_t b) noexcept nogil:
    """ASCII White_Space (tab, line feed, vertical tab, form feed, carriage return, space), or a byte
    of a non-ASCII character, which may be Unicode whitespace: Polars' strip_chars and regex \\s."""
    return b >= 0x80 or b == 0x20 or (b >= 0x09 and b <= 0x0D)


cdef class _Views:
    cdef const uint8_t* views
    cdef const uint8_t** data
    cdef Py_ssize_t* sizes
    cdef Py_ssize_t n_data
    cdef const uint8_t* validity
    cdef Py_ssize_t bit_offset, n
    cdef list held

    def __cinit__(self, const uint8_t[::1] views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n):
        cdef const uint8_t[::1] mv
        cdef Py_ssize_t k
        if n < 0 or views.shape[0] < 16 * n or bit_offset < 0:
            raise ValueError("string views: bad arguments")
        self.held = [views]
        self.views = &views[0] if views.shape[0] else NULL
        self.n, self.bit_offset, self.n_data = n, bit_offset, len(buffers)
        self.data = <const uint8_t**>malloc((self.n_data + 1) * sizeof(uint8_t*))
        self.sizes = <Py_ssize_t*>malloc((self.n_data + 1) * sizeof(Py_ssize_t))
        if self.data == NULL or self.sizes == NULL:
            raise MemoryError()
        for k, buf in enumerate(buffers):
            mv = buf
            self.held.append(mv)
            self.data[k] = &mv[0] if mv.shape[0] else NULL
            self.sizes[k] = mv.shape[0]
        self.validity = NULL
        if validity is not None:
            mv = validity
            self.held.append(mv)
            if (bit_offset + n + 7) // 8 > mv.shape[0]:
                raise ValueError("validity bitmap too short")
            self.validity = &mv[0] if mv.shape[0] else NULL

    def __dealloc__(self):
        free(self.data)
        free(self.sizes)

    cdef inline const uint8_t* at(self, Py_ssize_t i, int32_t* length) noexcept nogil:
        """String i; NULL for a null (or a view that points outside its buffers)."""
        cdef const uint8_t* v = self.views + 16 * i
        cdef int32_t size, buf, off
        cdef Py_ssize_t b
        if self.validity != NULL:
            b = self.bit_offset + i
            if not (self.validity[b >> 3] >> (b & 7)) & 1:
                return NULL
        memcpy(&size, v, 4)
        length[0] = size
        if size <= 12:
            return v + 4
        memcpy(&buf, v + 8, 4)
        memcpy(&off, v + 12, 4)
        if buf < 0 or buf >= self.n_data or off < 0 or <Py_ssize_t>off + size > self.sizes[buf]:
            return NULL
        return self.data[buf] + off


def strip_needed(views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n) -> bool:
    """Whether stripping whitespace could change a string of the column: one starts or ends with a
    byte that may be whitespace (see _maybe_space). False: strip_chars() would return it unchanged."""
    cdef _Views text = _Views(views, buffers, validity, bit_offset, n)
    cdef Py_ssize_t i
    cdef int32_t size = 0
    cdef const uint8_t* s
    cdef bint found = False
    with nogil:
        for i in range(n):
            s = text.at(i, &size)
            if s == NULL:
                if text.validity == NULL or (text.validity[(text.bit_offset + i) >> 3] >> ((text.bit_offset + i) & 7)) & 1:
                    found = True   # a view outside its buffers: let Polars look
                    break
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
    cdef int32_t size = 0, k
    cdef const uint8_t* s
    cdef uint8_t mark
    if out.shape[0] < n:
        raise ValueError("out too short")
    with nogil:
        for i in range(n):
            s = text.at(i, &size)
            mark = 0
            if s == NULL:
                if not (text.validity != NULL and not (text.validity[(text.bit_offset + i) >> 3] >> ((text.bit_offset + i) & 7)) & 1):
                    mark = 1   # a view outside its buffers: let Polars look
            elif size > 0:
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
    cdef int32_t k
    memcpy(v, &zero, 8)
    memcpy(v + 8, &zero, 8)
    memcpy(v, &length, 4)
    if length <= 12:
        for k in range(length):
            v[4 + k] = item[k]
    else:
        memcpy(v + 4, item, 4)
        memcpy(v + 8, &buf, 4)
        memcpy(v + 12, &off, 4)


def split_codes(views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n, uint8_t separator,
                uint8_t other_separator, bint empty_is_none):
    """Each string split at `separator` and `other_separator` (ASCII bytes, so never inside a UTF-8
    character), as Polars' str.split gives it with the other separator replaced first: every item kept,
    empty ones too ('' → [''], 'A||B' → ['A', '', 'B']); a null reads as ''; with `empty_is_none`,
    '' (and null) gives no item at all. Returns (int64 list offsets [n + 1], the items' string views
    [16 per item]), an item of more than 12 bytes pointing into the buffer its string is in (so the
    items are an Arrow string_view array over the same data buffers); None when a view points outside
    its buffers (the caller lets Polars split)."""
    import numpy as np
    cdef _Views text = _Views(views, buffers, validity, bit_offset, n)
    cdef Py_ssize_t i, items = 0, j, start, at
    cdef int32_t size = 0, k, buf = -1, off = 0
    cdef const uint8_t* s
    cdef const uint8_t* v
    cdef uint8_t* out
    cdef uint8_t is_separator[256]
    cdef bint bad = False
    memset(is_separator, 0, 256)
    is_separator[separator] = 1
    is_separator[other_separator] = 1
    list_offsets = np.empty(n + 1, np.int64)
    cdef int64_t[::1] lo = list_offsets
    with nogil:
        lo[0] = 0
        for i in range(n):
            s = text.at(i, &size)
            if s == NULL:
                if text.validity == NULL or (text.validity[(text.bit_offset + i) >> 3] >> ((text.bit_offset + i) & 7)) & 1:
                    bad = True
                    break
                size = 0
            if size == 0 and empty_is_none:
                lo[i + 1] = items
                continue
            items += 1
            for k in range(size):
                items += is_separator[s[k]]
            lo[i + 1] = items
    if bad:
        return None
    item_views = np.empty(16 * items, np.uint8)
    if items == 0:
        return list_offsets, item_views
    cdef uint8_t[::1] written = item_views
    out = &written[0]
    with nogil:
        j = 0
        for i in range(n):
            if lo[i + 1] == lo[i]:
                continue
            s = text.at(i, &size)
            if s == NULL:
                size = 0
            if size > 12:   # only then can an item have more than 12 bytes: it is in this string's buffer
                v = text.views + 16 * i
                memcpy(&buf, v + 8, 4)
                memcpy(&off, v + 12, 4)
            start = 0
            for at in range(size):
                if is_separator[s[at]]:
                    _item_view(out + 16 * j, s + start, <int32_t>(at - start), buf, <int32_t>(off + start))
                    j += 1
                    start = at + 1
            _item_view(out + 16 * j, s + start, <int32_t>(size - start), buf, <int32_t>(off + start))
            j += 1
    return list_offsets, item_views
