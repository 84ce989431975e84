# cython: language_level=3
"""A read cursor over bytes that allocates nothing, and big-endian load/store helpers.

``FRBuffer`` is a pointer and a remaining length.  The helpers here never raise: a reader
asks ``frb_has(b, n)`` first (the codec turns a refusal into ``DecodeError`` with the offset),
then takes the bytes with ``frb_take``.  setup.py turns boundscheck off for the whole tree, so
the check before every take is the only thing standing between a peer and an out-of-bounds read.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef struct FRBuffer:
    const char* base    # start of the input; offsets in error messages are relative to it
    const char* buf     # next unread byte
    Py_ssize_t len      # bytes left from buf (a compound value narrows it to its own size)
    Py_ssize_t budget   # zero-width array elements still allowed (caps 0x40/0x41/... bombs)


cdef inline void frb_init(FRBuffer* b, const char* data, Py_ssize_t n) noexcept nogil:
    b.base = data
    b.buf = data
    b.len = n
    b.budget = 1 << 20


cdef inline Py_ssize_t frb_offset(const FRBuffer* b) noexcept nogil:
    """Offset of the next unread byte from the start of the input."""
    return b.buf - b.base


cdef inline bint frb_has(const FRBuffer* b, Py_ssize_t n) noexcept nogil:
    return n >= 0 and n <= b.len


cdef inline const char* frb_take(FRBuffer* b, Py_ssize_t n) noexcept nogil:
    """Consume n bytes (the caller has checked frb_has) and return where they start."""
    cdef const char* p = b.buf
    b.buf += n
    b.len -= n
    return p


# -- big-endian loads (unaligned-safe; compilers turn these into a load plus bswap) --------

cdef inline uint16_t load_u16(const char* p) noexcept nogil:
    cdef const uint8_t* q = <const uint8_t*>p
    return (<uint16_t>q[0] << 8) | q[1]


cdef inline uint32_t load_u32(const char* p) noexcept nogil:
    cdef const uint8_t* q = <const uint8_t*>p
    return ((<uint32_t>q[0] << 24) | (<uint32_t>q[1] << 16) |
            (<uint32_t>q[2] << 8) | <uint32_t>q[3])


cdef inline uint64_t load_u64(const char* p) noexcept nogil:
    return (<uint64_t>load_u32(p) << 32) | load_u32(p + 4)


# -- big-endian stores -------------------------------------------------------------------

cdef inline void store_u16(char* p, uint16_t v) noexcept nogil:
    p[0] = <char>(v >> 8)
    p[1] = <char>v


cdef inline void store_u32(char* p, uint32_t v) noexcept nogil:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


cdef inline void store_u64(char* p, uint64_t v) noexcept nogil:
    store_u32(p, <uint32_t>(v >> 32))
    store_u32(p + 4, <uint32_t>v)
