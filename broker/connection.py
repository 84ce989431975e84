"""One client connection: a thin asyncio shell over cypid.pyx.engine, and the broker's engine handler.

The protocol (headers, SASL framing, open/close, sessions, links, windows, credit, settlement,
heartbeats, every bound the engine enforces) is the engine's (docs/ENGINE.md). This module feeds it
what the socket reads, writes what it produced once per loop turn, runs its timer, and answers its
calls: SASL through broker/sasl.py, opens through the broker's limits and ACL, attaches through
nodes (broker/links.py), messages routed, outcomes applied to queues.
"""
import asyncio
import logging
import os

from cypid.pyx import amqp
from cypid.pyx.broker_core import BrokerHandler
from cypid.pyx.codec import Array, symbol
from cypid.pyx.engine import Engine, LinkState, SessionState

from . import errors
from .errors import AmqpError
from .links import IncomingLink, OutgoingLink
from .session import Session

# After our last frame (a close, a refused header) the socket is half-closed and input is read and
# dropped until the peer's EOF, at most this many seconds: closing with unread input would send a
# TCP reset, which can destroy the close frame before the peer reads it.
LINGER = 2.0


class Connection(BrokerHandler, asyncio.BufferedProtocol):
    """asyncio BufferedProtocol for one client connection (uvloop and asyncio both take it) and
    the handler of its engine (messages and outcomes go to the links in C: BrokerHandler)."""

    def __init__(self, broker):
        opts = broker.options
        self.broker = broker
        self.log = broker.log
        self.loop = broker.loop
        self.loop_time = broker.loop.time
        self.transport = None
        self.engine = None          # made in connection_made: the mechanisms offered depend on the transport
        self.user = "anonymous"
        self.sasl = None
        self.sasl_mechanism = None
        self.container_id = ""
        self.remote_properties = {}
        self.local_sessions = {}    # local channel -> Session (management lists them)
        self.link_count = 0         # links attached, or refused and not yet detached
        self.link_limit_logged = False
        self.address = "?"
        self.refused = None         # (condition, text) when the connection must be refused after open
        self._timer = None
        self._failing = False

    @property
    def stats_frames_in(self):
        return self.engine.frames_in if self.engine is not None else 0

    # -- asyncio Protocol ----------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        broker = self.broker
        opts = broker.options
        limit = opts.max_connection_output
        # The transport pauses us (pause_writing) once this much waits for the socket; links then
        # encode nothing more for this connection until it has drained to half (resume_writing).
        transport.set_write_buffer_limits(high=limit, low=limit // 2)
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("?", 0)
        self.address = "%s:%s-%s:%s" % (local[0], local[1], peer[0], peer[1])
        # Mechanisms and users: broker/sasl.py (EXTERNAL for a verified TLS client certificate).
        self.sasl = broker.authenticator.negotiation(self.address, transport)
        self.engine = Engine(
            self, server=True, container_id=broker.container_id, max_frame_size=opts.max_frame_size,
            channel_max=broker.channel_max, handle_max=broker.handle_max,
            max_message_size=opts.max_message_size or 0, idle_grace=1.0, output_limit=limit,
            sasl_mechanisms=self.sasl.offered, require_sasl=bool(opts.auth))
        self.engine.start()
        self.refused = self.broker.connection_opened(self)
        self._timer = self.loop.call_later(self.broker.options.max_negotiate_time, self._negotiate_timeout)

    def connection_lost(self, exc):
        self._cancel_timer()
        if self.engine is not None:
            self._abandon()
        self.broker.connection_closed(self)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        if self.closing:
            return
        self.paused = False
        self._pump_all()

    def eof_received(self):
        if not self.closing:
            self.engine.eof()       # the peer stopped inside a protocol header or a frame: framing-error
            if self.engine.close_sent or self.engine.finished:
                self.close_transport()
        return False

    # Input (get_buffer, buffer_updated, data_received) and the output once per loop turn (want_flush,
    # _flush) are BrokerHandler's, in C: a read is decoded, dispatched and its output queued without
    # a Python frame.

    def _pump_all(self):
        for session in list(self.local_sessions.values()):
            session.pump()
        self.want_flush()

    # -- timers ------------------------------------------------------------------------------------
    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _negotiate_timeout(self):
        self._timer = None
        if not self.engine.open_rcvd and not self.closing:
            self.log.warning("Connection %s closed: no open within the negotiation time", self.address)
            self.close_transport()

    def _tick(self):
        self._timer = None
        if self.closing:
            return
        delay = self.engine.tick(self.loop.time())
        if self.engine.close_sent or self.engine.finished:
            self.close_transport()
            return
        self._flush()
        if delay:
            self._timer = self.loop.call_later(delay, self._tick)

    # -- the engine's calls: SASL and open ------------------------------------------------------------
    def on_sasl_init(self, mechanism, response, hostname):
        return self._sasl_result(self.sasl.init(mechanism, response))

    def on_sasl_response(self, response):
        return self._sasl_result(self.sasl.respond(response))

    def _sasl_result(self, result):
        if result == 0 or (isinstance(result, tuple) and result[0] == 0):
            self.user = self.sasl.identity
            self.sasl_mechanism = self.sasl.mechanism   # management (connection saslMechanism)
        return result

    def on_open(self):
        engine = self.engine
        self.container_id = engine.remote_container_id or ""
        self.remote_properties = engine.remote_properties or {}
        self._cancel_timer()
        # Heartbeats: we announce twice the peer's idle-time-out and close after that much silence
        # (qpidd's choice); the engine writes an empty frame within half of the peer's.
        engine.open(properties={symbol("product"): "cypid", symbol("version"): self.broker.version},
                    offered_capabilities=Array(0xA3, [symbol("ANONYMOUS-RELAY")]),
                    idle_timeout=2 * engine.remote_idle_timeout)
        if self.refused:
            self.fail(*self.refused)
            return
        self._schedule_tick()
        self.broker.connection_established(self)

    def _schedule_tick(self):
        delay = self.engine.tick(self.loop.time())
        if delay:
            self._timer = self.loop.call_later(delay, self._tick)

    def on_close(self, error, by_peer):
        if by_peer:
            if error is not None:
                self.log.info("Connection %s closed by peer with error %s", self.address, error[0])
        elif error is not None and not self._failing and not (
                error[0] == amqp.UNAUTHORIZED_ACCESS and self.sasl.mechanism is not None and not self.engine.open_rcvd):
            # (A failed login was logged by broker/sasl.py, naming the user.)
            # A protocol violation or a bound the engine found (the engine wrote the close).
            self.log.warning("Connection %s closed: %s: %s", self.address, error[0], error[1])
        self.paused = True

    # -- sessions ------------------------------------------------------------------------------------
    def on_begin(self, session):
        state = Session(self, session)
        session.context = state
        self.local_sessions[session.channel] = state

    def on_end(self, session, error):
        state = session.context
        session.context = None
        if state is None:
            return
        if error is not None and session.state == SessionState.END_SENT:
            self.log.warning("Session %d on %s ended: %s: %s", session.channel, self.address, error[0], error[1])
        if self.local_sessions.get(session.channel) is state:
            del self.local_sessions[session.channel]
        state.end()

    def on_session_flow(self, session):
        state = session.context
        if state is not None:
            state.pump()

    # -- links ---------------------------------------------------------------------------------------
    def on_attach(self, link):
        session = link.session.context
        limit = self.broker.options.max_links_per_connection
        if self.link_count >= 2 * limit:
            # Refused links stay until the peer detaches them; one that never does is cut off.
            self.fail(errors.RESOURCE_LIMIT_EXCEEDED, "%d links attached or refused and not detached "
                      "(max-links-per-connection %d)" % (self.link_count, limit))
            return
        self.link_count += 1
        broker_link = (IncomingLink if not link.is_sender else OutgoingLink)(session, link)
        link.context = broker_link
        if self.link_count > limit:
            error = errors.ResourceLimitExceeded("connection has more than %d links "
                                                 "(max-links-per-connection)" % limit)
            broker_link.refuse(error, log=not self.link_limit_logged)
            self.link_limit_logged = True
            return
        if broker_link.attach():
            session.local_handles[link.handle] = broker_link

    def on_detach(self, link, error):
        self.link_count -= 1
        broker_link = link.context
        link.context = None
        if broker_link is None:
            return
        if error is not None and link.state == LinkState.DETACH_SENT and not broker_link.detached:
            self.log.warning("Link %r on %s detached: %s: %s", link.name, self.address, error[0], error[1])
        session = broker_link.session
        if session.local_handles.get(link.handle) is broker_link:
            del session.local_handles[link.handle]
        broker_link.abandon()

    def on_message(self, link, delivery, data):
        link.context.on_message(delivery, data)

    def on_outcome(self, link, context, outcome, state):
        broker_link = link.context
        if broker_link is not None:
            broker_link.on_outcome(context, outcome, state)
        else:       # the link is going: its deliveries are being given back
            pass

    def on_writable(self):
        if not self.paused:
            self._pump_all()

    # -- ending ------------------------------------------------------------------------------------
    def fail(self, condition, description, level=logging.WARNING, info=None):
        """Close this connection with an error (``info``: the error's info map, e.g. a redirect's
        address); everyone else carries on."""
        if self.closing or self.engine.close_sent or self.engine.finished:
            return
        self.log.log(level, "Connection %s closed: %s: %s", self.address, condition, description)
        self._failing = True
        self.engine.close(condition, description, {symbol(k): v for k, v in info.items()} if info else None)
        if not self._feeding:
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
        if not self.closing:        # the engine was past its close already
            self.close_transport()

    def _abandon(self):
        """The connection is finished: release what its sessions and links held. Its links must not
        take the deliveries another of its links gives back (they would go nowhere and come back
        counted twice), so the connection is marked paused -- can_take() is false for all -- first."""
        self.paused = True
        self.closing = True
        if not self.engine.finished:
            self.engine.abort()

    def drop(self, reason, level=logging.WARNING):
        """End the connection without another frame (qpidd's HA backups do this to ordinary
        clients): the peer sees its transport end, not a close."""
        if self.closing:
            return
        self.log.log(level, "Connection %s dropped: %s", self.address, reason)
        transport = self.transport
        self._abandon()
        self._cancel_timer()
        if transport is not None and not transport.is_closing():
            transport.abort()

    def close_transport(self):
        """Write what the engine has (its close), half-close, and release everything at once (not
        when the peer's EOF or the linger timer comes)."""
        if self.closing:
            return
        self.paused = True
        transport = self.transport
        data = self.engine.take_output(self.loop_time())
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
        self._abandon()
        self._cancel_timer()
        if transport is None or transport.is_closing():
            return
        try:
            transport.write_eof()   # FIN once the output is written; eof_received then closes
        except Exception:
            transport.close()
            return
        self._timer = self.loop.call_later(LINGER, transport.close)

    def __repr__(self):
        return "<Connection %s pid=%d>" % (self.address, os.getpid())


__all__ = ["Connection", "LINGER", "amqp"]
