"""The broker's state as QMF objects: one reader per class, producing qpidd's property and statistic
values from the engine's objects (queues, exchanges, connections, sessions, links).

Everything here runs only when a console asks (a query, a method, a publish): it reads the engine's
plain attributes and never adds work to the message path. Values are plain Python; ``agent.py``
encodes them by the schema's types.
"""
import ctypes
import os
import time

from ..options import QPIDD_VERSION
from . import schema
from .schema import PACKAGE, object_name

VHOST_NAME = object_name("vhost", schema.BROKER_OBJECT_NAME + ",/")
SYSTEM_CLS = "system"


def queue_ref(name):
    return object_name("queue", name)


def exchange_ref(name):
    return object_name("exchange", name)


class Entry:
    """One live object: its key (the part of the object name after the class), its values, times."""
    __slots__ = ("key", "values", "create_ts", "update_ts", "obj")

    def __init__(self, key, values, create_ts, update_ts, obj=None):
        self.key = key
        self.values = values
        self.create_ts = create_ts
        self.update_ts = update_ts
        self.obj = obj


def _get(obj, name, default=0):
    value = getattr(obj, name, default)
    return default if value is None else value


def queue_depth(queue):
    """qpidd's msgDepth: messages enqueued and not yet dequeued (waiting + acquired, unsettled)."""
    depth = getattr(queue, "msgDepth", None)
    if depth is not None:
        return depth
    return _get(queue, "depth") + _get(queue, "unacked")


def queue_unacked(queue):
    value = getattr(queue, "unackedMessages", None)
    return value if value is not None else _get(queue, "unacked")


def connection_address(conn):
    return "qpid." + str(conn.address)


def session_name(session):
    return "%s/%d" % (session.connection.address, session.channel)


def _links(conn):
    for session in list(conn.local_sessions.values()):
        for link in list(session.local_handles.values()):
            yield session, link


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


def malloc_stats():
    """qpidd's memory object: glibc's mallinfo2() figures (empty where the C library has none)."""
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"malloc_" + name: getattr(info, name) for name in (
        "arena", "ordblks", "hblks", "hblkhd", "uordblks", "fordblks", "keepcost")}


def _loop_to_wall_ns(loop, loop_time):
    return int((time.time() - (loop.time() - loop_time)) * 1e9)


class Snapshot:
    """Reads one query's worth of state; indexes that span classes are computed once, on demand."""

    def __init__(self, agent):
        self.agent = agent
        self.broker = agent.broker
        self.nodes = agent.broker.nodes
        self.now = time.time_ns()

    # -- shared indexes ----------------------------------------------------------------------
    def bindings(self):
        """(exchange, queue, key, arguments) of every binding, the agent's own left out."""
        own = self.agent.sink
        for ex in self.nodes.exchanges:
            for queue, key, args in ex.bindings:
                if queue is not own:
                    yield ex, queue, key, args

    def binding_count(self, queue):
        """(current, high, low) bindings of a live queue: the counters the exchanges keep on it
        (Exchange.bind/unbind), plus its implicit binding to the default exchange: O(1)."""
        n = _get(queue, "bindingCount") + 1
        return n, max(n, _get(queue, "bindingCountHigh") + 1), min(n, _get(queue, "bindingCountLow", n) + 1)

    def producer_count(self, ex):
        """Producer links attached to ``ex`` (the index Nodes keeps as they attach and go): O(1)."""
        return len(self.nodes.producers.get(ex, ()))

    def created(self, obj):
        return self.agent.created_ts(obj, self.now)

    # -- classes ------------------------------------------------------------------------------
    def entries(self, cls_name):
        reader = getattr(self, "cls_" + cls_name, None)
        return reader() if reader is not None else ()

    def target(self, cls_name, key):
        """The engine object that a method on ``<class>:<key>`` acts on, or None; found without
        building any values."""
        if cls_name == "broker":
            return self.broker if key == "amqp-broker" else None
        if cls_name == "queue":
            return self.nodes.queues.get(key)
        if cls_name == "exchange":
            return self.nodes.exchanges.get(key)
        entry = self.find(cls_name, key)
        return None if entry is None else (entry.obj if entry.obj is not None else entry)

    def find(self, cls_name, key):
        finder = getattr(self, "find_" + cls_name, None)
        if finder is not None:
            return finder(key)
        for entry in self.entries(cls_name):
            if entry.key == key:
                return entry
        return None

    def cls_broker(self):
        agent, broker, opts = self.agent, self.broker, self.broker.options
        stats = agent.broker_totals()
        values = {
            "name": "amqp-broker",
            "systemRef": object_name(SYSTEM_CLS, str(agent.system_id)),
            "port": broker.port or 0,
            "workerThreads": getattr(opts, "worker_threads", None) or 1,
            "maxConns": getattr(opts, "max_connections", 0),
            "connBacklog": getattr(opts, "connection_backlog", 0),
            "stagingThreshold": 0,
            "mgmtPublish": bool(getattr(opts, "mgmt_publish", False)),
            "mgmtPubInterval": int(agent.interval),
            "version": "cypid %s (compatible with qpidd %s)" % (broker.version, QPIDD_VERSION),
            "uptime": self.now - agent.start_ns,
            "queueCount": len(self.nodes.queues),
        }
        data_dir = getattr(opts, "data_path", None)
        if data_dir:
            values["dataDir"] = os.path.abspath(data_dir)
        values.update(stats)
        return [Entry("amqp-broker", values, agent.start_ns, self.now, broker)]

    def cls_link(self):
        """Federation links (broker/federation.py), keyed by name as qpidd's."""
        out = []
        for link in list(self.broker.federation.links.values()):
            values = {"vhostRef": VHOST_NAME, "name": link.name, "host": link.host, "port": link.port,
                      "transport": link.transport, "durable": link.durable, "connectionRef": None,
                      "state": link.state, "lastError": link.last_error}
            out.append(Entry(link.name, values, self.created(link), self.now, link))
        return out

    def cls_bridge(self):
        out = []
        for bridge in list(self.broker.federation.bridges.values()):
            values = {"linkRef": object_name("link", bridge.link.name), "name": bridge.name,
                      "channelId": bridge.channel_id, "durable": bridge.durable, "src": bridge.src,
                      "dest": bridge.dest, "key": bridge.key, "srcIsQueue": bridge.src_is_queue,
                      "srcIsLocal": bridge.src_is_local, "tag": bridge.tag, "excludes": bridge.excludes,
                      "dynamic": bridge.dynamic, "sync": bridge.sync, "credit": bridge.credit}
            out.append(Entry(bridge.name, values, self.created(bridge), self.now, bridge))
        return out

    def cls_acl(self):
        """The ACL module's object: there only with --acl-file (qpid-config reload-acl, qpid-stat --acl)."""
        acl = self.broker.acl
        if not acl.enabled:
            return []
        opts = self.broker.options
        values = {"brokerRef": schema.BROKER_OBJECT_NAME, "policyFile": os.path.abspath(acl.path),
                  "enforcingAcl": True, "transferAcl": acl.transfer, "lastAclLoad": acl.last_load_ns,
                  "maxConnections": getattr(opts, "max_connections", 0),
                  "maxConnectionsPerIp": getattr(opts, "connection_limit_per_ip", 0),
                  "maxConnectionsPerUser": getattr(opts, "connection_limit_per_user", 0),
                  "maxQueuesPerUser": acl.max_queues, "aclDenyCount": acl.deny_count,
                  "connectionDenyCount": self.broker.limits.deny_count,
                  "queueQuotaDenyCount": acl.queues.deny_count}
        return [Entry(schema.BROKER_OBJECT_NAME, values, self.agent.start_ns, self.now, acl)]

    def cls_habroker(self):
        """The HA module's object: there with --ha-cluster or --ha-queue-replication (qpid-ha)."""
        ha = self.broker.ha
        if ha is None:
            return []
        return [Entry("ha-broker", ha.qmf_values(), self.agent.start_ns, self.now, ha)]

    def cls_system(self):
        u = os.uname()
        values = {"systemId": self.agent.system_id, "osName": u.sysname, "nodeName": u.nodename,
                  "release": u.release, "version": u.version, "machine": u.machine}
        return [Entry(str(self.agent.system_id), values, self.agent.start_ns, self.now)]

    def cls_memory(self):
        values = {"name": "amqp-broker"}
        values.update(malloc_stats())
        return [Entry("amqp-broker", values, self.agent.start_ns, self.now)]

    def cls_vhost(self):
        values = {"brokerRef": schema.BROKER_OBJECT_NAME, "name": "/",
                  "federationTag": str(self.agent.system_id)}
        return [Entry(schema.BROKER_OBJECT_NAME + ",/", values, self.agent.start_ns, self.now)]

    # queues
    def queue_entry(self, q):
        settings = getattr(q, "settings", None)
        exclusive = bool(getattr(settings, "exclusive", False)) or q.exclusive_owner is not None
        args = settings.as_arguments() if settings is not None and hasattr(settings, "as_arguments") else {}
        values = {
            "vhostRef": VHOST_NAME,
            "name": q.name,
            "durable": bool(q.durable),
            "autoDelete": bool(q.auto_delete),
            "exclusive": exclusive,
            "arguments": args,
        }
        if q.alternate_exchange:
            values["altExchange"] = exchange_ref(q.alternate_exchange)
        for name in schema._FLOW_STATS:
            values[name] = _get(q, name)
        values["msgDepth"] = queue_depth(q)
        consumers = len(q.consumers)
        values["consumerCount"] = consumers
        values["consumerCountHigh"] = max(consumers, _get(q, "consumerCountHigh"))
        values["consumerCountLow"] = min(consumers, _get(q, "consumerCountLow", consumers))
        values["bindingCount"], values["bindingCountHigh"], values["bindingCountLow"] = self.binding_count(q)
        unacked = queue_unacked(q)
        values["unackedMessages"] = unacked
        values["unackedMessagesHigh"] = max(unacked, _get(q, "unackedMessagesHigh"))
        values["unackedMessagesLow"] = min(unacked, _get(q, "unackedMessagesLow", unacked))
        samples = _get(q, "messageLatencySamples")
        values["messageLatencyCount"] = samples
        values["messageLatencyMin"] = _get(q, "messageLatencyMin")
        values["messageLatencyMax"] = _get(q, "messageLatencyMax")
        values["messageLatencyAvg"] = _get(q, "messageLatencyTotal") // samples if samples else 0
        values["flowStopped"] = bool(_get(q, "flowStopped", False))
        values["flowStoppedCount"] = _get(q, "flowStoppedCount")
        values["redirectPeer"] = ""
        values["redirectSource"] = False
        values["creator"] = self.agent.creators.get(q.name, "")
        return Entry(q.name, values, self.created(q), self.now, q)

    def cls_queue(self):
        """Every queue's entry, made as it is read (a console's query sends them 100 at a time)."""
        return (self.queue_entry(q) for q in list(self.nodes.queues.values()))

    def find_queue(self, key):
        q = self.nodes.queues.get(key)
        return self.queue_entry(q) if q is not None else None

    # exchanges
    def exchange_entry(self, ex):
        if ex is self.nodes.exchanges.default:
            bindings = len(self.nodes.queues)       # every queue, implicitly
        else:
            bindings = ex.bindingCount - self.agent.own_binding_count(ex)
        producers = self.producer_count(ex)
        values = {
            "vhostRef": VHOST_NAME,
            "name": ex.name,
            "type": ex.type,
            "durable": bool(ex.durable),
            "autoDelete": bool(ex.auto_delete),
        }
        if ex.alternate:
            values["altExchange"] = exchange_ref(ex.alternate)
        values["arguments"] = dict(ex.arguments)
        values["producerCount"] = values["producerCountHigh"] = values["producerCountLow"] = producers
        values["bindingCount"] = values["bindingCountHigh"] = values["bindingCountLow"] = bindings
        for name in ("msgReceives", "msgDrops", "msgRoutes", "byteReceives", "byteDrops", "byteRoutes"):
            values[name] = _get(ex, name)
        return Entry(ex.name, values, self.created(ex), self.now, ex)

    def cls_exchange(self):
        return [self.exchange_entry(ex) for ex in self.nodes.exchanges]

    def find_exchange(self, key):
        ex = self.nodes.exchanges.get(key)
        return self.exchange_entry(ex) if ex is not None else None

    # bindings
    def cls_binding(self):
        out = []
        for ex, q, key, args in self.bindings():
            eref, qref = exchange_ref(ex.name), queue_ref(q.name)
            values = {"exchangeRef": eref, "queueRef": qref, "bindingKey": key or "",
                      "arguments": dict(args or {}), "msgMatched": 0}
            out.append(Entry("%s,%s,%s" % (eref, qref, key or ""), values,
                             self.agent.created_ts((id(ex), id(q), key), self.now), self.now))
        return out

    # connections, sessions, links
    def cls_connection(self):
        out = []
        loop = self.broker.loop
        for conn in list(self.broker.connections):
            if not self.agent.is_open(conn):
                continue
            props = {str(k): v for k, v in (getattr(conn, "remote_properties", None) or {}).items()}
            msgs_in = msgs_out = 0
            for _, link in _links(conn):
                if link.is_sender:
                    msgs_out += _get(link, "delivery_count")
                else:
                    msgs_in += _get(link, "received")
            values = {
                "vhostRef": VHOST_NAME,
                "address": connection_address(conn),
                "incoming": True,
                "SystemConnection": False,
                "userProxyAuth": False,
                "federationLink": False,
                "authIdentity": conn.user or "",
                "shadow": False,
                "saslMechanism": getattr(conn, "sasl_mechanism", None) or "",
                "saslSsf": 0,
                "remoteProperties": props,
                "protocol": "AMQP 1.0",
                "closing": False,
                "framesFromClient": _get(conn, "stats_frames_in"),
                "framesToClient": _get(conn, "stats_frames_out"),
                "bytesFromClient": _get(conn, "stats_bytes_in"),
                "bytesToClient": _get(conn, "stats_bytes_out"),
                "msgsFromClient": msgs_in,
                "msgsToClient": msgs_out,
            }
            for prop, key in (("remoteProcessName", "qpid.client_process"), ("remotePid", "qpid.client_pid"),
                              ("remoteParentPid", "qpid.client_ppid")):
                if props.get(key) is not None:
                    values[prop] = props[key]
            last = max(getattr(conn, "last_read", 0) or 0, getattr(conn, "last_write", 0) or 0)
            update = _loop_to_wall_ns(loop, last) if last else self.now
            out.append(Entry(values["address"], values, self.created(conn), min(update, self.now), conn))
        return out

    def _sessions(self):
        for conn in list(self.broker.connections):
            if not self.agent.is_open(conn):
                continue
            for session in list(conn.local_sessions.values()):
                if not session.ended:
                    yield conn, session

    def cls_session(self):
        out = []
        for conn, session in self._sessions():
            name = session_name(session)
            txn = self.broker.transactions.session_stats(session)    # TxnCount: open transactions
            values = {
                "vhostRef": VHOST_NAME,
                "name": name,
                "channelId": session.channel,
                "connectionRef": object_name("connection", connection_address(conn)),
                "detachedLifespan": 0,
                "attached": True,
                "unackedMessages": session.outstanding,
                "TxnStarts": txn.starts, "TxnCommits": txn.commits, "TxnRejects": txn.rejects,
                "TxnCount": txn.open,
                "clientCredit": 0, "framesOutstanding": 0,
            }
            out.append(Entry(name, values, self.created(session), self.now, session))
        return out

    def _link_entries(self, want_sender):
        for conn, session in self._sessions():
            for link in list(session.local_handles.values()):
                if link.is_sender == want_sender and not link.detached:
                    yield conn, session, link

    def cls_subscription(self):
        """cypid extension: qpidd lists no subscription objects for AMQP 1.0 consumers (only
        ``outgoing``); cypid lists each consumer link on a queue, so that qpid-stat -u shows them."""
        out = []
        for conn, session, link in self._link_entries(True):
            queue = getattr(link, "queue", None)
            if queue is None:
                continue
            sref = object_name("session", session_name(session))
            qref = queue_ref(queue.name)
            values = {
                "sessionRef": sref, "queueRef": qref, "name": str(link.name),
                "browsing": bool(link.browsing), "acknowledged": not (link.presettled or link.browsing),
                "exclusive": queue.exclusive_owner is session, "creditMode": "CREDIT", "arguments": {},
                "delivered": _get(link, "delivery_count"),
            }
            out.append(Entry("%s,%s,%s" % (sref, qref, link.name), values, self.created(link), self.now,
                             link))
        return out

    def _terminus_address(self, terminus):
        return (getattr(terminus, "address", None) or "") if terminus is not None else ""

    def _link_class(self, sender):
        out = []
        for conn, session, link in self._link_entries(sender):
            container = conn.container_id or ""
            values = {
                "sessionRef": object_name("session", session_name(session)),
                "containerid": container,
                "name": str(link.name),
                "source": self._terminus_address(link.source) or (
                    link.queue.name if sender and getattr(link, "queue", None) is not None else ""),
                "target": self._terminus_address(link.target) or (
                    getattr(link.node, "name", "") if not sender and getattr(link, "node", None) is not None
                    else ""),
                "domain": "",
                "transfers": _get(link, "delivery_count") if sender else _get(link, "received"),
            }
            out.append(Entry("%s,%s" % (container, link.name), values, self.created(link), self.now, link))
        return out

    def cls_outgoing(self):
        return self._link_class(True)

    def cls_incoming(self):
        return self._link_class(False)


__all__ = ["Snapshot", "Entry", "PACKAGE", "queue_depth", "connection_address", "session_name"]
