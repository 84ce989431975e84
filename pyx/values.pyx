# cython: language_level=3
"""AMQP 1.0 values: the type model (typed wrappers, Described, Array) and decoding.

The bottom layer of the codec: cypid.pyx.encoder, cypid.pyx.frames and cypid.pyx.sections build on
it, and cypid.pyx.codec re-exports the lot.  Decoding walks an ``FRBuffer`` (pointer + remaining length)
and dispatches on the constructor byte; every length and count is checked against the bytes present
before it is used, and a compound value narrows the cursor to its declared size so nothing inside it
can read past it.  Python objects are made only for the leaf values a caller asked for.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyBuffer_Release
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_DecodeASCII
from libc.stdint cimport uint8_t, int8_t, int16_t, uint32_t, int32_t, uint64_t, int64_t
from libc.string cimport memcpy

from cypid.pyx.frb cimport FRBuffer, frb_offset, frb_take, load_u16, load_u32, load_u64

import uuid as _uuid_mod


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

# Module-level C references to the wrapper types.
cdef object _symbol_t = symbol, _char_t = char
cdef object _ubyte_t = ubyte, _ushort_t = ushort, _uint_t = uint, _ulong_t = ulong
cdef object _byte_t = byte, _short_t = short, _int32_t = int32, _timestamp_t = timestamp
cdef object _float32_t = float32
cdef object _dec32_t = decimal32, _dec64_t = decimal64, _dec128_t = decimal128
cdef object _UUID = _uuid_mod.UUID
cdef object _DecodeError = DecodeError

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


cdef uint8_t canonical_code(int code) noexcept:
    return _canon[code] if 0 <= code <= 255 else 0


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


# =========================================================================================
# Reading (the inline helpers are in values.pxd; these are their cold error paths)
# =========================================================================================

cdef object decode_error_at(const FRBuffer* b, str what):
    return _DecodeError("%s at offset %d" % (what, frb_offset(b)))


cdef int raise_truncated(const FRBuffer* b, Py_ssize_t n, str what) except -1:
    """need() found fewer than n bytes (n = -1: read_u8 found none)."""
    if n < 0:
        raise _DecodeError("truncated %s at offset %d: need 1 byte, 0 left" % (what, frb_offset(b)))
    raise _DecodeError("truncated %s at offset %d: need %d bytes, %d left" % (what, frb_offset(b), n, b.len))


cdef Py_ssize_t read_vlen(FRBuffer* b, bint wide, str what) except -1:
    """Read a vbin/str/sym length and check that many bytes follow."""
    cdef Py_ssize_t n
    if wide:
        n = load_u32(need(b, 4, what))
    else:
        n = <uint8_t>need(b, 1, what)[0]
    if n > b.len:
        raise _DecodeError("%s at offset %d declares %d bytes, only %d left"
                           % (what, frb_offset(b), n, b.len))
    return n


cdef Py_ssize_t open_compound(FRBuffer* b, bint wide, uint32_t* count, str what,
                              int depth, Py_ssize_t min_item) except -1:
    """Read size and count of a list/map/array (its constructor just read), check them, and
    narrow b to the contents.  Returns the bytes that follow the compound, for close_compound."""
    cdef Py_ssize_t size, body, rest
    cdef Py_ssize_t at = frb_offset(b) - 1
    cdef const char* p
    if depth >= MAX_DEPTH:
        raise _DecodeError("values nested deeper than %d at offset %d" % (MAX_DEPTH, at))
    if b.len < (8 if wide else 2):
        need(b, 8 if wide else 2, what + " header")     # raises
    if wide:
        p = frb_take(b, 8)
        size = load_u32(p)
        count[0] = load_u32(p + 4)
        body = size - 4
    else:
        p = frb_take(b, 2)
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
    rest = b.len - body
    b.len = body
    return rest


# =========================================================================================
# Decoding
# =========================================================================================

cdef object decode_value(FRBuffer* b, int depth):
    """Decode one value (constructor included) at the cursor."""
    cdef uint8_t code = read_u8(b, "value constructor")
    if code == 0:
        return _decode_described(b, depth)
    return _decode_body(b, code, depth)


cdef object _decode_described(FRBuffer* b, int depth):
    if depth >= MAX_DEPTH:
        raise decode_error_at(b, "values nested deeper than %d" % MAX_DEPTH)
    d = decode_value(b, depth + 1)
    v = decode_value(b, depth + 1)
    return _described(d, v)


cdef object decode_str(const char* p, Py_ssize_t n, FRBuffer* b):
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
        u32 = <uint8_t>need(b, 1, "boolean")[0]
        if u32 > 1:
            b.buf -= 1
            b.len += 1
            raise decode_error_at(b, "invalid boolean byte 0x%02x" % u32)
        return u32 == 1
    elif code == 0x43:
        return _SMALL_UINT[0]
    elif code == 0x52:
        return _SMALL_UINT[<uint8_t>need(b, 1, "smalluint")[0]]
    elif code == 0x70:
        u32 = load_u32(need(b, 4, "uint"))
        if u32 < 256:
            return _SMALL_UINT[u32]
        return _uint_t(u32)
    elif code == 0x44:
        return _SMALL_ULONG[0]
    elif code == 0x53:
        return _SMALL_ULONG[<uint8_t>need(b, 1, "smallulong")[0]]
    elif code == 0x80:
        u64 = load_u64(need(b, 8, "ulong"))
        if u64 < 256:
            return _SMALL_ULONG[u64]
        return _ulong_t(u64)
    elif code == 0x55:
        return <int8_t>need(b, 1, "smalllong")[0]
    elif code == 0x81:
        return <int64_t>load_u64(need(b, 8, "long"))
    elif code == 0xa1 or code == 0xb1:
        n = read_vlen(b, code == 0xb1, "string")
        return decode_str(frb_take(b, n), n, b)
    elif code == 0xa3 or code == 0xb3:
        n = read_vlen(b, code == 0xb3, "symbol")
        return _decode_sym(frb_take(b, n), n, b)
    elif code == 0xa0 or code == 0xb0:
        n = read_vlen(b, code == 0xb0, "binary")
        return PyBytes_FromStringAndSize(frb_take(b, n), n)
    elif code == 0x45:
        return []
    elif code == 0xc0 or code == 0xd0:
        return decode_list(b, code == 0xd0, depth)
    elif code == 0xc1 or code == 0xd1:
        return _decode_map(b, code == 0xd1, depth)
    elif code == 0xe0 or code == 0xf0:
        return _decode_array(b, code == 0xf0, depth)
    elif code == 0x50:
        return _ubyte_t(<uint8_t>need(b, 1, "ubyte")[0])
    elif code == 0x51:
        return _byte_t(<int8_t>need(b, 1, "byte")[0])
    elif code == 0x60:
        return _ushort_t(load_u16(need(b, 2, "ushort")))
    elif code == 0x61:
        return _short_t(<int16_t>load_u16(need(b, 2, "short")))
    elif code == 0x54:
        return _int32_t(<int8_t>need(b, 1, "smallint")[0])
    elif code == 0x71:
        return _int32_t(<int32_t>load_u32(need(b, 4, "int")))
    elif code == 0x72:
        u32 = load_u32(need(b, 4, "float"))
        memcpy(&f, &u32, 4)
        return _float32_t(<double>f)
    elif code == 0x82:
        u64 = load_u64(need(b, 8, "double"))
        memcpy(&d, &u64, 8)
        return d
    elif code == 0x73:
        u32 = load_u32(need(b, 4, "char"))
        if u32 > 0x10FFFF:
            b.buf -= 4
            b.len += 4
            raise decode_error_at(b, "char code point 0x%x out of range" % u32)
        return _char_t(chr(u32))
    elif code == 0x83:
        return _timestamp_t(<int64_t>load_u64(need(b, 8, "timestamp")))
    elif code == 0x98:
        return _UUID(bytes=PyBytes_FromStringAndSize(need(b, 16, "uuid"), 16))
    elif code == 0x74:
        return _dec32_t(PyBytes_FromStringAndSize(need(b, 4, "decimal32"), 4))
    elif code == 0x84:
        return _dec64_t(PyBytes_FromStringAndSize(need(b, 8, "decimal64"), 8))
    elif code == 0x94:
        return _dec128_t(PyBytes_FromStringAndSize(need(b, 16, "decimal128"), 16))
    b.buf -= 1
    b.len += 1
    raise decode_error_at(b, "invalid constructor 0x%02x" % code)


cdef list decode_list(FRBuffer* b, bint wide, int depth):
    cdef uint32_t count, i
    cdef Py_ssize_t rest = open_compound(b, wide, &count, "list", depth, 1)
    cdef list result = []
    for i in range(count):
        result.append(decode_value(b, depth + 1))
    close_compound(b, rest, "list")
    return result


cdef dict _decode_map(FRBuffer* b, bint wide, int depth):
    cdef uint32_t count, i
    cdef Py_ssize_t at = frb_offset(b) - 1
    cdef Py_ssize_t rest = open_compound(b, wide, &count, "map", depth, 1)
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
    close_compound(b, rest, "map")
    return result


cdef Array _decode_array(FRBuffer* b, bint wide, int depth):
    cdef uint32_t count, i
    cdef Py_ssize_t rest = open_compound(b, wide, &count, "array", depth, 0)
    cdef uint8_t code = read_u8(b, "array element constructor")
    cdef object descriptor = None
    cdef signed char w
    if code == 0:
        descriptor = decode_value(b, depth + 1)
        code = read_u8(b, "array element constructor")
        if code == 0:
            b.buf -= 1
            b.len += 1
            raise decode_error_at(b, "array element constructor is described twice")
    w = _width[code]
    if w == -9:
        b.buf -= 1
        b.len += 1
        raise decode_error_at(b, "invalid array element constructor 0x%02x" % code)
    if w == 0:
        b.budget -= count
        if b.budget < 0:
            raise decode_error_at(b, "too many zero-width array elements (%d)" % count)
    elif w > 0:
        if <uint64_t>count * <uint64_t>w != <uint64_t>b.len:
            raise decode_error_at(b, "array of %d elements of %d bytes does not match its size (%d bytes left)"
                       % (count, w, b.len))
    elif count > b.len:
        raise decode_error_at(b, "array of %d variable-width elements cannot fit in %d bytes" % (count, b.len))
    cdef list elements = []
    for i in range(count):
        elements.append(_decode_body(b, code, depth + 1))
    close_compound(b, rest, "array")
    return _array(_canon[code], elements, descriptor)


cdef int skip_value(FRBuffer* b, int depth) except -1:
    """Advance over one value, checking its lengths but not its contents."""
    cdef uint8_t code = read_u8(b, "value constructor")
    cdef signed char w
    cdef Py_ssize_t n
    while code == 0:
        if depth >= MAX_DEPTH:
            raise decode_error_at(b, "values nested deeper than %d" % MAX_DEPTH)
        skip_value(b, depth + 1)
        depth += 1
        code = read_u8(b, "value constructor")
    w = _width[code]
    if w >= 0:
        if w > b.len:
            raise _DecodeError("truncated value at offset %d (constructor 0x%02x): need %d bytes, %d left"
                               % (frb_offset(b) - 1, code, w, b.len))
        frb_take(b, w)
        if code == 0x56 and <uint8_t>(b.buf - 1)[0] > 1:
            b.buf -= 1
            b.len += 1
            raise decode_error_at(b, "invalid boolean byte 0x%02x" % <uint8_t>b.buf[0])
        return 0
    if w == -1:
        n = <uint8_t>need(b, 1, "value size")[0]
    elif w == -4:
        n = load_u32(need(b, 4, "value size"))
    else:
        b.buf -= 1
        b.len += 1
        raise decode_error_at(b, "invalid constructor 0x%02x" % code)
    if n > b.len:
        raise _DecodeError("value at offset %d (constructor 0x%02x) declares %d bytes, only %d left"
                           % (frb_offset(b) - (2 if w == -1 else 5), code, n, b.len))
    frb_take(b, n)
    return 0


cpdef object decode(object data):
    """Decode exactly one AMQP value from data (bytes-like)."""
    cdef FRBuffer b
    cdef Py_buffer pb
    cdef int release = open_input(data, &b, &pb)
    try:
        v = decode_value(&b, 0)
        if b.len:
            raise decode_error_at(&b, "%d trailing bytes after the value" % b.len)
        return v
    finally:
        if release:
            PyBuffer_Release(&pb)


cpdef tuple decode_at(object data, Py_ssize_t offset=0):
    """Decode one value starting at offset; returns (value, end offset)."""
    cdef FRBuffer b
    cdef Py_buffer pb
    cdef int release = open_input(data, &b, &pb)
    try:
        if offset < 0 or offset > b.len:
            raise _DecodeError("offset %d outside data of %d bytes" % (offset, b.len))
        frb_take(&b, offset)
        v = decode_value(&b, 0)
        return v, frb_offset(&b)
    finally:
        if release:
            PyBuffer_Release(&pb)
