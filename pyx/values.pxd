# cython: language_level=3
"""cypid.pyx.values: AMQP 1.0 values -- the type model and decoding.

The bottom of the codec: cypid.pyx.encoder, cypid.pyx.frames and cypid.pyx.sections cimport what is
declared here, and cypid.pyx.codec re-exports it (docs/INTERFACES.md, codec section).  The read helpers below are
``inline`` so that the frame and section scanners, in other modules, read bytes without a call;
their error branches call cold functions exported from values.pyx (``raise_truncated``...).
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from cypid.pyx.frb cimport FRBuffer, frb_init, frb_offset, frb_has, frb_take


# AMQP 1.0 constructor bytes (types.xml).
cdef enum TypeCode:
    TC_DESCRIBED = 0x00
    TC_NULL = 0x40
    TC_BOOL = 0x56
    TC_TRUE = 0x41
    TC_FALSE = 0x42
    TC_UBYTE = 0x50
    TC_USHORT = 0x60
    TC_UINT = 0x70
    TC_SMALLUINT = 0x52
    TC_UINT0 = 0x43
    TC_ULONG = 0x80
    TC_SMALLULONG = 0x53
    TC_ULONG0 = 0x44
    TC_BYTE = 0x51
    TC_SHORT = 0x61
    TC_INT = 0x71
    TC_SMALLINT = 0x54
    TC_LONG = 0x81
    TC_SMALLLONG = 0x55
    TC_FLOAT = 0x72
    TC_DOUBLE = 0x82
    TC_DECIMAL32 = 0x74
    TC_DECIMAL64 = 0x84
    TC_DECIMAL128 = 0x94
    TC_CHAR = 0x73
    TC_TIMESTAMP = 0x83
    TC_UUID = 0x98
    TC_VBIN8 = 0xa0
    TC_VBIN32 = 0xb0
    TC_STR8 = 0xa1
    TC_STR32 = 0xb1
    TC_SYM8 = 0xa3
    TC_SYM32 = 0xb3
    TC_LIST0 = 0x45
    TC_LIST8 = 0xc0
    TC_LIST32 = 0xd0
    TC_MAP8 = 0xc1
    TC_MAP32 = 0xd1
    TC_ARRAY8 = 0xe0
    TC_ARRAY32 = 0xf0


# Descriptor codes (domain 0x00000000) of performatives, outcomes, termini and sections.
cdef enum Descriptor:
    D_OPEN = 0x10
    D_BEGIN = 0x11
    D_ATTACH = 0x12
    D_FLOW = 0x13
    D_TRANSFER = 0x14
    D_DISPOSITION = 0x15
    D_DETACH = 0x16
    D_END = 0x17
    D_CLOSE = 0x18
    D_ERROR = 0x1d
    D_RECEIVED = 0x23
    D_ACCEPTED = 0x24
    D_REJECTED = 0x25
    D_RELEASED = 0x26
    D_MODIFIED = 0x27
    D_SOURCE = 0x28
    D_TARGET = 0x29
    D_DELETE_ON_CLOSE = 0x2b
    D_DELETE_ON_NO_LINKS = 0x2c
    D_DELETE_ON_NO_MESSAGES = 0x2d
    D_DELETE_ON_NO_LINKS_OR_MESSAGES = 0x2e
    D_COORDINATOR = 0x30
    D_DECLARE = 0x31
    D_DISCHARGE = 0x32
    D_DECLARED = 0x33
    D_TRANSACTIONAL_STATE = 0x34
    D_SASL_MECHANISMS = 0x40
    D_SASL_INIT = 0x41
    D_SASL_CHALLENGE = 0x42
    D_SASL_RESPONSE = 0x43
    D_SASL_OUTCOME = 0x44
    D_HEADER = 0x70
    D_DELIVERY_ANNOTATIONS = 0x71
    D_MESSAGE_ANNOTATIONS = 0x72
    D_PROPERTIES = 0x73
    D_APPLICATION_PROPERTIES = 0x74
    D_DATA = 0x75
    D_AMQP_SEQUENCE = 0x76
    D_AMQP_VALUE = 0x77
    D_FOOTER = 0x78


cdef enum:
    MAX_DEPTH = 100          # nesting of lists/maps/arrays/described values a decoder accepts


# =========================================================================================
# The value model
# =========================================================================================

cdef class Described:
    """A described value: descriptor (ulong or symbol) and value."""
    cdef public object descriptor
    cdef public object value


cdef class Array:
    """An AMQP array: code is the canonical element constructor (0xa3 symbol, 0x70 uint, 0xc0 list...)."""
    cdef public int code
    cdef public list elements
    cdef public object descriptor     # None, or the descriptor of every element


cpdef object decode(object data)
cpdef tuple decode_at(object data, Py_ssize_t offset=*)
cdef object decode_value(FRBuffer* b, int depth)
cdef int skip_value(FRBuffer* b, int depth) except -1

# Pieces of the decoder that the frame and section modules build on.
cdef list decode_list(FRBuffer* b, bint wide, int depth)     # its 0xc0/0xd0 constructor just read
cdef object decode_str(const char* p, Py_ssize_t n, FRBuffer* b)   # utf-8 (p inside b, for offsets)
cdef uint8_t canonical_code(int code) noexcept     # the canonical constructor of a code (0: invalid)


# =========================================================================================
# Reading: input buffers, and checked reads that raise DecodeError naming what and where
# =========================================================================================

cdef object decode_error_at(const FRBuffer* b, str what)   # DecodeError("<what> at offset N"), to raise
cdef int raise_truncated(const FRBuffer* b, Py_ssize_t n, str what) except -1   # always raises
cdef Py_ssize_t read_vlen(FRBuffer* b, bint wide, str what) except -1
cdef Py_ssize_t open_compound(FRBuffer* b, bint wide, uint32_t* count, str what,
                              int depth, Py_ssize_t min_item) except -1


cdef inline int open_input(object data, FRBuffer* b, Py_buffer* pb) except -1:
    """Point b at data's bytes; returns 1 if pb holds a buffer to release, else 0."""
    if PyBytes_CheckExact(data):
        frb_init(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        return 0
    cdef const char* empty = b""
    PyObject_GetBuffer(data, pb, PyBUF_SIMPLE)
    frb_init(b, <const char*>pb.buf if pb.buf != NULL else empty, pb.len)
    return 1


cdef inline const char* need(FRBuffer* b, Py_ssize_t n, str what) except NULL:
    """Consume n bytes of `what`, or raise DecodeError (truncated)."""
    if not frb_has(b, n):
        raise_truncated(b, n, what)
    return frb_take(b, n)


cdef inline uint8_t read_u8(FRBuffer* b, str what) except? 0xff:
    if b.len < 1:
        raise_truncated(b, -1, what)
    return <uint8_t>frb_take(b, 1)[0]


cdef inline int close_compound(FRBuffer* b, Py_ssize_t rest, str what) except -1:
    """Leave a compound entered with open_compound: it must have been read to its end."""
    if b.len != 0:
        raise decode_error_at(b, "%d unexpected bytes at the end of a %s" % (b.len, what))
    b.len = rest
    return 0
