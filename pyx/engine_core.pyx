# cython: language_level=3
"""The engine's lower layer (see engine_core.pxd): the handler interface, the connection fields that
sessions and links write to, the performative field readers and the transfer reader in C.
cypid.pyx.endpoints (sessions, links) and cypid.pyx.engine (the connection) are built on it.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from cypid.pyx.amqp cimport FRAME_AMQP
from cypid.pyx.encoder cimport WriteBuffer, wb_write
from cypid.pyx.frames cimport encode_frame
from cypid.pyx.frb cimport FRBuffer, frb_init, frb_take, load_u16, load_u32, load_u64
from cypid.pyx.values cimport skip_value

from cypid.pyx import amqp
from cypid.pyx.values import DecodeError

cdef object _DecodeError = DecodeError



class ProtocolViolation(Exception):
    """The peer broke the protocol: the connection closes with ``condition``."""

    def __init__(self, condition, description):
        super().__init__("%s: %s" % (condition, description))
        self.condition = condition
        self.description = description


class EngineError(ValueError):
    """A call the engine's state does not allow (sending on a link that is not attached...)."""


# -- performative fields -------------------------------------------------------------------------

cdef object _uint_field(list fields, Py_ssize_t i, object default, uint64_t limit, str what):
    """An unsigned integer field (any integer encoding within limit), or default when absent."""
    v = fields[i] if i < len(fields) else None
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > limit:
        raise ProtocolViolation(amqp.DECODE_ERROR, "%s must be an unsigned integer up to %d, not %r"
                                % (what, limit, v))
    return v


cdef bint _bool_field(list fields, Py_ssize_t i, str what) except -1:
    v = fields[i] if i < len(fields) else None
    if v is None:
        return False
    if not isinstance(v, bool):
        raise ProtocolViolation(amqp.DECODE_ERROR, "%s must be a boolean, not %r" % (what, v))
    return v


def frames_per_message(Py_ssize_t size, uint64_t max_frame_size):
    """An upper bound on the transfer frames one delivery of ``size`` bytes takes (4-byte tags)."""
    return _frames_per_message(size, max_frame_size)


cdef Py_ssize_t _frames_per_message(Py_ssize_t size, uint64_t max_frame_size) noexcept:
    # Performative sizes with a tag of up to 32 bytes: first frame at most 60, continuations 24.
    cdef int64_t first = <int64_t>max_frame_size - 8 - 60
    cdef int64_t rest = <int64_t>max_frame_size - 8 - 24
    if max_frame_size == 0 or size <= first:
        return 1
    return 1 + (size - first + rest - 1) // rest


cdef int64_t _take_number(list free, uint32_t* next_number, uint64_t limit) except -2:
    """A channel or handle number: a released one, else the next never used one up to limit; -1 if
    none is left.  O(1): numbers are never searched for."""
    cdef uint32_t n
    if free:
        return free.pop()
    if next_number[0] <= limit:
        n = next_number[0]
        next_number[0] = n + 1
        return n
    return -1


# -- the transfer, read in C ---------------------------------------------------------------------

cdef inline uint8_t _byte(FRBuffer* b) except? 0xff:
    if b.len < 1:
        raise _DecodeError("truncated transfer performative")
    return <uint8_t>frb_take(b, 1)[0]


cdef int _read_uint(FRBuffer* b, uint64_t* out) except -1:
    """An unsigned integer field: 1 and *out set, or 0 for null."""
    cdef uint8_t c = _byte(b)
    cdef Py_ssize_t w
    cdef const char* p
    if c == 0x40:
        return 0
    if c == 0x43 or c == 0x44:
        out[0] = 0
        return 1
    if c == 0x52 or c == 0x53 or c == 0x50:
        w = 1
    elif c == 0x60:
        w = 2
    elif c == 0x70:
        w = 4
    elif c == 0x80:
        w = 8
    else:
        raise _DecodeError("transfer: constructor 0x%02x where an unsigned integer was expected" % c)
    if b.len < w:
        raise _DecodeError("truncated transfer performative")
    p = frb_take(b, w)
    if w == 1:
        out[0] = <uint8_t>p[0]
    elif w == 2:
        out[0] = load_u16(p)
    elif w == 4:
        out[0] = load_u32(p)
    else:
        out[0] = load_u64(p)
    return 1


cdef int _read_bool(FRBuffer* b) except -1:
    """A boolean field: 1 true, 0 false or null."""
    cdef uint8_t c = _byte(b)
    if c == 0x41:
        return 1
    if c == 0x42 or c == 0x40:
        return 0
    if c == 0x56:
        c = _byte(b)
        if c > 1:
            raise _DecodeError("transfer: invalid boolean byte 0x%02x" % c)
        return c
    raise _DecodeError("transfer: constructor 0x%02x where a boolean was expected" % c)


cdef int _read_tag(FRBuffer* b, Transfer* t) except -1:
    cdef uint8_t c = _byte(b)
    cdef Py_ssize_t n
    if c == 0x40:
        return 0
    if c == 0xa0:
        n = _byte(b)
    elif c == 0xb0:
        if b.len < 4:
            raise _DecodeError("truncated transfer performative")
        n = load_u32(frb_take(b, 4))
    else:
        raise _DecodeError("transfer: delivery-tag must be binary (constructor 0x%02x)" % c)
    if b.len < n:
        raise _DecodeError("truncated transfer performative")
    t.tag = frb_take(b, n)
    t.tag_len = n
    return 0


cdef int _parse_transfer(const char* body, Py_ssize_t blen, Transfer* t) except -1:
    """The fields of a transfer frame body (its first 3 bytes are 00 53 14) that the engine uses;
    the others are checked by skipping them."""
    cdef FRBuffer b, lst
    cdef uint8_t c
    cdef uint64_t count, size, u = 0
    cdef uint64_t i
    frb_init(&b, body + 3, blen - 3)
    c = _byte(&b)
    if c == 0xc0:
        if b.len < 2:
            raise _DecodeError("truncated transfer performative")
        size = <uint8_t>b.buf[0]
        count = <uint8_t>b.buf[1]
        frb_take(&b, 2)
        if size < 1:
            raise _DecodeError("transfer list size 0 is too small")
        size -= 1
    elif c == 0xd0:
        if b.len < 8:
            raise _DecodeError("truncated transfer performative")
        size = load_u32(b.buf)
        count = load_u32(b.buf + 4)
        frb_take(&b, 8)
        if size < 4:
            raise _DecodeError("transfer list size %d is too small" % size)
        size -= 4
    elif c == 0x45:
        size = count = 0
    else:
        raise _DecodeError("transfer performative is not a list (constructor 0x%02x)" % c)
    if <uint64_t>b.len < size:
        raise _DecodeError("transfer list declares %d bytes, %d present" % (size, b.len))
    lst = b
    lst.len = <Py_ssize_t>size
    frb_take(&b, <Py_ssize_t>size)
    t.payload = b.buf
    t.payload_len = b.len
    t.has_id = False
    t.tag = NULL
    t.tag_len = 0
    t.settled = t.more = t.aborted = False
    t.state = NULL
    t.state_len = 0
    if count == 0 or not _read_uint(&lst, &t.handle):
        raise _DecodeError("transfer: mandatory field handle is missing")
    if t.handle > 0xFFFFFFFF:
        raise _DecodeError("transfer: handle %d out of range" % t.handle)
    for i in range(1, count):
        if i == 1:
            t.has_id = _read_uint(&lst, &u)
            if u > 0xFFFFFFFF:
                raise _DecodeError("transfer: delivery-id %d out of range" % u)
            t.did = <uint32_t>u
        elif i == 2:
            _read_tag(&lst, t)
        elif i == 4:
            t.settled = _read_bool(&lst)
        elif i == 5:
            t.more = _read_bool(&lst)
        elif i == 9:
            t.aborted = _read_bool(&lst)
        elif i == 7 and lst.len > 0 and lst.buf[0] != 0x40:
            t.state = lst.buf             # a transactional-state (broker/transactions.py)
            skip_value(&lst, 1)
            t.state_len = lst.buf - t.state
        else:
            skip_value(&lst, 1)      # message-format, rcv-settle-mode, state, resume, batchable...
    if lst.len != 0:
        raise _DecodeError("transfer list has %d bytes after its %d fields" % (lst.len, count))
    return 0


# =================================================================================================
# The handler
# =================================================================================================

cdef class Handler:
    """The engine's calls out (docs/ENGINE.md): subclass and override what you need."""

    cpdef object on_sasl_init(self, object mechanism, object response, object hostname):
        return 0 if mechanism == "ANONYMOUS" else 1

    cpdef object on_sasl_response(self, object response):
        return 1

    cpdef object on_sasl_mechanisms(self, list offered):
        return ("ANONYMOUS", None) if "ANONYMOUS" in offered else None

    cpdef object on_sasl_challenge(self, object challenge):
        return b""

    cpdef object on_open(self):
        pass

    cpdef object on_close(self, object error, bint by_peer):
        pass

    cpdef object on_begin(self, object session):
        pass

    cpdef object on_end(self, object session, object error):
        pass

    cpdef object on_attach(self, object link):
        if link.state == L_ATTACH_RCVD:
            link.refuse(amqp.NOT_IMPLEMENTED, "this endpoint takes no links")

    cpdef object on_flow(self, object link):
        pass

    cpdef object on_session_flow(self, object session):
        pass

    cpdef object on_message(self, object link, object delivery, object data):
        pass

    cpdef object on_messages(self, object link):
        pass

    cpdef object on_outcome(self, object link, object context, int outcome, object state):
        pass

    cpdef object on_settled(self, object link, Py_ssize_t count, int outcome, object state):
        pass

    cpdef object on_detach(self, object link, object error):
        pass

    cpdef object on_writable(self):
        pass

    cpdef object on_wake(self):
        pass


# =================================================================================================
# The connection's fields that sessions and links use
# =================================================================================================

cdef class ConnectionCore:
    """Base of Engine: what its sessions and links reach (engine_core.pxd lists the fields)."""

    cdef int _write_frame(self, int channel, int code, list fields, int frame_type=FRAME_AMQP) except -1:
        cdef bytes f = encode_frame(channel, code, fields, b"", frame_type)
        wb_write(self._out, PyBytes_AS_STRING(f), PyBytes_GET_SIZE(f))
        return 0

    cdef int _wake(self) except -1:
        """Something was queued for output outside feed() (a hold released from a timer or another
        connection's work): tell the shell once, so it calls take_output() this loop turn."""
        if not self._in_feed and not self._woken:
            self._woken = True
            self.handler.on_wake()
        return 0

    cdef int _release_channel(self, int channel, int remote_channel, object session) except -1:
        if self._sessions.get(channel) is session:
            del self._sessions[channel]
            self._free_channels.append(channel)
        if remote_channel >= 0 and self._remote_sessions.get(remote_channel) is session:
            del self._remote_sessions[remote_channel]
        if self._last_session is session:
            self._last_session = None
            self._last_channel = -1
        return 0
