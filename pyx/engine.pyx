# cython: language_level=3
"""One AMQP 1.0 endpoint engine for the client and the broker (see engine.pxd and docs/ENGINE.md).

Bytes in: ``feed()`` splits a read burst into frames in place and dispatches them; transfers are
decoded in C and, on batch links, consumed without a Python call.  Bytes out: every frame goes into
one WriteBuffer that ``take_output()`` hands to the shell once per loop turn, after the dispositions
and window flows the burst left behind.  The engine is three modules, each built on the one before:
engine_core (handler, field and transfer readers), endpoints (sessions, links, deliveries), engine
(the connection); this one re-exports what Python code uses.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_FromObject
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from cypid.pyx.amqp cimport (BEGIN, CLOSE, FRAME_AMQP, FRAME_SASL, OPEN, SASL_CHALLENGE, SASL_INIT,
                             SASL_MECHANISMS, SASL_OUTCOME, SASL_RESPONSE, TRANSFER, error_from, error_value)
from cypid.pyx.encoder cimport WriteBuffer, wb_write
from cypid.pyx.endpoints cimport Link, Session
from cypid.pyx.engine_core cimport (C_CLOSE_SENT, C_CLOSED, C_HEADER, C_OPENED, C_OPENING, C_SASL, L_ATTACH_RCVD,
                                    L_ATTACH_SENT, L_ATTACHED, L_DETACH_SENT, L_DETACHED, MAX_TAG, MIN_MAX_FRAME,
                                    P_AMQP, P_HEADER, P_SASL, S_BEGIN_SENT, S_END_SENT, S_ENDED, S_MAPPED,
                                    S_UNMAPPED, ConnectionCore, Handler, OutputBuffer, _field, _take_number,
                                    _uint_field)
from cypid.pyx.frames cimport FrameReader, FrameView, Transfer, decode_performative, read_transfer

from enum import IntEnum

from cypid.pyx import amqp
from cypid.pyx import endpoints as _endpoints, engine_core as _core
from cypid.pyx.engine_core import EngineError, ProtocolViolation
from cypid.pyx.frames import AMQP_HEADER, SASL_HEADER
from cypid.pyx.performatives import check_fields
from cypid.pyx.values import Array, DecodeError, symbol, ubyte, uint, ushort

cdef uint32_t MASK32 = 0xFFFFFFFF

# =================================================================================================
# The connection
# =================================================================================================

@cython.final

cdef Py_ssize_t _descriptor_end(const char* body, Py_ssize_t blen) except -1:
    """Where a performative's list starts, after 00 and its descriptor (smallulong 53 xx, ulong 80 +8,
    sym8 a3 len, sym32 b3 len32); decode_performative has already checked the body."""
    cdef uint8_t c = <uint8_t>body[1]
    if c == 0x53:
        return 3
    if c == 0x80:
        return 10
    if c == 0xa3:
        return 3 + <uint8_t>body[2]
    if c == 0xb3:
        return 6 + ((<uint8_t>body[2] << 24) | (<uint8_t>body[3] << 16) | (<uint8_t>body[4] << 8)
                    | <uint8_t>body[5])
    raise ProtocolViolation(amqp.DECODE_ERROR, "transfer descriptor 0x%02x not understood" % c)

cdef class Engine(ConnectionCore):
    """One connection's protocol state.  ``Engine(handler, server=..., limits...)``; the shell calls
    ``start()`` once connected, ``feed(data, now)`` for what it reads, ``take_output(now)`` once per
    loop turn and ``tick(now)`` when the delay it returned has passed."""

    def __cinit__(self, Handler handler=None, *, bint server=False, object container_id="",
                  uint32_t max_frame_size=65536, int channel_max=255, uint32_t handle_max=65535,
                  uint32_t incoming_window=0x7FFFFFFF, uint64_t max_message_size=0,
                  double idle_timeout=0.0, double idle_grace=2.0, Py_ssize_t output_limit=4 << 20,
                  object sasl_mechanisms=None, bint require_sasl=False, bint sasl=False, object hostname=None):
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
        self._out = OutputBuffer.__new__(OutputBuffer)
        self.output_limit = output_limit
        self.max_frame_size = max_frame_size
        self.channel_max = channel_max
        self.handle_max = handle_max
        self.incoming_window = incoming_window
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        if idle_grace < 1.0:
            raise ValueError("idle_grace %r is below 1 (the spec allows closing after the idle-time-out)" % idle_grace)
        self.idle_grace = idle_grace
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
    def state(self):
        """The connection's ConnectionState (made from the phase and the open/close flags)."""
        cdef int state
        if self.finished:
            state = C_CLOSED
        elif self.close_sent:
            state = C_CLOSE_SENT
        elif self._phase == P_AMQP:
            state = C_OPENED if self.open_sent and self.open_rcvd else C_OPENING
        else:
            state = C_SASL if self._phase == P_SASL else C_HEADER
        return ConnectionState(state)

    @property
    def opened(self):
        """Both opens exchanged and no close yet (nor an abort)."""
        return self.open_sent and self.open_rcvd and not self.close_sent and not self.finished

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
    def take_output(self, double now=0.0):
        """Everything to write (bytes, maybe empty), after the dispositions and window flows still
        owed; the buffer starts afresh.  Calls on_writable() if the output bound had been reached."""
        return self.take_output_c(now)

    cdef bytes take_output_c(self, double now):
        self._woken = False
        if self._dirty:
            self._flush_sessions()
        if self._out.len == 0:
            return b""
        data = self._out.take()
        self.last_write = now
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
        # a uint of milliseconds: a handler's choice past that range (twice a peer's 2^32-1) is clamped
        idle_ms = min(int(round(self.idle_timeout * 1000)), 0xFFFFFFFF)
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
                self._terminate((amqp.FRAMING_ERROR if expected == AMQP_HEADER else amqp.UNAUTHORIZED_ACCESS,
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
            self._terminate((amqp.FRAMING_ERROR, "bad protocol header %r refused" % header, None))
            self.handler.on_close(self.error, False)
        return 0

    cdef int _on_sasl(self, int code, list fields) except -1:
        if self.server:
            if code == SASL_INIT and self.sasl_mechanism is None:
                mech = _field(fields, 0)
                self.sasl_mechanism = "" if mech is None else str(mech)
                allowed = self._sasl_mechanisms or ()
                # The handler hears of every mechanism (it may log a refusal); one we did not offer fails.
                result = self.handler.on_sasl_init(self.sasl_mechanism, _field(fields, 1), _field(fields, 2))
                if self.sasl_mechanism not in allowed:
                    result = 1
            elif code == SASL_RESPONSE and self.sasl_mechanism is not None:
                result = self.handler.on_sasl_response(_field(fields, 0))
            else:
                raise ProtocolViolation(amqp.FRAMING_ERROR, "unexpected SASL frame 0x%x" % code)
            if isinstance(result, bytes):
                self._write_frame(0, SASL_CHALLENGE, [result], FRAME_SASL)     # a response follows
                return 0
            outcome, additional = result if isinstance(result, tuple) else (result, None)
            self._write_frame(0, SASL_OUTCOME, [ubyte(outcome), additional], FRAME_SASL)
            if outcome:
                self._terminate((amqp.UNAUTHORIZED_ACCESS, "SASL %s authentication failed" % self.sasl_mechanism, None))
                self.handler.on_close(self.error, False)
                return 0
            self._sasl_done = True
            self._phase = P_HEADER
            return 0
        if code == SASL_MECHANISMS:
            offered = amqp.sasl_mechanisms_list(_field(fields, 0))
            choice = self.handler.on_sasl_mechanisms(offered)
            if choice is None:
                self._terminate((amqp.UNAUTHORIZED_ACCESS, "no SASL mechanism in common: the peer offers %s"
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
                self._terminate((amqp.UNAUTHORIZED_ACCESS, "SASL authentication failed (outcome %s)" % outcome, None))
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
            raise ProtocolViolation(amqp.FRAMING_ERROR, "unexpected SASL frame 0x%x" % code)
        return 0

    # -- input ----------------------------------------------------------------------------------
    def feed(self, data, double now=0.0):
        """Process a read burst: every complete frame in it is dispatched before this returns.  A
        protocol violation closes the connection (``finished`` then says so); an exception from the
        handler propagates (the shell decides: the broker closes with amqp:internal-error)."""
        if self.finished:
            return
        self._reader.feed(data)
        self._process(now)

    def get_buffer(self, Py_ssize_t sizehint=-1):
        """Where the shell's next socket read goes (asyncio's BufferedProtocol.get_buffer): a
        writable memoryview of the frame reader's free space; ``buffer_updated(n, now)`` follows."""
        return self.get_buffer_c()

    cdef object get_buffer_c(self):
        if self.finished:
            self._reader.clear()        # input after the end is dropped
        self._reader.reserve_read()
        return PyMemoryView_FromObject(self._reader)

    def buffer_updated(self, Py_ssize_t nbytes, double now=0.0):
        """``nbytes`` were read into the last get_buffer(): processed as feed() would."""
        self.buffer_updated_c(nbytes, now)

    cdef int buffer_updated_c(self, Py_ssize_t nbytes, double now) except -1:
        if self.finished:
            self._reader.clear()
            return 0
        self._reader.advance(nbytes)
        return self._process(now)

    cdef int _process(self, double now) except -1:
        cdef FrameReader reader = self._reader
        cdef FrameView fv
        cdef int got
        self.last_read = now
        self._in_feed = True
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
                    raise ProtocolViolation(amqp.FRAMING_ERROR, str(e))
                if not got:
                    break
                self.frames_in += 1
                if fv.frame_type == FRAME_SASL:
                    if self._phase != P_SASL:
                        raise ProtocolViolation(amqp.FRAMING_ERROR, "SASL frame outside SASL negotiation")
                    code, fields, _ = decode_performative(PyBytes_FromStringAndSize(fv.body, fv.body_len))
                    check_fields(code, fields)
                    self._on_sasl(code, fields)
                elif self._phase == P_SASL:
                    raise ProtocolViolation(amqp.FRAMING_ERROR, "AMQP frame during SASL negotiation")
                elif fv.frame_type != FRAME_AMQP:
                    raise ProtocolViolation(amqp.FRAMING_ERROR, "unknown frame type %d" % fv.frame_type)
                elif fv.body_len:
                    self._dispatch(fv.channel, fv.body, fv.body_len)
            if not self.finished:
                self._end_of_burst()
        except DecodeError as e:
            self._fail(amqp.DECODE_ERROR, str(e))
        except ProtocolViolation as e:
            self._fail(e.condition, e.description)
        finally:
            self._in_feed = False
        return 0

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
            if self.close_sent:
                return 0    # our close is out: only the peer's close matters now
            if not self.open_rcvd:
                raise ProtocolViolation(amqp.FRAMING_ERROR, "transfer before open")
            return self._on_transfer(channel, body, blen)
        code, fields, _ = decode_performative(PyBytes_FromStringAndSize(body, blen))
        if code == TRANSFER:
            # The same transfer with its descriptor as a ulong or a symbol (the specification allows
            # both): give the transfer path the usual 00 53 14 form. _on_transfer copies what it keeps.
            if self.close_sent:
                return 0
            if not self.open_rcvd:
                raise ProtocolViolation(amqp.FRAMING_ERROR, "transfer before open")
            canonical = b"\x00\x53\x14" + PyBytes_FromStringAndSize(body + _descriptor_end(body, blen),
                                                                    blen - _descriptor_end(body, blen))
            return self._on_transfer(channel, canonical, len(canonical))
        if code < OPEN or code > CLOSE:
            raise ProtocolViolation(amqp.DECODE_ERROR, "frame body holds 0x%x, not an AMQP performative" % code)
        check_fields(code, fields)
        if not self.open_rcvd:
            if code != OPEN:
                raise ProtocolViolation(amqp.FRAMING_ERROR, "expected open, got performative 0x%x" % code)
            return self._on_open(fields)
        if code == OPEN:
            raise ProtocolViolation(amqp.FRAMING_ERROR, "second open on the connection")
        if code == CLOSE:
            return self._on_close(fields)
        if self.close_sent:
            return 0        # our close is out: the peer's other frames are dropped
        if code == BEGIN:
            return self._on_begin(channel, fields)
        s = self._remote_sessions.get(channel)
        if s is None:
            raise ProtocolViolation(amqp.NOT_ALLOWED, "frame 0x%x on unknown channel %d" % (code, channel))
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

    def eof(self):
        """The peer stopped sending: if it stopped inside a protocol header or a frame, the connection
        closes with amqp:connection:framing-error (our close is still written)."""
        cdef Py_ssize_t n = self._reader.buffered
        if self.finished or n == 0:
            return
        self._fail(amqp.FRAMING_ERROR, "connection ended inside a %s (%d bytes received)"
                   % ("protocol header" if self._phase == P_HEADER else "frame", n))

    def abort(self, condition=None, description=None):
        """The transport is gone or being closed: everything ends now, nothing more is written or read.
        on_detach, on_end and on_close come as for a close."""
        if self.finished:
            return
        self._terminate((condition, description or "", None) if condition else None)
        self.handler.on_close(self.error, False)

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
            s.state = S_ENDED           # an end of ours waits no more either
        return 0

    # -- heartbeats -------------------------------------------------------------------------------
    def tick(self, double now):
        """Idle-time-out work: an empty frame when we have been quiet for half the peer's idle-time-out;
        closes with amqp:resource-limit-exceeded after twice ours without input.  Returns the seconds
        until the next call, 0 when no timer is needed."""
        cdef double interval = 0.0
        if now - self.last_write >= 1.0:
            self._out._spare = None     # an output storage kept for reuse goes once the connection is quiet
        if self.finished or not self.open_rcvd:
            return self.idle_timeout / 2 if self.idle_timeout and not self.finished else 0.0
        if self.idle_timeout:
            if now - self.last_read > self.idle_grace * self.idle_timeout:
                self._fail(amqp.RESOURCE_LIMIT_EXCEEDED, "local-idle-timeout expired: nothing received for %.3fs"
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
            raise ProtocolViolation(amqp.FRAMING_ERROR, "begin on channel %d already in use" % channel)
        if channel > self.channel_max:
            raise ProtocolViolation(amqp.FRAMING_ERROR, "begin on channel %d beyond channel-max %d"
                                    % (channel, self.channel_max))
        if remote is not None:
            s = self._sessions.get(remote)
            if s is None or s.state != S_BEGIN_SENT:
                raise ProtocolViolation(amqp.NOT_ALLOWED, "begin for channel %s that we did not begin" % remote)
            s.remote_channel = channel
            self._remote_sessions[channel] = s
        else:
            try:
                s = self._new_session(channel, None, None)
            except EngineError as e:
                raise ProtocolViolation(amqp.FRAMING_ERROR, str(e))
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
            s = <Session>self._last_session
        else:
            s = self._remote_sessions.get(channel)
            if s is None:
                raise ProtocolViolation(amqp.NOT_ALLOWED, "transfer on unknown channel %d" % channel)
            self._last_session = s
            self._last_channel = channel
        read_transfer(body, blen, &t)       # (the body is in the 00 53 14 form: _dispatch made sure)
        if s.state != S_MAPPED:
            return 0        # our end is out: dropped until the peer's end
        s.next_incoming_id = <uint32_t>(s.next_incoming_id + 1)
        s._in_room -= 1
        if s._in_room < 0:
            return s._fail(amqp.WINDOW_VIOLATION, "transfer beyond the incoming-window of %d" % s.incoming_window)
        if s._in_room < s.incoming_window // 2 and not s._dirty:
            s._dirty = True
            self._dirty.append(s)
        handle = <uint32_t>t.handle
        if s._last is not None and s._last_handle == handle:
            link = s._last
        else:
            link = s._remote_links.get(handle)
            if link is None or link.is_sender:
                return s._fail(amqp.UNATTACHED_HANDLE, "transfer on unattached handle %d" % handle)
            s._last = link
            s._last_handle = handle
        if link.state != L_ATTACHED and link.state != L_ATTACH_RCVD:
            return 0        # sent before the peer saw our detach
        if t.state != NULL and not link.batch:
            link._tstate = PyBytes_FromStringAndSize(t.state, t.state_len)
        if not link._in_partial:
            if t.aborted:
                link._tstate = None
                return 0
            if link.credit <= 0:
                return link._fail(amqp.TRANSFER_LIMIT_EXCEEDED, "transfer beyond the link credit granted")
            if t.tag_len > MAX_TAG:       # the type delivery-tag is at most 32 bytes: a malformed transfer
                raise ProtocolViolation(amqp.DECODE_ERROR, "transfer: delivery-tag of %d bytes, more than %d"
                                        % (t.tag_len, MAX_TAG))
            if not t.has_id:
                return link._fail(amqp.INVALID_FIELD, "the first transfer of a delivery has no delivery-id")
            if link.max_message_size and <uint64_t>t.payload_len > link.max_message_size:
                return link._fail(amqp.MESSAGE_SIZE_EXCEEDED, "message of at least %d bytes exceeds max-message-size %d"
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
            link._tstate = None
            return 0
        link._partial_size += <uint64_t>t.payload_len
        if link.max_message_size and link._partial_size > link.max_message_size:
            return link._fail(amqp.MESSAGE_SIZE_EXCEEDED, "message of at least %d bytes exceeds max-message-size %d"
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


# The endpoint states for Python code (docs/ENGINE.md, "States"): the numbers of engine_core.pxd's enum.
# ``Engine.state`` is a ConnectionState; ``Session.state`` and ``Link.state`` are ints equal to these.
class ConnectionState(IntEnum):
    HEADER = C_HEADER
    SASL = C_SASL
    OPENING = C_OPENING
    OPENED = C_OPENED
    CLOSE_SENT = C_CLOSE_SENT
    CLOSED = C_CLOSED


class SessionState(IntEnum):
    UNMAPPED = S_UNMAPPED
    BEGIN_SENT = S_BEGIN_SENT
    MAPPED = S_MAPPED
    END_SENT = S_END_SENT
    ENDED = S_ENDED


class LinkState(IntEnum):
    ATTACH_SENT = L_ATTACH_SENT
    ATTACH_RCVD = L_ATTACH_RCVD
    ATTACHED = L_ATTACHED
    DETACH_SENT = L_DETACH_SENT
    DETACHED = L_DETACHED


# Set through the module dict: Handler, Session and Link are cimported (C-level) names here (see codec.pyx).
globals().update(Handler=_core.Handler, frames_per_message=_core.frames_per_message,
                 Session=_endpoints.Session, Link=_endpoints.Link, Delivery=_endpoints.Delivery)
__all__ = ["Engine", "Handler", "Session", "Link", "Delivery", "EngineError", "ProtocolViolation",
           "frames_per_message", "ConnectionState", "SessionState", "LinkState"]
