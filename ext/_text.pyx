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
