"""The client's connection and sessions: a thin asyncio shell over cypid.pyx.engine.

The protocol lives in the engine (docs/ENGINE.md): ``Connection`` is the engine's handler and the
asyncio Protocol that feeds it. Bytes read go to ``Engine.feed`` (transfers for receivers are consumed
there in C; each receiver that got some is told once per burst); once per loop turn ``_flush`` lets the
senders encode their next batches straight into the engine's output buffer and writes it all at once.
"""
import asyncio
import logging
import os
import socket
import uuid

from cypid.pyx import amqp
from cypid.pyx.codec import symbol
from cypid.pyx.engine import ConnectionState, Engine, EngineError, Handler, SessionState

from .errors import AuthenticationError, ClientError, ConnectionClosed, SessionEnded
from .links import Receiver, Sender

log = logging.getLogger("cypid.client")

WINDOW = 0x7FFFFFFF
MASK32 = 0xFFFFFFFF
DEFAULT_PORT = 5672
DEFAULT_SSL_PORT = 5671
VERSION = "0.1.0"
SEND_BUDGET = 1 << 20       # bytes the senders encode per loop turn before the loop reads again


def parse_url(url):
    """(host, port, user, password) from ``host:port``, ``host``, ``[v6]:port``,
    ``amqp[s]://[user[:password]@]host[:port][/...]`` or the qpid tools' ``[user[/password]@]host[:port]``
    (the credentials' separator is the first ``/`` or ``:``, as qpidd's URL grammar allows both).
    The port defaults to 5671 for ``amqps://``, else 5672."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    user = password = None
    at = rest.rfind("@")
    if at >= 0:
        cred, rest = rest[:at], rest[at + 1:]
        cut = min((i for i in (cred.find("/"), cred.find(":")) if i >= 0), default=-1)
        user, password = (cred[:cut], cred[cut + 1:]) if cut >= 0 else (cred, None)
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host, port = rest, ""
    default = DEFAULT_SSL_PORT if scheme.lower() == "amqps" else DEFAULT_PORT
    return host or "127.0.0.1", int(port) if port else default, user or None, password or None


def _exception(error, default, cls=ConnectionClosed):
    """An exception for an engine error tuple (condition, description, info), or ``default``."""
    if error is None:
        return default
    condition, description, info = error
    if condition == amqp.UNAUTHORIZED_ACCESS and cls is ConnectionClosed:
        cls = AuthenticationError
    return cls(description or default.description, condition, info)


class Connection(Handler):
    """One AMQP connection (an asyncio Protocol and the engine's handler). Make it with
    ``await connect(url, ...)``. Its state, its sessions' and its links' are the engine's
    (``state``: an engine.ConnectionState); when the socket drops, ``engine.abort()`` ends them all."""

    def __init__(self, loop, *, container_id=None, hostname=None, username=None, password=None,
                 mechanism=None, sasl=True, idle_timeout=None, max_frame_size=65536, channel_max=255,
                 properties=None, write_buffer=1 << 20):
        self.loop = loop
        self.container_id = container_id or "cypid-client-%s" % uuid.uuid4()
        self.hostname = hostname
        self.username = username
        self.password = password
        self.mechanism = mechanism
        self._scram = None           # a SCRAM exchange under way (scramp.ScramClient)
        self.use_sasl = sasl or username is not None
        self.idle_timeout = float(idle_timeout or 0)
        self.max_frame_size = int(max_frame_size)
        self.channel_max = channel_max
        self.properties = properties
        self.write_buffer = write_buffer
        self.transport = None
        self._abandoned = False     # aborted: a transport still to come is dropped as it comes
        # We close after idle_timeout of silence, and announce half of it: a peer that sends only on a
        # coarse timer still keeps well inside our limit (the engine closes after twice what it announces).
        self.core = self.engine = Engine(
            self, container_id=self.container_id, max_frame_size=self.max_frame_size,
            channel_max=channel_max, idle_timeout=self.idle_timeout / 2, sasl=self.use_sasl,
            hostname=hostname, handle_max=MASK32, output_limit=4 * SEND_BUDGET)
        self._ending = None         # (exception, clean) while _terminate has the engine end everything
        self.remote_properties = {}
        self.offered_capabilities = ()
        self.sessions = {}          # local channel -> Session
        self._flush_scheduled = False
        self._paused = False
        self._pumping = []          # senders with deliveries queued
        self.opened = loop.create_future()
        self.closed = loop.create_future()
        self.error = None
        self._timer = None

    @property
    def state(self):
        """The engine's ConnectionState."""
        return self.engine.state

    # -- the peer's limits, as the engine learnt them ---------------------------------------------
    @property
    def remote_max_frame(self):
        return self.engine.remote_max_frame_size

    @property
    def remote_container_id(self):
        return self.engine.remote_container_id

    @property
    def remote_idle(self):
        return self.engine.remote_idle_timeout

    # -- asyncio Protocol --------------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        if self._abandoned:
            # Its connect() gave up (cancelled, timed out) before the transport came. uvloop calls
            # connection_made even on a transport its cancelled create_connection has closed, and then
            # never connection_lost: start nothing (no engine, no heartbeat timer), drop it, be closed.
            transport.abort()
            self.closed.set_result(None)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        transport.set_write_buffer_limits(high=self.write_buffer, low=self.write_buffer // 4)
        props = {symbol("product"): "cypid-client", symbol("version"): VERSION}
        if self.properties:
            props.update({symbol(k): v for k, v in self.properties.items()})
        self.engine.start()
        self.engine.open(properties=props)
        self._start_timer()
        self._schedule_flush()

    def connection_lost(self, exc):
        if self.closed.done():      # dropped in connection_made (abandoned): nothing was started
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.engine.finished:
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
        if self.engine.finished:
            return
        self.engine.feed(data, self.loop.time())
        if self.engine.finished:
            self._flush()           # the answers to the peer's close go before anything can close us
        else:
            self._schedule_flush()

    # -- output: once per loop turn ------------------------------------------------------------
    def _schedule_flush(self):
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self):
        """The senders' next batches (at most SEND_BUDGET bytes), then one write of everything."""
        self._flush_scheduled = False
        engine = self.engine
        if self._pumping and not self._paused and engine.opened:
            budget = SEND_BUDGET
            pumping = self._pumping
            self._pumping = []
            for sender in pumping:
                budget = sender._pump(budget)
            if budget <= 0:
                self._schedule_flush()  # more to send: after the loop has read what came in
        data = engine.take_output(self.loop.time())
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
        if engine.finished and transport is not None and not transport.is_closing():
            transport.close()

    def _want_pump(self, sender):
        if not sender._in_pump_list:
            sender._in_pump_list = True
            self._pumping.append(sender)
        self._schedule_flush()

    # -- the engine's calls ------------------------------------------------------------------------
    def on_sasl_mechanisms(self, offered):
        """The first mechanism of ours the peer offers. ``mechanism`` may name several (space
        separated, in order of preference, as qpidd's tools' --sasl-mechanism and proton's
        allowed_mechs): PLAIN, SCRAM-SHA-256, SCRAM-SHA-1 (with a username), EXTERNAL (the TLS client
        certificate is the identity), ANONYMOUS."""
        if self.mechanism:
            want = self.mechanism.upper().replace(",", " ").split()
        elif self.username is not None:
            want = ["PLAIN"]
        else:
            want = ["ANONYMOUS", "PLAIN"]
        for mech in want:
            if mech not in offered:
                continue
            if mech == "ANONYMOUS":
                return mech, b"anonymous"
            if mech == "EXTERNAL":
                return mech, b""        # no authzid: act as the certificate's identity
            if self.username is None:
                continue
            if mech == "PLAIN":
                return mech, (b"\0" + self.username.encode() + b"\0" + (self.password or "").encode())
            if mech in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
                from scramp import ScramClient
                self._scram = ScramClient([mech], self.username, self.password or "")
                return mech, self._scram.get_client_first().encode()
        log.warning("no SASL mechanism in common: the peer offers %s, we can do %s",
                    " ".join(offered) or "none", " ".join(want))
        return None

    def on_sasl_challenge(self, challenge):
        """SCRAM's server-first message: our client-final (an empty response fails the exchange)."""
        scram, self._scram = self._scram, None
        if scram is None:
            return b""
        try:
            scram.set_server_first(bytes(challenge or b"").decode("utf-8"))
            return scram.get_client_final().encode()
        except Exception as e:      # a malformed challenge: the peer then refuses the empty response
            log.warning("SCRAM challenge refused: %s", e)
            return b""

    def on_open(self):
        engine = self.engine
        caps = engine.remote_offered_capabilities
        self.offered_capabilities = tuple(str(c) for c in (getattr(caps, "elements", None) or
                                                           ([caps] if caps is not None else [])))
        self.remote_properties = {str(k): v for k, v in engine.remote_properties.items()}
        self._start_timer()
        if not self.opened.done():
            self.opened.set_result(self)
        if self._pumping:
            self._schedule_flush()

    def on_close(self, error, by_peer):
        if self._ending is not None:            # _terminate's engine.abort()
            exc, clean = self._ending
        elif by_peer:
            exc = _exception(error, ConnectionClosed("connection closed by the peer"))
            clean = False
        elif error is not None:
            exc = _exception(error, ConnectionClosed("connection closed"))
            clean = False
            log.warning("connection to %s closed: %s: %s", self.remote_container_id or "peer",
                        error[0], error[1])
        else:
            exc = _exception(error, None)
            clean = exc is None
            exc = exc or ConnectionClosed("connection closed")
        self._ended(exc, clean)
        self._schedule_flush()

    def on_begin(self, session):
        session.context._on_begin()

    def on_end(self, session, error):
        s = session.context
        if s is not None:
            s._on_end(error, self._ending[0] if self._ending is not None else None)

    def on_attach(self, link):
        link.context._on_attach()

    def on_flow(self, link):
        link.context._on_flow()

    def on_session_flow(self, session):
        for link in session.context.links.values():
            if link.is_sender and link._queue:
                self._want_pump(link)

    def on_messages(self, link):
        link.context._on_burst()

    def on_settled(self, link, count, outcome, state):
        link.context._settled(count, amqp.OUTCOME_NAMES.get(outcome, "settled"), state)

    def on_detach(self, link, error):
        link.context._on_detach(error, self._ending[0] if self._ending is not None else None)

    def on_writable(self):
        if self._pumping:
            self._schedule_flush()

    # -- heartbeats ----------------------------------------------------------------------------
    def _start_timer(self):
        if self._timer is None and not self.engine.finished:
            interval = self.engine.tick(self.loop.time())
            if interval:
                self._timer = self.loop.call_later(interval, self._tick)

    def _tick(self):
        self._timer = None
        if self.engine.finished:
            return
        self._start_timer()
        if self.engine.output_pending or self.engine.finished:
            self._schedule_flush()

    def _terminate(self, exc, clean=False):
        """Everything on this connection is over now (the socket went, or we stop waiting): the engine
        ends every link, session and the connection (on_detach, on_end, on_close), and what waits on
        them fails with ``exc``."""
        if self.engine.finished:
            return
        self._ending = (exc, clean)
        try:
            self.engine.abort()
        finally:
            self._ending = None

    def _ended(self, exc, clean):
        """The engine ended the connection (on_close): fail what waits, with ``exc``."""
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
        self._pumping.clear()

    # -- API -----------------------------------------------------------------------------------
    @property
    def is_open(self):
        return self.engine.opened

    def check_open(self):
        if not self.engine.opened:
            raise self.error or ConnectionClosed("connection is closed")

    async def session(self, incoming_window=WINDOW, outgoing_window=WINDOW, handle_max=MASK32):
        """Begin a session; returns it once the peer has answered."""
        self.check_open()
        try:
            core = self.engine.begin(incoming_window, outgoing_window, handle_max)
        except EngineError as e:
            raise ClientError(str(e)) from None
        session = Session(self, core)
        self.sessions[core.channel] = session
        self._schedule_flush()
        await session.begun
        return session

    async def close(self, timeout=10.0, error=None):
        """Close cleanly: accepts still pending go first, then close; wait for the peer's close."""
        state = self.engine.state
        if state == ConnectionState.OPENED:
            if error is not None:
                self.engine.close(error[0], error[1])
            else:
                self.engine.close()
            self._flush()
        elif state != ConnectionState.CLOSE_SENT:
            self._flush()
            if self.transport is not None:
                self.transport.close()
            self._terminate(ConnectionClosed("connection closed"), clean=True)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self._terminate(ConnectionClosed("no close from the peer within %ss" % timeout), clean=True)
            if self.transport is not None:
                self.transport.abort()

    def abort(self):
        """Drop the connection without a close frame. A connect cancelled after its socket connected
        leaves uvloop's transport closed while its connection_made is still to run: a transport that
        has not come yet is dropped as it comes, and one that came already closed (its abort changes
        nothing, no connection_lost will follow) ends the connection here. So no connection is left,
        with its heartbeat timer, that nobody holds."""
        self._abandoned = True
        transport = self.transport
        if transport is not None:
            transport.abort()
            if not transport.is_closing() and not self.closed.done():
                self.connection_lost(None)

    async def sender(self, address, **kw):
        """A sender on the connection's first session (begun on first use)."""
        return await (await self.default_session()).sender(address, **kw)

    async def receiver(self, address, **kw):
        return await (await self.default_session()).receiver(address, **kw)

    async def default_session(self):
        session = self.sessions.get(0)
        if session is None or not session.is_open:
            session = await self.session()
        return session

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def __repr__(self):
        return "<Connection %s %s pid=%d>" % (self.container_id, self.engine.state.name.lower(), os.getpid())


class Session:
    """One session: its links; the protocol state is the engine's Session (``core``): ``state`` is
    an engine.SessionState."""

    def __init__(self, connection, core):
        self.connection = connection
        self.loop = connection.loop
        self.core = core
        core.context = self
        self.channel = core.channel
        self.links = {}              # local handle -> link
        self.begun = self.loop.create_future()
        self.ended = self.loop.create_future()
        self.error = None
        self._ack_timer = None
        self.ack_delay = 0.01

    @property
    def remote_channel(self):
        return self.core.remote_channel

    @property
    def state(self):
        return self.core.state

    @property
    def is_open(self):
        """Both begins exchanged, no end yet (and not given up on: ``close()``'s timeout)."""
        return self.core.state == SessionState.MAPPED and not self.ended.done()

    def _on_begin(self):
        if not self.begun.done():
            self.begun.set_result(self)

    def _on_end(self, error, lost=None):
        """The engine ended the session; ``lost``: the connection's exception when it went."""
        if lost is not None:
            exc = lost
        elif self.core.ended_here and error is None:
            exc = SessionEnded("session ended")
        else:
            exc = _exception(error, SessionEnded("session ended by the peer"), SessionEnded)
        self._terminate(exc)
        self.connection.sessions.pop(self.channel, None)

    def _terminate(self, exc):
        """Fail what waits on the session and its links, with ``exc`` (once)."""
        if self.ended.done():
            return
        self.error = exc
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if not self.begun.done():
            self.begun.set_exception(exc)
            self.begun.exception()
        self.ended.set_result(None)
        for link in list(self.links.values()):
            link._terminate(exc)
        self.links.clear()

    # -- accepts ---------------------------------------------------------------------------------
    def _accepts_pending(self):
        """Receivers call this after a burst: accepts the engine holds back (settle_batch) go within
        ack_delay at the latest."""
        if self.core.pending_settles and self._ack_timer is None:
            self._ack_timer = self.loop.call_later(self.ack_delay, self._flush_accepts_later)

    def _flush_accepts_later(self):
        self._ack_timer = None
        self.flush_accepts()

    def flush_accepts(self):
        """Write the accepts held back (``ack_batch``) now."""
        if self.core.state == SessionState.MAPPED:
            self.core.flush_settles()
            self.connection._flush()

    # -- API -------------------------------------------------------------------------------------
    def check_open(self):
        if not self.is_open:
            raise self.error or SessionEnded("session is not open")
        self.connection.check_open()

    def _link_name(self, kind, address):
        return "%s-%s-%s" % (self.connection.container_id, kind, uuid.uuid4().hex[:12])

    async def sender(self, address, *, name=None, settled=False, window=5000, **node):
        """Attach a sender to ``address`` (None: the anonymous relay). ``settled``: send pre-settled
        (at most once); otherwise each delivery waits for its outcome, at most ``window`` at a time.
        Node options (``node``, ``create``, ``properties``, ``durable``, ``expiry_policy`` ...) are
        those of ``terminus.make_target``."""
        self.check_open()
        link = Sender(self, name or self._link_name("sender", address), address, settled=settled,
                      window=window, **node)
        return await self._attach(link)

    async def receiver(self, address, *, name=None, credit=1000, settled=False, auto_accept=True, keep=True,
                       ack_batch=None, limit=None, **node):
        """Attach a receiver to ``address`` with a credit window of ``credit`` messages (topped up when half
        is used). ``settled``: ask for pre-settled deliveries; ``auto_accept``: accept each delivery as it
        arrives (dispositions go in ranges of ``ack_batch``, or within ``ack_delay``); ``keep=False``: only
        count deliveries (no message objects at all); ``limit``: never grant credit for more than this many
        deliveries in all. Node options are those of ``terminus.make_source`` (``subject``, ``selector``,
        ``browse`` too)."""
        self.check_open()
        link = Receiver(self, name or self._link_name("receiver", address), address, credit=credit,
                        settled=settled, auto_accept=auto_accept, keep=keep, ack_batch=ack_batch,
                        limit=limit, **node)
        return await self._attach(link)

    async def _attach(self, link):
        self.links[link.handle] = link
        self.connection._schedule_flush()
        try:
            await link.attached
        except BaseException:
            self.links.pop(link.handle, None)
            raise
        return link

    async def close(self, timeout=10.0):
        """End the session (accepts still pending go first) and wait for the peer's end."""
        if self.core.state == SessionState.MAPPED:
            self.core.end()
            self.connection._schedule_flush()
        if self.core.state == SessionState.END_SENT and not self.ended.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.ended), timeout)
            except TimeoutError:
                self._terminate(SessionEnded("no end from the peer within %ss" % timeout))

    def __repr__(self):
        return "<Session channel=%d remote=%s>" % (self.channel, self.remote_channel)


async def connect(url="127.0.0.1:5672", *, timeout=30.0, loop=None, ssl=None, track=None, **options):
    """Open a connection to ``url`` (``host:port``, ``amqp[s]://[user:password@]host:port`` or the qpid
    tools' ``[user/password@]host[:port]``).

    Options: ``username``/``password`` (SASL PLAIN; else ANONYMOUS), ``mechanism`` (one or several,
    space separated: PLAIN, SCRAM-SHA-256, SCRAM-SHA-1, EXTERNAL, ANONYMOUS), ``sasl=False`` (no SASL
    layer), ``ssl`` (an ``ssl.SSLContext``, or True for the default one; ``amqps://`` implies True),
    ``idle_timeout`` (seconds: the peer must send something that often; we send heartbeats at half the
    peer's), ``max_frame_size``, ``channel_max``, ``container_id``, ``hostname``, ``properties``.
    ``track``: an object whose ``add`` is given the Connection before it connects (a broker's
    outgoing connections, waited for at its stop: broker/outgoing.py).
    Raises ConnectionClosed (AuthenticationError) or OSError (ssl.SSLError for a refused handshake)."""
    host, port, user, password = parse_url(url)
    if user is not None:
        options.setdefault("username", user)
        options.setdefault("password", password)
    if ssl is None and url.lower().startswith("amqps://"):
        ssl = True
    options.setdefault("hostname", host)
    loop = loop or asyncio.get_running_loop()
    conn = Connection(loop, **options)
    if track is not None:
        track.add(conn)
    tls = {"ssl": ssl, "server_hostname": host} if ssl else {}
    try:
        await asyncio.wait_for(loop.create_connection(lambda: conn, host, port, **tls), timeout)
        await asyncio.wait_for(asyncio.shield(conn.opened), timeout)
    except TimeoutError:
        conn.abort()
        raise ConnectionClosed("no open from %s:%s within %ss" % (host, port, timeout)) from None
    except BaseException:       # refused after the TCP connect, or cancelled: no socket left behind
        conn.abort()
        raise
    if not conn.is_open:        # closed right after its open (an HA backup's amqp:connection:redirect)
        raise conn.error or ConnectionClosed("%s:%s closed the connection after its open" % (host, port))
    return conn


__all__ = ["Connection", "Session", "connect", "parse_url"]
