# cython: language_level=3
"""AMQP 1.0 frames and performatives: FrameReader, decode_performative, encode_frame and
encode_transfer_frames, and the descriptor and performative tables.

A frame is read in place (``FrameReader.next_frame_c`` gives a pointer into the reader's buffer) and
its performative decoded with cypid.pyx.values (encoded with cypid.pyx.encoder).  The transfer, the one
performative of every message, has fixed-layout encoders of its own.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES, PyBuffer_Release
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, UINT32_MAX
from libc.string cimport memcpy, memmove

from cypid.pyx.frb cimport (FRBuffer, frb_init, frb_offset, frb_take, load_u16, load_u32, load_u64,
                            store_u16, store_u32)
from cypid.pyx.values cimport (decode_list, decode_value, skip_value, open_input, need, read_u8, read_vlen,
                               open_compound, close_compound, decode_error_at)
from cypid.pyx.encoder cimport (WriteBuffer, wb_u8, wb_u64, wb_write, wb_reserve, begin_compound,
                                finish_compound,
                                put_uint, put_list_header, encode_value)

from cypid.pyx.values import DecodeError, EncodeError

cdef object _DecodeError = DecodeError
cdef object _EncodeError = EncodeError


# =========================================================================================
# Tables
# =========================================================================================

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
        self.read_size = READ_MIN

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
        if self._exports:
            raise BufferError("FrameReader.feed while its read buffer is lent out")
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
        cdef int release = open_input(data, &b, &pb)
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
        if self._exports:
            return 0        # lent out for a read: grown by the next reserve_read
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

    # -- reading in place (asyncio's BufferedProtocol): the socket is read straight into the buffer --
    def __getbuffer__(self, Py_buffer* view, int flags):
        """The free space after the unread bytes, writable: a read goes there, then advance(n)."""
        view.buf = self._buf + self._end
        view.obj = self
        view.len = self._cap - self._end
        view.readonly = 0
        view.itemsize = 1
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = b"B"
        view.ndim = 1
        view.shape = NULL
        if flags & PyBUF_ND:
            view.shape = &view.len
        view.strides = NULL
        if (flags & PyBUF_STRIDES) == PyBUF_STRIDES:
            view.strides = &view.itemsize
        view.suboffsets = NULL
        view.internal = NULL
        self._exports += 1

    def __releasebuffer__(self, Py_buffer* view):
        self._exports -= 1

    cdef int reserve_read(self) except -1:
        """Free space for the next read: at least read_size bytes after the unread ones (moved to
        the front, or the buffer grown); a buffer a burst grew is given back once it is empty."""
        cdef Py_ssize_t have = self._end - self._start
        cdef Py_ssize_t want = self.read_size
        cdef char* nb
        if self._exports:
            raise BufferError("FrameReader read buffer lent out twice")
        if have == 0:
            self._start = self._end = 0
            if want == READ_MIN and self._cap > 4 * READ_MIN:
                # Reads have been short for a while: give back what a burst needed.
                nb = <char*>PyMem_Realloc(self._buf, want)
                if nb != NULL:
                    self._buf = nb
                    self._cap = want
        if self._cap - self._end >= want:
            return 0
        if self._start > 0:
            memmove(self._buf, self._buf + self._start, <size_t>have)
            self._start = 0
            self._end = have
        if self._cap - self._end < want // 2:    # (half will do: no realloc per read for a few bytes)
            nb = <char*>PyMem_Realloc(self._buf, have + want)
            if nb == NULL:
                raise MemoryError()
            self._buf = nb
            self._cap = have + want
        return 0

    cdef int advance(self, Py_ssize_t n) except -1:
        """n bytes were read into the free space: they are input now. A read that filled what was
        offered doubles the next one (up to READ_MAX); short reads halve it back (to READ_MIN)."""
        cdef Py_ssize_t offered = self._cap - self._end
        if n < 0 or n > offered:
            raise ValueError("read of %d bytes into %d free" % (n, offered))
        self._end += n
        if n == offered:
            if self.read_size < READ_MAX:
                self.read_size *= 2
        elif n < self.read_size // 8 and self.read_size > READ_MIN:
            self.read_size //= 2
        return 0

    cdef int clear(self) except -1:
        """Drop everything buffered (input after the connection ended)."""
        self._start = self._end = 0
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
    cdef uint8_t c = read_u8(b, "descriptor")
    cdef Py_ssize_t n
    cdef const char* p
    if c == 0x53:
        code[0] = <uint8_t>need(b, 1, "descriptor")[0]
        return 1
    if c == 0x80:
        code[0] = load_u64(need(b, 8, "descriptor"))
        return 1
    if c == 0x44:
        code[0] = 0
        return 1
    if c == 0xa3 or c == 0xb3:
        n = read_vlen(b, c == 0xb3, "descriptor symbol")
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
    cdef int release = open_input(body, &b, &pb)
    cdef uint64_t code
    cdef uint8_t c
    cdef list fields
    try:
        if b.len == 0:
            raise _DecodeError("empty frame body where a performative was expected")
        if <uint8_t>b.buf[0] != 0:
            raise decode_error_at(&b, "performative is not a described type (constructor 0x%02x)"
                       % <uint8_t>b.buf[0])
        frb_take(&b, 1)
        if not _read_descriptor_code(&b, &code):
            raise _DecodeError("unknown performative descriptor in frame body")
        c = read_u8(&b, "performative list constructor")
        if c == 0x45:
            fields = []
        elif c == 0xc0 or c == 0xd0:
            fields = decode_list(&b, c == 0xd0, 1)
        else:
            b.buf -= 1
            b.len += 1
            raise decode_error_at(&b, "performative body is not a list (constructor 0x%02x)" % c)
        return (code, fields, PyBytes_FromStringAndSize(b.buf, b.len))
    finally:
        if release:
            PyBuffer_Release(&pb)


# -- the transfer: decoded straight into C values --------------------------------------------
#
# A transfer frame comes with every message, so the broker reads it here in one call rather than
# as decode_performative's field list (typed wrappers and all) plus a Python check of each field.
# What it accepts and refuses is exactly what decode_performative followed by the broker's
# performatives.check_fields does: every field is decoded (malformed bytes anywhere raise the same
# DecodeError at the same offset), then the first field of the wrong type -- by the rule
# check_fields applies to the decoded value -- or a missing handle raises, with check_fields' text.
# The usual encodings are read directly; anything else is decoded as a value and judged as such.

cdef enum FieldKind:
    K_UINT          # an int (any AMQP integer type, not boolean) in 0 .. 2**32-1
    K_UBYTE         # ... in 0 .. 255
    K_BOOL
    K_BINARY        # bytes (binary, or a decimal type: bytes subclasses)
    K_DESCRIBED

cdef int _TRANSFER_KINDS[11]
_TRANSFER_KINDS[:] = [K_UINT, K_UINT, K_BINARY, K_UINT, K_BOOL, K_BOOL, K_UBYTE, K_DESCRIBED, K_BOOL,
                      K_BOOL, K_BOOL]
cdef tuple _KIND_NAMES = ("uint", "ubyte", "boolean", "binary", "described")
cdef tuple _TRANSFER_FIELDS = PERFORMATIVE_FIELDS[0x14]

cdef enum:
    F_NULL = 0      # null: the field is absent
    F_VALUE = 1     # a value of the field's type (in *u or *flag)
    F_OTHER = 2     # not read: decode it as a value (the cursor has not moved)


cdef inline int _scan_uint_field(FRBuffer* b, uint64_t limit, uint64_t* u) noexcept:
    """An unsigned integer in its usual encodings, within limit; F_OTHER for anything else."""
    cdef const char* p = b.buf
    cdef uint8_t c
    cdef Py_ssize_t n
    cdef uint64_t v
    if b.len < 1:
        return F_OTHER
    c = <uint8_t>p[0]
    if c == 0x52 or c == 0x53 or c == 0x50:
        n = 2
    elif c == 0x70:
        n = 5
    elif c == 0x43 or c == 0x44 or c == 0x40:
        n = 1
    elif c == 0x60:
        n = 3
    elif c == 0x80:
        n = 9
    else:
        return F_OTHER
    if b.len < n:
        return F_OTHER
    if n == 1:
        v = 0
    elif n == 2:
        v = <uint8_t>p[1]
    elif n == 5:
        v = load_u32(p + 1)
    elif n == 3:
        v = load_u16(p + 1)
    else:
        v = load_u64(p + 1)
    if v > limit:
        return F_OTHER
    frb_take(b, n)
    if c == 0x40:
        return F_NULL
    u[0] = v
    return F_VALUE


cdef inline int _scan_bool_field(FRBuffer* b, bint* flag) noexcept:
    cdef uint8_t c
    if b.len < 1:
        return F_OTHER
    c = <uint8_t>b.buf[0]
    if c == 0x41 or c == 0x42:
        flag[0] = c == 0x41
    elif c == 0x40:
        frb_take(b, 1)
        return F_NULL
    elif c == 0x56 and b.len >= 2 and <uint8_t>b.buf[1] <= 1:
        flag[0] = b.buf[1] == 1
        frb_take(b, 1)
    else:
        return F_OTHER
    frb_take(b, 1)
    return F_VALUE


cdef inline int _scan_binary_field(FRBuffer* b) noexcept:
    cdef uint8_t c
    cdef Py_ssize_t n
    if b.len < 1:
        return F_OTHER
    c = <uint8_t>b.buf[0]
    if c == 0x40:
        frb_take(b, 1)
        return F_NULL
    if c == 0xa0 and b.len >= 2:
        n = <uint8_t>b.buf[1]
        if n <= b.len - 2:
            frb_take(b, 2 + n)
            return F_VALUE
    elif c == 0xb0 and b.len >= 5:
        n = load_u32(b.buf + 1)
        if n <= b.len - 5:
            frb_take(b, 5 + n)
            return F_VALUE
    return F_OTHER


cdef bint _field_accepts(int kind, object v, uint64_t* u, bint* flag) except -1:
    """check_fields' rule for a decoded, non-null value; fills *u or *flag when it passes."""
    if kind == K_UINT or kind == K_UBYTE:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= (0xff if kind == K_UBYTE
                                                                         else 0xffffffff):
            u[0] = <uint64_t>v
            return True
        return False
    if kind == K_BOOL:
        if isinstance(v, bool):
            flag[0] = v is True
            return True
        return False
    if kind == K_BINARY:
        return isinstance(v, bytes)
    return hasattr(v, "descriptor") and hasattr(v, "value")


cdef int _read_transfer(FRBuffer* b, Transfer* t) except -1:
    """A transfer frame body into ``t`` (tag and payload point into the body): 1, or 0 if the body
    is not a transfer performative. Every field is checked as the spec types it (check_fields' rules:
    the same error text), the ones the engine does not use too."""
    cdef uint64_t code, u = 0
    cdef uint8_t c
    cdef uint32_t count = 0, i
    cdef Py_ssize_t rest = -1
    cdef const char* p
    cdef bint flag = False, has_handle = False
    cdef int kind, st, bad = -1
    cdef object bad_value = None
    if b.len < 3 or <uint8_t>b.buf[0] != 0:
        return 0
    if <uint8_t>b.buf[1] == 0x53:
        if <uint8_t>b.buf[2] != 0x14:
            return 0
        frb_take(b, 3)
    else:
        frb_take(b, 1)
        if not _read_descriptor_code(b, &code) or code != 0x14:
            return 0
    t.handle = 0
    t.has_id = False
    t.did = 0
    t.tag = NULL
    t.tag_len = 0
    t.settled = t.more = t.aborted = False
    t.state = NULL
    t.state_len = 0
    c = read_u8(b, "performative list constructor")
    if c == 0xc0 or c == 0xd0:
        rest = open_compound(b, c == 0xd0, &count, "list", 1, 1)
    elif c != 0x45:
        b.buf -= 1
        b.len += 1
        raise decode_error_at(b, "performative body is not a list (constructor 0x%02x)" % c)
    for i in range(count):
        if i > 10:
            decode_value(b, 2)          # beyond the spec's fields: decoded (so checked), not kept
            continue
        kind = _TRANSFER_KINDS[i]
        p = b.buf
        if kind == K_UINT:
            st = _scan_uint_field(b, 0xffffffff, &u)
        elif kind == K_BOOL:
            st = _scan_bool_field(b, &flag)
        elif kind == K_BINARY:
            st = _scan_binary_field(b)
        elif kind == K_UBYTE:
            st = _scan_uint_field(b, 0xff, &u)
        elif b.len >= 1 and <uint8_t>b.buf[0] == 0x40:
            frb_take(b, 1)
            st = F_NULL
        else:
            st = F_OTHER
        if st == F_OTHER:
            v = decode_value(b, 2)
            if v is None:
                st = F_NULL
            elif _field_accepts(kind, v, &u, &flag):
                st = F_VALUE
            else:
                if bad < 0:
                    bad = i
                    bad_value = v
                continue
        if st == F_VALUE:
            if i == 0:
                t.handle = u
                has_handle = True
            elif i == 1:
                t.did = <uint32_t>u
                t.has_id = True
            elif i == 2 and kind == K_BINARY and b.buf > p:
                if <uint8_t>p[0] == 0xa0:      # the delivery-tag, in place (vbin8 or vbin32)
                    t.tag = p + 2
                    t.tag_len = <uint8_t>p[1]
                else:
                    t.tag = p + 5
                    t.tag_len = load_u32(p + 1)
            elif i == 4:
                t.settled = flag
            elif i == 5:
                t.more = flag
            elif i == 9:
                t.aborted = flag
            elif i == 7:                        # a transactional-state (broker/transactions.py)
                t.state = p
                t.state_len = b.buf - p
    if rest >= 0:
        close_compound(b, rest, "list")
    if not has_handle and bad != 0:
        raise _DecodeError("transfer: mandatory field handle is missing")
    if bad >= 0:
        text = repr(bad_value)
        raise _DecodeError("transfer: field %s must be a %s, not %s"
                           % (_TRANSFER_FIELDS[bad], _KIND_NAMES[_TRANSFER_KINDS[bad]],
                              text if len(text) <= 40 else text[:40] + "..."))
    t.payload = b.buf
    t.payload_len = b.len
    return 1


cdef int read_transfer(const char* body, Py_ssize_t blen, Transfer* t) except -1:
    cdef FRBuffer b
    frb_init(&b, body, blen)
    return _read_transfer(&b, t)


cdef object _transfer_tuple(FRBuffer* b):
    cdef Transfer t
    if not _read_transfer(b, &t):
        return None
    return (t.handle, t.did if t.has_id else None, t.settled, t.more, t.aborted,
            PyBytes_FromStringAndSize(t.payload, t.payload_len))


cpdef object decode_transfer(object body):
    """A transfer frame body as (handle, delivery_id, settled, more, aborted, payload): plain ints
    (delivery_id None when absent), bools (False when absent) and the payload bytes; the other
    fields are checked, not returned.  None if the body is not a transfer performative: the caller
    then takes the generic path (decode_performative), which raises for a malformed body.  Raises
    DecodeError, as decode_performative plus check_fields would, for a bad transfer.  (The engine's
    own reader, read_transfer, in Python's hands.)"""
    cdef FRBuffer b
    cdef Py_buffer pb
    cdef int release
    if PyBytes_CheckExact(body):
        frb_init(&b, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
        return _transfer_tuple(&b)
    release = open_input(body, &b, &pb)
    try:
        return _transfer_tuple(&b)
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
        start = begin_compound(wb)
        for i in range(n):
            encode_value(wb, fields[i], 1)
        finish_compound(wb, start, n, 0xc0, 0xd0)
    if payload is not None:
        release = open_input(payload, &pl, &pb)
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


cpdef bytes encode_transfer_frames(int channel, uint32_t handle, uint32_t delivery_id, object tag,
                                   bint settled, object message, uint64_t max_frame_size):
    """Every frame of one delivery: transfer performatives plus the message split so that no frame
    exceeds max_frame_size (more=true on all but the last).  Only the first frame carries
    delivery-id, delivery-tag, message-format and settled; continuations carry handle and more."""
    cdef Py_ssize_t nframes
    if not PyBytes_CheckExact(tag):
        tag = bytes(memoryview(tag))
    if not PyBytes_CheckExact(message):
        message = bytes(memoryview(message))
    # Written straight into the bytes object returned (no buffer in between: one copy of the message).
    return _transfer_frames(None, &nframes, channel, handle, delivery_id, PyBytes_AS_STRING(tag),
                            PyBytes_GET_SIZE(tag), settled, NULL, 0, PyBytes_AS_STRING(message),
                            PyBytes_GET_SIZE(message), max_frame_size, NULL, 0)


cdef Py_ssize_t write_transfer_frames(WriteBuffer wb, int channel, uint32_t handle, uint32_t delivery_id,
                                      const char* tag, Py_ssize_t tl, bint settled, const char* msg,
                                      Py_ssize_t L, uint64_t max_frame_size) except -1:
    """Append every frame of one delivery to ``wb`` (see encode_transfer_frames); returns the number
    of frames written."""
    cdef Py_ssize_t nframes
    _transfer_frames(wb, &nframes, channel, handle, delivery_id, tag, tl, settled, NULL, 0, msg, L,
                     max_frame_size, NULL, 0)
    return nframes


cdef Py_ssize_t write_transfer_frames2(WriteBuffer wb, int channel, uint32_t handle, uint32_t delivery_id,
                                       const char* tag, Py_ssize_t tl, bint settled, const char* head,
                                       Py_ssize_t hl, const char* msg, Py_ssize_t L,
                                       uint64_t max_frame_size, const char* state=NULL,
                                       Py_ssize_t sl=0) except -1:
    """write_transfer_frames of the message ``head`` + ``msg`` (a header section before the kept
    bytes), without joining them first; with ``sl`` > 0 the first transfer's ``state`` field carries
    the ``sl`` encoded bytes at ``state`` (a delivery state: transactional acquisition)."""
    cdef Py_ssize_t nframes
    _transfer_frames(wb, &nframes, channel, handle, delivery_id, tag, tl, settled, head, hl, msg, L,
                     max_frame_size, state, sl)
    return nframes


cdef inline void _copy_span(char* dst, const char* head, Py_ssize_t hl, const char* msg, Py_ssize_t off,
                            Py_ssize_t n) noexcept:
    """Copy ``n`` bytes from offset ``off`` of the message ``head`` + ``msg``."""
    cdef Py_ssize_t k
    if off < hl:
        k = hl - off
        if k > n:
            k = n
        memcpy(dst, head + off, <size_t>k)
        dst += k
        n -= k
        off = 0
    else:
        off -= hl
    if n > 0:
        memcpy(dst, msg + off, <size_t>n)


cdef object _transfer_frames(WriteBuffer wb, Py_ssize_t* nframes_out, int channel, uint32_t handle,
                             uint32_t delivery_id, const char* tag, Py_ssize_t tl, bint settled,
                             const char* head, Py_ssize_t hl, const char* msg, Py_ssize_t L,
                             uint64_t max_frame_size, const char* state, Py_ssize_t sl):
    """The frames of one delivery (the message ``head`` + ``msg``), appended to ``wb``, or (``wb``
    None) in a new bytes object that is returned; ``nframes_out`` gets the number of frames. With
    ``sl`` > 0 the first performative also carries rcv-settle-mode (null) and the encoded ``state``."""
    cdef object result = None
    cdef char items1[300 + MAX_TRANSFER_STATE]
    cdef char perf1[320 + MAX_TRANSFER_STATE]
    cdef char items2[16]
    cdef char perf2[32]
    cdef Py_ssize_t n1, n2, p1, p2, cap1, capn, nframes, total, chunk, off, fs, more1
    cdef char* w
    if channel < 0 or channel > 0xffff:
        raise _EncodeError("channel %d out of range" % channel)
    if tl > 255:
        raise _EncodeError("delivery-tag of %d bytes is too long (the spec allows 32)" % tl)
    if max_frame_size == 0 or max_frame_size > UINT32_MAX:
        max_frame_size = UINT32_MAX
    # First performative: [handle, delivery-id, tag, format=0, settled, more]
    n1 = put_uint(items1, handle)
    n1 += put_uint(items1 + n1, delivery_id)
    items1[n1] = <char>0xa0
    items1[n1 + 1] = <char>tl
    memcpy(items1 + n1 + 2, tag, <size_t>tl)
    n1 += 2 + tl
    items1[n1] = <char>0x43
    items1[n1 + 1] = <char>(0x41 if settled else 0x42)
    items1[n1 + 2] = <char>0x42          # more: patched to 0x41 when the delivery continues
    n1 += 3
    more1 = n1 - 1
    if sl > 0:
        if sl > MAX_TRANSFER_STATE:
            raise _EncodeError("delivery state of %d bytes is too long" % sl)
        items1[n1] = <char>0x40          # rcv-settle-mode: null
        memcpy(items1 + n1 + 1, state, <size_t>sl)
        n1 += 1 + sl
    perf1[0] = 0
    perf1[1] = <char>0x53
    perf1[2] = <char>0x14
    p1 = 3 + put_list_header(perf1 + 3, n1, 8 if sl > 0 else 6)
    memcpy(perf1 + p1, items1, <size_t>n1)
    more1 += p1
    p1 += n1
    # Continuation performative: [handle, null, null, null, null, more]
    n2 = put_uint(items2, handle)
    items2[n2] = items2[n2 + 1] = items2[n2 + 2] = items2[n2 + 3] = <char>0x40
    items2[n2 + 4] = <char>0x42
    n2 += 5
    perf2[0] = 0
    perf2[1] = <char>0x53
    perf2[2] = <char>0x14
    p2 = 3 + put_list_header(perf2 + 3, n2, 6)
    memcpy(perf2 + p2, items2, <size_t>n2)
    p2 += n2

    L += hl
    cap1 = <Py_ssize_t>max_frame_size - 8 - p1
    capn = <Py_ssize_t>max_frame_size - 8 - p2
    if cap1 <= 0 or capn <= 0:
        raise _EncodeError("max-frame-size %d leaves no room for a transfer payload" % max_frame_size)
    if L <= cap1:
        nframes = 1
    else:
        nframes = 1 + (L - cap1 + capn - 1) // capn
    total = 8 * nframes + p1 + (nframes - 1) * p2 + L
    if wb is None:
        result = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(result)
    else:
        wb_reserve(wb, total)
        w = wb.buf + wb.len
        wb.len += total
    # first frame
    chunk = L if L <= cap1 else cap1
    fs = 8 + p1 + chunk
    store_u32(w, <uint32_t>fs)
    w[4] = 2
    w[5] = 0
    store_u16(w + 6, <uint16_t>channel)
    memcpy(w + 8, perf1, <size_t>p1)
    if nframes > 1:
        w[8 + more1] = <char>0x41
    _copy_span(w + 8 + p1, head, hl, msg, 0, chunk)
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
        _copy_span(w + 8 + p2, head, hl, msg, off, chunk)
        w += fs
        off += chunk
    nframes_out[0] = nframes
    return result
