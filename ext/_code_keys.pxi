# The plan's code table and how a string is looked up in it: one definition, included by
# _kernel.pyx (code_table, intern_codes) and _text.pyx (split_codes, which interns the items it
# splits when given the table). A key is a string's 16-byte string_view image as two words: the
# length and first 4 bytes (a), the next 8 zero-padded bytes (b) for up to 12 bytes, else b is the
# string's FNV-1a hash; the table is open addressing over those keys.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy


cdef inline uint64_t fnv1a(const uint8_t* s, int32_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef int32_t i
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    return h


cdef inline void view_key(const uint8_t* s, int32_t n, uint64_t* a, uint64_t* b) noexcept nogil:
    """The 16-byte string_view image of a string, as two words: length and the first 4 bytes
    (a); for strings of up to 12 bytes the other 8, zero-padded (b; 0 for longer strings)."""
    cdef uint8_t image[16]
    cdef int32_t k
    for k in range(16):
        image[k] = 0
    memcpy(image, &n, 4)
    memcpy(image + 4, s, n if n <= 12 else 4)
    memcpy(a, image, 8)
    memcpy(b, image + 8, 8)


cdef inline uint64_t key_hash(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint64_t h = a ^ (b * 0x9E3779B97F4A7C15ULL)
    h ^= h >> 33                # murmur3's finaliser: every input bit reaches the low bits
    h *= 0xFF51AFD7ED558CCDULL
    h ^= h >> 33
    h *= 0xC4CEB9FE1A85EC53ULL
    return h ^ (h >> 33)


cdef inline uint64_t string_hash(const uint8_t* s, int32_t n) noexcept nogil:
    cdef uint64_t a, b
    view_key(s, n, &a, &b)
    if n > 12:
        b = fnv1a(s, n)
    return key_hash(a, b)


# A slot of the code table: the key words of view_key, then the code id (0: empty slot).
cdef enum:
    SLOT_A = 0
    SLOT_B = 1
    SLOT_ID = 2
    SLOT_WIDTH = 3

cdef extern from *:
    void __builtin_prefetch(const void*) nogil

cdef enum:
    INTERN_AHEAD = 16     # strings whose table slots are fetched before the first of them is probed

cdef int _one = 1
cdef bint LITTLE_ENDIAN = (<uint8_t*>&_one)[0] == 1

cdef uint64_t _NO_SLOTS[SLOT_WIDTH]
cdef uint8_t _NO_BYTES[1]


cdef struct CodeTableC:
    const uint64_t* slots
    uint64_t mask
    const uint8_t* data          # the codes' bytes: code id c is data[offsets[c - 1]:offsets[c]]
    const int64_t* offsets


cdef int code_table_c(CodeTableC* c, const uint64_t[:, ::1] table, const uint8_t[::1] data,
                      const int64_t[::1] offsets) except -1:
    """`c` over the arrays of `code_table` (made by _kernel.code_table), checked: every slot's id
    names a code of `offsets`."""
    cdef Py_ssize_t j
    if table.shape[0] == 0 or table.shape[0] & (table.shape[0] - 1) or table.shape[1] != SLOT_WIDTH:
        raise ValueError("the table must have a power-of-two number of slots of 3 words")
    if offsets.shape[0] == 0 or offsets[offsets.shape[0] - 1] > data.shape[0]:
        raise ValueError("the code offsets do not fit the code bytes")
    for j in range(table.shape[0]):
        if table[j, SLOT_ID] > <uint64_t>(offsets.shape[0] - 1):
            raise ValueError(f"table slot {j} holds code id {table[j, SLOT_ID]}, beyond the codes")
    c.slots = &table[0, 0]
    c.mask = table.shape[0] - 1
    c.data = &data[0] if data.shape[0] > 0 else _NO_BYTES
    c.offsets = &offsets[0]
    return 0


cdef inline uint32_t probe_code(const CodeTableC* c, uint64_t slot, uint64_t a, uint64_t b, int32_t length,
                                const uint8_t* s) noexcept nogil:
    """The id of the string with key (a, b), `length` bytes at s, whose hash's slot is `slot`; 0
    when it is no code of the table."""
    cdef const uint64_t* t = c.slots
    cdef uint64_t code
    while True:
        code = t[slot * SLOT_WIDTH + SLOT_ID]
        if code == 0:
            return 0
        if t[slot * SLOT_WIDTH + SLOT_A] == a and (
                t[slot * SLOT_WIDTH + SLOT_B] == b if length <= 12
                else memcmp(c.data + c.offsets[code - 1], s, length) == 0):
            return <uint32_t>code
        slot = (slot + 1) & c.mask


cdef inline void intern_round(const CodeTableC* c, Py_ssize_t m, const uint64_t* keys_a, const uint64_t* keys_b,
                              const int32_t* lengths, const uint8_t** strings, uint32_t* ids) noexcept nogil:
    """ids[k] = the code id of key k (k < m <= INTERN_AHEAD; 0: no code of the table): first every
    key's slot, prefetched (the table of a national plan is a few MB: a lookup is a cache miss), then
    the probes, which then mostly find their slot in the cache."""
    cdef uint64_t slots[INTERN_AHEAD]
    cdef Py_ssize_t k
    for k in range(m):
        slots[k] = key_hash(keys_a[k], keys_b[k]) & c.mask
        __builtin_prefetch(c.slots + slots[k] * SLOT_WIDTH)
    for k in range(m):
        ids[k] = probe_code(c, slots[k], keys_a[k], keys_b[k], lengths[k], strings[k])
