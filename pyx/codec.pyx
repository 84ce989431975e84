# cython: language_level=3
"""AMQP 1.0 codec: types, frames, performatives and message scanning.

Decoding walks an ``FRBuffer`` (pointer + remaining length) and dispatches on the constructor
byte; every length and count is checked against the bytes present before it is used, and a
compound value narrows the cursor to its declared size so nothing inside it can read past it.
Python objects are made only for the leaf values a caller asked for.

Encoding writes into a ``WriteBuffer`` and always picks the compact form (uint0/smalluint,
list0/list8, str8...): compound values are written optimistically in their 8-bit form and
widened with one memmove when they turn out larger.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_DecodeASCII
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.long cimport PyLong_Check
from libc.stdint cimport (uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, uint64_t, int64_t,
                         INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX, UINT32_MAX, UINT64_MAX)
from libc.string cimport memcpy, memmove, memcmp, strlen

from cypid.pyx.frb cimport (FRBuffer, frb_init, frb_offset, frb_has, frb_take,
                            load_u16, load_u32, load_u64, store_u16, store_u32, store_u64)

import uuid as _uuid_mod

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyUnicode_IS_ASCII(object s)


# =========================================================================================
# Errors and the value model
# =========================================================================================

class DecodeError(ValueError):
    """Malformed AMQP input; the message names what is wrong and the offset."""


class EncodeError(ValueError):
    """A value that cannot be encoded as the AMQP type asked for (range, type, charset)."""


class symbol(str):
    __slots__ = ()

    def __repr__(self):
        return "symbol(%s)" % str.__repr__(self)


class char(str):
    __slots__ = ()

    def __repr__(self):
        return "char(%s)" % str.__repr__(self)


def _int_wrapper(name):
    def __repr__(self):
        return "%s(%d)" % (name, int(self))
    return type(name, (int,), {"__slots__": (), "__repr__": __repr__})


ubyte = _int_wrapper("ubyte")
ushort = _int_wrapper("ushort")
uint = _int_wrapper("uint")
ulong = _int_wrapper("ulong")
byte = _int_wrapper("byte")
short = _int_wrapper("short")
int32 = _int_wrapper("int32")
timestamp = _int_wrapper("timestamp")


class float32(float):
    __slots__ = ()

    def __repr__(self):
        return "float32(%r)" % float(self)


def _bytes_wrapper(name):
    def __repr__(self):
        return "%s(%s)" % (name, bytes.__repr__(self))
    return type(name, (bytes,), {"__slots__": (), "__repr__": __repr__})


decimal32 = _bytes_wrapper("decimal32")
decimal64 = _bytes_wrapper("decimal64")
decimal128 = _bytes_wrapper("decimal128")

# Module-level C references to the wrapper types (cheap identity tests in the encoder).
cdef object _symbol_t = symbol, _char_t = char
cdef object _ubyte_t = ubyte, _ushort_t = ushort, _uint_t = uint, _ulong_t = ulong
cdef object _byte_t = byte, _short_t = short, _int32_t = int32, _timestamp_t = timestamp
cdef object _float32_t = float32
cdef object _dec32_t = decimal32, _dec64_t = decimal64, _dec128_t = decimal128
cdef object _UUID = _uuid_mod.UUID
cdef object _DecodeError = DecodeError
cdef object _EncodeError = EncodeError

# Shared immutable instances for small unsigned values (descriptors, handles, counts).
cdef list _SMALL_UINT = [uint(i) for i in range(256)]
cdef list _SMALL_ULONG = [ulong(i) for i in range(256)]


@cython.freelist(32)
cdef class Described:
    def __init__(self, descriptor, value):
        self.descriptor = descriptor
        self.value = value

    def __eq__(self, other):
        if isinstance(other, Described):
            return (self.descriptor == (<Described>other).descriptor
                    and self.value == (<Described>other).value)
        return NotImplemented

    def __hash__(self):
        return hash((self.descriptor, self.value))

    def __repr__(self):
        return "Described(%r, %r)" % (self.descriptor, self.value)


# Canonical element code per constructor: the encoder picks the width itself.
cdef uint8_t _canon[256]
# Fixed payload width of a constructor: >=0 fixed, -1 one-byte length/size, -4 four-byte, -9 invalid.
cdef signed char _width[256]


cdef void _init_tables() noexcept:
    cdef int i
    for i in range(256):
        _canon[i] = 0
        _width[i] = -9
    for i, w in ((0x40, 0), (0x41, 0), (0x42, 0), (0x43, 0), (0x44, 0), (0x45, 0),
                 (0x50, 1), (0x51, 1), (0x52, 1), (0x53, 1), (0x54, 1), (0x55, 1), (0x56, 1),
                 (0x60, 2), (0x61, 2),
                 (0x70, 4), (0x71, 4), (0x72, 4), (0x73, 4), (0x74, 4),
                 (0x80, 8), (0x81, 8), (0x82, 8), (0x83, 8), (0x84, 8),
                 (0x94, 16), (0x98, 16),
                 (0xa0, -1), (0xa1, -1), (0xa3, -1), (0xb0, -4), (0xb1, -4), (0xb3, -4),
                 (0xc0, -1), (0xc1, -1), (0xd0, -4), (0xd1, -4), (0xe0, -1), (0xf0, -4)):
        _width[i] = w
        _canon[i] = i
    for i, c in ((0x41, 0x56), (0x42, 0x56), (0x52, 0x70), (0x43, 0x70), (0x53, 0x80), (0x44, 0x80),
                 (0x54, 0x71), (0x55, 0x81), (0xb0, 0xa0), (0xb1, 0xa1), (0xb3, 0xa3),
                 (0x45, 0xc0), (0xd0, 0xc0), (0xd1, 0xc1), (0xf0, 0xe0)):
        _canon[i] = c


_init_tables()


@cython.freelist(16)
cdef class Array:
    def __init__(self, code, elements=(), descriptor=None):
        cdef int c = code
        if c < 1 or c > 255 or _canon[c] == 0:
            raise ValueError("invalid array element code 0x%02x" % code if 0 <= code < 256
                             else "invalid array element code %r" % (code,))
        self.code = _canon[c]
        self.elements = list(elements)
        self.descriptor = descriptor

    def __eq__(self, other):
        if isinstance(other, Array):
            return (self.code == (<Array>other).code and self.descriptor == (<Array>other).descriptor
                    and self.elements == (<Array>other).elements)
        return NotImplemented

    __hash__ = None

    def __len__(self):
        return len(self.elements)

    def __iter__(self):
        return iter(self.elements)

    def __getitem__(self, i):
        return self.elements[i]

    def __repr__(self):
        if self.descriptor is None:
            return "Array(0x%02x, %r)" % (self.code, self.elements)
        return "Array(0x%02x, %r, descriptor=%r)" % (self.code, self.elements, self.descriptor)


cdef inline Described _described(object d, object v):
    cdef Described r = Described.__new__(Described)
    r.descriptor = d
    r.value = v
    return r


cdef inline Array _array(int code, list elements, object descriptor):
    cdef Array r = Array.__new__(Array)
    r.code = code
    r.elements = elements
    r.descriptor = descriptor
    return r


# One table for every descriptor the codec knows: code -> symbolic name.
DESCRIPTOR_NAMES = {
    0x10: "amqp:open:list", 0x11: "amqp:begin:list", 0x12: "amqp:attach:list",
    0x13: "amqp:flow:list", 0x14: "amqp:transfer:list", 0x15: "amqp:disposition:list",
    0x16: "amqp:detach:list", 0x17: "amqp:end:list", 0x18: "amqp:close:list",
    0x1d: "amqp:error:list",
    0x23: "amqp:received:list", 0x24: "amqp:accepted:list", 0x25: "amqp:rejected:list",
    0x26: "amqp:released:list", 0x27: "amqp:modified:list",
    0x28: "amqp:source:list", 0x29: "amqp:target:list",
    0x2b: "amqp:delete-on-close:list", 0x2c: "amqp:delete-on-no-links:list",
    0x2d: "amqp:delete-on-no-messages:list", 0x2e: "amqp:delete-on-no-links-or-messages:list",
    0x30: "amqp:coordinator:list", 0x31: "amqp:declare:list", 0x32: "amqp:discharge:list",
    0x33: "amqp:declared:list", 0x34: "amqp:transactional-state:list",
    0x40: "amqp:sasl-mechanisms:list", 0x41: "amqp:sasl-init:list",
    0x42: "amqp:sasl-challenge:list", 0x43: "amqp:sasl-response:list",
    0x44: "amqp:sasl-outcome:list",
    0x70: "amqp:header:list", 0x71: "amqp:delivery-annotations:map",
    0x72: "amqp:message-annotations:map", 0x73: "amqp:properties:list",
    0x74: "amqp:application-properties:map", 0x75: "amqp:data:binary",
    0x76: "amqp:amqp-sequence:list", 0x77: "amqp:amqp-value:*", 0x78: "amqp:footer:map",
}
DESCRIPTOR_CODES = {name: code for code, name in DESCRIPTOR_NAMES.items()}
cdef dict _DESCRIPTOR_CODES_B = {name.encode("ascii"): code for code, name in DESCRIPTOR_NAMES.items()}

# Field names of each performative, in the spec's order (transport.xml, security.xml).
PERFORMATIVE_FIELDS = {
    0x10: ("container-id", "hostname", "max-frame-size", "channel-max", "idle-time-out",
           "outgoing-locales", "incoming-locales", "offered-capabilities", "desired-capabilities",
           "properties"),
    0x11: ("remote-channel", "next-outgoing-id", "incoming-window", "outgoing-window", "handle-max",
           "offered-capabilities", "desired-capabilities", "properties"),
    0x12: ("name", "handle", "role", "snd-settle-mode", "rcv-settle-mode", "source", "target",
           "unsettled", "incomplete-unsettled", "initial-delivery-count", "max-message-size",
           "offered-capabilities", "desired-capabilities", "properties"),
    0x13: ("next-incoming-id", "incoming-window", "next-outgoing-id", "outgoing-window", "handle",
           "delivery-count", "link-credit", "available", "drain", "echo", "properties"),
    0x14: ("handle", "delivery-id", "delivery-tag", "message-format", "settled", "more",
           "rcv-settle-mode", "state", "resume", "aborted", "batchable"),
    0x15: ("role", "first", "last", "settled", "state", "batchable"),
    0x16: ("handle", "closed", "error"),
    0x17: ("error",),
    0x18: ("error",),
    0x40: ("sasl-server-mechanisms",),
    0x41: ("mechanism", "initial-response", "hostname"),
    0x42: ("challenge",),
    0x43: ("response",),
    0x44: ("code", "additional-data"),
}

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
EMPTY_FRAME = b"\x00\x00\x00\x08\x02\x00\x00\x00"


# =========================================================================================
# Input buffers
# =========================================================================================

cdef const char* _EMPTY = ""


cdef inline int _open_input(object data, FRBuffer* b, Py_buffer* pb) except -1:
    """Point b at data's bytes; returns 1 if pb holds a buffer to release, else 0."""
    if PyBytes_CheckExact(data):
        frb_init(b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        return 0
    PyObject_GetBuffer(data, pb, PyBUF_SIMPLE)
    frb_init(b, <const char*>pb.buf if pb.buf != NULL else _EMPTY, pb.len)
    return 1


cdef object _err(const FRBuffer* b, str what):
    return _DecodeError("%s at offset %d" % (what, frb_offset(b)))


cdef inline const char* _need(FRBuffer* b, Py_ssize_t n, str what) except NULL:
    if not frb_has(b, n):
        raise _DecodeError("truncated %s at offset %d: need %d bytes, %d left"
                           % (what, frb_offset(b), n, b.len))
    return frb_take(b, n)


cdef inline uint8_t _u8(FRBuffer* b, str what) except? 0xff:
    if b.len < 1:
        raise _DecodeError("truncated %s at offset %d: need 1 byte, 0 left" % (what, frb_offset(b)))
    return <uint8_t>frb_take(b, 1)[0]


# =========================================================================================
# Decoding
# =========================================================================================

cdef object decode_value(FRBuffer* b, int depth):
    """Decode one value (constructor included) at the cursor."""
    cdef uint8_t code = _u8(b, "value constructor")
    if code == 0:
        return _decode_described(b, depth)
    return _decode_body(b, code, depth)


cdef object _decode_described(FRBuffer* b, int depth):
    if depth >= MAX_DEPTH:
        raise _err(b, "values nested deeper than %d" % MAX_DEPTH)
    d = decode_value(b, depth + 1)
    v = decode_value(b, depth + 1)
    return _described(d, v)


cdef object _decode_str(const char* p, Py_ssize_t n, FRBuffer* b):
    try:
        return PyUnicode_DecodeUTF8(p, n, NULL)
    except UnicodeDecodeError as e:
        raise _DecodeError("invalid utf-8 in string at offset %d: %s"
                           % (p - b.base + e.start, e.reason)) from None


cdef object _decode_sym(const char* p, Py_ssize_t n, FRBuffer* b):
    try:
        return _symbol_t(PyUnicode_DecodeASCII(p, n, NULL))
    except UnicodeDecodeError as e:
        raise _DecodeError("non-ascii byte in symbol at offset %d" % (p - b.base + e.start)) from None


cdef inline Py_ssize_t _vlen(FRBuffer* b, bint wide, str what) except -1:
    """Read a vbin/str/sym length and check that many bytes follow."""
    cdef Py_ssize_t n
    if wide:
        n = load_u32(_need(b, 4, what))
    else:
        n = <uint8_t>_need(b, 1, what)[0]
    if n > b.len:
        raise _DecodeError("%s at offset %d declares %d bytes, only %d left"
                           % (what, frb_offset(b), n, b.len))
    return n


cdef object _decode_body(FRBuffer* b, uint8_t code, int depth):
    """Decode the payload of a value whose constructor byte (not 0x00) has been read."""
    cdef const char* p
    cdef Py_ssize_t n
    cdef uint32_t u32
    cdef uint64_t u64
    cdef float f
    cdef double d
    if code == 0x40:
        return None
    elif code == 0x41:
        return True
    elif code == 0x42:
        return False
    elif code == 0x56:
        u32 = <uint8_t>_need(b, 1, "boolean")[0]
        if u32 > 1:
            b.buf -= 1
            b.len += 1
            raise _err(b, "invalid boolean byte 0x%02x" % u32)
        return u32 == 1
    elif code == 0x43:
        return _SMALL_UINT[0]
    elif code == 0x52:
        return _SMALL_UINT[<uint8_t>_need(b, 1, "smalluint")[0]]
    elif code == 0x70:
        u32 = load_u32(_need(b, 4, "uint"))
        if u32 < 256:
            return _SMALL_UINT[u32]
        return _uint_t(u32)
    elif code == 0x44:
        return _SMALL_ULONG[0]
    elif code == 0x53:
        return _SMALL_ULONG[<uint8_t>_need(b, 1, "smallulong")[0]]
    elif code == 0x80:
        u64 = load_u64(_need(b, 8, "ulong"))
        if u64 < 256:
            return _SMALL_ULONG[u64]
        return _ulong_t(u64)
    elif code == 0x55:
        return <int8_t>_need(b, 1, "smalllong")[0]
    elif code == 0x81:
        return <int64_t>load_u64(_need(b, 8, "long"))
    elif code == 0xa1 or code == 0xb1:
        n = _vlen(b, code == 0xb1, "string")
        return _decode_str(frb_take(b, n), n, b)
    elif code == 0xa3 or code == 0xb3:
        n = _vlen(b, code == 0xb3, "symbol")
        return _decode_sym(frb_take(b, n), n, b)
    elif code == 0xa0 or code == 0xb0:
        n = _vlen(b, code == 0xb0, "binary")
        return PyBytes_FromStringAndSize(frb_take(b, n), n)
    elif code == 0x45:
        return []
    elif code == 0xc0 or code == 0xd0:
        return _decode_list(b, code == 0xd0, depth)
    elif code == 0xc1 or code == 0xd1:
        return _decode_map(b, code == 0xd1, depth)
    elif code == 0xe0 or code == 0xf0:
        return _decode_array(b, code == 0xf0, depth)
    elif code == 0x50:
        return _ubyte_t(<uint8_t>_need(b, 1, "ubyte")[0])
    elif code == 0x51:
        return _byte_t(<int8_t>_need(b, 1, "byte")[0])
    elif code == 0x60:
        return _ushort_t(load_u16(_need(b, 2, "ushort")))
    elif code == 0x61:
        return _short_t(<int16_t>load_u16(_need(b, 2, "short")))
    elif code == 0x54:
        return _int32_t(<int8_t>_need(b, 1, "smallint")[0])
    elif code == 0x71:
        return _int32_t(<int32_t>load_u32(_need(b, 4, "int")))
    elif code == 0x72:
        u32 = load_u32(_need(b, 4, "float"))
        memcpy(&f, &u32, 4)
        return _float32_t(<double>f)
    elif code == 0x82:
        u64 = load_u64(_need(b, 8, "double"))
        memcpy(&d, &u64, 8)
        return d
    elif code == 0x73:
        u32 = load_u32(_need(b, 4, "char"))
        if u32 > 0x10FFFF:
            b.buf -= 4
            b.len += 4
            raise _err(b, "char code point 0x%x out of range" % u32)
        return _char_t(chr(u32))
    elif code == 0x83:
        return _timestamp_t(<int64_t>load_u64(_need(b, 8, "timestamp")))
    elif code == 0x98:
        return _UUID(bytes=PyBytes_FromStringAndSize(_need(b, 16, "uuid"), 16))
    elif code == 0x74:
        return _dec32_t(PyBytes_FromStringAndSize(_need(b, 4, "decimal32"), 4))
    elif code == 0x84:
        return _dec64_t(PyBytes_FromStringAndSize(_need(b, 8, "decimal64"), 8))
    elif code == 0x94:
        return _dec128_t(PyBytes_FromStringAndSize(_need(b, 16, "decimal128"), 16))
    b.buf -= 1
    b.len += 1
    raise _err(b, "invalid constructor 0x%02x" % code)


cdef inline Py_ssize_t _open_compound(FRBuffer* b, bint wide, uint32_t* count, str what,
                                      int depth, Py_ssize_t min_item) except -1:
    """Read size and count of a list/map/array (its constructor just read), check them, and
    narrow b to the contents.  Returns the bytes that follow the compound, for _close_compound."""
    cdef Py_ssize_t size, body
    cdef Py_ssize_t at = frb_offset(b) - 1
    cdef const char* p
    if depth >= MAX_DEPTH:
        raise _DecodeError("values nested deeper than %d at offset %d" % (MAX_DEPTH, at))
    if wide:
        p = _need(b, 8, what + " header")
        size = load_u32(p)
        count[0] = load_u32(p + 4)
        body = size - 4
    else:
        p = _need(b, 2, what + " header")
        size = <uint8_t>p[0]
        count[0] = <uint8_t>p[1]
        body = size - 1
    if body < 0:
        raise _DecodeError("%s at offset %d: size %d is smaller than its count field" % (what, at, size))
    if body > b.len:
        raise _DecodeError("%s at offset %d declares %d bytes, only %d left"
                           % (what, at, size, b.len + (4 if wide else 1)))
    if <uint64_t>count[0] * <uint64_t>min_item > <uint64_t>body:
        raise _DecodeError("%s at offset %d: %d items cannot fit in %d bytes" % (what, at, count[0], body))
    cdef Py_ssize_t rest = b.len - body
    b.len = body
    return rest


cdef inline int _close_compound(FRBuffer* b, Py_ssize_t rest, str what) except -1:
    if b.len != 0:
        raise _err(b, "%d unexpected bytes at the end of a %s" % (b.len, what))
    b.len = rest
    return 0


cdef list _decode_list(FRBuffer* b, bint wide, int depth):
    cdef uint32_t count, i
    cdef Py_ssize_t rest = _open_compound(b, wide, &count, "list", depth, 1)
    cdef list result = []
    for i in range(count):
        result.append(decode_value(b, depth + 1))
    _close_compound(b, rest, "list")
    return result


cdef dict _decode_map(FRBuffer* b, bint wide, int depth):
    cdef uint32_t count, i
    cdef Py_ssize_t at = frb_offset(b) - 1
    cdef Py_ssize_t rest = _open_compound(b, wide, &count, "map", depth, 1)
    if count & 1:
        raise _DecodeError("map at offset %d has an odd number of items (%d)" % (at, count))
    cdef dict result = {}
    for i in range(count // 2):
        k = decode_value(b, depth + 1)
        v = decode_value(b, depth + 1)
        try:
            result[k] = v
        except TypeError:
            raise _DecodeError("map at offset %d has an unhashable key of type %s"
                               % (at, type(k).__name__)) from None
    _close_compound(b, rest, "map")
    return result


cdef Array _decode_array(FRBuffer* b, bint wide, int depth):
    cdef uint32_t count, i
    cdef Py_ssize_t rest = _open_compound(b, wide, &count, "array", depth, 0)
    cdef uint8_t code = _u8(b, "array element constructor")
    cdef object descriptor = None
    cdef signed char w
    if code == 0:
        descriptor = decode_value(b, depth + 1)
        code = _u8(b, "array element constructor")
        if code == 0:
            b.buf -= 1
            b.len += 1
            raise _err(b, "array element constructor is described twice")
    w = _width[code]
    if w == -9:
        b.buf -= 1
        b.len += 1
        raise _err(b, "invalid array element constructor 0x%02x" % code)
    if w == 0:
        b.budget -= count
        if b.budget < 0:
            raise _err(b, "too many zero-width array elements (%d)" % count)
    elif w > 0:
        if <uint64_t>count * <uint64_t>w != <uint64_t>b.len:
            raise _err(b, "array of %d elements of %d bytes does not match its size (%d bytes left)"
                       % (count, w, b.len))
    elif count > b.len:
        raise _err(b, "array of %d variable-width elements cannot fit in %d bytes" % (count, b.len))
    cdef list elements = []
    for i in range(count):
        elements.append(_decode_body(b, code, depth + 1))
    _close_compound(b, rest, "array")
    return _array(_canon[code], elements, descriptor)


cdef int skip_value(FRBuffer* b, int depth) except -1:
    """Advance over one value, checking its lengths but not its contents."""
    cdef uint8_t code = _u8(b, "value constructor")
    cdef signed char w
    cdef Py_ssize_t n
    while code == 0:
        if depth >= MAX_DEPTH:
            raise _err(b, "values nested deeper than %d" % MAX_DEPTH)
        skip_value(b, depth + 1)
        depth += 1
        code = _u8(b, "value constructor")
    w = _width[code]
    if w >= 0:
        if w > b.len:
            raise _DecodeError("truncated value at offset %d (constructor 0x%02x): need %d bytes, %d left"
                               % (frb_offset(b) - 1, code, w, b.len))
        frb_take(b, w)
        if code == 0x56 and <uint8_t>(b.buf - 1)[0] > 1:
            b.buf -= 1
            b.len += 1
            raise _err(b, "invalid boolean byte 0x%02x" % <uint8_t>b.buf[0])
        return 0
    if w == -1:
        n = <uint8_t>_need(b, 1, "value size")[0]
    elif w == -4:
        n = load_u32(_need(b, 4, "value size"))
    else:
        b.buf -= 1
        b.len += 1
        raise _err(b, "invalid constructor 0x%02x" % code)
    if n > b.len:
        raise _DecodeError("value at offset %d (constructor 0x%02x) declares %d bytes, only %d left"
                           % (frb_offset(b) - (2 if w == -1 else 5), code, n, b.len))
    frb_take(b, n)
    return 0


cpdef object decode(object data):
    """Decode exactly one AMQP value from data (bytes-like)."""
    cdef FRBuffer b
    cdef Py_buffer pb
    cdef int release = _open_input(data, &b, &pb)
    try:
        v = decode_value(&b, 0)
        if b.len:
            raise _err(&b, "%d trailing bytes after the value" % b.len)
        return v
    finally:
        if release:
            PyBuffer_Release(&pb)


cpdef tuple decode_at(object data, Py_ssize_t offset=0):
    """Decode one value starting at offset; returns (value, end offset)."""
    cdef FRBuffer b
    cdef Py_buffer pb
    cdef int release = _open_input(data, &b, &pb)
    try:
        if offset < 0 or offset > b.len:
            raise _DecodeError("offset %d outside data of %d bytes" % (offset, b.len))
        frb_take(&b, offset)
        v = decode_value(&b, 0)
        return v, frb_offset(&b)
    finally:
        if release:
            PyBuffer_Release(&pb)


# =========================================================================================
# Encoding
# =========================================================================================

@cython.final
@cython.freelist(16)
cdef class WriteBuffer:
    def __cinit__(self, Py_ssize_t initial=256):
        if initial < 16:
            initial = 16
        self.buf = <char*>PyMem_Malloc(initial)
        if self.buf == NULL:
            raise MemoryError()
        self.size = initial
        self.len = 0

    def __dealloc__(self):
        PyMem_Free(self.buf)
        self.buf = NULL

    cdef int _grow(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.len + extra
        cdef Py_ssize_t new_size = self.size * 2
        if new_size < need:
            new_size = need
        cdef char* nb = <char*>PyMem_Realloc(self.buf, new_size)
        if nb == NULL:
            raise MemoryError()
        self.buf = nb
        self.size = new_size
        return 0

    cdef bytes to_bytes(self):
        return PyBytes_FromStringAndSize(self.buf, self.len)

    def getvalue(self):
        return PyBytes_FromStringAndSize(self.buf, self.len)

    def write(self, data):
        cdef FRBuffer b
        cdef Py_buffer pb
        cdef int release = _open_input(data, &b, &pb)
        try:
            wb_write(self, b.buf, b.len)
        finally:
            if release:
                PyBuffer_Release(&pb)

    def write_value(self, value):
        encode_value(self, value, 0)

    def clear(self):
        self.len = 0

    def __len__(self):
        return self.len


cdef inline int _check_depth(int depth) except -1:
    if depth >= MAX_DEPTH:
        raise _EncodeError("values nested deeper than %d (or a list/dict that contains itself)" % MAX_DEPTH)
    return 0


cdef int _enc_long(WriteBuffer wb, object v) except -1:
    cdef int64_t x
    try:
        x = v
    except OverflowError:
        raise _EncodeError("int %d out of range for an AMQP long" % v) from None
    if -128 <= x <= 127:
        wb_reserve(wb, 2)
        wb.buf[wb.len] = <char>0x55
        wb.buf[wb.len + 1] = <char>x
        wb.len += 2
    else:
        wb_u8(wb, 0x81)
        wb_u64(wb, <uint64_t>x)
    return 0


cdef inline uint64_t _uint_in(object v, uint64_t hi, str name) except? 0xffffffffffffffff:
    cdef uint64_t x
    if not PyLong_Check(v):
        raise _EncodeError("%s needs an int, not %r" % (name, v))
    try:
        x = v
    except OverflowError:
        raise _EncodeError("%r out of range for %s" % (v, name)) from None
    if x > hi:
        raise _EncodeError("%r out of range for %s" % (v, name))
    return x


cdef inline int64_t _int_in(object v, int64_t lo, int64_t hi, str name) except? -1:
    cdef int64_t x
    if not PyLong_Check(v):
        raise _EncodeError("%s needs an int, not %r" % (name, v))
    try:
        x = v
    except OverflowError:
        raise _EncodeError("%r out of range for %s" % (v, name)) from None
    if x < lo or x > hi:
        raise _EncodeError("%r out of range for %s" % (v, name))
    return x


cdef int _enc_vbin(WriteBuffer wb, const char* p, Py_ssize_t n, uint8_t code8, uint8_t code32) except -1:
    if n <= 255:
        wb_reserve(wb, n + 2)
        wb.buf[wb.len] = <char>code8
        wb.buf[wb.len + 1] = <char>n
        wb.len += 2
    else:
        if n > UINT32_MAX:
            raise _EncodeError("value of %d bytes is too long for AMQP" % n)
        wb_reserve(wb, n + 5)
        wb.buf[wb.len] = <char>code32
        store_u32(wb.buf + wb.len + 1, <uint32_t>n)
        wb.len += 5
    memcpy(wb.buf + wb.len, p, <size_t>n)
    wb.len += n
    return 0


cdef inline const char* _utf8(object s, Py_ssize_t* n) except NULL:
    try:
        return PyUnicode_AsUTF8AndSize(s, n)
    except UnicodeEncodeError as e:
        raise _EncodeError("string cannot be encoded as utf-8: %s" % e.reason) from None


cdef inline const char* _ascii(object s, Py_ssize_t* n) except NULL:
    if not PyUnicode_IS_ASCII(s):
        raise _EncodeError("symbol %r is not ascii" % (s,))
    return PyUnicode_AsUTF8AndSize(s, n)


cdef int _finish_compound(WriteBuffer wb, Py_ssize_t start, Py_ssize_t count,
                          uint8_t code8, uint8_t code32) except -1:
    """A compound was written as [code8, size8, count8, items...] from start: fill in the
    header, or widen it to [code32, size32, count32] when it does not fit."""
    cdef Py_ssize_t payload = wb.len - start - 3
    if payload < 255 and count <= 255:
        wb.buf[start] = <char>code8
        wb.buf[start + 1] = <char>(payload + 1)
        wb.buf[start + 2] = <char>count
        return 0
    if payload + 4 > UINT32_MAX or count > UINT32_MAX:
        raise _EncodeError("compound value of %d bytes is too large for AMQP" % payload)
    wb_reserve(wb, 6)
    memmove(wb.buf + start + 9, wb.buf + start + 3, <size_t>payload)
    wb.buf[start] = <char>code32
    store_u32(wb.buf + start + 1, <uint32_t>(payload + 4))
    store_u32(wb.buf + start + 5, <uint32_t>count)
    wb.len += 6
    return 0


cdef inline Py_ssize_t _begin_compound(WriteBuffer wb) except -1:
    cdef Py_ssize_t start = wb.len
    wb_reserve(wb, 3)
    wb.len += 3
    return start


cdef int _enc_list(WriteBuffer wb, object seq, int depth) except -1:
    cdef Py_ssize_t n = len(seq)
    if n == 0:
        return wb_u8(wb, 0x45)
    _check_depth(depth)
    cdef Py_ssize_t start = _begin_compound(wb)
    for item in seq:
        encode_value(wb, item, depth + 1)
    return _finish_compound(wb, start, n, 0xc0, 0xd0)


cdef int _enc_map(WriteBuffer wb, dict m, int depth) except -1:
    _check_depth(depth)
    cdef Py_ssize_t start = _begin_compound(wb)
    for k, v in m.items():
        encode_value(wb, k, depth + 1)
        encode_value(wb, v, depth + 1)
    return _finish_compound(wb, start, 2 * len(m), 0xc1, 0xd1)


cdef int _enc_array(WriteBuffer wb, Array a, int depth) except -1:
    _check_depth(depth)
    cdef Py_ssize_t start = _begin_compound(wb)
    _enc_array_payload(wb, a, depth)
    return _finish_compound(wb, start, len(a.elements), 0xe0, 0xf0)


cdef int _enc_array_payload(WriteBuffer wb, Array a, int depth) except -1:
    """Write an array's element constructor (with descriptor) and its elements."""
    cdef int code = a.code
    cdef list elems = a.elements
    cdef int ec
    cdef Py_ssize_t n, max_len = 0
    if code < 1 or code > 255 or _canon[code] != code:
        raise _EncodeError("invalid array element code %r" % code)
    if a.descriptor is not None:
        wb_u8(wb, 0)
        encode_value(wb, a.descriptor, depth + 1)
    ec = code
    # Pick the narrow constructor when every element fits it.
    if code == 0x70 or code == 0x80:
        ec = 0x52 if code == 0x70 else 0x53
        for e in elems:
            if not (PyLong_Check(e) and 0 <= e <= 255):
                ec = code
                break
    elif code == 0x71 or code == 0x81:
        ec = 0x54 if code == 0x71 else 0x55
        for e in elems:
            if not (PyLong_Check(e) and -128 <= e <= 127):
                ec = code
                break
    elif code == 0xa0 or code == 0xa1 or code == 0xa3:
        for e in elems:
            if not isinstance(e, (bytes, bytearray, memoryview) if code == 0xa0 else str):
                raise _EncodeError("array of 0x%02x holds a %s" % (code, type(e).__name__))
            if code == 0xa0:
                n = len(e)
            elif code == 0xa1:
                _utf8(e, &n)
            else:
                _ascii(e, &n)
            if n > max_len:
                max_len = n
        if max_len > 255:
            ec = code + 0x10
    wb_u8(wb, <uint8_t>ec)
    if code == 0xc0 or code == 0xc1 or code == 0xe0:
        return _enc_compound_elements(wb, code, elems, depth)
    for e in elems:
        _enc_payload(wb, <uint8_t>ec, e, depth)
    return 0


cdef int _enc_compound_elements(WriteBuffer wb, int code, list elems, int depth) except -1:
    """Lists, maps or arrays as array elements: written in the 32-bit form, then compacted
    to the 8-bit form in one pass when every element fits it."""
    cdef Py_ssize_t n = len(elems)
    cdef Py_ssize_t ctor = wb.len - 1
    cdef Py_ssize_t i, start, size, cnt, src, end, dst
    cdef bint narrow = True
    if n == 0:
        return 0
    cdef Py_ssize_t* offs = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
    if offs == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            e = elems[i]
            start = wb.len
            offs[i] = start
            wb_reserve(wb, 8)
            wb.len += 8
            if code == 0xc0:
                if not isinstance(e, (list, tuple)):
                    raise _EncodeError("array of lists holds a %s" % type(e).__name__)
                _check_depth(depth + 1)
                for item in e:
                    encode_value(wb, item, depth + 2)
                cnt = len(e)
            elif code == 0xc1:
                if not isinstance(e, dict):
                    raise _EncodeError("array of maps holds a %s" % type(e).__name__)
                _check_depth(depth + 1)
                for k, v in (<dict>e).items():
                    encode_value(wb, k, depth + 2)
                    encode_value(wb, v, depth + 2)
                cnt = 2 * len(e)
            else:
                if not isinstance(e, Array):
                    raise _EncodeError("array of arrays holds a %s" % type(e).__name__)
                _check_depth(depth + 1)
                _enc_array_payload(wb, <Array>e, depth + 1)
                cnt = len((<Array>e).elements)
            size = wb.len - start - 4
            if size > UINT32_MAX or cnt > UINT32_MAX:
                raise _EncodeError("array element too large for AMQP")
            store_u32(wb.buf + start, <uint32_t>size)
            store_u32(wb.buf + start + 4, <uint32_t>cnt)
            if size - 3 > 255 or cnt > 255:
                narrow = False
        if narrow:
            dst = offs[0]
            for i in range(n):
                src = offs[i]
                end = offs[i + 1] if i + 1 < n else wb.len
                size = load_u32(wb.buf + src)
                cnt = load_u32(wb.buf + src + 4)
                wb.buf[dst] = <char>(size - 3)
                wb.buf[dst + 1] = <char>cnt
                memmove(wb.buf + dst + 2, wb.buf + src + 8, <size_t>(end - src - 8))
                dst += 2 + (end - src - 8)
            wb.len = dst
            wb.buf[ctor] = <char>code
        else:
            wb.buf[ctor] = <char>(code + 0x10)
    finally:
        PyMem_Free(offs)
    return 0


cdef int _enc_payload(WriteBuffer wb, uint8_t code, object v, int depth) except -1:
    """Write v's payload (no constructor) for an exact scalar constructor code (array elements)."""
    cdef Py_ssize_t n
    cdef const char* p
    cdef float f
    cdef double d
    cdef uint32_t u32
    cdef uint64_t u64
    if code == 0x40:
        if v is not None:
            raise _EncodeError("array of nulls holds %r" % (v,))
    elif code == 0x56:
        if not isinstance(v, bool):
            raise _EncodeError("array of booleans holds %r" % (v,))
        wb_u8(wb, 1 if v else 0)
    elif code == 0x52 or code == 0x53:
        wb_u8(wb, <uint8_t>_uint_in(v, 255, "smalluint"))
    elif code == 0x54 or code == 0x55:
        wb_u8(wb, <uint8_t><int8_t>_int_in(v, -128, 127, "smallint"))
    elif code == 0x50:
        wb_u8(wb, <uint8_t>_uint_in(v, 0xff, "ubyte"))
    elif code == 0x51:
        wb_u8(wb, <uint8_t><int8_t>_int_in(v, -0x80, 0x7f, "byte"))
    elif code == 0x60:
        wb_u16(wb, <uint16_t>_uint_in(v, 0xffff, "ushort"))
    elif code == 0x61:
        wb_u16(wb, <uint16_t><int16_t>_int_in(v, -0x8000, 0x7fff, "short"))
    elif code == 0x70:
        wb_u32(wb, <uint32_t>_uint_in(v, UINT32_MAX, "uint"))
    elif code == 0x71:
        wb_u32(wb, <uint32_t><int32_t>_int_in(v, INT32_MIN, INT32_MAX, "int"))
    elif code == 0x80:
        wb_u64(wb, _uint_in(v, UINT64_MAX, "ulong"))
    elif code == 0x81 or code == 0x83:
        wb_u64(wb, <uint64_t>_int_in(v, INT64_MIN, INT64_MAX,
                                     "long" if code == 0x81 else "timestamp"))
    elif code == 0x72 or code == 0x82:
        if not isinstance(v, (float, int)) or isinstance(v, bool):
            raise _EncodeError("array of floats holds %r" % (v,))
        if code == 0x82:
            d = <double>v
            memcpy(&u64, &d, 8)
            return wb_u64(wb, u64)
        f = <float>v
        memcpy(&u32, &f, 4)
        wb_u32(wb, u32)
    elif code == 0x73:
        if not isinstance(v, str) or len(v) != 1:
            raise _EncodeError("char must be a single character, not %r" % (v,))
        wb_u32(wb, <uint32_t>ord(v))
    elif code == 0x74 or code == 0x84 or code == 0x94:
        n = 4 if code == 0x74 else (8 if code == 0x84 else 16)
        if not isinstance(v, bytes) or len(v) != n:
            raise _EncodeError("decimal%d needs %d raw bytes, not %r" % (n * 8, n, v))
        wb_write(wb, PyBytes_AS_STRING(v), n)
    elif code == 0x98:
        if isinstance(v, _UUID):
            v = v.bytes
        if not isinstance(v, bytes) or len(v) != 16:
            raise _EncodeError("uuid needs a uuid.UUID or 16 bytes, not %r" % (v,))
        wb_write(wb, PyBytes_AS_STRING(v), 16)
    elif code == 0xa0 or code == 0xb0:
        if not isinstance(v, bytes):
            v = bytes(v)
        n = PyBytes_GET_SIZE(v)
        if code == 0xa0:
            wb_u8(wb, <uint8_t>n)
        else:
            wb_u32(wb, <uint32_t>n)
        wb_write(wb, PyBytes_AS_STRING(v), n)
    elif code == 0xa1 or code == 0xb1 or code == 0xa3 or code == 0xb3:
        if not isinstance(v, str):
            raise _EncodeError("array of strings/symbols holds %r" % (v,))
        p = _utf8(v, &n) if (code & 0x0f) == 1 else _ascii(v, &n)
        if code & 0x10:
            wb_u32(wb, <uint32_t>n)
        else:
            wb_u8(wb, <uint8_t>n)
        wb_write(wb, p, n)
    else:
        raise _EncodeError("cannot encode array elements with constructor 0x%02x" % code)
    return 0


cdef int encode_value(WriteBuffer wb, object v, int depth) except -1:
    """Append v (with its constructor) to wb, in the most compact form."""
    cdef object t = type(v)
    cdef Py_ssize_t n
    cdef const char* p
    cdef double d
    cdef uint64_t u64
    cdef uint64_t x
    if v is None:
        return wb_u8(wb, 0x40)
    if t is bool:
        return wb_u8(wb, 0x41 if v is True else 0x42)
    if t is int:
        return _enc_long(wb, v)
    if t is str:
        p = _utf8(v, &n)
        return _enc_vbin(wb, p, n, 0xa1, 0xb1)
    if t is bytes:
        return _enc_vbin(wb, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), 0xa0, 0xb0)
    if t is _symbol_t:
        p = _ascii(v, &n)
        return _enc_vbin(wb, p, n, 0xa3, 0xb3)
    if t is list or t is tuple:
        return _enc_list(wb, v, depth)
    if t is dict:
        return _enc_map(wb, <dict>v, depth)
    if t is Described:
        _check_depth(depth)
        wb_u8(wb, 0)
        encode_value(wb, (<Described>v).descriptor, depth + 1)
        return encode_value(wb, (<Described>v).value, depth + 1)
    if t is _ulong_t:
        x = _uint_in(v, UINT64_MAX, "ulong")
        if x == 0:
            return wb_u8(wb, 0x44)
        if x < 256:
            wb_u8(wb, 0x53)
            return wb_u8(wb, <uint8_t>x)
        wb_u8(wb, 0x80)
        return wb_u64(wb, x)
    if t is _uint_t:
        x = _uint_in(v, UINT32_MAX, "uint")
        if x == 0:
            return wb_u8(wb, 0x43)
        if x < 256:
            wb_u8(wb, 0x52)
            return wb_u8(wb, <uint8_t>x)
        wb_u8(wb, 0x70)
        return wb_u32(wb, <uint32_t>x)
    if t is float:
        d = v
        memcpy(&u64, &d, 8)
        wb_u8(wb, 0x82)
        return wb_u64(wb, u64)
    if t is Array:
        return _enc_array(wb, <Array>v, depth)
    if t is _int32_t:
        n = _int_in(v, INT32_MIN, INT32_MAX, "int")
        if -128 <= n <= 127:
            wb_u8(wb, 0x54)
            return wb_u8(wb, <uint8_t><int8_t>n)
        wb_u8(wb, 0x71)
        return wb_u32(wb, <uint32_t><int32_t>n)
    if t is _ubyte_t:
        wb_u8(wb, 0x50)
        return _enc_payload(wb, 0x50, v, depth)
    if t is _ushort_t:
        wb_u8(wb, 0x60)
        return _enc_payload(wb, 0x60, v, depth)
    if t is _byte_t:
        wb_u8(wb, 0x51)
        return _enc_payload(wb, 0x51, v, depth)
    if t is _short_t:
        wb_u8(wb, 0x61)
        return _enc_payload(wb, 0x61, v, depth)
    if t is _timestamp_t:
        wb_u8(wb, 0x83)
        return _enc_payload(wb, 0x83, v, depth)
    if t is _float32_t:
        wb_u8(wb, 0x72)
        return _enc_payload(wb, 0x72, v, depth)
    if t is _char_t:
        wb_u8(wb, 0x73)
        return _enc_payload(wb, 0x73, v, depth)
    if t is _dec32_t:
        wb_u8(wb, 0x74)
        return _enc_payload(wb, 0x74, v, depth)
    if t is _dec64_t:
        wb_u8(wb, 0x84)
        return _enc_payload(wb, 0x84, v, depth)
    if t is _dec128_t:
        wb_u8(wb, 0x94)
        return _enc_payload(wb, 0x94, v, depth)
    if t is _UUID:
        wb_u8(wb, 0x98)
        return _enc_payload(wb, 0x98, v, depth)
    # Subclasses and other bytes-likes: map to the nearest base type.
    if isinstance(v, bool):
        return wb_u8(wb, 0x41 if v else 0x42)
    for base in (_ulong_t, _uint_t, _int32_t, _ubyte_t, _ushort_t, _byte_t, _short_t, _timestamp_t,
                 _float32_t, _symbol_t, _char_t, _dec32_t, _dec64_t, _dec128_t, _UUID):
        if isinstance(v, base):
            return encode_value(wb, base(v) if base is not _UUID else _UUID(bytes=v.bytes), depth)
    if isinstance(v, int):
        return _enc_long(wb, v)
    if isinstance(v, float):
        return encode_value(wb, float(v), depth)
    if isinstance(v, str):
        return encode_value(wb, str(v), depth)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return encode_value(wb, bytes(v), depth)
    if isinstance(v, (list, tuple)):
        return _enc_list(wb, v, depth)
    if isinstance(v, dict):
        return _enc_map(wb, dict(v), depth)
    raise _EncodeError("cannot encode a %s as an AMQP value" % t.__name__)


cpdef bytes encode(object value):
    """Encode one value (see the value model in docs/INTERFACES.md)."""
    cdef WriteBuffer wb = WriteBuffer.__new__(WriteBuffer)
    encode_value(wb, value, 0)
    return wb.to_bytes()


# =========================================================================================
# Frames
# =========================================================================================

cdef class FrameReader:
    """Splits a byte stream into protocol headers and frames; buffers partial input."""

    def __cinit__(self, max_frame_size=0xFFFFFFFF):
        self._cap = 16384
        self._buf = <char*>PyMem_Malloc(self._cap)
        if self._buf == NULL:
            raise MemoryError()
        self._start = 0
        self._end = 0
        self.max_frame_size = max_frame_size

    def __dealloc__(self):
        PyMem_Free(self._buf)
        self._buf = NULL

    @property
    def buffered(self):
        """Bytes received and not yet returned."""
        return self._end - self._start

    cdef int feed_c(self, const char* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t have = self._end - self._start
        cdef Py_ssize_t new_cap
        cdef char* nb
        if n <= 0:
            return 0
        if have == 0:
            self._start = self._end = 0
            if self._cap > (1 << 20) and n < 16384:
                # Give back memory a large frame needed once.
                nb = <char*>PyMem_Realloc(self._buf, 16384)
                if nb != NULL:
                    self._buf = nb
                    self._cap = 16384
        if self._end + n > self._cap:
            if self._start > 0:
                memmove(self._buf, self._buf + self._start, <size_t>have)
                self._start = 0
                self._end = have
            if have + n > self._cap:
                new_cap = self._cap * 2
                if new_cap < have + n:
                    new_cap = have + n
                nb = <char*>PyMem_Realloc(self._buf, new_cap)
                if nb == NULL:
                    raise MemoryError()
                self._buf = nb
                self._cap = new_cap
        memcpy(self._buf + self._end, data, <size_t>n)
        self._end += n
        return 0

    cpdef feed(self, data):
        """Append received bytes (bytes, bytearray or memoryview)."""
        cdef FRBuffer b
        cdef Py_buffer pb
        cdef int release = _open_input(data, &b, &pb)
        try:
            self.feed_c(b.buf, b.len)
        finally:
            if release:
                PyBuffer_Release(&pb)

    cpdef object read_protocol_header(self):
        """The next 8 bytes (a protocol header such as AMQP_HEADER), or None if fewer are buffered."""
        if self._end - self._start < 8:
            return None
        h = PyBytes_FromStringAndSize(self._buf + self._start, 8)
        self._start += 8
        return h

    cdef int next_frame_c(self, FrameView* out) except -1:
        cdef Py_ssize_t avail = self._end - self._start
        cdef const char* p
        cdef uint32_t size
        cdef uint8_t doff
        if avail < 8:
            return 0
        p = self._buf + self._start
        size = load_u32(p)
        doff = <uint8_t>p[4]
        if size < 8:
            raise _DecodeError("frame size %d is below the minimum of 8" % size)
        if size > self.max_frame_size:
            raise _DecodeError("frame size %d exceeds max-frame-size %d" % (size, self.max_frame_size))
        if doff < 2:
            raise _DecodeError("frame data offset %d is below the minimum of 2" % doff)
        if <uint32_t>doff * 4 > size:
            raise _DecodeError("frame data offset %d (%d bytes) is beyond the frame size %d"
                               % (doff, doff * 4, size))
        if avail < size:
            if size > self._cap and size <= (1 << 20):
                # Make room for the whole frame now, so feed() does not grow step by step (a peer's
                # claim of a bigger frame is not trusted with memory before the bytes arrive).
                self._grow_for(size)
            return 0
        out.frame_type = <uint8_t>p[5]
        out.channel = load_u16(p + 6)
        out.body = p + doff * 4
        out.body_len = size - doff * 4
        self._start += size
        return 1

    cdef int _grow_for(self, Py_ssize_t size) except -1:
        cdef Py_ssize_t have = self._end - self._start
        cdef char* nb
        if self._start > 0:
            memmove(self._buf, self._buf + self._start, <size_t>have)
            self._start = 0
            self._end = have
        nb = <char*>PyMem_Realloc(self._buf, size)
        if nb == NULL:
            raise MemoryError()
        self._buf = nb
        self._cap = size
        return 0

    cpdef object next_frame(self):
        """(frame_type, channel, body) for the next complete frame, or None."""
        cdef FrameView fv
        if not self.next_frame_c(&fv):
            return None
        return (fv.frame_type, fv.channel, PyBytes_FromStringAndSize(fv.body, fv.body_len))


cdef int _read_descriptor_code(FRBuffer* b, uint64_t* code) except -1:
    """Read a descriptor that must be a ulong or a known symbol; returns 1, or 0 if it is
    something else (the cursor is then past it)."""
    cdef uint8_t c = _u8(b, "descriptor")
    cdef Py_ssize_t n
    cdef const char* p
    if c == 0x53:
        code[0] = <uint8_t>_need(b, 1, "descriptor")[0]
        return 1
    if c == 0x80:
        code[0] = load_u64(_need(b, 8, "descriptor"))
        return 1
    if c == 0x44:
        code[0] = 0
        return 1
    if c == 0xa3 or c == 0xb3:
        n = _vlen(b, c == 0xb3, "descriptor symbol")
        p = frb_take(b, n)
        v = _DESCRIPTOR_CODES_B.get(PyBytes_FromStringAndSize(p, n))
        if v is None:
            return 0
        code[0] = v
        return 1
    b.buf -= 1
    b.len += 1
    skip_value(b, 1)
    return 0


cpdef tuple decode_performative(object body):
    """Decode a frame body into (descriptor code, fields list, payload bytes)."""
    cdef FRBuffer b
    cdef Py_buffer pb
    cdef int release = _open_input(body, &b, &pb)
    cdef uint64_t code
    cdef uint8_t c
    cdef list fields
    try:
        if b.len == 0:
            raise _DecodeError("empty frame body where a performative was expected")
        if <uint8_t>b.buf[0] != 0:
            raise _err(&b, "performative is not a described type (constructor 0x%02x)"
                       % <uint8_t>b.buf[0])
        frb_take(&b, 1)
        if not _read_descriptor_code(&b, &code):
            raise _DecodeError("unknown performative descriptor in frame body")
        c = _u8(&b, "performative list constructor")
        if c == 0x45:
            fields = []
        elif c == 0xc0 or c == 0xd0:
            fields = _decode_list(&b, c == 0xd0, 1)
        else:
            b.buf -= 1
            b.len += 1
            raise _err(&b, "performative body is not a list (constructor 0x%02x)" % c)
        return (code, fields, PyBytes_FromStringAndSize(b.buf, b.len))
    finally:
        if release:
            PyBuffer_Release(&pb)


cpdef bytes encode_frame(int channel, uint64_t code, object fields, object payload=b"", int frame_type=0):
    """One frame holding the performative `code` with `fields` (trailing Nones dropped)."""
    cdef WriteBuffer wb = WriteBuffer.__new__(WriteBuffer)
    cdef Py_ssize_t n = len(fields), i, start
    cdef FRBuffer pl
    cdef Py_buffer pb
    cdef int release
    if channel < 0 or channel > 0xffff:
        raise _EncodeError("channel %d out of range" % channel)
    wb.len = 8
    if code < 256:
        wb_u8(wb, 0)
        wb_u8(wb, 0x53)
        wb_u8(wb, <uint8_t>code)
    else:
        wb_u8(wb, 0)
        wb_u8(wb, 0x80)
        wb_u64(wb, code)
    while n > 0 and fields[n - 1] is None:
        n -= 1
    if n == 0:
        wb_u8(wb, 0x45)
    else:
        start = _begin_compound(wb)
        for i in range(n):
            encode_value(wb, fields[i], 1)
        _finish_compound(wb, start, n, 0xc0, 0xd0)
    if payload is not None:
        release = _open_input(payload, &pl, &pb)
        try:
            wb_write(wb, pl.buf, pl.len)
        finally:
            if release:
                PyBuffer_Release(&pb)
    if wb.len > UINT32_MAX:
        raise _EncodeError("frame of %d bytes is too large" % wb.len)
    store_u32(wb.buf, <uint32_t>wb.len)
    wb.buf[4] = 2
    wb.buf[5] = <char>frame_type
    store_u16(wb.buf + 6, <uint16_t>channel)
    return wb.to_bytes()


cdef inline Py_ssize_t _put_uint(char* p, uint32_t v) noexcept nogil:
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


cdef inline Py_ssize_t _put_list_header(char* p, Py_ssize_t payload, uint32_t count) noexcept nogil:
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


cpdef bytes encode_transfer_frames(int channel, uint32_t handle, uint32_t delivery_id, object tag,
                                   bint settled, object message, uint64_t max_frame_size):
    """Every frame of one delivery: transfer performatives plus the message split so that no frame
    exceeds max_frame_size (more=true on all but the last).  Only the first frame carries
    delivery-id, delivery-tag, message-format and settled; continuations carry handle and more."""
    cdef char items1[300]
    cdef char perf1[320]
    cdef char items2[16]
    cdef char perf2[32]
    cdef Py_ssize_t tl = PyBytes_GET_SIZE(tag) if PyBytes_CheckExact(tag) else 0
    cdef Py_ssize_t L = PyBytes_GET_SIZE(message) if PyBytes_CheckExact(message) else 0
    cdef Py_ssize_t n1, n2, p1, p2, cap1, capn, nframes, total, chunk, off, fs
    cdef const char* msg = PyBytes_AS_STRING(message) if PyBytes_CheckExact(message) else NULL
    cdef char* out
    cdef char* w
    if not PyBytes_CheckExact(tag):
        tag = bytes(memoryview(tag))
        tl = PyBytes_GET_SIZE(tag)
    if not PyBytes_CheckExact(message):
        message = bytes(memoryview(message))
        L = PyBytes_GET_SIZE(message)
        msg = PyBytes_AS_STRING(message)
    if channel < 0 or channel > 0xffff:
        raise _EncodeError("channel %d out of range" % channel)
    if tl > 255:
        raise _EncodeError("delivery-tag of %d bytes is too long (the spec allows 32)" % tl)
    if max_frame_size == 0 or max_frame_size > UINT32_MAX:
        max_frame_size = UINT32_MAX
    # First performative: [handle, delivery-id, tag, format=0, settled, more]
    n1 = _put_uint(items1, handle)
    n1 += _put_uint(items1 + n1, delivery_id)
    items1[n1] = <char>0xa0
    items1[n1 + 1] = <char>tl
    memcpy(items1 + n1 + 2, PyBytes_AS_STRING(tag), <size_t>tl)
    n1 += 2 + tl
    items1[n1] = <char>0x43
    items1[n1 + 1] = <char>(0x41 if settled else 0x42)
    items1[n1 + 2] = <char>0x42          # more: patched to 0x41 when the delivery continues
    n1 += 3
    perf1[0] = 0
    perf1[1] = <char>0x53
    perf1[2] = <char>0x14
    p1 = 3 + _put_list_header(perf1 + 3, n1, 6)
    memcpy(perf1 + p1, items1, <size_t>n1)
    p1 += n1
    # Continuation performative: [handle, null, null, null, null, more]
    n2 = _put_uint(items2, handle)
    items2[n2] = items2[n2 + 1] = items2[n2 + 2] = items2[n2 + 3] = <char>0x40
    items2[n2 + 4] = <char>0x42
    n2 += 5
    perf2[0] = 0
    perf2[1] = <char>0x53
    perf2[2] = <char>0x14
    p2 = 3 + _put_list_header(perf2 + 3, n2, 6)
    memcpy(perf2 + p2, items2, <size_t>n2)
    p2 += n2

    cap1 = <Py_ssize_t>max_frame_size - 8 - p1
    capn = <Py_ssize_t>max_frame_size - 8 - p2
    if cap1 <= 0 or capn <= 0:
        raise _EncodeError("max-frame-size %d leaves no room for a transfer payload" % max_frame_size)
    if L <= cap1:
        nframes = 1
    else:
        nframes = 1 + (L - cap1 + capn - 1) // capn
    total = 8 * nframes + p1 + (nframes - 1) * p2 + L
    result = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(result)
    w = out
    # first frame
    chunk = L if L <= cap1 else cap1
    fs = 8 + p1 + chunk
    store_u32(w, <uint32_t>fs)
    w[4] = 2
    w[5] = 0
    store_u16(w + 6, <uint16_t>channel)
    memcpy(w + 8, perf1, <size_t>p1)
    if nframes > 1:
        w[8 + p1 - 1] = <char>0x41
    memcpy(w + 8 + p1, msg, <size_t>chunk)
    w += fs
    off = chunk
    while off < L:
        chunk = L - off
        if chunk > capn:
            chunk = capn
        fs = 8 + p2 + chunk
        store_u32(w, <uint32_t>fs)
        w[4] = 2
        w[5] = 0
        store_u16(w + 6, <uint16_t>channel)
        memcpy(w + 8, perf2, <size_t>p2)
        if off + chunk < L:
            w[8 + p2 - 1] = <char>0x41
        memcpy(w + 8 + p2, msg + off, <size_t>chunk)
        w += fs
        off += chunk
    return result


# =========================================================================================
# Messages
# =========================================================================================

cdef const char* _SECTION_NAMES[9]
_SECTION_NAMES[0] = "amqp:header:list"
_SECTION_NAMES[1] = "amqp:delivery-annotations:map"
_SECTION_NAMES[2] = "amqp:message-annotations:map"
_SECTION_NAMES[3] = "amqp:properties:list"
_SECTION_NAMES[4] = "amqp:application-properties:map"
_SECTION_NAMES[5] = "amqp:data:binary"
_SECTION_NAMES[6] = "amqp:amqp-sequence:list"
_SECTION_NAMES[7] = "amqp:amqp-value:*"
_SECTION_NAMES[8] = "amqp:footer:map"


cdef int _section_code(FRBuffer* b) except -1:
    """Read a section descriptor; returns 0x70..0x78."""
    cdef Py_ssize_t at = frb_offset(b)
    cdef uint8_t c = _u8(b, "section descriptor")
    cdef uint64_t code = 0
    cdef Py_ssize_t n, i
    cdef const char* p
    if c == 0x53:
        code = <uint8_t>_need(b, 1, "section descriptor")[0]
    elif c == 0x80:
        code = load_u64(_need(b, 8, "section descriptor"))
    elif c == 0xa3 or c == 0xb3:
        n = _vlen(b, c == 0xb3, "section descriptor")
        p = frb_take(b, n)
        for i in range(9):
            if <size_t>n == strlen(_SECTION_NAMES[i]) and memcmp(p, _SECTION_NAMES[i], n) == 0:
                return 0x70 + i
        raise _DecodeError("unknown message section descriptor at offset %d" % at)
    else:
        raise _DecodeError("message section descriptor at offset %d is not a ulong or symbol "
                           "(constructor 0x%02x)" % (at, c))
    if code < 0x70 or code > 0x78:
        raise _DecodeError("unknown message section descriptor 0x%x at offset %d" % (code, at))
    return <int>code


cdef inline int _scan_bool(FRBuffer* b, bint* out, str what) except -1:
    cdef uint8_t c = _u8(b, what)
    if c == 0x40:
        return 0
    if c == 0x41:
        out[0] = True
    elif c == 0x42:
        out[0] = False
    elif c == 0x56:
        c = <uint8_t>_need(b, 1, what)[0]
        if c > 1:
            raise _err(b, "invalid boolean byte in %s" % what)
        out[0] = c == 1
    else:
        b.buf -= 1
        b.len += 1
        raise _err(b, "%s has constructor 0x%02x, expected boolean" % (what, c))
    return 1


cdef inline int _scan_uint(FRBuffer* b, uint64_t* out, str what) except -1:
    """Read an unsigned integer of any width (or null: returns 0, out untouched)."""
    cdef uint8_t c = _u8(b, what)
    if c == 0x40:
        return 0
    if c == 0x43 or c == 0x44:
        out[0] = 0
    elif c == 0x50 or c == 0x52 or c == 0x53:
        out[0] = <uint8_t>_need(b, 1, what)[0]
    elif c == 0x60:
        out[0] = load_u16(_need(b, 2, what))
    elif c == 0x70:
        out[0] = load_u32(_need(b, 4, what))
    elif c == 0x80:
        out[0] = load_u64(_need(b, 8, what))
    else:
        b.buf -= 1
        b.len += 1
        raise _err(b, "%s has constructor 0x%02x, expected an unsigned integer" % (what, c))
    return 1


cdef inline int _scan_timestamp(FRBuffer* b, int64_t* out, str what) except -1:
    cdef uint8_t c = _u8(b, what)
    if c == 0x40:
        return 0
    if c != 0x83:
        b.buf -= 1
        b.len += 1
        raise _err(b, "%s has constructor 0x%02x, expected a timestamp" % (what, c))
    out[0] = <int64_t>load_u64(_need(b, 8, what))
    return 1


cdef object _scan_address(FRBuffer* b, str what):
    """A string-ish property (string or symbol) as str; null or any other type gives None."""
    cdef uint8_t c
    cdef Py_ssize_t n
    if b.len < 1:
        _need(b, 1, what)
    c = <uint8_t>b.buf[0]
    if c == 0x40:
        frb_take(b, 1)
        return None
    if c == 0xa1 or c == 0xb1 or c == 0xa3 or c == 0xb3:
        frb_take(b, 1)
        n = _vlen(b, (c & 0x10) != 0, what)
        return _decode_str(frb_take(b, n), n, b)
    skip_value(b, 1)
    return None


cdef int _open_list_section(FRBuffer* b, uint32_t* count, Py_ssize_t* rest, str what) except -1:
    """Enter a list-valued section: returns 1 with b narrowed (restore with _close_compound), or 0
    for list0/null."""
    cdef uint8_t c = _u8(b, what)
    if c == 0x45 or c == 0x40:
        count[0] = 0
        return 0
    if c != 0xc0 and c != 0xd0:
        b.buf -= 1
        b.len += 1
        raise _err(b, "%s is not a list (constructor 0x%02x)" % (what, c))
    rest[0] = _open_compound(b, c == 0xd0, count, what, 1, 1)
    return 1


cdef int _scan_header(FRBuffer* b, MessageInfo info) except -1:
    cdef uint32_t count, i
    cdef Py_ssize_t rest
    cdef uint64_t u
    cdef bint flag
    if not _open_list_section(b, &count, &rest, "header"):
        return 0
    for i in range(count):
        if i == 0:
            if _scan_bool(b, &flag, "header durable"):
                info.durable = flag
        elif i == 1:
            if _scan_uint(b, &u, "header priority"):
                if u > 255:
                    raise _err(b, "header priority %d out of range" % u)
                info.priority = <int>u
        elif i == 2:
            if _scan_uint(b, &u, "header ttl"):
                if u > UINT32_MAX:
                    raise _err(b, "header ttl %d out of range" % u)
                info.ttl = <uint32_t>u
        elif i == 3:
            if _scan_bool(b, &flag, "header first-acquirer"):
                info.first_acquirer = flag
        elif i == 4:
            if _scan_uint(b, &u, "header delivery-count"):
                if u > UINT32_MAX:
                    raise _err(b, "header delivery-count %d out of range" % u)
                info.delivery_count = <uint32_t>u
        else:
            skip_value(b, 1)
    return _close_compound(b, rest, "header")


cdef int _scan_properties(FRBuffer* b, MessageInfo info) except -1:
    cdef uint32_t count, i
    cdef Py_ssize_t rest, n
    cdef uint8_t c
    cdef int64_t ts
    if not _open_list_section(b, &count, &rest, "properties"):
        return 0
    for i in range(count):
        if i == 1:
            c = <uint8_t>b.buf[0] if b.len else 0
            if c == 0xa0 or c == 0xb0:
                frb_take(b, 1)
                n = _vlen(b, c == 0xb0, "properties user-id")
                info.user_id = PyBytes_FromStringAndSize(frb_take(b, n), n)
            else:
                skip_value(b, 1)
        elif i == 2:
            info.to = _scan_address(b, "properties to")
        elif i == 3:
            info.subject = _scan_address(b, "properties subject")
        elif i == 4:
            info.reply_to = _scan_address(b, "properties reply-to")
        elif i == 8:
            if _scan_timestamp(b, &ts, "properties absolute-expiry-time"):
                info.absolute_expiry_time = ts
        elif i == 9:
            if _scan_timestamp(b, &ts, "properties creation-time"):
                info.creation_time = ts
        else:
            skip_value(b, 1)
    return _close_compound(b, rest, "properties")


cdef int _skip_map_section(FRBuffer* b, str what) except -1:
    cdef uint8_t c
    if b.len < 1:
        _need(b, 1, what)
    c = <uint8_t>b.buf[0]
    if c != 0xc1 and c != 0xd1 and c != 0x40:
        raise _err(b, "%s is not a map (constructor 0x%02x)" % (what, c))
    return skip_value(b, 1)


@cython.freelist(64)
cdef class MessageInfo:
    """What the broker needs from an encoded message, found without decoding its body."""

    def __repr__(self):
        return ("MessageInfo(size=%d, durable=%r, priority=%d, ttl=%d, to=%r, subject=%r, bare_offset=%d)"
                % (self.size, self.durable, self.priority, self.ttl, self.to, self.subject, self.bare_offset))

    cdef object _section_value(self, Py_ssize_t off, object default):
        if off < 0:
            return default
        v, _ = decode_at(self.data, off)
        return default if v is None else v

    def application_properties(self):
        """The application-properties map (decoded now), or {}."""
        return self._section_value(self._ap_value, {})

    def message_annotations(self):
        """The message-annotations map (decoded now), or {}."""
        return self._section_value(self._ma_value, {})

    def delivery_annotations(self):
        return self._section_value(self._da_value, {})

    def footer(self):
        return self._section_value(self._footer_value, {})

    def properties(self):
        """The properties list (decoded now), or [] (message-id is [0], correlation-id [5] ...)."""
        return self._section_value(self._props_value, [])

    def bare_message(self):
        """The message from bare_offset on (message-annotations, properties, ..., body, footer)."""
        return self.data[self.bare_offset:]

    def rebuild(self, bytes header=b"", annotations=None):
        """header (e.g. from encode_header) + the message after its header and delivery-annotations.

        With `annotations` (a dict), they are merged over the message's own message-annotations
        (str keys become symbols) and the section is re-encoded."""
        if annotations is None:
            return header + self.data[self.bare_offset:]
        merged = self.message_annotations()
        for k, v in annotations.items():
            merged[_symbol_t(k) if type(k) is str else k] = v
        cdef WriteBuffer wb = WriteBuffer.__new__(WriteBuffer)
        wb_write(wb, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header))
        wb_u8(wb, 0)
        wb_u8(wb, 0x53)
        wb_u8(wb, 0x72)
        _enc_map(wb, merged, 0)
        wb_write(wb, PyBytes_AS_STRING(self.data) + self.properties_offset,
                 self.size - self.properties_offset)
        return wb.to_bytes()


cpdef MessageInfo scan_message(object data):
    """Scan an encoded message's sections; reads header fields and to/subject/reply-to only.

    data is bytes (kept as info.data); other bytes-likes are copied to bytes first."""
    cdef MessageInfo info = MessageInfo.__new__(MessageInfo)
    if not PyBytes_CheckExact(data):
        data = bytes(data)
    cdef FRBuffer b
    cdef int code, prev = 0
    cdef Py_ssize_t sec_start
    cdef uint8_t c
    frb_init(&b, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    info.data = data
    info.size = b.len
    info.priority = 4
    info.bare_offset = -1
    info.annotations_offset = -1
    info.properties_offset = -1
    info.body_offset = -1
    info._da_value = info._ma_value = info._props_value = info._ap_value = info._footer_value = -1
    while b.len > 0:
        sec_start = frb_offset(&b)
        if <uint8_t>b.buf[0] != 0:
            raise _err(&b, "message section is not a described value (constructor 0x%02x)"
                       % <uint8_t>b.buf[0])
        frb_take(&b, 1)
        code = _section_code(&b)
        if code < prev or (code == prev and code != 0x75 and code != 0x76) or (
                prev >= 0x75 and prev <= 0x77 and code != prev and code != 0x78):
            raise _DecodeError("message section 0x%x at offset %d is out of order (after 0x%x)"
                               % (code, sec_start, prev))
        prev = code
        if code >= 0x72 and info.bare_offset < 0:
            info.bare_offset = sec_start
        if code >= 0x73 and info.properties_offset < 0:
            info.properties_offset = sec_start
        if code >= 0x75 and info.body_offset < 0:
            info.body_offset = sec_start
        if code == 0x70:
            _scan_header(&b, info)
        elif code == 0x71:
            info._da_value = frb_offset(&b)
            _skip_map_section(&b, "delivery-annotations")
        elif code == 0x72:
            info.annotations_offset = sec_start
            info._ma_value = frb_offset(&b)
            _skip_map_section(&b, "message-annotations")
        elif code == 0x73:
            info._props_value = frb_offset(&b)
            _scan_properties(&b, info)
        elif code == 0x74:
            info._ap_value = frb_offset(&b)
            _skip_map_section(&b, "application-properties")
        elif code == 0x75:
            c = <uint8_t>b.buf[0] if b.len else 0
            if c != 0xa0 and c != 0xb0:
                if b.len == 0:
                    _need(&b, 1, "data section")
                raise _err(&b, "data section is not binary (constructor 0x%02x)" % c)
            skip_value(&b, 1)
        elif code == 0x76:
            c = <uint8_t>b.buf[0] if b.len else 0
            if c != 0x45 and c != 0xc0 and c != 0xd0:
                if b.len == 0:
                    _need(&b, 1, "amqp-sequence section")
                raise _err(&b, "amqp-sequence section is not a list (constructor 0x%02x)" % c)
            skip_value(&b, 1)
        elif code == 0x77:
            skip_value(&b, 1)
        else:
            info._footer_value = frb_offset(&b)
            _skip_map_section(&b, "footer")
    if info.bare_offset < 0:
        info.bare_offset = info.size
    if info.properties_offset < 0:
        info.properties_offset = info.size
    if info.body_offset < 0:
        info.body_offset = info.size
    return info


cpdef bytes encode_header(bint durable, int priority, uint64_t ttl, bint first_acquirer,
                          uint64_t delivery_count):
    """A header section with default fields omitted (durable=False, priority=4, ttl=0,
    first_acquirer=False, delivery_count=0); all defaults give b"" (an absent header)."""
    cdef char buf[32]
    cdef char items[24]
    cdef Py_ssize_t n = 0, last = 0, h
    if priority < 0 or priority > 255:
        raise _EncodeError("priority %d out of range" % priority)
    if ttl > UINT32_MAX or delivery_count > UINT32_MAX:
        raise _EncodeError("ttl/delivery-count out of range for uint")
    # durable
    items[n] = <char>(0x41 if durable else 0x40)
    n += 1
    if durable:
        last = n
    if priority != 4:
        items[n] = <char>0x50
        items[n + 1] = <char>priority
        n += 2
        last = n
    else:
        items[n] = <char>0x40
        n += 1
    if ttl:
        n += _put_uint(items + n, <uint32_t>ttl)
        last = n
    else:
        items[n] = <char>0x40
        n += 1
    items[n] = <char>(0x41 if first_acquirer else 0x40)
    n += 1
    if first_acquirer:
        last = n
    if delivery_count:
        n += _put_uint(items + n, <uint32_t>delivery_count)
        last = n
    if last == 0:
        return b""
    # count the items kept
    cdef FRBuffer cb
    cdef uint32_t count = 0
    frb_init(&cb, items, last)
    while cb.len > 0:
        skip_value(&cb, 0)
        count += 1
    buf[0] = 0
    buf[1] = <char>0x53
    buf[2] = <char>0x70
    h = 3 + _put_list_header(buf + 3, last, count)
    memcpy(buf + h, items, <size_t>last)
    return PyBytes_FromStringAndSize(buf, h + last)
