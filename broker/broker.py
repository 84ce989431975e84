"""The Broker: owns the nodes, the connections and the listeners of one broker instance.

Nothing here is global: two Broker objects can run in one process (tests do).
"""
import asyncio
import logging
import uuid

from .acl import Authorizer, ConnectionLimits
from .connection import Connection
from .errors import AmqpError
from .federation import Federation
from .management import ManagementAgent
from .nodes import Nodes
from .observers import BrokerObservers
from .outgoing import Outgoing
from .sasl import Authenticator
from .tls import Tls
from .transactions import Transactions


def _version():
    try:
        from importlib.metadata import version
        return version("cypid")
    except Exception:
        return "0"


class Broker:
    def __init__(self, options, loop=None, log=None):
        self.options = options
        # What every open and begin offers: the highest channel and link handle a peer may use.
        self.channel_max = options.max_sessions_per_connection - 1
        self.handle_max = options.max_links_per_session - 1
        self.loop = loop or asyncio.get_event_loop()
        self.log = log or logging.getLogger("cypid.broker")
        self.container_id = str(uuid.uuid4())
        self.version = _version()
        # Observers of configuration changes and connections (management, HA); never per message.
        self.events = BrokerObservers()
        self.management = None
        self.on_shutdown = None         # called when management asks the broker to shut down
        self.nodes = Nodes(self)
        self.transactions = Transactions(self)     # AMQP 1.0 local transactions
        # Raises sasl.SaslConfigError (a bad --sasl-config or users database): the broker cannot start.
        self.authenticator = Authenticator(options, self.log)
        self.acl = Authorizer(options, self.log)      # raises acl.AclError for a bad --acl-file
        self.limits = ConnectionLimits(options, self.acl, self.log)
        self.tls = Tls(options, self.log)    # raises tls.TlsConfigError for unusable certificate files
        self.publisher = None           # the connection whose message is being routed, if any
        if getattr(options, "mgmt_enable", True):
            self.management = ManagementAgent(self)
            self.events.add(self.management.events)
            self.acl.agent = self.management      # the ACL's QMF events
        self.ha = None                  # ha/habroker.py, with --ha-cluster or --ha-queue-replication
        if getattr(options, "ha_cluster", False) or getattr(options, "ha_queue_replication", False):
            from cypid.ha import HaBroker
            self.ha = HaBroker(self)
        self.federation = Federation(self)   # links and bridges to other brokers (qpid-route)
        self.outgoing = Outgoing()      # the connections federation and HA open (broker/outgoing.py)
        self.connections = set()
        self.servers = []
        self.port = None
        self.started = False
        self.http = None                # broker/http's listener (--http-port), once started
        # Readiness, as /readyz reports it (broker/http/health.py): None, or a function returning why
        # this broker does not serve clients (a string), or None when it does. HA sets it (a backup
        # is alive but not ready); ha_status, a function returning a dict, feeds the console's HA page.
        self.not_ready = None
        self.ha_status = None

    async def start(self):
        opts = self.options
        try:
            self.nodes.open_store()     # recovers durable config and messages before anyone connects
        except Exception as e:
            self.log.critical("Cannot open the store: %s", e)
            raise SystemExit(1) from None
        if self.management is not None:
            self.management.start()
        self.nodes.start_purge_timer()
        port = opts.port
        for host in opts.interface:
            if self.tls.mux:    # --ssl-port == --port: one listener, TLS or plain by the first byte
                server = await self.tls.listen(self, host, port, mux=True)
            else:
                server = await self.loop.create_server(lambda: Connection(self), host, port,
                                                       backlog=max(opts.connection_backlog, 128),
                                                       reuse_address=True)
            self.servers.append(server)
            if port == 0:   # every further interface listens on the same port as the first
                port = server.sockets[0].getsockname()[1]
        self.port = port
        if getattr(opts, "http_port", None) is not None:
            from .http import start_http
            try:
                self.http = await start_http(self)
            except OSError as e:
                self.log.critical("Cannot listen for HTTP on %s port %s: %s", opts.http_interface,
                                  opts.http_port, e.strerror or e)
                raise SystemExit(1) from None
        self.started = True
        self.log.log(25, "Listening on TCP port %d", port)
        self.servers += await self.tls.start(self, opts.interface)   # --ssl-port (broker/tls.py)
        if self.ha is not None:
            self.ha.start()
        self.federation.start()

    async def stop(self):
        self.started = False
        if self.http is not None:
            await self.http.stop()
            self.http = None
        await self.federation.stop()
        if self.ha is not None:
            await self.ha.stop()
        await self.outgoing.close()     # every one gone before the store shuts and the audit counts
        self.nodes.stop_timers()
        if self.management is not None:
            self.management.stop()
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
        self.nodes.close_store()

    # -- connections ----------------------------------------------------------------------------
    def connection_opened(self, conn):
        """Returns (condition, text) if the connection must be refused once it has opened."""
        self.connections.add(conn)
        refused = self.limits.opened(conn)     # (condition, text, log level) when over a limit
        return refused or self.tls.refusal(conn)    # --require-encryption

    def connection_established(self, conn):
        if self.acl.enabled:
            try:
                self.acl.connecting(conn)
            except AmqpError as e:
                conn.fail(e.condition, e.description)
                return
        refused = self.limits.authenticated(conn)
        if refused is not None:
            conn.fail(*refused)
            return
        if self.ha is not None:
            refused = self.ha.refusal(conn)     # a backup admits admin tools only
            if refused is not None:
                condition, text, info = refused
                if condition is None:
                    conn.drop(text, level=logging.INFO)
                else:
                    conn.fail(condition, text, level=logging.INFO, info=info)
                return
        self.log.info("Connection %s opened by %r (user %s)", conn.address, conn.container_id, conn.user)
        self.events.connection_opened(conn)

    def connection_closed(self, conn):
        self.connections.discard(conn)
        self.limits.closed(conn)
        self.log.debug("Connection %s closed", conn.address)
        self.events.connection_closed(conn)
