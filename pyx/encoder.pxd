# cython: language_level=3
"""cypid.pyx.encoder: AMQP 1.0 values written -- WriteBuffer and encode_value (built on cypid.pyx.values).

cypid.pyx.frames and cypid.pyx.sections cimport what is declared here, and cypid.pyx.codec
re-exports it.  The wb_* writers and the raw put_* encoders are inline: a caller in another module
writes bytes without a call.
"""
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from cypid.pyx.frb cimport store_u16, store_u32, store_u64


@cython.freelist(16)
cdef class WriteBuffer:
    """A growable byte buffer over malloc'd memory; write with the wb_* inline helpers. (Not final:
    the engine's output, engine_core.OutputBuffer, keeps its bytes in a bytes object.)"""
    cdef char* buf           # malloc'd storage
    cdef Py_ssize_t size     # capacity of buf
    cdef Py_ssize_t len      # bytes written so far
    cdef int _grow(self, Py_ssize_t extra) except -1
    cdef bytes to_bytes(self)


cpdef bytes encode(object value)
cdef int encode_value(WriteBuffer wb, object value, int depth) except -1
cdef int encode_map(WriteBuffer wb, dict m, int depth) except -1
cdef int finish_compound(WriteBuffer wb, Py_ssize_t start, Py_ssize_t count,
                         uint8_t code8, uint8_t code32) except -1


cdef inline int wb_reserve(WriteBuffer wb, Py_ssize_t n) except -1:
    """Make room for n more bytes (buf may move: re-read wb.buf afterwards)."""
    if n > wb.size - wb.len:
        wb._grow(n)
    return 0


cdef inline int wb_u8(WriteBuffer wb, uint8_t v) except -1:
    if wb.len >= wb.size:
        wb._grow(1)
    wb.buf[wb.len] = <char>v
    wb.len += 1
    return 0


cdef inline int wb_u16(WriteBuffer wb, uint16_t v) except -1:
    wb_reserve(wb, 2)
    store_u16(wb.buf + wb.len, v)
    wb.len += 2
    return 0


cdef inline int wb_u32(WriteBuffer wb, uint32_t v) except -1:
    wb_reserve(wb, 4)
    store_u32(wb.buf + wb.len, v)
    wb.len += 4
    return 0


cdef inline int wb_u64(WriteBuffer wb, uint64_t v) except -1:
    wb_reserve(wb, 8)
    store_u64(wb.buf + wb.len, v)
    wb.len += 8
    return 0


cdef inline int wb_write(WriteBuffer wb, const char* p, Py_ssize_t n) except -1:
    wb_reserve(wb, n)
    memcpy(wb.buf + wb.len, p, <size_t>n)
    wb.len += n
    return 0


cdef inline Py_ssize_t begin_compound(WriteBuffer wb) except -1:
    """Leave room for a list8/map8/array8 header; finish_compound fills it in (or widens it)."""
    cdef Py_ssize_t start = wb.len
    wb_reserve(wb, 3)
    wb.len += 3
    return start


# -- raw encoders into a caller's stack buffer (fixed-layout performatives and headers) ----

cdef inline Py_ssize_t put_uint(char* p, uint32_t v) noexcept nogil:
    """A uint in its smallest form (uint0, smalluint, uint); returns the bytes written (1, 2 or 5)."""
    if v == 0:
        p[0] = <char>0x43
        return 1
    if v < 256:
        p[0] = <char>0x52
        p[1] = <char>v
        return 2
    p[0] = <char>0x70
    store_u32(p + 1, v)
    return 5


cdef inline Py_ssize_t put_list_header(char* p, Py_ssize_t payload, uint32_t count) noexcept nogil:
    """List header for `payload` bytes of items: 3 bytes (list8) or 9 (list32)."""
    if payload < 255:
        p[0] = <char>0xc0
        p[1] = <char>(payload + 1)
        p[2] = <char>count
        return 3
    p[0] = <char>0xd0
    store_u32(p + 1, <uint32_t>(payload + 4))
    store_u32(p + 5, count)
    return 9
