"""One AMQP 1.0 connection: protocol headers, SASL, open/close, heartbeats, and frame dispatch.

An asyncio Protocol: bytes go to the Cython FrameReader; frames are dispatched to sessions; outgoing
frames are gathered and written once per loop turn. Work that a read burst leaves behind (dispositions
and credit for producers) is flushed at the end of the burst, so many messages share one frame.
"""
import heapq
import logging
import os

from cypid.pyx.codec import (
    EMPTY_FRAME, Array, DecodeError, Described, FrameReader, decode_performative, decode_transfer,
    encode_frame, symbol, ubyte, uint, ulong, ushort,
)

from . import errors
from .errors import AmqpError
from .performatives import check_fields
from .session import Session

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = range(0x40, 0x45)
ERROR_DESCRIPTOR = 0x1D
FIXED_WIDTH = (0, 1, 2, 4, 8)     # bytes after the constructor of codes 0x40-0x4f ... 0x80-0x8f

# Connection states.
S_HEADER, S_SASL, S_OPEN_WAIT, S_OPENED, S_CLOSED = range(5)
SASL_FRAME = 1
MIN_MAX_FRAME = 512
# After our last frame (a close, a refused header) the socket is half-closed and input is read and
# dropped until the peer's EOF, at most this many seconds: closing with unread input would send a
# TCP reset, which can destroy the close frame before the peer reads it.
LINGER = 2.0


def check_delivery_tag(body):
    """A transfer's delivery-tag is at most 32 bytes (transport.xml, type delivery-tag); a longer one
    is a malformed performative. ``body`` is a transfer decode_transfer accepted: descriptor, list
    header, handle and delivery-id (fixed-width numbers: 0x4_ none, 0x5_ 1, 0x6_ 2, 0x7_ 4, 0x8_ 8
    bytes), then the tag. Other forms take the slow road (a full decode)."""
    size = _tag_size_fast(body)
    if size < 0:
        fields = decode_performative(body)[1]
        size = len(fields[2]) if len(fields) > 2 and fields[2] is not None else 0
    if size > 32:
        raise errors.AmqpDecodeError("transfer: delivery-tag of %d bytes, more than 32" % size)


def _tag_size_fast(body):
    """The delivery-tag's size read straight from the common encoding, or -1 to decode it all."""
    if body[:3] != b"\x00\x53\x14" or body[3] not in (0xC0, 0xD0):
        return -1
    i = 6 if body[3] == 0xC0 else 12            # list8: code size count; list32: code size4 count4
    n = len(body)
    for _ in range(2):                          # handle, delivery-id
        if i >= n:
            return -1
        code = body[i]
        if not 0x40 <= code <= 0x8F:
            return -1
        i += 1 + FIXED_WIDTH[(code >> 4) - 4]
    if i >= n:
        return -1
    code = body[i]
    if code == 0xA0:
        return body[i + 1]
    if code == 0xB0:
        return int.from_bytes(body[i + 1:i + 5], "big")
    return 0 if code == 0x40 else -1


def error_value(condition, description, info=None):
    """An AMQP error composite for close/end/detach."""
    fields = [symbol(condition), description]
    if info:
        fields.append({symbol(k): v for k, v in info.items()})
    return Described(ulong(ERROR_DESCRIPTOR), fields)


class Connection:
    """asyncio Protocol for one client connection (duck-typed; uvloop and asyncio both accept it)."""

    def __init__(self, broker):
        self.broker = broker
        self.log = broker.log
        self.loop = broker.loop
        self.transport = None
        self.reader = FrameReader(broker.options.max_frame_size)
        self.state = S_HEADER
        self.sasl_done = False
        self.user = "anonymous"
        self.container_id = ""
        self.remote_max_frame = MIN_MAX_FRAME
        self.remote_channel_max = 0
        self.sessions = {}          # remote channel -> Session
        self.local_sessions = {}    # local channel -> Session
        self.free_channels = []     # heap of local channels given back by ended sessions
        self.next_channel = 0       # lowest local channel never used
        self.link_count = 0         # links of all its sessions (attached, or refused and not yet detached)
        self.link_limit_logged = False
        self.out = []
        self.out_bytes = 0          # bytes in self.out (written to the transport at the end of the turn)
        self.out_limit = broker.options.max_connection_output
        self.flush_scheduled = False
        self.paused = False
        self.dirty = set()          # sessions with dispositions/credit to send
        self.address = "?"
        self.refused = None         # (condition, text) when the connection must be refused after open
        self.last_read = 0.0
        self.last_write = 0.0
        self.idle_timer = None
        self.local_idle = 0.0
        self.remote_idle = 0.0
        self.open_sent = False
        self.remote_properties = {}
        self.stats_frames_in = 0
        self.stats_bytes_in = 0     # bytes read and written (/metrics), counted per read and per flush
        self.stats_bytes_out = 0
        self.output_closed = False  # the last frame is written: later writes are dropped

    # -- asyncio Protocol ----------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        # The transport pauses us (pause_writing) once this much waits for the socket; links then
        # encode nothing more for this connection until it has drained to half (resume_writing).
        transport.set_write_buffer_limits(high=self.out_limit, low=self.out_limit // 2)
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("?", 0)
        self.address = "%s:%s-%s:%s" % (local[0], local[1], peer[0], peer[1])
        self.last_read = self.loop.time()
        self.refused = self.broker.connection_opened(self)
        self.idle_timer = self.loop.call_later(self.broker.options.max_negotiate_time, self._negotiate_timeout)

    def connection_lost(self, exc):
        self.state = S_CLOSED
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self._abandon_sessions()
        self.broker.connection_closed(self)

    def _abandon_sessions(self):
        """The connection is finished: release what its sessions held. Its links must not take the
        deliveries another of its sessions gives back (they would go nowhere and come back counted
        twice), so the connection is marked paused -- can_take() is false for all its links -- first."""
        self.paused = True
        for session in list(self.local_sessions.values()):
            session.abandon()
        self.sessions.clear()
        self.local_sessions.clear()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        if self.state == S_CLOSED:
            return
        self.paused = False
        for session in list(self.local_sessions.values()):
            session.resume_outgoing()

    def eof_received(self):
        if self.state != S_CLOSED and self.reader.buffered:
            # The peer stopped sending in the middle of a protocol header or a frame.
            self.fail(errors.FRAMING_ERROR, "connection ended inside a %s (%d bytes received)"
                      % ("protocol header" if self.state == S_HEADER else "frame", self.reader.buffered))
        return False

    def data_received(self, data):
        if self.state == S_CLOSED:
            return
        self.last_read = self.loop.time()
        self.stats_bytes_in += len(data)
        reader = self.reader
        reader.feed(data)
        try:
            while self.state != S_CLOSED:
                if self.state == S_HEADER:
                    header = reader.read_protocol_header()
                    if header is None:
                        break
                    self._on_header(header)
                    continue
                try:
                    frame = reader.next_frame()
                except DecodeError as e:   # no valid frame header: size < 8, > max-frame-size, doff < 2
                    raise errors.FramingError(str(e)) from None
                if frame is None:
                    break
                self._on_frame(frame)
            if self.dirty:
                self.flush_dirty()
        except DecodeError as e:   # a performative or a value inside it that does not decode
            self.fail(errors.DECODE_ERROR, str(e))
        except AmqpError as e:
            self.fail(e.condition, e.description)
        except Exception as e:     # a broker bug: this connection goes, the broker carries on
            self.internal_error(e)

    # -- output -------------------------------------------------------------------------
    def write(self, data):
        if self.output_closed:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self):
        self.flush_scheduled = False
        if self.dirty and self.state != S_CLOSED:
            self.flush_dirty()
        out = self.out
        was_full = self.out_bytes >= self.out_limit
        if out and self.transport is not None and not self.transport.is_closing() \
                and not self.output_closed:
            self.transport.writelines(out)
            self.stats_bytes_out += self.out_bytes
            self.last_write = self.loop.time()
        out.clear()
        self.out_bytes = 0
        if was_full and not self.paused and self.state != S_CLOSED:
            # Links stopped taking because this turn's output was full; the transport took it
            # without pausing us, so they may take more now.
            self.resume_writing()

    def flush_dirty(self):
        dirty = self.dirty
        self.dirty = set()
        for session in dirty:
            session.flush()

    def send(self, channel, code, fields, payload=b""):
        self.write(encode_frame(channel, code, fields, payload))

    # -- headers and SASL ---------------------------------------------------------------
    def _on_header(self, header):
        auth = self.broker.options.auth
        if header == SASL_HEADER and not self.sasl_done:
            self.sasl = self.broker.authenticator.negotiation(self.address, self.transport)  # sasl.py
            self.write(SASL_HEADER)
            self.write(self.sasl.mechanisms_frame())
            self.state = S_SASL
        elif header == AMQP_HEADER and (self.sasl_done or not auth):
            self.write(AMQP_HEADER)
            self.state = S_OPEN_WAIT
        else:
            self.log.warning("Connection %s refused: bad protocol header %r", self.address, bytes(header))
            self.write(SASL_HEADER if auth else AMQP_HEADER)
            self.close_transport()

    def _on_sasl(self, code, fields):
        out, outcome = self.sasl.on_frame(code, fields)   # mechanisms and users: broker/sasl.py
        self.write(out)
        if outcome is None:
            return
        if outcome:
            self.close_transport()
            return
        self.sasl_done = True
        self.user = self.sasl.identity
        self.sasl_mechanism = self.sasl.mechanism   # management (connection saslMechanism)
        self.state = S_HEADER

    # -- frames -------------------------------------------------------------------------
    def _on_frame(self, frame):
        ftype, channel, body = frame
        if ftype == SASL_FRAME:
            if self.state != S_SASL:
                raise errors.FramingError("SASL frame outside SASL negotiation")
            code, fields, _ = decode_performative(body)
            check_fields(code, fields)
            self._on_sasl(code, fields)
            return
        if self.state == S_SASL:
            raise errors.FramingError("AMQP frame during SASL negotiation")
        if ftype != 0:
            raise errors.FramingError("unknown frame type %d" % ftype)
        if not body:
            return  # heartbeat
        # The per-message path: a transfer is decoded and its fields checked in one C call (it raises
        # DecodeError as decode_performative + check_fields would); None for any other performative.
        transfer = decode_transfer(body)
        if transfer is not None:
            # A delivery's first frame carries its delivery-tag. A list8 of fields under 38 bytes
            # cannot hold one over 32 bytes (0xa0, length, 33 bytes, plus count, handle, delivery-id).
            if transfer[1] is not None and (body[3] != 0xC0 or body[4] >= 38):
                check_delivery_tag(body)
            session = self.sessions.get(channel)
            if session is None:
                raise errors.NotAllowed("transfer on unknown channel %d" % channel)
            if not session.ended:
                session.on_transfer(*transfer)
            return
        code, fields, _ = decode_performative(body)
        if code > CLOSE or code < OPEN:
            raise errors.AmqpDecodeError("frame body holds 0x%x, not an AMQP performative" % code)
        check_fields(code, fields)
        if self.state == S_OPEN_WAIT:
            if code != OPEN:
                raise errors.FramingError("expected open, got performative 0x%x" % code)
            self._on_open(fields)
            return
        if code == BEGIN:
            self._on_begin(channel, fields)
            return
        if code == CLOSE:
            self._on_close(fields)
            return
        if code == OPEN:
            raise errors.FramingError("second open on connection")
        session = self.sessions.get(channel)
        if session is None:
            raise errors.NotAllowed("frame 0x%x on unknown channel %d" % (code, channel))
        if session.ended:
            if code == END:   # the peer's answer to the end we sent
                self.session_ended(session)
            return
        if code == FLOW:
            session.on_flow(fields)
        elif code == DISPOSITION:
            session.on_disposition(fields)
        elif code == ATTACH:
            session.on_attach(fields)
        elif code == DETACH:
            session.on_detach(fields)
        elif code == END:
            session.on_end(fields)
        else:
            raise errors.FramingError("unknown performative 0x%x" % code)

    def _on_open(self, fields):
        n = len(fields)
        self.container_id = fields[0] if n > 0 and fields[0] is not None else ""
        max_frame = fields[2] if n > 2 and fields[2] is not None else 0xFFFFFFFF
        self.remote_max_frame = max(MIN_MAX_FRAME, min(max_frame, 0x7FFFFFFF))
        self.remote_channel_max = fields[3] if n > 3 and fields[3] is not None else 65535
        idle = fields[4] if n > 4 and fields[4] is not None else 0
        if n > 9 and isinstance(fields[9], dict):
            self.remote_properties = fields[9]
        opts = self.broker.options
        self.state = S_OPENED
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        # Heartbeats: we send at half the peer's timeout; we expect traffic within twice it.
        self.remote_idle = idle / 1000.0
        self.local_idle = 2 * self.remote_idle
        local_idle_ms = int(self.local_idle * 1000)
        self.send(0, OPEN, [
            self.broker.container_id, None, uint(opts.max_frame_size), ushort(self.broker.channel_max),
            uint(local_idle_ms) if local_idle_ms else None, None, None,
            Array(0xA3, [symbol("ANONYMOUS-RELAY")]), None,
            {symbol("product"): "cypid", symbol("version"): self.broker.version},
        ])
        self.open_sent = True
        if self.refused:
            self.fail(*self.refused)
            return
        if self.remote_idle:
            self._schedule_idle(self.remote_idle / 4)
        self.broker.connection_established(self)

    def _schedule_idle(self, delay):
        self.idle_timer = self.loop.call_later(delay, self._idle_tick)

    def _idle_tick(self):
        self.idle_timer = None
        if self.state != S_OPENED:
            return
        now = self.loop.time()
        if self.local_idle and now - self.last_read > self.local_idle:
            self.fail(errors.RESOURCE_LIMIT_EXCEEDED,
                      "local-idle-timeout expired: nothing received for %.3fs" % (now - self.last_read))
            return
        # Ticking at a quarter of the peer's timeout, and writing when a quarter has passed quietly,
        # keeps any gap between our frames under half its timeout (a strict peer drops us at one).
        if now - self.last_write >= self.remote_idle / 4 and not self.out:
            self.write(EMPTY_FRAME)
        self._schedule_idle(self.remote_idle / 4)

    def _negotiate_timeout(self):
        self.idle_timer = None
        if self.state in (S_HEADER, S_SASL, S_OPEN_WAIT):
            self.log.warning("Connection %s closed: no open within the negotiation time", self.address)
            self.close_transport()

    def _on_begin(self, channel, fields):
        if channel in self.sessions:
            raise errors.FramingError("begin on channel %d already in use" % channel)
        if channel > self.broker.channel_max:
            # Spec 2.7.1 (open, channel-max): a channel beyond the partner's range is a framing-error.
            raise errors.FramingError("begin on channel %d beyond channel-max %d (max-sessions-per-connection)"
                                      % (channel, self.broker.channel_max))
        remote_channel = fields[0] if fields else None
        if remote_channel is not None:
            raise errors.Unimplemented("broker-initiated sessions are not supported")
        if self.free_channels:
            local = heapq.heappop(self.free_channels)
        else:
            local = self.next_channel
            self.next_channel += 1
        session = Session(self, local, channel, fields)
        self.sessions[channel] = session
        self.local_sessions[local] = session
        session.send_begin()

    def session_ended(self, session):
        if self.sessions.get(session.remote_channel) is session:
            del self.sessions[session.remote_channel]
        if self.local_sessions.get(session.channel) is session:
            del self.local_sessions[session.channel]
            heapq.heappush(self.free_channels, session.channel)

    def _on_close(self, fields):
        err = fields[0] if fields else None
        if err is not None:
            self.log.info("Connection %s closed by peer with error %s", self.address, err)
        self._send_close([])
        self.state = S_CLOSED
        self.close_transport()

    def _send_close(self, fields):
        """The close frame, after the dispositions and credit still owed (nothing may follow it)."""
        if self.dirty:
            try:
                self.flush_dirty()
            except Exception:   # pragma: no cover - a broker bug; the close matters more
                self.dirty = set()
        self.send(0, CLOSE, fields)

    # -- ending ------------------------------------------------------------------------
    def fail(self, condition, description, level=logging.WARNING, info=None):
        """Close this connection with an error; everyone else carries on."""
        if self.state == S_CLOSED:
            return
        self.log.log(level, "Connection %s closed: %s: %s", self.address, condition, description)
        if self.state in (S_OPEN_WAIT, S_OPENED):
            if not self.open_sent:
                self.send(0, OPEN, [self.broker.container_id])
                self.open_sent = True
            self._send_close([error_value(condition, description, info)])
        elif self.state == S_SASL:
            # No AMQP layer yet to carry a close: end the SASL exchange as failed (sys-perm).
            self.write(encode_frame(0, SASL_OUTCOME, [ubyte(3)], frame_type=SASL_FRAME))
        self.state = S_CLOSED
        self.close_transport()

    def internal_error(self, exc):
        """An unexpected exception while handling this connection's input: one error line (the
        traceback goes to the debug log), amqp:internal-error to the peer."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = " at %s:%d" % (os.path.basename(tb.tb_frame.f_code.co_filename), tb.tb_lineno) if tb else ""
        self.log.debug("Connection %s: unexpected error", self.address, exc_info=exc)
        self.fail(errors.INTERNAL_ERROR, "%s: %s%s" % (type(exc).__name__, exc, where), level=logging.ERROR)

    def close_transport(self):
        self.state = S_CLOSED
        self._flush()
        self.output_closed = True
        self._abandon_sessions()    # at once: not when the peer's EOF (or the linger timer) comes
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        try:
            transport.write_eof()   # FIN once the output is written; eof_received then closes
        except Exception:
            transport.close()
            return
        self.idle_timer = self.loop.call_later(LINGER, transport.close)

    def __repr__(self):
        return "<Connection %s pid=%d>" % (self.address, os.getpid())
