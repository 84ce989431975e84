"""Federation: links to other brokers and the bridges (routes) that move messages over them.

qpidd's model (the seed's section 2.1.2, ``qpid-route``), over AMQP 1.0 and cypid.client running in
the broker's own loop:

- A **link** is this broker's connection to another broker, made by ``qpid-route link add`` (QMF
  ``broker.connect`` or ``create type=link``). It is kept up: a failed or lost connection is tried
  again every ``--link-maintenance-interval``; its state (Waiting, Connecting, Operational, Closed)
  and last error are QMF properties. Heartbeats: ``--link-heartbeat-interval``.
- A **bridge** is one route on a link (QMF ``link.bridge`` or ``create type=bridge``):

  ========================  ===============================================================
  pull (srcIsLocal false)   the remote broker is the source: a receiver on its exchange
                            ``src`` (with the route's key as a subject filter) or on its queue
                            ``src`` (srcIsQueue), routing into our exchange ``dest``
  push (srcIsLocal true)    we are the source: a consumer on our queue ``src`` or on a private
                            queue bound to our exchange ``src`` with the key, sending to the
                            remote exchange ``dest``
  dynamic                   pull, with one subscription on the remote exchange per distinct
                            key bound to our exchange of the same name (followed as bindings
                            come and go)
  ========================  ===============================================================

- **At least once**: a pulled message is accepted on the remote broker only once our exchange has
  taken it (durable: its journal records synced); a pushed one leaves our queue only once the remote
  broker accepted it, and is released back to the queue if the link drops first. Duplicates are
  possible after a failure, losses are not.
- **Loops** (messages): every message a bridge brings in carries, in its ``x-qpid.trace`` message
  annotation (comma separated, as qpidd's), the tags of the routes it came over. As qpidd's bridge
  queue (``qpid.trace.id`` / ``qpid.trace.exclude``): a bridge drops a message whose trace holds one of
  the route's excludes (default: this broker's tag), then adds the route's tag (default: the remote
  broker's tag). So dynamic routes both ways never send a message back where it came from, and in a
  mesh or ring the routes' tags and exclude lists keep a message to one path.
- **Dynamic bindings across hops** (qpidd's ``qpid.fed.origin`` / ``qpid.fed.tags``): a dynamic bridge
  subscribes on the remote exchange one key (a headers binding's match map; fanout: one) for each
  binding of our exchange, telling the remote, in its subscription's source properties
  (``qpid.fed.origins``: {origin broker's tag: tags of the brokers the binding passed}), which bindings
  it stands for: our own (origin and tags: our tag), and those other brokers' bridges made here (their
  origins, their tags plus ours) unless the remote broker is already among their tags. The remote's
  own dynamic bridges do the same with it, so a binding travels every hop of a tree of routes and
  never comes back to a broker it passed (no binding storm in a ring); when it goes (unbind, a queue
  deleted, a link down) each hop drops the subscriptions it no longer stands for. It is state, not
  operations: a link that comes back up subscribes what its exchange has then (qpidd's reorigin).
- Durable links and bridges are rows in the config store and come back at start-up.

Nothing here runs on the broker's own message path: a bridge is one more client or consumer.
"""
from __future__ import annotations

import asyncio
import uuid

from cypid.pyx.codec import Described, symbol, ulong
from cypid.pyx.message import Message
from cypid.pyx.sections import scan_message

from . import errors
from .exchanges import compile_headers, topic_match
from .store import Pending

TRACE = symbol("x-qpid.trace")
_TRACE_BYTES = b"x-qpid.trace"
#: A dynamic bridge's subscription says in its source's properties which bindings it stands for:
#: {origin tag: comma separated tags of the brokers the binding passed, origin first}.
FED_ORIGINS = "qpid.fed.origins"
HEADERS_BINDING = 0x0000468C00000002    # apache.org:legacy-amqp-headers-binding:map

WAITING, CONNECTING, OPERATIONAL, CLOSED = "Waiting", "Connecting", "Operational", "Closed"
#: Deliveries a bridge keeps in flight when its route gives no credit limit.
DEFAULT_WINDOW = 1000


class FederationError(Exception):
    """A bad link or bridge request (the QMF method answers it as an exception)."""


def _text(value, default=""):
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _flag(value):
    if isinstance(value, (str, bytes)):
        return _text(value).strip().lower() in ("1", "true", "yes", "y", "t", "on")
    return bool(value)


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class Federation:
    """The broker's links and bridges (``broker.federation``)."""

    def __init__(self, broker):
        self.broker = broker
        self.log = broker.log
        self.links: dict[str, FederationLink] = {}
        self.bridges: dict[str, Bridge] = {}
        self.started = False
        self._watch = _BindingWatch(broker)   # dynamic bridges told of binding changes (no polling)

    @property
    def tag(self):
        """This broker's federation tag: the container-id its connections' open carries."""
        return _text(getattr(self.broker.options, "federation_tag", "")) or self.broker.container_id

    @property
    def config(self):
        store = self.broker.nodes.store
        return store.config if store is not None else None

    def interval(self):
        return max(0.05, float(getattr(self.broker.options, "link_maintenance_interval", 2.0) or 2.0))

    def heartbeat(self):
        return float(getattr(self.broker.options, "link_heartbeat_interval", 120.0) or 0.0)

    # -- life ------------------------------------------------------------------------------------
    def start(self):
        """Recover durable links and bridges, and start connecting."""
        self.started = True
        config = self.config
        if config is not None:
            rows = config.federation()
            for kind, name, props in rows:
                if kind == "link":
                    self._recover(self.create_link, name, props)
            for kind, name, props in rows:
                if kind == "bridge":
                    self._recover(self.create_bridge, name, props)
        for link in list(self.links.values()):
            link.start()

    def _recover(self, create, name, props):
        try:
            create(name, props, recovering=True)
        except FederationError as e:
            self.log.warning("Federation %s %r not recovered: %s", create.__name__[7:], name, e)

    async def stop(self):
        self.started = False
        links = list(self.links.values())
        for link in links:
            link.stop()
        for link in links:
            await link.stopped()
        for bridge in list(self.bridges.values()):
            bridge.stop()       # not close(): a durable push route's queue outlives the broker's run
        self.links.clear()
        self.bridges.clear()

    def _created(self, obj):
        """QMF's creation time of a link or bridge is when it was made (qpid-route's map orders
        routes by it), not when a console first asked."""
        agent = self.broker.management
        if agent is not None:
            agent.note_created(obj)

    def _gone(self, obj):
        agent = self.broker.management
        if agent is not None:
            agent.forget(obj)

    # -- links -----------------------------------------------------------------------------------
    def create_link(self, name, props, recovering=False):
        """``create type=link``: properties host, port, transport, durable, authMechanism, username,
        password. Returns the link (an existing one is an error, as qpidd's)."""
        if name in self.links:
            raise FederationError("object already exists: %s" % name)
        host = _text(props.get("host"))
        if not host:
            raise FederationError("invalid parameter to method call: host")
        transport = _text(props.get("transport")) or "tcp"
        if transport not in ("tcp", "ssl", "amqp", "amqps"):
            raise FederationError("Transport '%s' not supported" % transport)
        port = _int(props.get("port"), 5672) or 5672
        link = FederationLink(self, name, host, port, transport, _flag(props.get("durable")),
                    _text(props.get("authMechanism")), _text(props.get("username")),
                    _text(props.get("password")))
        if link.durable and not recovering:
            config = self.config
            if config is None:
                raise FederationError("durable link %s needs a store (--data-dir)" % name)
            config.add_federation("link", name, link.properties())
        self.links[name] = link
        self._created(link)
        self.log.info("Federation link %r to %s:%d created%s", name, host, port,
                      " (durable)" if link.durable else "")
        if self.started:
            link.start()
        return link

    def connect(self, host, port, durable, mechanism, username, password, transport):
        """QMF ``broker.connect``: a link named ``qpid.<transport>:<host>:<port>`` unless one to
        that host, port and transport exists."""
        transport = transport or "tcp"
        for link in self.links.values():
            if link.host == host and link.port == port and link.transport == transport:
                return link
        return self.create_link("qpid.%s:%s:%d" % (transport, host, port), {
            "host": host, "port": port, "transport": transport, "durable": durable,
            "authMechanism": mechanism, "username": username, "password": password})

    def delete_link(self, name):
        link = self.links.get(name)
        if link is None:
            raise FederationError("No such link: %s" % name)
        self.close_link(link)

    def close_link(self, link):
        for bridge in list(link.bridges):
            self.close_bridge(bridge)
        self.links.pop(link.name, None)
        if link.durable and self.config is not None:
            self.config.remove_federation("link", link.name)
        link.stop()
        self._gone(link)
        self.log.info("Federation link %r closed", link.name)

    # -- bridges ---------------------------------------------------------------------------------
    def create_bridge(self, name, props, recovering=False):
        """``create type=bridge`` / ``link.bridge``: properties link (name), src, dest, key, tag,
        excludes, srcIsQueue, srcIsLocal, dynamic, sync, credit, durable."""
        if name in self.bridges:
            raise FederationError("object already exists: %s" % name)
        link = self.links.get(_text(props.get("link")))
        if link is None:
            raise FederationError("Link '%s' not found; bridge not created" % _text(props.get("link")))
        bridge = Bridge(link, name, props)
        if bridge.dynamic and (bridge.src_is_local or bridge.src_is_queue):
            raise FederationError("a dynamic route cannot be a push or queue route")
        if not bridge.src or not bridge.dest:
            raise FederationError("a bridge needs src and dest")
        if bridge.durable and not recovering:
            if not link.durable:
                raise FederationError("Can't create a durable route on a non-durable link")
            config = self.config
            if config is None:
                raise FederationError("durable route %s needs a store (--data-dir)" % name)
            config.add_federation("bridge", name, bridge.properties())
        self.bridges[name] = bridge
        link.bridges.append(bridge)
        self._created(bridge)
        self.log.info("Federation bridge %r on link %r: %s", name, link.name, bridge.describe())
        if bridge.src_is_local and not bridge.src_is_queue:
            try:                    # a push exchange route keeps what it will send from now on
                bridge.local_queue()
            except errors.NotFound as e:
                self.log.warning("Federation bridge %r: %s (made when the link comes up)", name, e)
        if link.connection is not None:
            bridge.start(link.connection)
        return bridge

    def bridge_on(self, link, args):
        """QMF ``link.bridge``: a bridge named after the link and a fresh id."""
        props = dict(args)
        props["link"] = link.name
        return self.create_bridge("%s.bridge.%s" % (link.name, uuid.uuid4().hex[:12]), props)

    def delete_bridge(self, name):
        bridge = self.bridges.get(name)
        if bridge is None:
            raise FederationError("No such bridge: %s" % name)
        self.close_bridge(bridge)

    def close_bridge(self, bridge):
        self.bridges.pop(bridge.name, None)
        if bridge in bridge.link.bridges:
            bridge.link.bridges.remove(bridge)
        if bridge.durable and self.config is not None:
            self.config.remove_federation("bridge", bridge.name)
        bridge.close()
        self._gone(bridge)
        self.log.info("Federation bridge %r closed", bridge.name)


class FederationLink:
    """One connection to another broker, kept up by a task in the broker's loop."""

    def __init__(self, federation, name, host, port, transport, durable, mechanism, username, password):
        self.federation = federation
        self.broker = federation.broker
        self.name = name
        self.host = host
        self.port = port
        self.transport = transport
        self.durable = durable
        self.mechanism = mechanism
        self.username = username
        self.password = password
        self.state = WAITING
        self.last_error = ""
        self.bridges: list[Bridge] = []
        self.connection = None
        self.remote_tag = ""
        self._task = None
        self._closing = False
        self._error_logged = None

    def properties(self):
        return {"host": self.host, "port": self.port, "transport": self.transport, "durable": self.durable,
                "authMechanism": self.mechanism, "username": self.username, "password": self.password}

    @property
    def url(self):
        return "%s:%d" % (self.host, self.port)

    def start(self):
        if self._task is None and not self._closing:
            self._task = self.broker.loop.create_task(self._run())

    def stop(self):
        self._closing = True
        self.state = CLOSED
        for bridge in self.bridges:
            bridge.stop()
        if self._task is not None:
            self._task.cancel()

    async def stopped(self):
        if self._task is not None:
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self):
        from cypid.client import connect
        log = self.broker.log
        try:
            while not self._closing:
                self.state = CONNECTING
                try:
                    conn = await connect(
                        self.url, timeout=max(5.0, self.federation.interval()), ssl=self.transport in ("ssl", "amqps"),
                        username=self.username or None, password=self.password or None,
                        mechanism=self.mechanism or None, container_id=self.federation.tag,
                        idle_timeout=self.federation.heartbeat() * 2 or None,
                        properties={symbol("qpid.federation_tag"): self.federation.tag},
                        track=self.broker.outgoing)
                except Exception as e:    # refused, unreachable, authentication failed
                    self._failed("%s" % (e or e.__class__.__name__))
                    await asyncio.sleep(self.federation.interval())
                    continue
                self.connection = conn
                self.remote_tag = conn.remote_container_id or ""
                self.state = OPERATIONAL
                self.last_error = ""
                self._error_logged = None
                log.log(25, "Federation link %r to %s is up", self.name, self.url)
                self._event("brokerLinkUp")
                for bridge in self.bridges:
                    bridge.start(conn)
                await asyncio.shield(conn.closed)
                self.connection = None
                for bridge in self.bridges:
                    bridge.stop()
                if not self._closing:
                    self._failed("connection closed: %s" % (conn.error or "by the peer"))
                    self._event("brokerLinkDown")
                    await asyncio.sleep(self.federation.interval())
        except asyncio.CancelledError:
            pass
        finally:
            conn, self.connection = self.connection, None
            for bridge in self.bridges:
                bridge.stop()
            if conn is not None:
                conn.abort()
            self.state = CLOSED if self._closing else WAITING

    def _event(self, name):
        agent = self.broker.management
        if agent is not None:
            agent.raise_event(name, rhost=self.url)

    def _failed(self, text):
        self.state = WAITING
        self.last_error = text
        if self._error_logged != text:     # once per episode, not per retry
            self._error_logged = text
            self.broker.log.warning("Federation link %r to %s: %s (retrying every %gs)", self.name, self.url,
                                    text, self.federation.interval())


class Bridge:
    """One route on a link; runs while the link is operational."""

    def __init__(self, link, name, props):
        self.link = link
        self.broker = link.broker
        self.name = name
        self.src = _text(props.get("src"))
        self.dest = _text(props.get("dest"))
        self.key = _text(props.get("key"))
        self.tag = _text(props.get("tag"))
        self.excludes = _text(props.get("excludes"))
        self.src_is_queue = _flag(props.get("srcIsQueue"))
        self.src_is_local = _flag(props.get("srcIsLocal"))
        self.dynamic = _flag(props.get("dynamic"))
        self.sync = _int(props.get("sync"))
        credit = _int(props.get("credit"), 0xFFFFFFFF)
        self.credit = credit
        self.window = DEFAULT_WINDOW if credit <= 0 or credit >= 0xFFFFFFFF else credit
        self.durable = _flag(props.get("durable"))
        self.channel_id = 0
        self.forwarded = 0         # messages moved
        self.dropped = 0           # messages refused by the trace check (loops)
        self._task = None
        self._worker = None
        self.private_queue = None  # push exchange route: our queue bound to ``src``, for the bridge's life

    def properties(self):
        return {"link": self.link.name, "src": self.src, "dest": self.dest, "key": self.key, "tag": self.tag,
                "excludes": self.excludes, "srcIsQueue": self.src_is_queue, "srcIsLocal": self.src_is_local,
                "dynamic": self.dynamic, "sync": self.sync, "credit": self.credit, "durable": self.durable}

    def describe(self):
        kind = "dynamic" if self.dynamic else "queue" if self.src_is_queue else "exchange"
        where = "push" if self.src_is_local else "pull"
        return "%s %s route %s -> %s%s" % (where, kind, self.src, self.dest, (" key %r" % self.key) if self.key
                                           and not self.src_is_queue else "")

    def start(self, conn):
        if self._task is not None:
            return
        worker = PushWorker(self, conn) if self.src_is_local else PullWorker(self, conn)
        self._worker = worker
        self._task = self.broker.loop.create_task(worker.run())

    def stop(self):
        task, self._task = self._task, None
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
        if task is not None:
            task.cancel()

    def close(self):
        """The route is deleted: stop, and drop the private queue of a push exchange route."""
        self.stop()
        queue, self.private_queue = self.private_queue, None
        if queue is not None and not queue.deleted:
            self.broker.nodes.delete_queue(queue)

    def local_queue(self):
        """The queue a push route takes messages from: ``src`` itself (a queue route) or a queue of its
        own bound to exchange ``src`` with the key, made once and kept while the link is down. A durable
        route's queue is durable and named after the route, so what was in it when the broker stopped (or
        was killed) is found again by the recovered route."""
        nodes = self.broker.nodes
        if self.src_is_queue:
            queue = nodes.queues.get(self.src)
            if queue is None:
                raise errors.NotFound("no queue %r to route from" % self.src)
            return queue
        if self.private_queue is None or self.private_queue.deleted:
            ex = nodes.exchanges.get(self.src)
            if ex is None:
                raise errors.NotFound("no exchange %r to route from" % self.src)
            durable = self.durable and nodes.store is not None
            self.private_queue, _ = nodes.declare_queue("qpid.bridge_queue_%s" % self.name,
                                                        {"durable": durable})
            nodes.bind(ex, self.private_queue, self.key)
        return self.private_queue


# -- pull: the remote broker is the source ------------------------------------------------------------
class PullWorker:
    """Receivers on the remote broker; each message routed into our exchange ``dest``, accepted on the
    remote broker once our exchange has it (durable: once synced)."""

    def __init__(self, bridge, conn):
        self.bridge = bridge
        self.broker = bridge.broker
        self.conn = conn
        self.session = None
        self.receivers = {}        # dynamic: binding identity -> (Receiver, origins it stands for, matcher)
        self._overlaps = None      # dynamic: {Receiver: matchers of the subscriptions before it}
        self.closed = False
        self._error_logged = None
        self._changed = asyncio.Event()      # a binding that may matter came or went (dynamic)
        # The trace, worked out once per link-up (not per message), as qpidd's bridge queue: a message
        # whose trace holds one of ``refused`` (the route's excludes, default our tag) is dropped; the
        # route's tag (default the remote broker's) goes into the trace of the rest.
        fed = bridge.link.federation
        self.refused = tuple(t for t in bridge.excludes.split(",") if t) or (fed.tag,)
        self.added = tuple(t for t in (bridge.tag or bridge.link.remote_tag,) if t)

    def changed(self):
        self._changed.set()

    async def run(self):
        bridge = self.bridge
        try:
            self.session = await self.conn.session()
            if bridge.dynamic:
                watch = bridge.link.federation._watch
                watch.add(self)
                try:
                    while not self.closed:
                        self._changed.clear()
                        await self._follow_bindings()
                        await self._changed.wait()
                finally:
                    watch.remove(self)
            else:
                if bridge.src_is_queue:
                    rcv = await self.session.receiver(bridge.src, credit=bridge.window, auto_accept=False,
                                                      node="queue")
                else:
                    rcv = await self.session.receiver(bridge.src, credit=bridge.window, auto_accept=False,
                                                      subject=bridge.key or None, node="topic")
                await self._pump(rcv)
        except asyncio.CancelledError:
            pass
        except Exception as e:      # the remote refused the attach, or the link dropped
            self._failed(e)

    def _failed(self, e):
        text = str(e) or e.__class__.__name__
        if self._error_logged != text:
            self._error_logged = text
            self.broker.log.warning("Federation bridge %r: %s", self.bridge.name, text)

    async def _follow_bindings(self):
        """One subscription on the remote exchange per binding of ours it should know of (see
        ``wanted_bindings``), each saying which origins it stands for; a subscription whose origins
        changed is replaced, the new one made before the old one goes (a message may come twice
        meanwhile, none is missed)."""
        ex = self.broker.nodes.exchanges.get(self.bridge.dest)
        fed = self.bridge.link.federation
        wanted = wanted_bindings(ex, fed.tag, self.bridge.link.remote_tag) if ex is not None else {}
        for ident in [i for i in self.receivers if i not in wanted]:
            self._overlaps = None
            await self._unsubscribe(self.receivers.pop(ident)[0])
        for ident, (key, headers, origins) in wanted.items():
            old = self.receivers.get(ident)
            if old is not None and old[1] == origins:
                continue
            if self.closed:
                return
            rcv = await self._subscribe(ex.type, key, headers, origins)
            self.receivers[ident] = (rcv, origins, _matcher(ex.type, key, headers))
            self._overlaps = None
            self.broker.loop.create_task(self._pump(rcv))
            if old is not None:
                await self._unsubscribe(old[0])

    def _subscribe(self, kind, key, headers, origins):
        source = {"credit": self.bridge.window, "auto_accept": False, "node": "topic",
                  "properties": {FED_ORIGINS: {symbol(o): t for o, t in origins}}}
        if kind == "headers":
            source["filter"] = {symbol("headers"): Described(ulong(HEADERS_BINDING), headers)}
        elif kind != "fanout":
            source["subject"] = key
        return self.session.receiver(self.bridge.src, **source)

    @staticmethod
    async def _unsubscribe(rcv):
        try:
            await rcv.close()
        except Exception:
            pass

    async def _pump(self, rcv):
        imp = self._import
        try:
            while not self.closed:
                item = rcv.get_raw_nowait()
                if item is None:
                    await rcv._wait_message(None)
                    continue
                imp(rcv, item[0], item[1])
        except asyncio.CancelledError:
            pass
        except Exception as e:
            if not self.closed and (not self.bridge.dynamic or self._current(rcv)):
                self._failed(e)         # (a replaced dynamic subscription ends quietly)

    def _current(self, rcv):
        return any(r[0] is rcv for r in self.receivers.values())

    def _copy(self, rcv, msg):
        """Whether ``msg`` came on ``rcv`` as well as on an earlier subscription of this bridge: the
        remote exchange put a copy in each subscription whose key (or match map) it matches, and only
        the first one's copy is ours to route."""
        overlaps = self._overlaps
        if overlaps is None:
            overlaps, before = {}, []
            for ident in sorted(self.receivers, key=repr):
                rcv_, _, matcher = self.receivers[ident]
                overlaps[rcv_] = tuple(before)
                before.append(matcher)
            self._overlaps = overlaps
        return any(m(msg) for m in overlaps.get(rcv, ()) if m is not None)

    def _import(self, rcv, data, did):
        bridge = self.bridge
        trace = _trace_of(data)
        if trace and any(t in trace for t in self.refused):
            bridge.dropped += 1
            rcv.accept(did)
            return
        for t in self.added:
            if t not in trace:
                trace.append(t)
        msg = Message(data)
        if len(self.receivers) > 1 and self._copy(rcv, msg):
            rcv.accept(did)
            return
        msg.annotate({TRACE: ",".join(trace)})
        nodes = self.broker.nodes
        ex = nodes.exchanges.get(bridge.dest)
        if ex is None:
            self._failed(errors.NotFound("no exchange %r for the route's messages" % bridge.dest))
            rcv.release(did)
            return
        outcome = nodes.route(ex, msg)
        bridge.forwarded += 1
        if outcome is None:
            rcv.accept(did)
        elif outcome.__class__ is Pending:
            settler = _Settler(rcv, did)
            outcome.attach(settler)
            if not settler.held:            # nothing left to wait for
                settler.release(settler.outcome)
        else:
            rcv._settle(did, outcome)

    def close(self):
        self.closed = True
        self._changed.set()


class _BindingWatch:
    """A broker observer (broker/observers.py), registered while dynamic bridges run: a binding made or
    removed on a dynamic route's exchange (or a queue, exchange or federation consumer that comes or
    goes) wakes those bridges, which then follow the exchange's bindings. Each call only sets a flag:
    a burst of bindings costs one pass over the exchange's bindings per bridge."""

    def __init__(self, broker):
        self.broker = broker
        self.workers = set()

    def add(self, worker):
        if not self.workers:
            self.broker.events.add(self)
        self.workers.add(worker)

    def remove(self, worker):
        self.workers.discard(worker)
        if not self.workers:
            self.broker.events.remove(self)

    def _wake(self, exchange=None):
        for worker in self.workers:
            if exchange is None or worker.bridge.dest == exchange.name:
                worker.changed()

    def bound(self, exchange, queue, key, arguments=None, context=None):
        self._wake(exchange)

    def unbound(self, exchange, queue, key, context=None):
        self._wake(exchange)

    def exchange_declared(self, exchange, context=None):
        self._wake(exchange)

    def exchange_deleted(self, exchange, context=None):
        self._wake(exchange)

    def queue_deleted(self, queue, context=None):
        self._wake()                    # its bindings went with it, unannounced

    def subscribed(self, link):
        if _federation_session(getattr(link, "session", None)):
            self._wake()                # a bound queue may have become another broker's subscription

    unsubscribed = subscribed


class _Settler:
    """Stands for the remote delivery ``did`` where a Pending holds a producer's delivery (the
    engine Delivery's ``hold()`` / ``release(outcome)`` / ``outcome``): once the last hold (journal
    sync, flow stop, HA backups) is released, the remote broker is told the outcome."""

    __slots__ = ("receiver", "did", "outcome", "held")

    def __init__(self, receiver, did):
        self.receiver = receiver
        self.did = did
        self.outcome = None
        self.held = False

    def hold(self):
        self.held = True
        return self

    def release(self, outcome=None):
        if outcome is None:
            self.receiver.accept(self.did)
        else:
            self.receiver._settle(self.did, outcome)


def _trace_of(data):
    """The broker tags in a message's ``x-qpid.trace`` annotation (a new list). Only the
    message-annotations section is searched for the key before anything is decoded (the body may be
    large, and a body of repeated bytes is a slow search)."""
    info = scan_message(data)
    start = info.annotations_offset
    if start < 0 or _TRACE_BYTES not in data[start:info.properties_offset]:
        return []
    value = info.message_annotations().get(TRACE)
    return [t for t in _text(value).split(",") if t]


def _federation_queue(queue):
    """Whether ``queue`` is a subscription fed to another broker's bridge: owned by, or consumed over,
    a connection that opened with a federation tag (the owner is known when the subscription binds,
    before its consumer attaches)."""
    if _federation_session(getattr(queue, "exclusive_owner", None)):
        return True
    return any(_federation_session(getattr(link, "session", None)) for link in getattr(queue, "consumers", ()))


def _federation_session(session):
    conn = getattr(session, "connection", None)
    props = getattr(conn, "remote_properties", None) or getattr(conn, "properties", None) or {}
    try:
        return any(_text(k) == "qpid.federation_tag" for k in props)
    except TypeError:
        return False


def wanted_bindings(ex, own, peer):
    """What a dynamic bridge of ours to the broker tagged ``peer`` subscribes on the remote exchange of
    ``ex``'s name, as qpidd propagates bindings: {identity: (key, headers map or None, origins)} with
    ``origins`` a sorted tuple of (origin tag, tags). Each binding of ``ex`` counts: one of ours has
    origin and tags ``own``; one a federation subscription made (another broker's bridge) counts for
    each origin it stands for whose tags do not hold ``peer``, with ``own`` added to them (a binding
    never goes back to a broker it passed). Fanout: one subscription for all; headers: one per match
    map; direct and topic: one per key. A federation subscription that says nothing of its origins (a
    static route's) counts for none."""
    kind = ex.type
    found = {}
    for queue, key, args in ex.bindings:
        if _federation_queue(queue):
            entries = [(o, t + "," + own) for o, t in _fed_origins(queue).items()
                       if not peer or peer not in t.split(",")]
            if not entries:
                continue
        else:
            entries = [(own, own)]
        if kind == "fanout":
            key, headers = "", None
        elif kind == "headers":
            key, headers = "", {_text(k): v for k, v in (args or {}).items()}
        else:
            headers = None
        ident = (key, _identity(headers))
        slot = found.setdefault(ident, (key, headers, {}))[2]
        for origin, tags in entries:            # the shortest path an origin came by
            old = slot.get(origin)
            if old is None or (tags.count(","), tags) < (old.count(","), old):
                slot[origin] = tags
    return {i: (k, h, tuple(sorted(o.items()))) for i, (k, h, o) in found.items()}


def _matcher(kind, key, headers):
    """Whether a message matches a subscription's key (or match map) as the remote exchange matches it;
    None for fanout (one subscription)."""
    if kind == "headers":
        binding = compile_headers(None, headers or {})
        return lambda msg: binding.matches(msg.application_properties() or {})
    if kind == "topic":
        return lambda msg: topic_match(key, msg.subject or "")
    if kind == "direct":
        return lambda msg: (msg.subject or "") == key
    return None


def _identity(headers):
    if headers is None:
        return None
    return tuple(sorted((k, repr(v)) for k, v in headers.items()))


def _fed_origins(queue):
    """{origin: tags} a federation subscription stands for (its link's source properties); {} if it
    says nothing (a static route's, or its consumer not attached yet)."""
    for link in getattr(queue, "consumers", ()):
        source = getattr(link, "source", None)
        value = (getattr(source, "properties", None) or {}).get(FED_ORIGINS)
        if isinstance(value, dict):
            return {_text(k): _text(v) for k, v in value.items()}
    return {}


# -- push: we are the source ----------------------------------------------------------------------------
class PushWorker:
    """A consumer on our queue ``src`` (or on a private queue bound to our exchange ``src`` with the key)
    sending to the remote exchange ``dest``. A message leaves our queue once the remote broker settled
    it; what is in flight when the link drops goes back to the queue."""

    browsing = False
    browse_position = 0

    def __init__(self, bridge, conn):
        self.bridge = bridge
        self.broker = bridge.broker
        self.conn = conn
        self.sender = None
        self.queue = None
        self.in_flight = []         # (queue, msg) sent, not yet settled by the remote broker
        self.closed = False
        self._wake = None

    # the queue's consumer interface (pyx/queue.pxd)
    def can_take(self):
        return (not self.closed and self.sender is not None
                and len(self.in_flight) < self.bridge.window)

    def deliver(self, msg, queue):
        self.in_flight.append((queue, msg))
        if msg.body is not None:
            data = msg.encoded()
        else:       # flowed to disk, or recovered after a restart: read back from the queue's journal
            data = self.broker.nodes.store.encoded(queue, msg)
        self.sender.send_nowait(data)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self):
        bridge = self.bridge
        try:
            self.queue = bridge.local_queue()
            self.sender = await self.conn.sender(bridge.dest, node="topic")
            self.queue.add_consumer(self)
            self.queue.dispatch()
            while not self.closed:
                if not self.in_flight:
                    self._wake = self.broker.loop.create_future()
                    await self._wake
                    continue
                count = len(self.in_flight)
                await self.sender.wait_settled(check=False)
                done, self.in_flight = self.in_flight[:count], self.in_flight[count:]
                if not self.sender.outstanding:     # everything sent so far is settled
                    done += self.in_flight
                    self.in_flight = []
                self._settled(done)
                self.queue.dispatch()
        except asyncio.CancelledError:
            pass
        except Exception as e:
            self.broker.log.warning("Federation bridge %r: %s", bridge.name, e)
        finally:
            self._give_back()

    def _settled(self, done):
        failed = {k: v for k, v in self.sender.counts.items() if k in ("failed_rejected", "rejected") and v}
        if failed:
            self.broker.log.warning("Federation bridge %r: the remote broker rejected %d message(s); "
                                    "they are dropped", self.bridge.name, sum(failed.values()))
            for k in failed:
                self.sender.counts.pop(k, None)
        released = self.sender.counts.pop("released", 0) + self.sender.counts.pop("modified", 0)
        for queue, msg in done:
            if released:
                released -= 1
                queue.release(msg)
            else:
                queue.dequeued(msg)
            self.bridge.forwarded += 1

    def _give_back(self):
        """The link dropped or the bridge closed: what the remote broker did not settle goes back."""
        in_flight, self.in_flight = self.in_flight, []
        for queue, msg in in_flight:
            queue.release(msg)
        if self.queue is not None:
            self.queue.remove_consumer(self)
            if not self.queue.deleted:
                self.queue.dispatch()
        self.queue = None

    def close(self):
        self.closed = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        self._give_back()
