# cython: language_level=3
"""cypid.pyx.codec: the C-level contract other Cython modules cimport.

The Python-level API (encode/decode, FrameReader, decode_performative, encode_frame,
encode_transfer_frames, scan_message, encode_header, the typed wrappers) is described in
docs/INTERFACES.md.  Everything declared here is also callable from Cython without going
through Python: cpdef functions, cdef methods, and the inline WriteBuffer helpers below.
"""
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from cypid.pyx.frb cimport FRBuffer, store_u16, store_u32, store_u64


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
    FRAME_HEADER_SIZE = 8
    FRAME_AMQP = 0
    FRAME_SASL = 1


@cython.final
@cython.freelist(16)
cdef class WriteBuffer:
    """A growable byte buffer over malloc'd memory; write with the wb_* inline helpers."""
    cdef char* buf           # malloc'd storage
    cdef Py_ssize_t size     # capacity of buf
    cdef Py_ssize_t len      # bytes written so far
    cdef int _grow(self, Py_ssize_t extra) except -1
    cdef bytes to_bytes(self)


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


cdef class Described:
    """A described value: descriptor (ulong or symbol) and value."""
    cdef public object descriptor
    cdef public object value


cdef class Array:
    """An AMQP array: code is the canonical element constructor (0xa3 symbol, 0x70 uint, 0xc0 list...)."""
    cdef public int code
    cdef public list elements
    cdef public object descriptor     # None, or the descriptor of every element


# A complete frame still inside a FrameReader's buffer (valid until the next feed()).
cdef struct FrameView:
    int frame_type
    int channel
    const char* body
    Py_ssize_t body_len


cdef class FrameReader:
    cdef char* _buf                   # malloc'd; bytes [_start, _end) are unread
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef public uint32_t max_frame_size
    cdef int feed_c(self, const char* data, Py_ssize_t n) except -1
    cpdef feed(self, data)
    cpdef object read_protocol_header(self)
    cdef int next_frame_c(self, FrameView* out) except -1   # 1 and *out filled, or 0 (need more)
    cdef int _grow_for(self, Py_ssize_t size) except -1
    cpdef object next_frame(self)


cdef class MessageInfo:
    cdef readonly bytes data            # the encoded message as scanned
    cdef readonly Py_ssize_t size
    cdef readonly bint durable
    cdef readonly int priority          # 4 unless the header says otherwise
    cdef readonly uint32_t ttl          # ms, 0 = none
    cdef readonly bint first_acquirer
    cdef readonly uint32_t delivery_count
    cdef readonly object to             # str | None (properties)
    cdef readonly object subject
    cdef readonly object reply_to
    cdef readonly object user_id        # bytes | None
    cdef readonly int64_t absolute_expiry_time   # ms since epoch, 0 = none
    cdef readonly int64_t creation_time          # ms since epoch, 0 = none
    cdef readonly Py_ssize_t bare_offset         # after header and delivery-annotations
    cdef readonly Py_ssize_t annotations_offset  # message-annotations section start, -1 if none
    cdef readonly Py_ssize_t properties_offset   # after message-annotations: the bare message proper
    cdef readonly Py_ssize_t body_offset         # first body section (data/sequence/value), or size
    cdef Py_ssize_t _da_value, _ma_value, _props_value, _ap_value, _footer_value  # value offsets, -1 = absent
    cdef object _section_value(self, Py_ssize_t off, object default)


cpdef bytes encode(object value)
cpdef object decode(object data)
cpdef tuple decode_at(object data, Py_ssize_t offset=*)
cdef int encode_value(WriteBuffer wb, object value, int depth) except -1
cdef object decode_value(FRBuffer* b, int depth)
cdef int skip_value(FRBuffer* b, int depth) except -1

cpdef tuple decode_performative(object body)
cpdef bytes encode_frame(int channel, uint64_t code, object fields, object payload=*, int frame_type=*)
cpdef bytes encode_transfer_frames(int channel, uint32_t handle, uint32_t delivery_id, object tag,
                                   bint settled, object message, uint64_t max_frame_size)
cpdef MessageInfo scan_message(object data)
cpdef bytes encode_header(bint durable, int priority, uint64_t ttl, bint first_acquirer,
                          uint64_t delivery_count)
