"""The client's connection and sessions: an asyncio Protocol over the Cython codec.

Bytes go to ``clientcore.InboundCore``, which consumes transfers for receivers in C and hands every
other frame back here; outgoing frames are gathered in a list and written once per loop turn
(``_flush``), which is also when senders encode their next batch of deliveries. After each read burst
the receivers that got messages are told once (``Receiver._on_burst``), whatever the burst held.
"""
import asyncio
import logging
import os
import socket
import uuid

from cypid.pyx.clientcore import InboundCore, SessionCore
from cypid.pyx.codec import (
    AMQP_HEADER, EMPTY_FRAME, SASL_HEADER, DecodeError, Described, decode_performative, encode_frame,
    symbol, uint, ulong, ushort,
)

from .errors import AuthenticationError, ClientError, ConnectionClosed, SessionEnded, error_from
from .links import ACCEPTED, Receiver, Sender

log = logging.getLogger("cypid.client")

OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_MECHANISMS, SASL_INIT, SASL_CHALLENGE, SASL_RESPONSE, SASL_OUTCOME = range(0x40, 0x45)
SASL_FRAME = 1
WINDOW = 0x7FFFFFFF
MASK32 = 0xFFFFFFFF
DEFAULT_PORT = 5672
# Connection states.
S_SASL_HEADER, S_SASL, S_AMQP_HEADER, S_OPEN_SENT, S_OPENED, S_CLOSE_SENT, S_CLOSED = range(7)
# Session states.
S_BEGIN_SENT, S_MAPPED, S_END_SENT, S_ENDED = range(4)
VERSION = "0.1.0"


class ProtocolViolation(ClientError):
    """The peer broke the protocol: the connection is closed with this condition."""


def error_value(condition, description):
    return Described(ulong(0x1D), [symbol(condition), description])


def parse_url(url):
    """(host, port, user, password) from ``host:port``, ``host``, ``[v6]:port`` or
    ``amqp://[user[:password]@]host[:port][/...]``."""
    user = password = None
    if "://" in url:
        url = url.split("://", 1)[1]
    url = url.split("/", 1)[0]
    if "@" in url:
        cred, url = url.rsplit("@", 1)
        user, _, password = cred.partition(":")
    if url.startswith("["):
        host, _, rest = url[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif url.count(":") == 1:
        host, port = url.split(":")
    else:
        host, port = url, ""
    return host or "127.0.0.1", int(port) if port else DEFAULT_PORT, user or None, password or None


def _signed32(v):
    v &= MASK32
    return v - (1 << 32) if v & 0x80000000 else v


class Connection:
    """One AMQP connection (an asyncio Protocol). Make it with ``await connect(url, ...)``."""

    def __init__(self, loop, *, container_id=None, hostname=None, username=None, password=None,
                 mechanism=None, sasl=True, idle_timeout=None, max_frame_size=65536, channel_max=255,
                 properties=None, write_buffer=1 << 20):
        self.loop = loop
        self.container_id = container_id or "cypid-client-%s" % uuid.uuid4()
        self.hostname = hostname
        self.username = username
        self.password = password
        self.mechanism = mechanism
        self.use_sasl = sasl or username is not None
        self.idle_timeout = float(idle_timeout or 0)
        self.max_frame_size = int(max_frame_size)
        self.channel_max = channel_max
        self.properties = properties
        self.write_buffer = write_buffer
        self.transport = None
        self.core = InboundCore(self.max_frame_size)
        self.state = S_SASL_HEADER if self.use_sasl else S_AMQP_HEADER
        self.remote_max_frame = 512
        self.remote_channel_max = 0
        self.remote_idle = 0.0
        self.remote_container_id = None
        self.remote_properties = {}
        self.offered_capabilities = ()
        self.sessions = {}          # local channel -> Session
        self._by_remote = {}        # remote channel -> Session
        self._out = []
        self._flush_scheduled = False
        self._paused = False
        self._pumping = []          # senders with deliveries queued
        self._ack_sessions = set()  # sessions whose accepts go out this turn
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.error = None
        self.last_read = self.last_write = loop.time()
        self._timer = None
        self._close_requested = False

    # -- asyncio Protocol --------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        transport.set_write_buffer_limits(high=self.write_buffer, low=self.write_buffer // 4)
        if self.use_sasl:
            self._write(SASL_HEADER)
        else:
            self._write(AMQP_HEADER)
            self._send_open()
        self.last_read = self.loop.time()

    def connection_lost(self, exc):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.state != S_CLOSED:
            why = "connection lost" + (": %s" % exc if exc else " (peer closed the socket)")
            self._terminate(ConnectionClosed(why))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self):
        self._paused = True

    def resume_writing(self):
        self._paused = False
        if self._pumping:
            self._schedule_flush()

    def eof_received(self):
        return False

    def data_received(self, data):
        if self.state == S_CLOSED:
            return
        self.last_read = self.loop.time()
        core = self.core
        core.feed(data)
        try:
            while True:
                if self.state == S_SASL_HEADER or self.state == S_AMQP_HEADER:
                    header = core.read_protocol_header()
                    if header is None:
                        break
                    self._on_header(header)
                    continue
                event = core.next_event()
                if event is None:
                    break
                self._on_frame(event[0], event[1], event[2])
                if self.state == S_CLOSED:
                    return
            if core.touched:
                touched = core.touched
                for rc in touched:
                    rc.touched = False
                    rc.owner._on_burst()
                touched.clear()
        except DecodeError as e:
            self._violation("amqp:decode-error", str(e))
        except ProtocolViolation as e:
            self._violation(e.condition, e.description)
        except _Stop:
            pass

    # -- output --------------------------------------------------------------------------------
    def _write(self, data):
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _schedule_flush(self):
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self):
        """Once per loop turn: accepts, the senders' next batches, then one write of everything."""
        self._flush_scheduled = False
        if self.state == S_CLOSED:
            self._out.clear()
            return
        if self._ack_sessions:
            sessions = self._ack_sessions
            self._ack_sessions = set()
            for session in sessions:
                session._flush_accepts()
        if self._pumping and not self._paused and self.state == S_OPENED:
            budget = 1 << 20
            pumping = self._pumping
            self._pumping = []
            for sender in pumping:
                budget = sender._pump(budget)
            if budget <= 0:
                self._schedule_flush()  # more to send: after the loop has read what came in
        out = self._out
        if out:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                if len(out) == 1:
                    transport.write(out[0])
                else:
                    transport.writelines(out)
                self.last_write = self.loop.time()
            out.clear()

    def _want_pump(self, sender):
        if not sender._in_pump_list:
            sender._in_pump_list = True
            self._pumping.append(sender)
        self._schedule_flush()

    def send_frame(self, channel, code, fields, payload=b""):
        self._write(encode_frame(channel, code, fields, payload))

    # -- negotiation ---------------------------------------------------------------------------
    def _on_header(self, header):
        if self.state == S_SASL_HEADER:
            if header != SASL_HEADER:
                raise self._fatal(AuthenticationError("the peer does not do SASL (it answered %r)" % header))
            self.state = S_SASL
        else:
            if header != AMQP_HEADER:
                raise self._fatal(ConnectionClosed("the peer answered with protocol header %r" % header))
            self.state = S_OPEN_SENT

    def _fatal(self, exc):
        """Terminate at once (no close frame: there is no AMQP layer yet); raise what returns to stop."""
        self._terminate(exc)
        if self.transport is not None:
            self.transport.close()
        return _Stop()

    def _on_sasl(self, code, fields):
        if code == SASL_MECHANISMS:
            offered = fields[0] if fields else None
            offered = [str(m) for m in (getattr(offered, "elements", None) or
                                        ([offered] if offered is not None else []))]
            mech = self._choose_mechanism(offered)
            if mech == "PLAIN":
                response = b"\0" + (self.username or "").encode() + b"\0" + (self.password or "").encode()
            elif mech == "ANONYMOUS":
                response = b"anonymous"
            else:
                response = None
            self._write(encode_frame(0, SASL_INIT, [symbol(mech), response, self.hostname],
                                     frame_type=SASL_FRAME))
        elif code == SASL_OUTCOME:
            outcome = fields[0] if fields else 1
            if outcome != 0:
                raise self._fatal(AuthenticationError(
                    "SASL authentication failed (outcome %s)" % outcome, "amqp:unauthorized-access"))
            self.state = S_AMQP_HEADER
            self._write(AMQP_HEADER)
            self._send_open()
        elif code == SASL_CHALLENGE:
            self._write(encode_frame(0, SASL_RESPONSE, [b""], frame_type=SASL_FRAME))
        else:
            raise ProtocolViolation("unexpected SASL frame 0x%x" % code, "amqp:connection:framing-error")

    def _choose_mechanism(self, offered):
        if self.mechanism:
            want = [self.mechanism.upper()]
        elif self.username is not None:
            want = ["PLAIN"]
        else:
            want = ["ANONYMOUS", "PLAIN"]
        for mech in want:
            if mech in offered and (mech != "PLAIN" or self.username is not None):
                return mech
        raise self._fatal(AuthenticationError(
            "no SASL mechanism in common: the peer offers %s, we can do %s" % (
                " ".join(offered) or "none", " ".join(want)), "amqp:unauthorized-access"))

    def _send_open(self):
        props = {symbol("product"): "cypid-client", symbol("version"): VERSION}
        if self.properties:
            props.update({symbol(k): v for k, v in self.properties.items()})
        # We close after idle_timeout of silence, and ask the peer for traffic twice as often: a peer
        # that sends only on a coarse timer still keeps well inside our limit.
        idle_ms = int(self.idle_timeout * 1000 / 2)
        self.send_frame(0, OPEN, [
            self.container_id, self.hostname, uint(self.max_frame_size), ushort(self.channel_max),
            uint(idle_ms) if idle_ms else None, None, None, None, None, props,
        ])

    def _on_open(self, fields):
        n = len(fields)
        self.remote_container_id = fields[0] if n else None
        max_frame = fields[2] if n > 2 and fields[2] is not None else MASK32
        self.remote_max_frame = max(512, min(int(max_frame), MASK32))
        self.remote_channel_max = fields[3] if n > 3 and fields[3] is not None else 65535
        idle = fields[4] if n > 4 and fields[4] is not None else 0
        self.remote_idle = idle / 1000.0
        caps = fields[7] if n > 7 else None
        self.offered_capabilities = tuple(str(c) for c in (getattr(caps, "elements", None) or
                                                           ([caps] if caps is not None else [])))
        if n > 9 and isinstance(fields[9], dict):
            self.remote_properties = {str(k): v for k, v in fields[9].items()}
        if self.state == S_OPEN_SENT:
            self.state = S_OPENED
        self._start_timer()
        if not self.opened.done():
            self.opened.set_result(self)
        if self._pumping:
            self._schedule_flush()

    # -- heartbeats ----------------------------------------------------------------------------
    def _tick_interval(self):
        # Ticking at a quarter of each period: the peer sees our heartbeat within 3/4 of its time-out.
        periods = [p for p in (self.remote_idle / 4, self.idle_timeout / 4) if p > 0]
        return min(periods) if periods else 0

    def _start_timer(self):
        interval = self._tick_interval()
        if interval and self._timer is None:
            self._timer = self.loop.call_later(interval, self._tick)

    def _tick(self):
        self._timer = None
        if self.state not in (S_OPENED, S_CLOSE_SENT):
            return
        now = self.loop.time()
        if self.idle_timeout and now - self.last_read > self.idle_timeout:
            self._violation("amqp:resource-limit-exceeded",
                            "local-idle-timeout expired: nothing received for %.3fs" % (now - self.last_read))
            return
        if self.remote_idle and now - self.last_write >= self.remote_idle / 2 and not self._out:
            self._write(EMPTY_FRAME)
        self._timer = self.loop.call_later(self._tick_interval(), self._tick)

    # -- frames --------------------------------------------------------------------------------
    def _on_frame(self, ftype, channel, body):
        if ftype == SASL_FRAME:
            if self.state != S_SASL:
                raise ProtocolViolation("SASL frame outside SASL negotiation",
                                        "amqp:connection:framing-error")
            code, fields, _ = decode_performative(body)
            self._on_sasl(code, fields)
            return
        if self.state == S_SASL:
            raise ProtocolViolation("AMQP frame during SASL negotiation", "amqp:connection:framing-error")
        if not body:
            return   # heartbeat
        code, fields, payload = decode_performative(body)
        if code == OPEN:
            self._on_open(fields)
        elif code == CLOSE:
            self._on_close(fields)
        elif code == BEGIN:
            self._on_begin(channel, fields)
        elif OPEN < code < CLOSE:
            session = self._by_remote.get(channel)
            if session is None:
                raise ProtocolViolation("frame 0x%x on unknown channel %d" % (code, channel),
                                        "amqp:not-allowed")
            session._on_frame(code, fields, payload)
        else:
            raise ProtocolViolation("frame body holds 0x%x, not an AMQP performative" % code,
                                    "amqp:decode-error")

    def _on_begin(self, channel, fields):
        local = fields[0] if fields else None
        session = self.sessions.get(local) if local is not None else None
        if session is None or session.state != S_BEGIN_SENT:
            raise ProtocolViolation("begin for channel %s that we did not begin" % (local,),
                                    "amqp:not-allowed")
        self._by_remote[channel] = session
        self.core.add_session(channel, session.core)
        session._on_begin(channel, fields)

    def _on_close(self, fields):
        condition, description, info = error_from(fields[0] if fields else None)
        if self.state != S_CLOSE_SENT:
            # The peer closes first: answer, then go.
            self.send_frame(0, CLOSE, [])
            exc = ConnectionClosed(description or "connection closed by the peer", condition, info)
        else:
            exc = None if condition is None else ConnectionClosed(description, condition, info)
        self._terminate(exc or ConnectionClosed("connection closed"), clean=exc is None)
        self._flush_output()
        if self.transport is not None:
            self.transport.close()

    def _flush_output(self):
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(self._out)
        self._out.clear()

    def _violation(self, condition, description):
        """The peer broke the protocol (or our idle timeout expired): close with an error and go."""
        if self.state == S_CLOSED:
            return
        log.warning("connection to %s closed: %s: %s", self.remote_container_id or "peer", condition,
                    description)
        if self.state in (S_OPEN_SENT, S_OPENED):
            self.send_frame(0, CLOSE, [error_value(condition, description)])
        self._terminate(ConnectionClosed(description, condition))
        self._flush_output()
        if self.transport is not None:
            self.transport.close()

    def _terminate(self, exc, clean=False):
        """Everything on this connection is over: fail what waits, with ``exc``."""
        if self.state == S_CLOSED:
            return
        self.state = S_CLOSED
        self.error = None if clean else exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.opened.done():
            self.opened.set_exception(exc)
            self.opened.exception()   # retrieved: connect() re-raises it
        for session in list(self.sessions.values()):
            session._terminate(exc)
        self.sessions.clear()
        self._by_remote.clear()
        self._pumping.clear()

    # -- API -----------------------------------------------------------------------------------
    @property
    def is_open(self):
        return self.state == S_OPENED

    def check_open(self):
        if self.state != S_OPENED:
            raise self.error or ConnectionClosed("connection is closed")

    async def session(self, incoming_window=WINDOW, outgoing_window=WINDOW, handle_max=MASK32):
        """Begin a session; returns it once the peer has answered."""
        self.check_open()
        channel = 0
        while channel in self.sessions:
            channel += 1
        if channel > min(self.channel_max, self.remote_channel_max):
            raise ClientError("no free channel (channel-max %d)"
                              % min(self.channel_max, self.remote_channel_max))
        session = Session(self, channel, handle_max)
        self.sessions[channel] = session
        self.send_frame(channel, BEGIN, [None, uint(0), uint(incoming_window), uint(outgoing_window),
                                         uint(handle_max)])
        await session.begun
        return session

    async def close(self, timeout=10.0, error=None):
        """Close cleanly: accepts still pending go first, then close; wait for the peer's close."""
        if self.state in (S_OPENED, S_OPEN_SENT):
            for session in self.sessions.values():
                session._flush_accepts()
            if error is not None:
                fields = [error_value(error[0], error[1])]
            else:
                fields = []
            self.send_frame(0, CLOSE, fields)
            self.state = S_CLOSE_SENT
            self._flush()
        elif self.state != S_CLOSE_SENT:
            if self.transport is not None:
                self.transport.close()
            if self.state != S_CLOSED:
                self._terminate(ConnectionClosed("connection closed"), clean=True)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self._terminate(ConnectionClosed("no close from the peer within %ss" % timeout), clean=True)
            if self.transport is not None:
                self.transport.abort()

    def abort(self):
        """Drop the connection without a close frame."""
        if self.transport is not None:
            self.transport.abort()

    async def sender(self, address, **kw):
        """A sender on the connection's first session (begun on first use)."""
        return await (await self.default_session()).sender(address, **kw)

    async def receiver(self, address, **kw):
        return await (await self.default_session()).receiver(address, **kw)

    async def default_session(self):
        session = self.sessions.get(0)
        if session is None or session.state != S_MAPPED:
            session = await self.session()
        return session

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        state = ("sasl-header sasl amqp-header open-sent opened close-sent closed").split()[self.state]
        return "<Connection %s %s pid=%d>" % (self.container_id, state, os.getpid())


class _Stop(Exception):
    """Raised after a fatal negotiation error: data_received stops reading (the connection is gone)."""


class Session:
    """One session: its links, and the delivery/transfer counters (kept in ``core``, a SessionCore)."""

    def __init__(self, connection, channel, handle_max=MASK32):
        self.connection = connection
        self.loop = connection.loop
        self.channel = channel
        self.core = SessionCore(channel)
        self.handle_max = handle_max
        self.remote_channel = None
        self.remote_handle_max = MASK32
        self.state = S_BEGIN_SENT
        self.links = {}              # local handle -> link
        self._by_remote = {}         # remote handle -> link
        self._attaching = {}         # link name -> link waiting for the peer's attach
        self.begun = self.loop.create_future()
        self.ended = self.loop.create_future()
        self.error = None
        self.did_count = 0           # unwrapped delivery-id of our next delivery
        self._unsettled = []         # [first, last, sender]: our unsettled deliveries (unwrapped ids)
        self._ack_timer = None
        self.ack_delay = 0.01

    # -- frames --------------------------------------------------------------------------------
    def send(self, code, fields, payload=b""):
        self.connection.send_frame(self.channel, code, fields, payload)

    def flow_fields(self):
        core = self.core
        return [uint(core.next_incoming_id), uint(WINDOW), uint(core.next_outgoing_id), uint(WINDOW)]

    def _on_begin(self, remote_channel, fields):
        n = len(fields)
        self.remote_channel = remote_channel
        self.core.next_incoming_id = fields[1] if n > 1 and fields[1] is not None else 0
        self.core.remote_incoming_window = fields[2] if n > 2 and fields[2] is not None else 0
        self.remote_handle_max = fields[4] if n > 4 and fields[4] is not None else MASK32
        self.state = S_MAPPED
        if not self.begun.done():
            self.begun.set_result(self)

    def _on_frame(self, code, fields, payload):
        if self.state == S_ENDED:
            return
        if code == TRANSFER:
            self._on_slow_transfer(fields)
        elif code == FLOW:
            self._on_flow(fields)
        elif code == DISPOSITION:
            self._on_disposition(fields)
        elif code == ATTACH:
            self._on_attach(fields)
        elif code == DETACH:
            self._on_detach(fields)
        elif code == END:
            self._on_end(fields)

    def _on_attach(self, fields):
        name = fields[0] if fields else None
        link = self._attaching.pop(name, None)
        if link is None:
            raise ProtocolViolation("attach for link %r that we did not attach" % (name,), "amqp:not-allowed")
        self._by_remote[fields[1]] = link
        link._on_attach(fields)

    def _on_detach(self, fields):
        handle = fields[0] if fields else None
        link = self._by_remote.pop(handle, None)
        if link is None:
            raise ProtocolViolation("detach on unattached handle %s" % (handle,),
                                    "amqp:session:unattached-handle")
        link._on_detach(fields)

    def _on_slow_transfer(self, fields):
        # Transfers for registered receivers never come here: this is a link we no longer know.
        self.core.next_incoming_id = (self.core.next_incoming_id + 1) & MASK32
        handle = fields[0] if fields else None
        link = self._by_remote.get(handle)
        if link is None:
            raise ProtocolViolation("transfer on unattached handle %s" % (handle,),
                                    "amqp:session:unattached-handle")

    def _on_flow(self, fields):
        n = len(fields)
        core = self.core
        nii = fields[0] if n > 0 and fields[0] is not None else 0
        iw = fields[1] if n > 1 and fields[1] is not None else 0
        was_closed = core.remote_incoming_window <= 0
        core.remote_incoming_window = _signed32(nii - core.next_outgoing_id) + iw
        handle = fields[4] if n > 4 else None
        if handle is not None:
            link = self._by_remote.get(handle)
            if link is not None:
                link._on_flow(fields)
        elif n > 9 and fields[9]:
            self.send(FLOW, self.flow_fields())
        if was_closed and core.remote_incoming_window > 0:
            for link in self.links.values():
                if link.is_sender and link._queue:
                    self.connection._want_pump(link)

    def _on_disposition(self, fields):
        n = len(fields)
        role = fields[0] if n else False
        if not role:
            return   # the peer settling what it sent us: we settled it on accepting already
        first = fields[1]
        last = fields[2] if n > 2 and fields[2] is not None else first
        settled = fields[3] if n > 3 and fields[3] is not None else False
        state = fields[4] if n > 4 else None
        outcome = _OUTCOMES.get(getattr(state, "descriptor", None))
        if outcome is None:
            if not settled:
                return  # a non-terminal state (received)
            outcome = "settled"
        self._settle_range(first, last, outcome, state)
        if not settled:
            # rcv-settle-mode second: the peer waits for us to settle.
            self.send(DISPOSITION, [False, uint(first), uint(last), True, state])

    def _settle_range(self, first, last, outcome, state):
        """Deliveries ``first..last`` (wire ids) got ``outcome``: tell their senders."""
        unsettled = self._unsettled
        if not unsettled:
            return
        base = unsettled[0][0]
        lo = base + _signed32(first - base)
        hi = lo + ((last - first) & MASK32)
        head = unsettled[0]
        if lo <= head[0] and hi < head[1] and (len(unsettled) == 1 or hi < unsettled[1][0]):
            # The common case: the oldest deliveries of the oldest batch.
            if hi >= head[0]:
                head[2]._settled(hi - head[0] + 1, outcome, state)
                head[0] = hi + 1
            return
        kept = []
        for interval in unsettled:
            a, b, sender = interval
            if b < lo or a > hi:
                kept.append(interval)
                continue
            x, y = max(a, lo), min(b, hi)
            sender._settled(y - x + 1, outcome, state)
            if a < x:
                kept.append([a, x - 1, sender])
            if y < b:
                kept.append([y + 1, b, sender])
        self._unsettled = kept

    def add_unsettled(self, first, count, sender):
        last = first + count - 1
        unsettled = self._unsettled
        if unsettled:
            tail = unsettled[-1]
            if tail[2] is sender and tail[1] == first - 1:
                tail[1] = last
                return
        unsettled.append([first, last, sender])

    def drop_unsettled(self, sender):
        self._unsettled = [iv for iv in self._unsettled if iv[2] is not sender]

    def _on_end(self, fields):
        condition, description, info = error_from(fields[0] if fields else None)
        if self.state != S_END_SENT:
            self.send(END, [])
        exc = SessionEnded(description or "session ended by the peer", condition, info)
        self._terminate(exc if condition or self.state != S_END_SENT else SessionEnded("session ended"))
        self.connection.sessions.pop(self.channel, None)
        if self.remote_channel is not None:
            self.connection._by_remote.pop(self.remote_channel, None)
            self.connection.core.remove_session(self.remote_channel)

    def _terminate(self, exc):
        if self.state == S_ENDED:
            return
        self.state = S_ENDED
        self.error = exc
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if not self.begun.done():
            self.begun.set_exception(exc)
            self.begun.exception()
        for link in list(self.links.values()) + list(self._attaching.values()):
            link._terminate(exc)
        self.links.clear()
        self._attaching.clear()
        self._by_remote.clear()
        self._unsettled = []
        if not self.ended.done():
            self.ended.set_result(None)

    # -- accepts ---------------------------------------------------------------------------------
    def _flush_accepts(self):
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self.state != S_MAPPED or not self.core.pending_accepts:
            return
        for first, last in self.core.take_accepts():
            self.send(DISPOSITION, [True, uint(first), uint(last) if last != first else None, True, ACCEPTED])

    def _accepts_pending(self, batch):
        """Receivers call this after a burst: send the accepts once ``batch`` are waiting, else soon."""
        if self.core.pending_accepts >= batch:
            self._flush_accepts()
        elif self.core.pending_accepts and self._ack_timer is None:
            self._ack_timer = self.loop.call_later(self.ack_delay, self._flush_accepts_later)

    def _flush_accepts_later(self):
        self._ack_timer = None
        self._flush_accepts()
        self.connection._flush()

    # -- API -------------------------------------------------------------------------------------
    def check_open(self):
        if self.state != S_MAPPED:
            raise self.error or SessionEnded("session is not open")
        self.connection.check_open()

    def _next_handle(self):
        handle = 0
        while handle in self.links:
            handle += 1
        if handle > min(self.handle_max, self.remote_handle_max):
            raise ClientError("no free link handle")
        return handle

    def _link_name(self, kind, address):
        return "%s-%s-%s" % (self.connection.container_id, kind, uuid.uuid4().hex[:12])

    async def sender(self, address, *, name=None, settled=False, window=5000, **node):
        """Attach a sender to ``address`` (None: the anonymous relay). ``settled``: send pre-settled
        (at most once); otherwise each delivery waits for its outcome, at most ``window`` at a time.
        Node options (``node``, ``create``, ``properties``, ``durable``, ``expiry_policy`` ...) are
        those of ``terminus.make_target``."""
        self.check_open()
        link = Sender(self, name or self._link_name("sender", address), self._next_handle(), address,
                      settled=settled, window=window, **node)
        return await self._attach(link)

    async def receiver(self, address, *, name=None, credit=1000, settled=False, auto_accept=True, keep=True,
                       ack_batch=None, limit=None, **node):
        """Attach a receiver to ``address`` with a credit window of ``credit`` messages (topped up when half
        is used). ``settled``: ask for pre-settled deliveries; ``auto_accept``: accept each delivery as it
        arrives (dispositions go in ranges of ``ack_batch``); ``keep=False``: only count deliveries (no
        message objects at all); ``limit``: never grant credit for more than this many deliveries in all.
        Node options are those of ``terminus.make_source`` (``subject``, ``selector``, ``browse`` too)."""
        self.check_open()
        link = Receiver(self, name or self._link_name("receiver", address), self._next_handle(), address,
                        credit=credit, settled=settled, auto_accept=auto_accept, keep=keep,
                        ack_batch=ack_batch, limit=limit, **node)
        return await self._attach(link)

    async def _attach(self, link):
        self.links[link.handle] = link
        self._attaching[link.name] = link
        link._send_attach()
        try:
            await link.attached
        except BaseException:
            self.links.pop(link.handle, None)
            self._attaching.pop(link.name, None)
            raise
        return link

    async def close(self, timeout=10.0):
        """End the session (accepts still pending go first) and wait for the peer's end."""
        if self.state == S_MAPPED:
            self._flush_accepts()
            self.send(END, [])
            self.state = S_END_SENT
        if self.state == S_END_SENT:
            try:
                await asyncio.wait_for(asyncio.shield(self.ended), timeout)
            except TimeoutError:
                self._terminate(SessionEnded("no end from the peer within %ss" % timeout))

    def __repr__(self):
        return "<Session channel=%d remote=%s>" % (self.channel, self.remote_channel)


_OUTCOMES = {
    0x24: "accepted", "amqp:accepted:list": "accepted",
    0x25: "rejected", "amqp:rejected:list": "rejected",
    0x26: "released", "amqp:released:list": "released",
    0x27: "modified", "amqp:modified:list": "modified",
}


async def connect(url="127.0.0.1:5672", *, timeout=30.0, loop=None, **options):
    """Open a connection to ``url`` (``host:port`` or ``amqp://[user:password@]host:port``).

    Options: ``username``/``password`` (SASL PLAIN; else ANONYMOUS), ``mechanism``, ``sasl=False`` (no
    SASL layer), ``idle_timeout`` (seconds: the peer must send something that often; we send heartbeats
    at half the peer's), ``max_frame_size``, ``channel_max``, ``container_id``, ``hostname``,
    ``properties``. Raises ConnectionClosed (AuthenticationError) or OSError."""
    host, port, user, password = parse_url(url)
    if user is not None:
        options.setdefault("username", user)
        options.setdefault("password", password)
    options.setdefault("hostname", host)
    loop = loop or asyncio.get_running_loop()
    conn = Connection(loop, **options)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), timeout)
        await asyncio.wait_for(asyncio.shield(conn.opened), timeout)
    except TimeoutError:
        conn.abort()
        raise ConnectionClosed("no open from %s:%s within %ss" % (host, port, timeout)) from None
    return conn


__all__ = ["Connection", "Session", "connect", "parse_url", "ProtocolViolation"]
