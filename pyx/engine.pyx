# cython: language_level=3
"""One AMQP 1.0 endpoint engine for the client and the broker (see engine.pxd and docs/ENGINE.md).

Bytes in: ``feed()`` splits a read burst into frames in place and dispatches them; transfers are
decoded here in C and, on batch links, consumed without a Python call.  Bytes out: every frame goes
into one WriteBuffer that ``take_output()`` hands to the shell once per loop turn, after the
dispositions and window flows the burst left behind.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from cypid.pyx.amqp cimport (ACCEPTED, ATTACH, BEGIN, CLOSE, DETACH, DISPOSITION, END, FLOW, FRAME_AMQP,
                             FRAME_SASL, OPEN, RCV_FIRST, RCV_SECOND, RECEIVED, SASL_CHALLENGE, SASL_INIT,
                             SASL_MECHANISMS, SASL_OUTCOME, SASL_RESPONSE, SND_MIXED, SND_SETTLED,
                             SND_UNSETTLED, TRANSFER, error_from, error_value, outcome_code)
from cypid.pyx.encoder cimport WriteBuffer, wb_write
from cypid.pyx.frames cimport FrameReader, FrameView, decode_performative, encode_frame, write_transfer_frames
from cypid.pyx.frb cimport FRBuffer, frb_init, frb_take, load_u16, load_u32, load_u64, store_u32, store_u64
from cypid.pyx.values cimport skip_value

from cypid.pyx import amqp
from cypid.pyx.frames import AMQP_HEADER, EMPTY_FRAME, SASL_HEADER
from cypid.pyx.values import Array, DecodeError, symbol, ubyte, uint, ulong, ushort

cdef object _DecodeError = DecodeError
cdef object _ACCEPTED = amqp.ACCEPTED_STATE
cdef str DECODE_ERROR = amqp.DECODE_ERROR
cdef str FRAMING_ERROR = amqp.FRAMING_ERROR
cdef str NOT_ALLOWED = amqp.NOT_ALLOWED
cdef str INVALID_FIELD = amqp.INVALID_FIELD
cdef str UNATTACHED_HANDLE = amqp.UNATTACHED_HANDLE
cdef str HANDLE_IN_USE = amqp.HANDLE_IN_USE
cdef str WINDOW_VIOLATION = amqp.WINDOW_VIOLATION
cdef str RESOURCE_LIMIT = amqp.RESOURCE_LIMIT_EXCEEDED
cdef str TRANSFER_LIMIT = amqp.TRANSFER_LIMIT_EXCEEDED
cdef str MESSAGE_SIZE = amqp.MESSAGE_SIZE_EXCEEDED
cdef str UNAUTHORIZED = amqp.UNAUTHORIZED_ACCESS

cdef enum:
    MAX_TAG = 32                  # delivery-tag bytes the spec allows
    MIN_MAX_FRAME = 512
    P_HEADER = 0                  # a protocol header is expected
    P_SASL = 1
    P_AMQP = 2
cdef uint32_t MASK32 = 0xFFFFFFFF


class ProtocolViolation(Exception):
    """The peer broke the protocol: the connection closes with ``condition``."""

    def __init__(self, condition, description):
        super().__init__("%s: %s" % (condition, description))
        self.condition = condition
        self.description = description


class EngineError(ValueError):
    """A call the engine's state does not allow (sending on a link that is not attached...)."""


# -- performative fields -------------------------------------------------------------------------

cdef inline object _field(list fields, Py_ssize_t i):
    return fields[i] if i < len(fields) else None


cdef object _uint_field(list fields, Py_ssize_t i, object default, uint64_t limit, str what):
    """An unsigned integer field (any integer encoding within limit), or default when absent."""
    v = fields[i] if i < len(fields) else None
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > limit:
        raise ProtocolViolation(DECODE_ERROR, "%s must be an unsigned integer up to %d, not %r"
                                % (what, limit, v))
    return v


cdef bint _bool_field(list fields, Py_ssize_t i, str what) except -1:
    v = fields[i] if i < len(fields) else None
    if v is None:
        return False
    if not isinstance(v, bool):
        raise ProtocolViolation(DECODE_ERROR, "%s must be a boolean, not %r" % (what, v))
    return v


def frames_per_message(Py_ssize_t size, uint64_t max_frame_size):
    """An upper bound on the transfer frames one delivery of ``size`` bytes takes (4-byte tags)."""
    return _frames_per_message(size, max_frame_size)


cdef inline Py_ssize_t _frames_per_message(Py_ssize_t size, uint64_t max_frame_size) noexcept:
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

cdef struct Transfer:
    uint64_t handle
    bint has_id
    uint32_t did
    const char* tag
    Py_ssize_t tag_len
    bint settled
    bint more
    bint aborted
    const char* payload
    Py_ssize_t payload_len


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
        if (<Link>link).state == L_ATTACH_RCVD:
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


# =================================================================================================
# The connection
# =================================================================================================

@cython.final
cdef class Engine:
    """One connection's protocol state.  ``Engine(handler, server=..., limits...)``; the shell calls
    ``start()`` once connected, ``feed(data, now)`` for what it reads, ``take_output(now)`` once per
    loop turn and ``tick(now)`` when the delay it returned has passed."""

    def __cinit__(self, Handler handler=None, *, bint server=False, object container_id="",
                  uint32_t max_frame_size=65536, int channel_max=255, uint32_t handle_max=65535,
                  uint32_t incoming_window=0x7FFFFFFF, uint64_t max_message_size=0,
                  double idle_timeout=0.0, Py_ssize_t output_limit=4 << 20, object sasl_mechanisms=None,
                  bint require_sasl=False, bint sasl=False, object hostname=None):
        if max_frame_size < MIN_MAX_FRAME:
            raise ValueError("max-frame-size %d is below the spec's minimum of 512" % max_frame_size)
        if channel_max < 0 or channel_max > 0xFFFF:
            raise ValueError("channel-max %d out of range" % channel_max)
        if incoming_window < 1:
            raise ValueError("incoming-window must be at least 1")
        self.handler = handler if handler is not None else Handler()
        self.server = server
        self.container_id = container_id
        self._reader = FrameReader(max_frame_size)
        self._out = WriteBuffer.__new__(WriteBuffer)
        self.output_limit = output_limit
        self.max_frame_size = max_frame_size
        self.channel_max = channel_max
        self.handle_max = handle_max
        self.incoming_window = incoming_window
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.remote_max_frame_size = MIN_MAX_FRAME
        self.remote_channel_max = 0
        self.remote_properties = {}
        self._sasl_mechanisms = list(sasl_mechanisms) if sasl_mechanisms is not None else None
        self._require_sasl = require_sasl and sasl_mechanisms is not None
        self._client_sasl = sasl and not server
        self.hostname = hostname
        self._sessions = {}
        self._remote_sessions = {}
        self._free_channels = []
        self._next_channel = 0
        self._last_channel = -1
        self._dirty = []
        self._touched = []

    # -- state ------------------------------------------------------------------------------------
    @property
    def opened(self):
        """Both opens exchanged and no close yet."""
        return self.open_sent and self.open_rcvd and not self.close_sent and not self.close_rcvd

    @property
    def writable(self):
        """Below the output bound: senders may encode more."""
        return self._out.len < self.output_limit

    @property
    def output_pending(self):
        """Bytes encoded and not taken yet."""
        return self._out.len

    @property
    def sessions(self):
        """The sessions by local channel (a copy)."""
        return dict(self._sessions)

    def session(self, int channel):
        return self._sessions.get(channel)

    # -- output ---------------------------------------------------------------------------------
    cdef int _write_frame(self, int channel, int code, list fields, int frame_type=FRAME_AMQP) except -1:
        cdef bytes f = encode_frame(channel, code, fields, b"", frame_type)
        wb_write(self._out, PyBytes_AS_STRING(f), PyBytes_GET_SIZE(f))
        return 0

    def take_output(self, double now=0.0):
        """Everything to write (bytes, maybe empty), after the dispositions and window flows still
        owed; the buffer starts afresh.  Calls on_writable() if the output bound had been reached."""
        cdef WriteBuffer out = self._out
        if self._dirty:
            self._flush_sessions()
        if out.len == 0:
            return b""
        data = PyBytes_FromStringAndSize(out.buf, out.len)
        out.len = 0
        self.last_write = now
        if out.size > (4 << 20) and out.size > 2 * self.output_limit:
            self._out = WriteBuffer.__new__(WriteBuffer)     # give back what a burst needed once
        if self._out_full:
            self._out_full = False
            self.handler.on_writable()
        return data

    cdef int _flush_sessions(self) except -1:
        cdef Session s
        dirty = self._dirty
        self._dirty = []
        for s in dirty:
            s._flush()
        return 0

    # -- negotiation --------------------------------------------------------------------------------
    def start(self):
        """The socket is connected: a client writes its protocol header (SASL's, or AMQP's)."""
        if self._started:
            return
        self._started = True
        if self.server:
            return
        if self._client_sasl:
            wb_write(self._out, b"AMQP\x03\x01\x00\x00", 8)
        else:
            wb_write(self._out, b"AMQP\x00\x01\x00\x00", 8)
            self._amqp_header_sent = True

    def open(self, container_id=None, hostname=None, properties=None, offered_capabilities=None,
             desired_capabilities=None, idle_timeout=None):
        """Write our open (a client may call it at once: it waits for the SASL outcome)."""
        if self.open_sent or self.close_sent or self.finished:
            return
        if idle_timeout is not None:
            self.idle_timeout = idle_timeout
        if container_id is not None:
            self.container_id = container_id
        idle_ms = int(self.idle_timeout * 1000)
        fields = [self.container_id, hostname if hostname is not None else self.hostname,
                  uint(self.max_frame_size), ushort(self.channel_max), uint(idle_ms) if idle_ms else None,
                  None, None, offered_capabilities, desired_capabilities, properties]
        self.open_sent = True
        if not self._amqp_header_sent:
            self._pending_open = fields
        else:
            self._write_frame(0, OPEN, fields)

    cdef int _on_header(self, bytes header) except -1:
        if not self.server:
            expected = SASL_HEADER if (self._client_sasl and not self._sasl_done) else AMQP_HEADER
            if header != expected:
                self._terminate((FRAMING_ERROR if expected == AMQP_HEADER else UNAUTHORIZED,
                                 "the peer answered with protocol header %r" % header, None))
                self.handler.on_close(self.error, True)
                return 0
            self._phase = P_SASL if expected == SASL_HEADER else P_AMQP
            return 0
        if header == SASL_HEADER and self._sasl_mechanisms is not None and not self._sasl_done:
            wb_write(self._out, b"AMQP\x03\x01\x00\x00", 8)
            self._write_frame(0, SASL_MECHANISMS,
                              [Array(0xA3, [symbol(m) for m in self._sasl_mechanisms])], FRAME_SASL)
            self._phase = P_SASL
        elif header == AMQP_HEADER and (self._sasl_done or not self._require_sasl):
            wb_write(self._out, b"AMQP\x00\x01\x00\x00", 8)
            self._amqp_header_sent = True
            self._phase = P_AMQP
        else:
            wb_write(self._out, b"AMQP\x03\x01\x00\x00" if self._require_sasl else b"AMQP\x00\x01\x00\x00", 8)
            self._terminate((FRAMING_ERROR, "protocol header %r refused" % header, None))
            self.handler.on_close(self.error, False)
        return 0

    cdef int _on_sasl(self, int code, list fields) except -1:
        if self.server:
            if code == SASL_INIT and self.sasl_mechanism is None:
                mech = _field(fields, 0)
                self.sasl_mechanism = "" if mech is None else str(mech)
                allowed = self._sasl_mechanisms or ()
                result = self.handler.on_sasl_init(self.sasl_mechanism, _field(fields, 1), _field(fields, 2)) \
                    if self.sasl_mechanism in allowed else 1
            elif code == SASL_RESPONSE and self.sasl_mechanism is not None:
                result = self.handler.on_sasl_response(_field(fields, 0))
            else:
                raise ProtocolViolation(FRAMING_ERROR, "unexpected SASL frame 0x%x" % code)
            if isinstance(result, bytes):
                self._write_frame(0, SASL_CHALLENGE, [result], FRAME_SASL)     # a response follows
                return 0
            outcome, additional = result if isinstance(result, tuple) else (result, None)
            self._write_frame(0, SASL_OUTCOME, [ubyte(outcome), additional], FRAME_SASL)
            if outcome:
                self._terminate((UNAUTHORIZED, "SASL %s authentication failed" % self.sasl_mechanism, None))
                self.handler.on_close(self.error, False)
                return 0
            self._sasl_done = True
            self._phase = P_HEADER
            return 0
        if code == SASL_MECHANISMS:
            offered = amqp.sasl_mechanisms_list(_field(fields, 0))
            choice = self.handler.on_sasl_mechanisms(offered)
            if choice is None:
                self._terminate((UNAUTHORIZED, "no SASL mechanism in common: the peer offers %s"
                                 % (" ".join(offered) or "none"), None))
                self.handler.on_close(self.error, False)
                return 0
            self.sasl_mechanism = choice[0]
            self._write_frame(0, SASL_INIT, [symbol(choice[0]), choice[1], self.hostname], FRAME_SASL)
        elif code == SASL_CHALLENGE:
            response = self.handler.on_sasl_challenge(_field(fields, 0))
            self._write_frame(0, SASL_RESPONSE, [b"" if response is None else response], FRAME_SASL)
        elif code == SASL_OUTCOME:
            outcome = _field(fields, 0)
            if outcome != 0:
                self._terminate((UNAUTHORIZED, "SASL authentication failed (outcome %s)" % outcome, None))
                self.handler.on_close(self.error, True)
                return 0
            self._sasl_done = True
            self._phase = P_HEADER
            wb_write(self._out, b"AMQP\x00\x01\x00\x00", 8)
            self._amqp_header_sent = True
            if self._pending_open is not None:
                self._write_frame(0, OPEN, self._pending_open)
                self._pending_open = None
        else:
            raise ProtocolViolation(FRAMING_ERROR, "unexpected SASL frame 0x%x" % code)
        return 0

    # -- input ----------------------------------------------------------------------------------
    def feed(self, data, double now=0.0):
        """Process a read burst: every complete frame in it is dispatched before this returns.  A
        protocol violation closes the connection (``finished`` then says so); an exception from the
        handler propagates (the shell decides: the broker closes with amqp:internal-error)."""
        cdef FrameReader reader = self._reader
        cdef FrameView fv
        cdef int got
        if self.finished:
            return
        self.last_read = now
        reader.feed(data)
        try:
            while not self.finished:
                if self._phase == P_HEADER:
                    header = reader.read_protocol_header()
                    if header is None:
                        break
                    self._on_header(header)
                    continue
                try:
                    got = reader.next_frame_c(&fv)
                except DecodeError as e:
                    raise ProtocolViolation(FRAMING_ERROR, str(e))
                if not got:
                    break
                self.frames_in += 1
                if fv.frame_type == FRAME_SASL:
                    if self._phase != P_SASL:
                        raise ProtocolViolation(FRAMING_ERROR, "SASL frame outside SASL negotiation")
                    code, fields, _ = decode_performative(PyBytes_FromStringAndSize(fv.body, fv.body_len))
                    self._on_sasl(code, fields)
                elif self._phase == P_SASL:
                    raise ProtocolViolation(FRAMING_ERROR, "AMQP frame during SASL negotiation")
                elif fv.frame_type != FRAME_AMQP:
                    raise ProtocolViolation(FRAMING_ERROR, "unknown frame type %d" % fv.frame_type)
                elif fv.body_len:
                    self._dispatch(fv.channel, fv.body, fv.body_len)
            if not self.finished:
                self._end_of_burst()
        except DecodeError as e:
            self._fail(DECODE_ERROR, str(e))
        except ProtocolViolation as e:
            self._fail(e.condition, e.description)

    cdef int _end_of_burst(self) except -1:
        cdef Link link
        if self._touched:
            touched = self._touched
            self._touched = []
            for link in touched:
                link._touched = False
                if link.state == L_ATTACHED or link.state == L_DETACH_SENT:
                    self.handler.on_messages(link)
        return 0

    cdef int _dispatch(self, int channel, const char* body, Py_ssize_t blen) except -1:
        cdef Session s
        if blen >= 3 and body[0] == 0 and <uint8_t>body[1] == 0x53 and <uint8_t>body[2] == TRANSFER:
            if not self.open_rcvd:
                raise ProtocolViolation(FRAMING_ERROR, "transfer before open")
            return self._on_transfer(channel, body, blen)
        code, fields, _ = decode_performative(PyBytes_FromStringAndSize(body, blen))
        if code < OPEN or code > CLOSE:
            raise ProtocolViolation(DECODE_ERROR, "frame body holds 0x%x, not an AMQP performative" % code)
        if not self.open_rcvd:
            if code != OPEN:
                raise ProtocolViolation(FRAMING_ERROR, "expected open, got performative 0x%x" % code)
            return self._on_open(fields)
        if code == OPEN:
            raise ProtocolViolation(FRAMING_ERROR, "second open on the connection")
        if code == CLOSE:
            return self._on_close(fields)
        if code == BEGIN:
            return self._on_begin(channel, fields)
        s = self._remote_sessions.get(channel)
        if s is None:
            raise ProtocolViolation(NOT_ALLOWED, "frame 0x%x on unknown channel %d" % (code, channel))
        return s._on_frame(code, fields)

    cdef int _on_open(self, list fields) except -1:
        self.open_rcvd = True
        self.remote_container_id = _field(fields, 0)
        self.remote_hostname = _field(fields, 1)
        max_frame = _uint_field(fields, 2, 0xFFFFFFFF, 0xFFFFFFFF, "open.max-frame-size")
        self.remote_max_frame_size = max(MIN_MAX_FRAME, min(max_frame, 0x7FFFFFFF))
        self.remote_channel_max = _uint_field(fields, 3, 0xFFFF, 0xFFFF, "open.channel-max")
        self.remote_idle_timeout = _uint_field(fields, 4, 0, 0xFFFFFFFF, "open.idle-time-out") / 1000.0
        self.remote_offered_capabilities = _field(fields, 7)
        self.remote_desired_capabilities = _field(fields, 8)
        props = _field(fields, 9)
        self.remote_properties = props if isinstance(props, dict) else {}
        self.handler.on_open()
        return 0

    def close(self, condition=None, description=None, info=None):
        """Write our close (with an error when ``condition`` is given).  The connection is over when
        the peer's close comes back (on_close then)."""
        if self.close_sent or self.finished:
            return
        if self._phase != P_AMQP:
            self._terminate((condition, description or "", info) if condition else None)
            self.handler.on_close(self.error, False)
            return
        if not self.open_sent:
            self.open()      # the spec: an open precedes the close, even a refusing one
        if self._pending_open is not None:
            self._write_frame(0, OPEN, self._pending_open)
            self._pending_open = None
        for s in list(self._sessions.values()):
            (<Session>s)._flush(True)
        self._dirty = []
        self._write_frame(0, CLOSE, [error_value(condition, description, info)] if condition else [])
        self.close_sent = True
        if condition is not None:
            self.error = (condition, description or "", info)

    cdef int _on_close(self, list fields) except -1:
        err = error_from(_field(fields, 0))
        by_peer = not self.close_sent
        if not self.close_sent:
            self._write_frame(0, CLOSE, [])
            self.close_sent = True
        self.close_rcvd = True
        self._terminate(err if err is not None else self.error)
        self.handler.on_close(err, by_peer)
        return 0

    cdef int _fail(self, str condition, str description) except -1:
        """A protocol violation or a local limit: close with the error; the connection is over."""
        if self.finished:
            return 0
        if self._phase == P_AMQP and not self.close_sent:
            if not self.open_sent:
                self.open()
            if self._pending_open is not None:
                self._write_frame(0, OPEN, self._pending_open)
                self._pending_open = None
            self._write_frame(0, CLOSE, [error_value(condition, description)])
            self.close_sent = True
        elif self._phase == P_SASL and self.server:
            self._write_frame(0, SASL_OUTCOME, [ubyte(3)], FRAME_SASL)
        self._terminate((condition, description, None))
        self.handler.on_close(self.error, False)
        return 0

    cdef int _terminate(self, object error) except -1:
        """Everything on the connection is over: end every session (on_detach, on_end)."""
        cdef Session s
        self.finished = True
        if self.error is None:
            self.error = error
        sessions = list(self._sessions.values())
        self._sessions.clear()
        self._remote_sessions.clear()
        self._last_session = None
        self._last_channel = -1
        self._touched = []
        for s in sessions:
            s._terminate(error)
        return 0

    # -- heartbeats -------------------------------------------------------------------------------
    def tick(self, double now):
        """Idle-time-out work: an empty frame when we have been quiet for half the peer's idle-time-out;
        closes with amqp:resource-limit-exceeded after twice ours without input.  Returns the seconds
        until the next call, 0 when no timer is needed."""
        cdef double interval = 0.0
        if self.finished or not self.open_rcvd:
            return self.idle_timeout / 2 if self.idle_timeout and not self.finished else 0.0
        if self.idle_timeout:
            if now - self.last_read > 2 * self.idle_timeout:
                self._fail(RESOURCE_LIMIT, "local-idle-timeout expired: nothing received for %.3fs"
                           % (now - self.last_read))
                return 0.0
            interval = self.idle_timeout / 2
        if self.remote_idle_timeout:
            if now - self.last_write >= self.remote_idle_timeout / 2 and self._out.len == 0:
                wb_write(self._out, b"\x00\x00\x00\x08\x02\x00\x00\x00", 8)
            if interval == 0 or self.remote_idle_timeout / 4 < interval:
                interval = self.remote_idle_timeout / 4
        return interval

    # -- sessions ---------------------------------------------------------------------------------
    cdef int _release_channel(self, Session s) except -1:
        if self._sessions.get(s.channel) is s:
            del self._sessions[s.channel]
            self._free_channels.append(s.channel)
        if s.remote_channel >= 0 and self._remote_sessions.get(s.remote_channel) is s:
            del self._remote_sessions[s.remote_channel]
        if self._last_session is s:
            self._last_session = None
            self._last_channel = -1
        return 0

    def begin(self, incoming_window=None, outgoing_window=0x7FFFFFFF, handle_max=None):
        """Begin a session (its on_begin comes with the peer's answer)."""
        cdef Session s
        if not self.open_sent or self.close_sent or self.finished:
            raise EngineError("the connection is not open")
        s = self._new_session(-1, incoming_window, handle_max)
        s.state = S_BEGIN_SENT
        s._write(BEGIN, [None, uint(0), uint(s.incoming_window), uint(outgoing_window), uint(s.handle_max)])
        return s

    cdef Session _new_session(self, int remote_channel, object incoming_window, object handle_max):
        cdef Session s
        cdef int limit = self.channel_max
        cdef int64_t channel
        if self.open_rcvd and self.remote_channel_max < limit:
            limit = self.remote_channel_max
        channel = _take_number(self._free_channels, &self._next_channel, limit)
        if channel < 0:
            raise EngineError("no free channel (channel-max %d)" % limit)
        s = Session.__new__(Session)
        s.engine = self
        s.channel = channel
        s.remote_channel = remote_channel
        s.incoming_window = self.incoming_window if incoming_window is None else incoming_window
        s._in_room = s.incoming_window
        s.handle_max = self.handle_max if handle_max is None else handle_max
        s.remote_handle_max = MASK32
        s._links = {}
        s._remote_links = {}
        s._attaching = {}
        s._free_handles = []
        s._accepts = []
        s._others = []
        s._echo_settles = []
        s._ulinks = []
        s._uctx = []
        self._sessions[channel] = s
        if remote_channel >= 0:
            self._remote_sessions[remote_channel] = s
        return s

    cdef int _on_begin(self, int channel, list fields) except -1:
        cdef Session s
        remote = _uint_field(fields, 0, None, 0xFFFF, "begin.remote-channel")
        if channel in self._remote_sessions:
            raise ProtocolViolation(FRAMING_ERROR, "begin on channel %d already in use" % channel)
        if channel > self.channel_max:
            raise ProtocolViolation(FRAMING_ERROR, "begin on channel %d beyond channel-max %d"
                                    % (channel, self.channel_max))
        if remote is not None:
            s = self._sessions.get(remote)
            if s is None or s.state != S_BEGIN_SENT:
                raise ProtocolViolation(NOT_ALLOWED, "begin for channel %s that we did not begin" % remote)
            s.remote_channel = channel
            self._remote_sessions[channel] = s
        else:
            try:
                s = self._new_session(channel, None, None)
            except EngineError as e:
                raise ProtocolViolation(FRAMING_ERROR, str(e))
        s.next_incoming_id = _uint_field(fields, 1, 0, 0xFFFFFFFF, "begin.next-outgoing-id")
        s.remote_incoming_window = _uint_field(fields, 2, 0, 0xFFFFFFFF, "begin.incoming-window")
        s.remote_outgoing_window = _uint_field(fields, 3, 0, 0xFFFFFFFF, "begin.outgoing-window")
        s.remote_handle_max = _uint_field(fields, 4, MASK32, 0xFFFFFFFF, "begin.handle-max")
        if remote is None:
            s._write(BEGIN, [ushort(channel), uint(0), uint(s.incoming_window), uint(0x7FFFFFFF),
                             uint(s.handle_max)])
        s.state = S_MAPPED
        self.handler.on_begin(s)
        return 0

    # -- transfers in -----------------------------------------------------------------------------
    cdef int _on_transfer(self, int channel, const char* body, Py_ssize_t blen) except -1:
        cdef Transfer t
        cdef Session s
        cdef Link link
        cdef uint32_t handle
        if channel == self._last_channel:
            s = self._last_session
        else:
            s = self._remote_sessions.get(channel)
            if s is None:
                raise ProtocolViolation(NOT_ALLOWED, "transfer on unknown channel %d" % channel)
            self._last_session = s
            self._last_channel = channel
        _parse_transfer(body, blen, &t)
        if s.state != S_MAPPED:
            return 0        # our end is out: dropped until the peer's end
        s.next_incoming_id = <uint32_t>(s.next_incoming_id + 1)
        s._in_room -= 1
        if s._in_room < 0:
            return s._fail(WINDOW_VIOLATION, "transfer beyond the incoming-window of %d" % s.incoming_window)
        if s._in_room < s.incoming_window // 2 and not s._dirty:
            s._dirty = True
            self._dirty.append(s)
        handle = <uint32_t>t.handle
        if s._last is not None and s._last_handle == handle:
            link = s._last
        else:
            link = s._remote_links.get(handle)
            if link is None or link.is_sender:
                return s._fail(UNATTACHED_HANDLE, "transfer on unattached handle %d" % handle)
            s._last = link
            s._last_handle = handle
        if link.state != L_ATTACHED and link.state != L_ATTACH_RCVD:
            return 0        # sent before the peer saw our detach
        if not link._in_partial:
            if t.aborted:
                return 0
            if link.credit <= 0:
                return link._fail(TRANSFER_LIMIT, "transfer beyond the link credit granted")
            if t.tag_len > MAX_TAG:       # the type delivery-tag is at most 32 bytes: a malformed transfer
                raise ProtocolViolation(DECODE_ERROR, "transfer: delivery-tag of %d bytes, more than %d"
                                        % (t.tag_len, MAX_TAG))
            if not t.has_id:
                return link._fail(INVALID_FIELD, "the first transfer of a delivery has no delivery-id")
            if link.max_message_size and <uint64_t>t.payload_len > link.max_message_size:
                return link._fail(MESSAGE_SIZE, "message of at least %d bytes exceeds max-message-size %d"
                                  % (t.payload_len, link.max_message_size))
            tag = PyBytes_FromStringAndSize(t.tag, t.tag_len) if not link.batch else None
            if not t.more:
                return link._deliver(t.payload, t.payload_len, t.settled, True, t.did, tag)
            link._in_partial = True
            link._partial_settled = t.settled
            link._partial_has_id = True
            link._partial_id = t.did
            link._partial_tag = tag
            link._partial_size = t.payload_len
            if link._partial is None:
                link._partial = WriteBuffer.__new__(WriteBuffer)
            link._partial.len = 0
            if not link.batch or link.keep or link.check_seq:
                wb_write(link._partial, t.payload, t.payload_len)
            return 0
        if t.aborted:
            link._in_partial = False
            link._partial.len = 0
            link._partial_tag = None
            return 0
        link._partial_size += <uint64_t>t.payload_len
        if link.max_message_size and link._partial_size > link.max_message_size:
            return link._fail(MESSAGE_SIZE, "message of at least %d bytes exceeds max-message-size %d"
                              % (link._partial_size, link.max_message_size))
        if t.settled:
            link._partial_settled = True
        if not link.batch or link.keep or link.check_seq:
            wb_write(link._partial, t.payload, t.payload_len)
        if t.more:
            return 0
        link._in_partial = False
        tag = link._partial_tag
        link._partial_tag = None
        link._deliver(link._partial.buf, link._partial.len if (not link.batch or link.keep or link.check_seq)
                      else <Py_ssize_t>link._partial_size, link._partial_settled, link._partial_has_id,
                      link._partial_id, tag)
        link._partial.len = 0
        if link._partial.size > (1 << 20):
            link._partial = None
        return 0


# =================================================================================================
# Sessions
# =================================================================================================

@cython.final
cdef class Session:
    """One session of an Engine (made by ``Engine.begin`` or by the peer's begin)."""

    def __repr__(self):
        return "<Session channel=%d remote=%d state=%d>" % (self.channel, self.remote_channel, self.state)

    @property
    def links(self):
        """The attached links by local handle (a copy)."""
        return dict(self._links)

    @property
    def outstanding(self):
        """Outgoing deliveries not settled by the peer yet (ring slots in use)."""
        cdef Py_ssize_t n = 0, i
        for i in range(self._uhead, len(self._ulinks)):
            if self._ulinks[i] is not None:
                n += 1
        return n

    cdef int _write(self, int code, list fields) except -1:
        return self.engine._write_frame(self.channel, code, fields)

    cdef list _flow_fields(self):
        self._in_room = self.incoming_window
        return [uint(self.next_incoming_id), uint(self.incoming_window), uint(self.next_outgoing_id),
                uint(0x7FFFFFFF)]

    def flow(self, echo=False):
        """A session flow (our windows)."""
        fields = self._flow_fields()
        if echo:
            fields += [None, None, None, None, None, True]
        self._write(FLOW, fields)

    cdef int _queue_settle(self, uint32_t did, object state, bint settled) except -1:
        if state is None and settled:
            self._pending_accepts += 1
            if self._run_open:
                if did == <uint32_t>(self._run_last + 1):
                    self._run_last = did
                else:
                    self._accepts.append((self._run_first, self._run_last))
                    self._run_first = self._run_last = did
            else:
                self._run_open = True
                self._run_first = self._run_last = did
        else:
            self._others.append((did, _ACCEPTED if state is None else state, settled))
        if not self._dirty:
            self._dirty = True
            self.engine._dirty.append(self)
        return 0

    def settle(self, uint32_t delivery_id, state=None, bint settled=True):
        """Settle an incoming delivery (of a batch link with auto_accept off): accepted when ``state``
        is None.  Accepts go out in ranges with the next output."""
        self._queue_settle(delivery_id, state, settled)

    def flush_settles(self):
        """Write the accepts held back by ``settle_batch`` with the next output."""
        if self._pending_accepts:
            self._force = True
            if not self._dirty:
                self._dirty = True
                self.engine._dirty.append(self)

    cdef int _flush(self, bint force=False) except -1:
        self._dirty = False
        if self.state != S_MAPPED:
            self._accepts = []
            self._run_open = False
            self._pending_accepts = 0
            self._others = []
            self._echo_settles = []
            return 0
        if force or self._force or self._pending_accepts >= self.settle_batch:
            self._force = False
            if self._run_open:
                self._accepts.append((self._run_first, self._run_last))
                self._run_open = False
            for first, last in self._accepts:
                self._write(DISPOSITION, [True, uint(first), uint(last) if last != first else None, True,
                                          _ACCEPTED])
            self._accepts = []
            self._pending_accepts = 0
        if self._others:
            for did, state, settled in self._others:
                self._write(DISPOSITION, [True, uint(did), None, settled, state])
            self._others = []
        if self._echo_settles:
            for first, last, state in self._echo_settles:
                self._write(DISPOSITION, [False, uint(first), uint(last), True, state])
            self._echo_settles = []
        if self._in_room < self.incoming_window // 2:
            self._write(FLOW, self._flow_fields())
        return 0

    @property
    def pending_settles(self):
        """Settlements queued and not written yet."""
        return len(self._others) + self._pending_accepts

    # -- outgoing ---------------------------------------------------------------------------------
    cdef int _track(self, Link link, object context, bint unsettled, uint32_t did) except -1:
        if self._uhead >= len(self._ulinks):
            if not unsettled:
                return 0
            if self._uhead:
                self._ulinks = []
                self._uctx = []
                self._uhead = 0
            self._ubase = did
        if unsettled:
            self._ulinks.append(link)
            self._uctx.append(context)
        else:
            self._ulinks.append(None)
            self._uctx.append(None)
        return 0

    cdef int _write_frames(self, WriteBuffer frames, Py_ssize_t nframes, Link link) except -1:
        """Write a delivery's frames as far as the peer's incoming window allows; keep the rest."""
        self._pending = PyBytes_FromStringAndSize(frames.buf, frames.len)
        self._pending_off = 0
        self._pending_link = link
        return self._write_pending()

    cdef int _write_pending(self) except -1:
        cdef const char* p = PyBytes_AS_STRING(self._pending)
        cdef Py_ssize_t total = PyBytes_GET_SIZE(self._pending)
        cdef Py_ssize_t start = self._pending_off, off = self._pending_off
        cdef uint32_t n = 0
        while off < total and self.remote_incoming_window > 0:
            off += load_u32(p + off)
            self.remote_incoming_window -= 1
            n += 1
        if off > start:
            wb_write(self.engine._out, p + start, off - start)
            self.next_outgoing_id = <uint32_t>(self.next_outgoing_id + n)
        if off >= total:
            self._pending = None
            self._pending_link = None
        else:
            self._pending_off = off
        return 0

    # -- incoming performatives -------------------------------------------------------------------
    cdef int _on_frame(self, int code, list fields) except -1:
        if self.state == S_END_SENT:
            if code == END:
                self.state = S_ENDED
                self.engine._release_channel(self)
                if not self._notified:
                    self._terminate(error_from(_field(fields, 0)))
            return 0
        if self.state != S_MAPPED:
            return 0
        if code == FLOW:
            return self._on_flow(fields)
        if code == DISPOSITION:
            return self._on_disposition(fields)
        if code == ATTACH:
            return self._on_attach(fields)
        if code == DETACH:
            return self._on_detach(fields)
        if code == END:
            return self._on_end(fields)
        raise ProtocolViolation(FRAMING_ERROR, "unexpected performative 0x%x on a session" % code)

    cdef int _on_attach(self, list fields) except -1:
        cdef Link link
        name = _field(fields, 0)
        if not isinstance(name, str):
            raise ProtocolViolation(DECODE_ERROR, "attach.name must be a string, not %r" % (name,))
        handle = _uint_field(fields, 1, None, 0xFFFFFFFF, "attach.handle")
        if handle is None:
            raise ProtocolViolation(DECODE_ERROR, "attach: mandatory field handle is missing")
        peer_is_receiver = _bool_field(fields, 2, "attach.role")
        if handle in self._remote_links:
            return self._fail(HANDLE_IN_USE, "attach on handle %d already in use" % handle)
        if handle > self.handle_max:      # the spec: a handle beyond handle-max is a framing error
            raise ProtocolViolation(FRAMING_ERROR, "attach on handle %d beyond handle-max %d"
                                    % (handle, self.handle_max))
        link = self._attaching.pop(name, None)
        if link is not None and link.is_sender == peer_is_receiver:
            link.state = L_ATTACHED
        else:
            if link is not None:
                return self._fail(amqp.ERRANT_LINK, "attach for link %r with the wrong role" % name)
            try:
                link = self._new_link(name, peer_is_receiver)
            except EngineError as e:
                return self._fail(RESOURCE_LIMIT, str(e))
            link.state = L_ATTACH_RCVD
        link.remote_handle = handle
        link.has_remote = True
        self._remote_links[handle] = link
        link.remote_snd_settle_mode = _uint_field(fields, 3, SND_MIXED, 2, "attach.snd-settle-mode")
        link.remote_rcv_settle_mode = _uint_field(fields, 4, RCV_FIRST, 1, "attach.rcv-settle-mode")
        link.remote_source = _field(fields, 5)
        link.remote_target = _field(fields, 6)
        link.remote_max_message_size = _uint_field(fields, 10, 0, 0xFFFFFFFFFFFFFFFF, "attach.max-message-size")
        link.remote_offered_capabilities = _field(fields, 11)
        link.remote_desired_capabilities = _field(fields, 12)
        props = _field(fields, 13)
        link.remote_properties = props if isinstance(props, dict) else {}
        if not link.is_sender:
            link.delivery_count = _uint_field(fields, 9, 0, 0xFFFFFFFF, "attach.initial-delivery-count")
        if link.state == L_ATTACH_RCVD:
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.rcv_settle_mode = link.remote_rcv_settle_mode
        self.engine.handler.on_attach(link)
        return 0

    cdef Link _new_link(self, object name, bint is_sender):
        cdef Link link
        cdef uint32_t limit = self.handle_max
        cdef int64_t handle
        if self.remote_handle_max < limit:
            limit = self.remote_handle_max
        handle = _take_number(self._free_handles, &self._next_handle, limit)
        if handle < 0:
            raise EngineError("no free link handle (handle-max %d)" % limit)
        link = Link.__new__(Link)
        link.session = self
        link.name = name
        link.handle = handle
        link.is_sender = is_sender
        link.max_message_size = self.engine.max_message_size
        link.auto_accept = True
        link.keep = True
        link.strict_seq = True
        link.messages = []
        link.delivery_ids = []
        self._links[handle] = link
        return link

    def attach(self, name, bint is_sender, source=None, target=None, int snd_settle_mode=SND_MIXED,
               int rcv_settle_mode=RCV_FIRST, max_message_size=None, properties=None,
               offered_capabilities=None, desired_capabilities=None, bint batch=False):
        """Attach a link (on_attach comes with the peer's answer).  ``batch``: a receiving link whose
        messages are kept in C and reported once per read burst (on_messages)."""
        cdef Link link
        if self.state != S_MAPPED and self.state != S_BEGIN_SENT:
            raise EngineError("the session is not open")
        if name in self._attaching:
            raise EngineError("a link named %r is attaching already" % (name,))
        link = self._new_link(name, is_sender)
        link.state = L_ATTACH_SENT
        link.source = source
        link.target = target
        link.snd_settle_mode = snd_settle_mode
        link.rcv_settle_mode = rcv_settle_mode
        link.batch = batch
        if max_message_size is not None:
            link.max_message_size = max_message_size
        link.remote_properties = {}
        link._write_attach_fields(properties, offered_capabilities, desired_capabilities)
        self._attaching[name] = link
        return link

    cdef int _on_flow(self, list fields) except -1:
        cdef Link link
        nii = _uint_field(fields, 0, 0, 0xFFFFFFFF, "flow.next-incoming-id")
        iw = _uint_field(fields, 1, 0, 0xFFFFFFFF, "flow.incoming-window")
        self.remote_outgoing_window = _uint_field(fields, 3, 0, 0xFFFFFFFF, "flow.outgoing-window")
        handle = _uint_field(fields, 4, None, 0xFFFFFFFF, "flow.handle")
        echo = _bool_field(fields, 9, "flow.echo")
        was_closed = self.remote_incoming_window <= 0 or self._pending is not None
        self.remote_incoming_window = <int64_t>nii + <int64_t>iw - <int64_t>self.next_outgoing_id
        if nii > self.next_outgoing_id + 0x80000000:      # the peer's id wrapped past ours
            self.remote_incoming_window -= 0x100000000
        if self._pending is not None and self.remote_incoming_window > 0:
            self._write_pending()
        if handle is None:
            if echo:
                self._write(FLOW, self._flow_fields())
        else:
            link = self._remote_links.get(handle)
            if link is None:
                return self._fail(UNATTACHED_HANDLE, "flow on unattached handle %d" % handle)
            if link.state == L_ATTACHED or link.state == L_ATTACH_RCVD:
                dc = _uint_field(fields, 5, None, 0xFFFFFFFF, "flow.delivery-count")
                lc = _uint_field(fields, 6, 0, 0xFFFFFFFF, "flow.link-credit")
                link.available = _uint_field(fields, 7, 0, 0xFFFFFFFF, "flow.available")
                link.drain = _bool_field(fields, 8, "flow.drain")
                if link.is_sender:
                    credit = ((0 if dc is None else dc) + lc - link.delivery_count) & MASK32
                    link.credit = credit if credit <= 0x7FFFFFFF else 0
                else:
                    if dc is not None:
                        link.delivery_count = dc
                    link.credit = lc
                self.engine.handler.on_flow(link)
                if echo and link.state == L_ATTACHED:
                    link._send_flow(False)
        if was_closed and self.remote_incoming_window > 0 and self._pending is None:
            self.engine.handler.on_session_flow(self)
        return 0

    cdef int _on_disposition(self, list fields) except -1:
        cdef Link link, group = None
        cdef Py_ssize_t count = 0, ringlen, off, idx
        cdef int64_t start, end
        cdef uint32_t first, last
        cdef int code
        peer_is_receiver = _bool_field(fields, 0, "disposition.role")
        first = _uint_field(fields, 1, None, 0xFFFFFFFF, "disposition.first") if _field(fields, 1) is not None \
            else 0
        if _field(fields, 1) is None:
            raise ProtocolViolation(DECODE_ERROR, "disposition: mandatory field first is missing")
        last = _uint_field(fields, 2, first, 0xFFFFFFFF, "disposition.last")
        settled = _bool_field(fields, 3, "disposition.settled")
        state = _field(fields, 4)
        if not peer_is_receiver:
            return 0        # the peer settling its own deliveries (rcv-settle-mode second): done
        code = outcome_code(state)
        if code == RECEIVED or (code == 0 and not settled):
            return 0        # not terminal
        handler = self.engine.handler
        ringlen = len(self._ulinks) - self._uhead
        if ringlen > 0:
            start = <int32_t>(first - self._ubase)
            end = start + <int64_t>(<uint32_t>(last - first))
            if start < 0:
                start = 0
            if end >= ringlen:
                end = ringlen - 1
            for off in range(start, end + 1):
                idx = self._uhead + off
                obj = self._ulinks[idx]
                if obj is None:
                    continue
                link = <Link>obj
                ctx = self._uctx[idx]
                self._ulinks[idx] = None
                self._uctx[idx] = None
                link.unsettled -= 1
                if ctx is None:
                    if link is group:
                        count += 1
                        continue
                    if group is not None:
                        handler.on_settled(group, count, code, state)
                    group = link
                    count = 1
                else:
                    if group is not None:
                        handler.on_settled(group, count, code, state)
                        group = None
                    handler.on_outcome(link, ctx, code, state)
            if group is not None:
                handler.on_settled(group, count, code, state)
            self._advance_ring()
        if not settled:
            # The peer receives in rcv-settle-mode second: it waits for our settlement.
            self._echo_settles.append((first, last, state))
            if not self._dirty:
                self._dirty = True
                self.engine._dirty.append(self)
        return 0

    cdef int _advance_ring(self) except -1:
        cdef Py_ssize_t n = len(self._ulinks)
        while self._uhead < n and self._ulinks[self._uhead] is None:
            self._uhead += 1
            self._ubase = <uint32_t>(self._ubase + 1)
        if self._uhead >= n:
            self._ulinks = []
            self._uctx = []
            self._uhead = 0
        elif self._uhead > 4096 and self._uhead * 2 > n:
            del self._ulinks[:self._uhead]
            del self._uctx[:self._uhead]
            self._uhead = 0
        return 0

    cdef int _on_detach(self, list fields) except -1:
        cdef Link link
        handle = _uint_field(fields, 0, None, 0xFFFFFFFF, "detach.handle")
        link = self._remote_links.get(handle) if handle is not None else None
        if link is None:
            return self._fail(UNATTACHED_HANDLE, "detach on unattached handle %s" % (handle,))
        err = error_from(_field(fields, 2))
        if link.state != L_DETACH_SENT:
            link._write_detach(None)
        link.state = L_DETACHED
        self._release_handle(link)
        if not link._notified:
            link._terminate(err)
        return 0

    cdef int _release_handle(self, Link link) except -1:
        if self._links.get(link.handle) is link:
            del self._links[link.handle]
            self._free_handles.append(link.handle)
        if link.has_remote and self._remote_links.get(link.remote_handle) is link:
            del self._remote_links[link.remote_handle]
        if self._attaching.get(link.name) is link:
            del self._attaching[link.name]
        if self._last is link:
            self._last = None
        return 0

    cdef int _on_end(self, list fields) except -1:
        err = error_from(_field(fields, 0))
        self._write(END, [])
        self.state = S_ENDED
        self.engine._release_channel(self)
        self._terminate(err)
        return 0

    def end(self, condition=None, description=None, info=None):
        """Write our end (with an error when ``condition`` is given); on_end comes with the peer's."""
        if self.state != S_MAPPED and self.state != S_BEGIN_SENT:
            return
        self._flush(True)
        self._write(END, [error_value(condition, description, info)] if condition else [])
        self.state = S_END_SENT
        self._pending = None

    cdef int _fail(self, str condition, str description) except -1:
        """End this session with an error (the connection and its other sessions carry on)."""
        if self.state != S_MAPPED:
            return 0
        self._write(END, [error_value(condition, description)])
        self.state = S_END_SENT
        self._terminate((condition, description, None))
        return 0

    cdef int _terminate(self, object error) except -1:
        cdef Link link
        if self._notified:
            return 0
        self._notified = True
        if self.state != S_END_SENT:
            self.state = S_ENDED
        self._pending = None
        self._pending_link = None
        links = list(self._links.values())
        for link in links:
            if not link._notified:
                link.state = L_DETACHED
                link._terminate(error)
        self._links.clear()
        self._remote_links.clear()
        self._attaching.clear()
        self._last = None
        self._ulinks = []
        self._uctx = []
        self._uhead = 0
        self.engine.handler.on_end(self, error)
        return 0


# =================================================================================================
# Links
# =================================================================================================

@cython.final
cdef class Link:
    """One link of a Session (made by ``Session.attach`` or by the peer's attach)."""

    def __repr__(self):
        return "<Link %r handle=%d %s state=%d credit=%d>" % (
            self.name, self.handle, "sender" if self.is_sender else "receiver", self.state, self.credit)

    # -- attach -----------------------------------------------------------------------------------
    cdef int _write_attach_fields(self, object properties, object offered_capabilities,
                                  object desired_capabilities) except -1:
        self.session._write(ATTACH, [
            self.name, uint(self.handle), not self.is_sender, ubyte(self.snd_settle_mode),
            ubyte(self.rcv_settle_mode), self.source, self.target, None, None,
            uint(self.delivery_count) if self.is_sender else None,
            ulong(self.max_message_size) if self.max_message_size else None,
            offered_capabilities, desired_capabilities, properties])
        return 0

    cdef int _write_attach(self) except -1:
        self._write_attach_fields(None, None, None)
        return 0

    def accept(self, source=None, target=None, snd_settle_mode=None, rcv_settle_mode=None,
               max_message_size=None, properties=None, offered_capabilities=None, bint batch=False):
        """Answer the peer's attach: the link is attached with these termini (the peer's when None)
        and settle modes (the peer's, which the engine honours, when None)."""
        if self.state != L_ATTACH_RCVD:
            raise EngineError("link %r is not waiting for an answer" % (self.name,))
        self.source = self.remote_source if source is None else source
        self.target = self.remote_target if target is None else target
        if snd_settle_mode is not None:
            self.snd_settle_mode = snd_settle_mode
        if rcv_settle_mode is not None:
            self.rcv_settle_mode = rcv_settle_mode
        if max_message_size is not None:
            self.max_message_size = max_message_size
        self.batch = batch
        self._write_attach_fields(properties, offered_capabilities, None)
        self.state = L_ATTACHED

    def refuse(self, condition, description=None, info=None):
        """Answer the peer's attach with a null terminus on our side, then detach with the error."""
        if self.state != L_ATTACH_RCVD:
            raise EngineError("link %r is not waiting for an answer" % (self.name,))
        self._answer_null()
        self.detach(condition, description, info)

    cdef int _answer_null(self) except -1:
        """Answer the peer's attach with a null terminus on our side (a detach follows)."""
        self.source = None if self.is_sender else self.remote_source
        self.target = self.remote_target if self.is_sender else None
        self._write_attach()
        self.state = L_ATTACHED
        return 0

    cdef int _write_detach(self, object err) except -1:
        self.session._write(DETACH, [uint(self.handle), True] + ([err] if err is not None else []))
        return 0

    def detach(self, condition=None, description=None, info=None):
        """Write our detach (closed, with an error when ``condition`` is given); on_detach comes
        with the peer's."""
        if self.state != L_ATTACHED and self.state != L_ATTACH_SENT:
            return
        self.session._flush(True)       # settlements first: the peer forgets the link's at the detach
        self._write_detach(error_value(condition, description, info) if condition else None)
        self.state = L_DETACH_SENT
        s = self.session
        if s._pending_link is self:
            s._pending = None          # the peer drops a delivery a detach leaves incomplete
            s._pending_link = None
        if not self.has_remote:
            s._attaching.pop(self.name, None)

    cdef int _fail(self, str condition, str description) except -1:
        """Detach with an error found here (the session carries on)."""
        if self.state != L_ATTACHED and self.state != L_ATTACH_RCVD:
            return 0
        self._in_partial = False
        self._partial = None
        self._partial_tag = None
        if self.state == L_ATTACH_RCVD:
            self._answer_null()         # the spec: our attach before our detach
        self.detach(condition, description)
        self._terminate((condition, description, None))
        return 0

    cdef int _terminate(self, object error) except -1:
        if self._notified:
            return 0
        self._notified = True
        self._in_partial = False
        self._partial = None
        self.session.engine.handler.on_detach(self, error)
        self.take_unsettled()
        return 0

    def take_unsettled(self):
        """The contexts of our deliveries on this link the peer has not settled (None for those sent
        without one); they are forgotten.  For on_detach: give them back to where they came from."""
        cdef Session s = self.session
        cdef Py_ssize_t i
        out = []
        if not self.unsettled:
            return out
        for i in range(s._uhead, len(s._ulinks)):
            if s._ulinks[i] is self:
                out.append(s._uctx[i])
                s._ulinks[i] = None
                s._uctx[i] = None
        self.unsettled = 0
        s._advance_ring()
        return out

    # -- credit -----------------------------------------------------------------------------------
    cdef int _send_flow(self, bint echo) except -1:
        if self.session._dirty:
            self.session._flush()       # settlements queued before this credit go first
        fields = self.session._flow_fields()
        fields += [uint(self.handle), uint(self.delivery_count), uint(<uint32_t>self.credit if self.credit > 0 else 0),
                   uint(self.available) if self.is_sender else None, self.drain if not self.is_sender or self.drain else None,
                   True if echo else None]
        self.session._write(FLOW, fields)
        return 0

    def flow(self, credit=None, drain=None, echo=False):
        """Receiver: grant ``credit`` (the total outstanding), ask to ``drain``.  Sender: tell the
        peer our delivery-count, credit and ``available`` (set it first)."""
        if self.state != L_ATTACHED:
            raise EngineError("link %r is not attached" % (self.name,))
        if not self.is_sender:
            if credit is not None:
                self.credit = credit
            if drain is not None:
                self.drain = drain
        self._send_flow(echo)

    def set_available(self, uint32_t available):
        self.available = available

    def drained(self):
        """Sender with nothing (more) to send while the peer drains: use the credit up and say so."""
        if self.is_sender and self.drain and self.credit > 0 and self.state == L_ATTACHED:
            self.delivery_count = <uint32_t>(self.delivery_count + <uint32_t>self.credit)
            self.credit = 0
            self._send_flow(False)

    # -- receiving --------------------------------------------------------------------------------
    cdef int _deliver(self, const char* data, Py_ssize_t n, bint settled, bint has_id, uint32_t did,
                      object tag) except -1:
        cdef uint64_t got
        cdef Delivery d
        cdef Engine engine = self.session.engine
        self.credit -= 1
        self.delivery_count = <uint32_t>(self.delivery_count + 1)
        self.received += 1
        self.bytes_received += <uint64_t>n
        if self.batch:
            if self.check_seq:
                got = load_u64(data + n - 8) if n >= 8 else 0xFFFFFFFFFFFFFFFF
                if got != self.next_seq and (self.strict_seq or got < self.next_seq):
                    self.seq_errors += 1
                    if self.seq_error is None:
                        self.seq_error = "Sequence error: expected n%s%d but got %d" % (
                            "==" if self.strict_seq else ">=", self.next_seq, got)
                if got != 0xFFFFFFFFFFFFFFFF:
                    self.next_seq = got + 1
            if self.keep:
                self.messages.append(PyBytes_FromStringAndSize(data, n))
                if not self.auto_accept:
                    self.delivery_ids.append(None if settled else did)
            if not settled and self.auto_accept:
                self.session._queue_settle(did, None, self.rcv_settle_mode != RCV_SECOND)
            if not self._touched:
                self._touched = True
                engine._touched.append(self)
            return 0
        d = Delivery.__new__(Delivery)
        d.link = self
        d.id = did
        d.tag = tag
        d.settled = settled
        engine.handler.on_message(self, d, PyBytes_FromStringAndSize(data, n))
        d._stage = 1
        if d.holds == 0:
            d._settle()
        return 0

    def take_messages(self):
        """(messages, delivery_ids) kept since the last call (batch links); both start afresh."""
        msgs, ids = self.messages, self.delivery_ids
        self.messages = []
        self.delivery_ids = []
        return msgs, ids

    @property
    def in_partial(self):
        return self._in_partial

    # -- sending ----------------------------------------------------------------------------------
    cdef int _sendable(self, Py_ssize_t frames) noexcept:
        cdef Session s = self.session
        if self.state != L_ATTACHED or not self.is_sender or self.credit <= 0 or s._pending is not None:
            return 0
        if s.state != S_MAPPED or s.remote_incoming_window < 1:
            return 0
        if s.engine._out.len >= s.engine.output_limit:
            s.engine._out_full = True
            return 0
        return 1

    @property
    def can_send(self):
        """Credit, the peer's session window and the output bound all allow a delivery now."""
        return self._sendable(1) == 1

    def send(self, data, tag=None, settled=None, context=None):
        """Send one delivery of ``data`` (an encoded message); returns its delivery-id, or -1 when
        credit, the peer's window or the output bound do not allow it now.  The settle mode our attach
        announced decides ``settled`` (asked for only in mode mixed).  An unsettled delivery's outcome
        comes back in on_outcome(link, context, ...), or in on_settled when context is None."""
        cdef Session s = self.session
        cdef Engine engine = s.engine
        cdef WriteBuffer tmp
        cdef bytes msg, tagb
        cdef char tagbuf[4]
        cdef uint32_t did
        cdef Py_ssize_t fpm, nf
        cdef bint pre
        if self.state != L_ATTACHED or not self.is_sender:
            raise EngineError("link %r is not an attached sender" % (self.name,))
        if not self._sendable(1):
            return -1
        msg = data if type(data) is bytes else bytes(data)
        if self.remote_max_message_size and <uint64_t>PyBytes_GET_SIZE(msg) > self.remote_max_message_size:
            raise EngineError("message of %d bytes exceeds the peer's max-message-size %d"
                              % (PyBytes_GET_SIZE(msg), self.remote_max_message_size))
        pre = (self.snd_settle_mode == SND_SETTLED or
               (self.snd_settle_mode == SND_MIXED and settled is not None and settled))
        did = s.next_delivery_id
        if tag is None:
            store_u32(tagbuf, did)
            tagb = PyBytes_FromStringAndSize(tagbuf, 4)
        else:
            tagb = bytes(tag)
            if PyBytes_GET_SIZE(tagb) > MAX_TAG:
                raise EngineError("delivery-tag of %d bytes (at most %d)" % (PyBytes_GET_SIZE(tagb), MAX_TAG))
        fpm = _frames_per_message(PyBytes_GET_SIZE(msg), engine.remote_max_frame_size)
        if fpm <= s.remote_incoming_window:
            nf = write_transfer_frames(engine._out, s.channel, self.handle, did, PyBytes_AS_STRING(tagb),
                                       PyBytes_GET_SIZE(tagb), pre, PyBytes_AS_STRING(msg),
                                       PyBytes_GET_SIZE(msg), engine.remote_max_frame_size)
            s.next_outgoing_id = <uint32_t>(s.next_outgoing_id + <uint32_t>nf)
            s.remote_incoming_window -= nf
        else:
            tmp = WriteBuffer.__new__(WriteBuffer)
            nf = write_transfer_frames(tmp, s.channel, self.handle, did, PyBytes_AS_STRING(tagb),
                                       PyBytes_GET_SIZE(tagb), pre, PyBytes_AS_STRING(msg),
                                       PyBytes_GET_SIZE(msg), engine.remote_max_frame_size)
            s._write_frames(tmp, nf, self)
        s.next_delivery_id = <uint32_t>(did + 1)
        s._track(self, context, not pre, did)
        self.credit -= 1
        self.delivery_count = <uint32_t>(self.delivery_count + 1)
        self.sent += 1
        if not pre:
            self.unsettled += 1
        return did

    def send_batch(self, message, Py_ssize_t count, settled=None, Py_ssize_t seq_offset=-1,
                   uint64_t seq=0):
        """Send up to ``count`` deliveries of one encoded ``message`` (bytes) in one call, as many as
        credit, the peer's window and the output bound allow; returns how many.  Each delivery's tag
        is its 4-byte delivery-id.  With ``seq_offset >= 0`` the 8 bytes at that offset of each copy
        carry a big-endian counter from ``seq``.  Outcomes come back in on_settled."""
        cdef Session s = self.session
        cdef Engine engine = s.engine
        cdef bytes msg
        cdef Py_ssize_t L, n, i, fpm
        cdef WriteBuffer out
        cdef uint32_t did, frames = 0
        cdef char tagbuf[4]
        cdef char* mp
        cdef bint pre
        if self.state != L_ATTACHED or not self.is_sender:
            raise EngineError("link %r is not an attached sender" % (self.name,))
        if count <= 0 or not self._sendable(1):
            return 0
        msg = message if type(message) is bytes else bytes(message)
        L = PyBytes_GET_SIZE(msg)
        if self.remote_max_message_size and <uint64_t>L > self.remote_max_message_size:
            raise EngineError("message of %d bytes exceeds the peer's max-message-size %d"
                              % (L, self.remote_max_message_size))
        if seq_offset >= 0:
            if seq_offset + 8 > L:
                raise ValueError("sequence offset %d does not fit a message of %d bytes" % (seq_offset, L))
            msg = PyBytes_FromStringAndSize(PyBytes_AS_STRING(msg), L)    # ours to stamp in place
        mp = PyBytes_AS_STRING(msg)
        pre = (self.snd_settle_mode == SND_SETTLED or
               (self.snd_settle_mode == SND_MIXED and settled is not None and settled))
        n = count
        if n > self.credit:
            n = <Py_ssize_t>self.credit
        fpm = _frames_per_message(L, engine.remote_max_frame_size)
        if n > s.remote_incoming_window // fpm:
            n = <Py_ssize_t>(s.remote_incoming_window // fpm)
        if n <= 0:
            return 0
        did = s.next_delivery_id
        out = engine._out
        for i in range(n):
            if out.len >= engine.output_limit:
                engine._out_full = True
                n = i
                break
            store_u32(tagbuf, did)
            if seq_offset >= 0:
                store_u64(mp + seq_offset, seq)
                seq += 1
            frames += <uint32_t>write_transfer_frames(out, s.channel, self.handle, did, tagbuf, 4,
                                                      pre, mp, L, engine.remote_max_frame_size)
            did += 1
        if not pre:
            if s._uhead >= len(s._ulinks):
                if s._uhead:
                    s._ulinks = []
                    s._uctx = []
                    s._uhead = 0
                s._ubase = s.next_delivery_id
            s._ulinks.extend([self] * n)
            s._uctx.extend([None] * n)
            self.unsettled += <uint64_t>n
        elif s._uhead < len(s._ulinks):
            s._ulinks.extend([None] * n)
            s._uctx.extend([None] * n)
        s.next_delivery_id = did
        s.next_outgoing_id = <uint32_t>(s.next_outgoing_id + frames)
        s.remote_incoming_window -= frames
        self.credit -= n
        self.delivery_count = <uint32_t>(self.delivery_count + <uint32_t>n)
        self.sent += <uint64_t>n
        return n


# =================================================================================================
# Incoming deliveries and holds
# =================================================================================================

@cython.final
cdef class Delivery:
    """An incoming delivery (per-message links).  ``hold()`` defers its settlement; the engine settles
    it (with ``outcome``, accepted when None) when the last hold is released."""

    def __repr__(self):
        return "<Delivery %d holds=%d>" % (self.id, self.holds)

    def hold(self):
        """One more thing must finish before this delivery is settled; returns the delivery."""
        if self._stage == 2:
            raise EngineError("delivery %d is settled already" % self.id)
        if self.holds == 0:
            self.link.session.engine.held += 1
        self.holds += 1
        return self

    def release(self, outcome=None):
        """One hold is done (``outcome``, if given, replaces the delivery's); with none left the
        delivery is settled."""
        if self.holds <= 0:
            raise EngineError("delivery %d has no hold to release" % self.id)
        if outcome is not None:
            self.outcome = outcome
        self.holds -= 1
        if self.holds == 0:
            self.link.session.engine.held -= 1
            if self._stage == 1:
                self._settle()

    cdef int _settle(self) except -1:
        cdef Link link = self.link
        cdef Session s = link.session
        if self._stage == 2:
            return 0
        self._stage = 2
        if self.settled or link.state != L_ATTACHED or s.state != S_MAPPED:
            return 0            # pre-settled, or the link went away: nothing to say
        s._queue_settle(self.id, self.outcome, link.rcv_settle_mode != RCV_SECOND)
        return 0
