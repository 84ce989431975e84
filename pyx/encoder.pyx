# cython: language_level=3
"""AMQP 1.0 values written: WriteBuffer and encode_value (the value model is cypid.pyx.values').

Encoding writes into a ``WriteBuffer`` and always picks the compact form (uint0/smalluint,
list0/list8, str8...): compound values are written optimistically in their 8-bit form and
widened with one memmove when they turn out larger.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyBuffer_Release
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.long cimport PyLong_Check
from libc.stdint cimport (uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, uint64_t, int64_t,
                         INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX, UINT32_MAX, UINT64_MAX)
from libc.string cimport memcpy, memmove

from cypid.pyx.frb cimport FRBuffer, load_u32, store_u32
from cypid.pyx.values cimport MAX_DEPTH, Array, Described, canonical_code, open_input

import uuid as _uuid_mod

from cypid.pyx.values import (EncodeError, byte, char, decimal32, decimal64, decimal128, float32, int32,
                              short, symbol, timestamp, ubyte, uint, ulong, ushort)

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyUnicode_IS_ASCII(object s)

# Module-level C references to the wrapper types (cheap identity tests in encode_value).
cdef object _symbol_t = symbol, _char_t = char
cdef object _ubyte_t = ubyte, _ushort_t = ushort, _uint_t = uint, _ulong_t = ulong
cdef object _byte_t = byte, _short_t = short, _int32_t = int32, _timestamp_t = timestamp
cdef object _float32_t = float32
cdef object _dec32_t = decimal32, _dec64_t = decimal64, _dec128_t = decimal128
cdef object _UUID = _uuid_mod.UUID
cdef object _EncodeError = EncodeError


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
        cdef int release = open_input(data, &b, &pb)
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


cdef int finish_compound(WriteBuffer wb, Py_ssize_t start, Py_ssize_t count,
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


cdef int _enc_list(WriteBuffer wb, object seq, int depth) except -1:
    cdef Py_ssize_t n = len(seq)
    if n == 0:
        return wb_u8(wb, 0x45)
    _check_depth(depth)
    cdef Py_ssize_t start = begin_compound(wb)
    for item in seq:
        encode_value(wb, item, depth + 1)
    return finish_compound(wb, start, n, 0xc0, 0xd0)


cdef int encode_map(WriteBuffer wb, dict m, int depth) except -1:
    _check_depth(depth)
    cdef Py_ssize_t start = begin_compound(wb)
    for k, v in m.items():
        encode_value(wb, k, depth + 1)
        encode_value(wb, v, depth + 1)
    return finish_compound(wb, start, 2 * len(m), 0xc1, 0xd1)


cdef int _enc_array(WriteBuffer wb, Array a, int depth) except -1:
    _check_depth(depth)
    cdef Py_ssize_t start = begin_compound(wb)
    _enc_array_payload(wb, a, depth)
    return finish_compound(wb, start, len(a.elements), 0xe0, 0xf0)


cdef int _enc_array_payload(WriteBuffer wb, Array a, int depth) except -1:
    """Write an array's element constructor (with descriptor) and its elements."""
    cdef int code = a.code
    cdef list elems = a.elements
    cdef int ec
    cdef Py_ssize_t n, max_len = 0
    if code < 1 or code > 255 or canonical_code(code) != code:
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
        return encode_map(wb, <dict>v, depth)
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
        return encode_map(wb, dict(v), depth)
    raise _EncodeError("cannot encode a %s as an AMQP value" % t.__name__)


cpdef bytes encode(object value):
    """Encode one value (see the value model in docs/INTERFACES.md)."""
    cdef WriteBuffer wb = WriteBuffer.__new__(WriteBuffer)
    encode_value(wb, value, 0)
    return wb.to_bytes()

