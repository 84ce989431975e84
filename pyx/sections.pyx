# cython: language_level=3
"""AMQP 1.0 messages as the broker sees them: scan_message and MessageInfo, encode_header.

The broker keeps every message encoded.  scan_message walks its sections once, checking their order
and reading only the header fields and the properties the broker routes and expires by; the other
sections are skipped (lengths checked) and decoded only when asked for (MessageInfo methods).
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t, UINT32_MAX
from libc.string cimport memcpy, memcmp, strlen

from cypid.pyx.frb cimport FRBuffer, frb_init, frb_offset, frb_take, load_u16, load_u32, load_u64
from cypid.pyx.values cimport (decode_at, decode_str, skip_value, need, read_u8, read_vlen,
                               open_compound, close_compound, decode_error_at)
from cypid.pyx.encoder cimport WriteBuffer, wb_u8, wb_write, put_uint, put_list_header, encode_map

from cypid.pyx.values import DecodeError, EncodeError, symbol

cdef object _DecodeError = DecodeError
cdef object _EncodeError = EncodeError
cdef object _symbol_t = symbol


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
    cdef uint8_t c = read_u8(b, "section descriptor")
    cdef uint64_t code = 0
    cdef Py_ssize_t n, i
    cdef const char* p
    if c == 0x53:
        code = <uint8_t>need(b, 1, "section descriptor")[0]
    elif c == 0x80:
        code = load_u64(need(b, 8, "section descriptor"))
    elif c == 0xa3 or c == 0xb3:
        n = read_vlen(b, c == 0xb3, "section descriptor")
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
    cdef uint8_t c = read_u8(b, what)
    if c == 0x40:
        return 0
    if c == 0x41:
        out[0] = True
    elif c == 0x42:
        out[0] = False
    elif c == 0x56:
        c = <uint8_t>need(b, 1, what)[0]
        if c > 1:
            raise decode_error_at(b, "invalid boolean byte in %s" % what)
        out[0] = c == 1
    else:
        b.buf -= 1
        b.len += 1
        raise decode_error_at(b, "%s has constructor 0x%02x, expected boolean" % (what, c))
    return 1


cdef inline int _scan_uint(FRBuffer* b, uint64_t* out, str what) except -1:
    """Read an unsigned integer of any width (or null: returns 0, out untouched)."""
    cdef uint8_t c = read_u8(b, what)
    if c == 0x40:
        return 0
    if c == 0x43 or c == 0x44:
        out[0] = 0
    elif c == 0x50 or c == 0x52 or c == 0x53:
        out[0] = <uint8_t>need(b, 1, what)[0]
    elif c == 0x60:
        out[0] = load_u16(need(b, 2, what))
    elif c == 0x70:
        out[0] = load_u32(need(b, 4, what))
    elif c == 0x80:
        out[0] = load_u64(need(b, 8, what))
    else:
        b.buf -= 1
        b.len += 1
        raise decode_error_at(b, "%s has constructor 0x%02x, expected an unsigned integer" % (what, c))
    return 1


cdef inline int _scan_timestamp(FRBuffer* b, int64_t* out, str what) except -1:
    cdef uint8_t c = read_u8(b, what)
    if c == 0x40:
        return 0
    if c != 0x83:
        b.buf -= 1
        b.len += 1
        raise decode_error_at(b, "%s has constructor 0x%02x, expected a timestamp" % (what, c))
    out[0] = <int64_t>load_u64(need(b, 8, what))
    return 1


cdef object _scan_address(FRBuffer* b, str what):
    """A string-ish property (string or symbol) as str; null or any other type gives None."""
    cdef uint8_t c
    cdef Py_ssize_t n
    if b.len < 1:
        need(b, 1, what)
    c = <uint8_t>b.buf[0]
    if c == 0x40:
        frb_take(b, 1)
        return None
    if c == 0xa1 or c == 0xb1 or c == 0xa3 or c == 0xb3:
        frb_take(b, 1)
        n = read_vlen(b, (c & 0x10) != 0, what)
        return decode_str(frb_take(b, n), n, b)
    skip_value(b, 1)
    return None


cdef int _open_list_section(FRBuffer* b, uint32_t* count, Py_ssize_t* rest, str what) except -1:
    """Enter a list-valued section: returns 1 with b narrowed (restore with close_compound), or 0
    for list0/null."""
    cdef uint8_t c = read_u8(b, what)
    if c == 0x45 or c == 0x40:
        count[0] = 0
        return 0
    if c != 0xc0 and c != 0xd0:
        b.buf -= 1
        b.len += 1
        raise decode_error_at(b, "%s is not a list (constructor 0x%02x)" % (what, c))
    rest[0] = open_compound(b, c == 0xd0, count, what, 1, 1)
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
                    raise decode_error_at(b, "header priority %d out of range" % u)
                info.priority = <int>u
        elif i == 2:
            if _scan_uint(b, &u, "header ttl"):
                if u > UINT32_MAX:
                    raise decode_error_at(b, "header ttl %d out of range" % u)
                info.ttl = <uint32_t>u
        elif i == 3:
            if _scan_bool(b, &flag, "header first-acquirer"):
                info.first_acquirer = flag
        elif i == 4:
            if _scan_uint(b, &u, "header delivery-count"):
                if u > UINT32_MAX:
                    raise decode_error_at(b, "header delivery-count %d out of range" % u)
                info.delivery_count = <uint32_t>u
        else:
            skip_value(b, 1)
    return close_compound(b, rest, "header")


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
                n = read_vlen(b, c == 0xb0, "properties user-id")
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
    return close_compound(b, rest, "properties")


cdef int _skip_map_section(FRBuffer* b, str what) except -1:
    cdef uint8_t c
    if b.len < 1:
        need(b, 1, what)
    c = <uint8_t>b.buf[0]
    if c != 0xc1 and c != 0xd1 and c != 0x40:
        raise decode_error_at(b, "%s is not a map (constructor 0x%02x)" % (what, c))
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
        encode_map(wb, merged, 0)
        wb_write(wb, PyBytes_AS_STRING(self.data) + self.properties_offset,
                 self.size - self.properties_offset)
        return wb.to_bytes()


cpdef MessageInfo scan_message(object data):
    """Scan an encoded message's sections; reads header fields and to/subject/reply-to only.

    data is bytes (kept as info.data); other bytes-likes are copied to bytes first."""
    cdef MessageInfo info = MessageInfo.__new__(MessageInfo)
    if not PyBytes_CheckExact(data):
        data = bytes(data)
    info.data = data
    scan_buffer(info, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    return info


cdef int scan_buffer(MessageInfo info, const char* data, Py_ssize_t n) except -1:
    """scan_message of the ``n`` bytes at ``data`` into a new ``info`` (its ``data`` is left as it
    is: a caller that keeps the bytes, or part of them, sets it)."""
    cdef FRBuffer b
    cdef int code, prev = 0
    cdef Py_ssize_t sec_start
    cdef uint8_t c
    frb_init(&b, data, n)
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
            raise decode_error_at(&b, "message section is not a described value (constructor 0x%02x)"
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
                    need(&b, 1, "data section")
                raise decode_error_at(&b, "data section is not binary (constructor 0x%02x)" % c)
            skip_value(&b, 1)
        elif code == 0x76:
            c = <uint8_t>b.buf[0] if b.len else 0
            if c != 0x45 and c != 0xc0 and c != 0xd0:
                if b.len == 0:
                    need(&b, 1, "amqp-sequence section")
                raise decode_error_at(&b, "amqp-sequence section is not a list (constructor 0x%02x)" % c)
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
    return 0


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
        n += put_uint(items + n, <uint32_t>ttl)
        last = n
    else:
        items[n] = <char>0x40
        n += 1
    items[n] = <char>(0x41 if first_acquirer else 0x40)
    n += 1
    if first_acquirer:
        last = n
    if delivery_count:
        n += put_uint(items + n, <uint32_t>delivery_count)
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
    h = 3 + put_list_header(buf + 3, last, count)
    memcpy(buf + h, items, <size_t>last)
    return PyBytes_FromStringAndSize(buf, h + last)
