"""The broker's QMF v2 agent, as qpidd's (../shared/reference/qmf2.md): requests arrive on
``qmf.default.direct`` (key ``broker`` or the agent's name) and ``qmf.default.topic``
(``console.request.agent_locate``); answers go to each request's reply-to; heartbeats and events go
to ``qmf.default.topic``.

Transport: the agent has a private queue (an ordinary engine queue, not in the broker's registry,
so no console lists it) bound to those exchanges, and is its only consumer: the queue hands each
request to ``AgentConsumer.deliver`` and the agent handles it on the next loop turn. Replies are
ordinary messages (built with cypid.pyx.codec) put on the reply queue, or routed through the reply
exchange with the reply key. Nothing here runs per message on the broker's data path.
"""
import asyncio
import os
import time
import uuid

from cypid.pyx.codec import DecodeError, Described, decode_at, encode, encode_header, scan_message, symbol, uint, \
    ulong, ushort
from cypid.pyx.totals import Totals

from .. import links as _links
from .. import nodes as _nodes
from ..acl import describe
from ..errors import AmqpError, UnauthorizedAccess
from ..exchanges import topic_match
from ..settings import QueueSettings
from . import schema
from .events import AgentEvents
from .methods import STATUS_EXCEPTION, STATUS_FORBIDDEN, STATUS_PARAMETER_INVALID, \
    STATUS_UNKNOWN_METHOD, STATUS_NOT_IMPLEMENTED, STATUS_UNKNOWN_OBJECT, MethodError, Methods, exception_text
from .objects import Snapshot

DIRECT, TOPIC = "qmf.default.direct", "qmf.default.topic"
VENDOR, PRODUCT = "apache.org", "qpidd"
MAX_REQUEST = 65536        # larger requests are ignored, as qpidd does
CHUNK = 100                # objects per query-response message
IDENTITY_FILE = ".mbrokerdata"

PROPERTIES, APP_PROPERTIES, AMQP_VALUE = ulong(0x73), ulong(0x74), ulong(0x77)


class AgentConsumer:
    """The agent's consumer on its private request queue (the interface queues expect of a link):
    takes every message at once, settled, and hands it to the agent on the next loop turn."""

    browsing = False
    browse_position = 0

    def __init__(self, agent):
        self.agent = agent

    def can_take(self):
        return True

    def deliver(self, msg, queue):
        queue.dequeued(msg)
        # The connection that published the request (None if the broker itself routed it): its
        # authenticated user is the one QMF answers for and the ACL checks.
        self.agent.loop.call_soon(self.agent.on_request, msg, self.agent.broker.publisher)

    def __repr__(self):
        return "<QMF agent consumer>"


class CheckedRoute:
    """Stands in for the ``route`` method of the two QMF exchanges (an instance attribute, so no
    other exchange pays for it): a message that reaches the agent's request queue must decode, or
    DecodeError refuses it while the publisher's transfer is being routed, and the sender gets
    ``rejected`` with amqp:decode-error (the agent logs one line per run of such requests)."""

    def __init__(self, agent, exchange):
        self.agent = agent
        self.route = exchange.route     # the class's bound method

    def __call__(self, key, message=None, size=None):
        queues = self.route(key, message, size)
        if message is not None and self.agent.sink in queues:
            self.agent.check_request(message)
        return queues


class RequestContext:
    """Who asked for a QMF method (for the events it causes): the publishing connection's address
    (qpidd's ``qpid.<address>`` form) and user."""
    is_request = True

    def __init__(self, user, address=""):
        self.address = address or ""
        self.user = user or ""


def load_identity(data_dir):
    """(uuid, boot sequence): kept in ``<data-dir>/.mbrokerdata`` across restarts (the boot sequence
    counts them; qpidd's agent epoch), a fresh uuid and 1 without a data dir."""
    if not data_dir:
        return uuid.uuid4(), 1
    path = os.path.join(data_dir, IDENTITY_FILE)
    ident, boot = None, 0
    try:
        with open(path) as f:
            words = f.read().split()
        ident, boot = uuid.UUID(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):
        ident, boot = None, 0
    ident = ident or uuid.uuid4()
    boot = boot % 0xFFFF + 1
    try:
        os.makedirs(data_dir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%s %d\n" % (ident, boot))
        os.replace(tmp, path)
    except OSError:
        pass
    return ident, boot


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _correlation(value):
    """Replies carry the request's correlation-id as a string (qmf2.md section 1)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, int):
        return str(int(value))
    return str(value)


class ManagementAgent:
    def __init__(self, broker):
        self.broker = broker
        self.loop = broker.loop
        self.log = broker.log.getChild("Management")
        opts = broker.options
        self.interval = max(1.0, float(getattr(opts, "mgmt_pub_interval", 10.0) or 10.0))
        self.system_id, self.boot_sequence = load_identity(getattr(opts, "data_path", None))
        self.instance = str(self.system_id)
        self.name = "%s:%s:%s" % (VENDOR, PRODUCT, self.instance)
        self.key_suffix = "%s.%s.%s" % (VENDOR.replace(".", "_"), PRODUCT, self.instance.replace(".", "_"))
        self.start_ns = time.time_ns()
        self.sink = None                   # the private request queue, once started
        self.events = AgentEvents(self)
        self.methods = Methods(self)
        self.current_context = None
        self.creators = {}
        self._created = {}                 # object (or binding key) -> create time, ns
        self._open = {}                    # connection -> create time, ns
        self.totals = Totals()             # the broker object's statistics: the queues count into it
        self._pending_events = []
        self._timer = None
        self._own_topic_bindings = 0
        self._own_keys = {}                # exchange name -> binding keys of the agent's own queue
        self._published = {}               # class -> {object name: last published map}
        self.publish = bool(getattr(opts, "mgmt_publish", True))
        self.requests = 0
        self._bad_values = set()           # (class, value name) already logged as not encodable
        self._bad_requests = 0             # undecodable requests in the current run of them

    # -- life ---------------------------------------------------------------------------------
    def start(self):
        nodes = self.broker.nodes
        exchanges = nodes.exchanges
        settings = QueueSettings.from_properties({}, self.broker.options)
        self.sink = _nodes.Queue("qmfagent-" + self.instance, settings, nodes.reroute, None)
        self.sink.add_consumer(AgentConsumer(self))
        direct, topic = exchanges.get(DIRECT), exchanges.get(TOPIC)
        self._own_keys = {DIRECT: ("broker", self.name), TOPIC: ("console.request.agent_locate",)}
        if direct is not None:
            for key in self._own_keys[DIRECT]:
                direct.bind(self.sink, key)
            direct.route = CheckedRoute(self, direct)
        if topic is not None:
            for key in self._own_keys[TOPIC]:
                topic.bind(self.sink, key)
            self._own_topic_bindings = len(self._own_keys[TOPIC])
            topic.route = CheckedRoute(self, topic)
        for ex in exchanges:
            self._created.setdefault(ex, self.start_ns)
        for queue in self.broker.nodes.queues.values():
            self._created.setdefault(queue, self.start_ns)
            self.totals.attach(queue)
        self._timer = self.loop.call_later(self.interval, self._tick)
        self.log.info("QMF agent %s started (epoch %d)", self.name, self.boot_sequence)

    def stop(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sink is None:
            return
        for name in (DIRECT, TOPIC):
            ex = self.broker.nodes.exchanges.get(name)
            if ex is not None:
                ex.unbind_queue(self.sink)
                if isinstance(ex.__dict__.get("route"), CheckedRoute):
                    del ex.route
        self.sink.deleted = True

    def _tick(self):
        self._timer = self.loop.call_later(self.interval, self._tick)
        try:
            self.prune()
            if self.listening():
                self._publish(TOPIC, "agent.ind.heartbeat." + self.key_suffix, "_agent_heartbeat_indication",
                              self._agent_info(), method="indication", ttl_ms=int(self.interval * 2000))
            if self.publish:
                self.publish_data()
        except Exception:   # pragma: no cover - management must never stop the broker
            self.log.exception("QMF agent: periodic work failed")

    def publish_data(self):
        """--mgmt-publish: the objects of each class someone subscribed to (``agent.ind.data.<pkg>.
        <class>.<vendor>.<product>.<instance>``) that changed since the last publish, and those
        deleted since (with ``_delete_ts``), as ``_data_indication`` lists of at most 100. Then the
        queues' High/Low watermarks start a new period, as qpidd's do at each publish."""
        topic = self.broker.nodes.exchanges.get(TOPIC)
        patterns = [key for q, key, _ in topic.bindings if q is not self.sink] if topic is not None else []
        snap = None
        for cls_name, cls in schema.CLASSES.items():
            key = "agent.ind.data.%s.%s.%s" % (cls.package.replace(".", "_"), cls_name, self.key_suffix)
            if not any(topic_match(p, key) for p in patterns):
                self._published.pop(cls_name, None)
                continue
            snap = snap or Snapshot(self)
            last = self._published.get(cls_name, {})
            seen, out = {}, []
            for entry in snap.entries(cls_name):
                m = self.object_map(cls_name, entry)
                name = m["_object_id"]["_object_name"]
                seen[name] = m
                prev = last.get(name)
                if prev is None or prev["_values"] != m["_values"]:
                    out.append(m)
            for name, prev in last.items():
                if name not in seen:
                    gone = dict(prev)
                    gone["_delete_ts"] = gone["_update_ts"] = ulong(snap.now)
                    out.append(gone)
            self._published[cls_name] = seen
            for i in range(0, len(out), CHUNK):
                self._publish(TOPIC, key, "_data_indication", out[i:i + CHUNK], content="_data")
        for queue in list(self.broker.nodes.queues.values()):
            reset = getattr(queue, "reset_watermarks", None)
            if reset is not None:
                reset()

    # -- bookkeeping the events feed ----------------------------------------------------------------
    def created_ts(self, obj, now):
        ts = self._created.get(obj)
        if ts is None:
            ts = self._created[obj] = now
        return ts

    def note_created(self, obj):
        self._created[obj] = time.time_ns()

    def forget(self, obj):
        self._created.pop(obj, None)

    def note_open(self, conn):
        self._open[conn] = self._created[conn] = time.time_ns()

    def note_closed(self, conn):
        self._created.pop(conn, None)
        return self._open.pop(conn, None) is not None

    def is_open(self, conn):
        return conn in self._open

    def adopt_queue(self, queue):
        """A new queue of the broker: it counts into the broker object's statistics."""
        self.totals.attach(queue)

    def retire_queue(self, queue):
        self.totals.detach(queue)
        self._created.pop(queue, None)
        self.creators.pop(queue.name, None)

    def own_binding_count(self, ex):
        """How many of ``ex``'s bindings are the agent's own (consoles do not see them): O(1)."""
        keys = self._own_keys.get(ex.name, ())
        return sum(1 for key in keys if ex.is_bound(self.sink, key)) if keys and self.sink is not None else 0

    def broker_totals(self):
        """The broker object's statistics: O(1), read from the totals the queues keep up to date."""
        totals = self.totals.values()
        totals["discardsNoRoute"] = getattr(self.broker.nodes, "discards_no_route", 0)
        totals["abandoned"] = totals["abandonedViaAlt"] = 0
        return totals

    def prune(self):
        """Forget the creation times of objects that are gone (their events may not have come)."""
        snap = Snapshot(self)
        alive = set(self._open)
        alive.update(self.broker.nodes.queues.values())
        alive.update(self.broker.nodes.exchanges)
        alive.update(self.broker.federation.links.values())     # made when created (federation.py)
        alive.update(self.broker.federation.bridges.values())
        for ex, q, key, _ in snap.bindings():
            alive.add((id(ex), id(q), key or ""))
        for conn in self._open:
            for session in list(conn.local_sessions.values()):
                alive.add(session)
                alive.update(session.local_handles.values())
        for obj in [o for o in self._created if o not in alive]:
            del self._created[obj]
        live_conns = self.broker.connections
        for conn in [c for c in self._open if c not in live_conns]:
            del self._open[conn]

    # -- encoding ---------------------------------------------------------------------------------
    @staticmethod
    def typed(type_name, value):
        return schema.encode_value(type_name, value)

    def encode_values(self, cls_name, raw):
        """A class's raw values as its ``_values`` map: schema order, schema types; optional
        elements without a value are left out."""
        out = {}
        for el in schema.CLASSES[cls_name].elements:
            base = el.type
            for vname in el.value_names():
                value = raw.get(vname, raw.get(el.name) if vname != el.name else None)
                if value is None:
                    if el.optional or base == "objId":
                        continue
                try:
                    enc = schema.encode_value(base, value)
                except (TypeError, ValueError, OverflowError, AttributeError):
                    # e.g. a client's qpid.client_pid that is no number: that value is left out,
                    # never the whole answer
                    self._bad_value(cls_name, vname, value)
                    continue
                if enc is not None:
                    out[vname] = enc
        return dict(sorted(out.items()))    # key order as qpidd's (a std::map): consoles print it

    def _bad_value(self, cls_name, name, value):
        key = (cls_name, name)
        if key not in self._bad_values:
            self._bad_values.add(key)
            self.log.warning("QMF %s.%s: value %.80r does not fit the schema; left out of answers",
                             cls_name, name, value)

    def object_id(self, name):
        oid = {"_object_name": schema.wire_str(name)}
        if self.boot_sequence:
            oid["_agent_epoch"] = ulong(self.boot_sequence)
        return oid

    def object_map(self, cls_name, entry):
        cls = schema.CLASSES[cls_name]
        return {
            "_object_id": self.object_id(schema.object_name(cls_name, entry.key)),
            "_schema_id": cls.schema_id(),
            "_values": self.encode_values(cls_name, entry.values),
            "_create_ts": ulong(entry.create_ts),
            "_update_ts": ulong(entry.update_ts),
            "_delete_ts": ulong(0),
        }

    def _agent_info(self):
        wire = schema.wire_str
        return {"_values": {
            "_vendor": wire(VENDOR), "_product": wire(PRODUCT), "_instance": wire(self.instance),
            "_name": wire(self.name), "_timestamp": ulong(time.time_ns()),
            "_heartbeat_interval": ushort(min(int(self.interval), 0xFFFF)),
            "_epoch": ushort(self.boot_sequence & 0xFFFF),
        }}

    # -- sending -----------------------------------------------------------------------------------
    def listening(self):
        """Whether anything besides the agent is bound to qmf.default.topic."""
        topic = self.broker.nodes.exchanges.get(TOPIC)
        return topic is not None and topic.bindingCount > self._own_topic_bindings

    def _message(self, opcode, body, method, agent_name=None, cid=None, to=None, subject=None,
                 content=None, partial=False, ttl_ms=0):
        app = {"method": method, "qmf.opcode": opcode, "qmf.agent": agent_name or self.name}
        if content is not None:
            app["qmf.content"] = content
        if partial:
            app["partial"] = ""
        ctype = "amqp/list" if isinstance(body, list) else "amqp/map"
        props = [None, None, to, subject, None, cid, symbol(ctype)]
        while props and props[-1] is None:
            props.pop()
        data = b"".join((
            encode_header(False, 4, ttl_ms, False, 0) if ttl_ms else b"",
            encode(Described(PROPERTIES, props)),
            encode(Described(APP_PROPERTIES, app)),
            encode(Described(AMQP_VALUE, body)),
        ))
        return _links.Message(data)

    def _deliver(self, queues, msg):
        first = True
        for queue in queues:
            if queue is self.sink or getattr(queue, "deleted", False):
                continue
            try:
                queue.enqueue(msg if first else msg.copy())
            except AmqpError as e:
                self.log.info("QMF message not queued on %s: %s", queue.name, e.description)
            except Exception as e:   # e.g. a queue limit
                self.log.info("QMF message not queued on %s: %s", getattr(queue, "name", "?"), e)
            first = False

    def _publish(self, exchange_name, key, opcode, body, method="indication", content=None, ttl_ms=0):
        ex = self.broker.nodes.exchanges.get(exchange_name)
        if ex is None:
            return
        msg = self._message(opcode, body, method, to=exchange_name, subject=key, content=content,
                            ttl_ms=ttl_ms)
        self._deliver(ex.route(key, msg, msg.size), msg)

    def _reply_target(self, reply_to):
        """(queue, None) or (exchange, key) for a reply-to: a queue of that name, else
        ``exchange/key``, else an exchange of that name with key ""."""
        nodes = self.broker.nodes
        address = reply_to.split(";", 1)[0].strip()
        queue = nodes.queues.get(address)
        if queue is not None:
            return queue, None
        if "/" in address:
            ex_name, key = address.split("/", 1)
            ex = nodes.exchanges.get(ex_name)
            return (ex, key) if ex is not None else (None, None)
        ex = nodes.exchanges.get(address)
        return (ex, "") if ex is not None else (None, None)

    def _reply(self, request, opcode, body, method="response", content=None, partial=False):
        node, key = request.target
        if node is None:
            return
        if key is None:
            msg = self._message(opcode, body, method, request.agent_name, request.cid, content=content,
                                partial=partial)
            self._deliver((node,), msg)
        else:
            msg = self._message(opcode, body, method, request.agent_name, request.cid, to=node.name,
                                subject=key, content=content, partial=partial)
            self._deliver(node.route(key, msg, msg.size), msg)

    def _exception(self, request, code, text):
        self._reply(request, "_exception", {"_values": {"error_code": uint(code),
                                                        "error_text": schema.wire_str(text)}},
                    method="indication")

    # -- events ------------------------------------------------------------------------------------
    def raise_event(self, name, **values):
        """Publish QMF event ``name`` on qmf.default.topic (on the next loop turn, so the engine's
        state change completes first). Nothing is built when nobody listens."""
        if not self.listening():
            return
        ev = schema.EVENTS[name]
        encoded = {arg: schema.encode_value(t, values.get(arg)) for arg, t in sorted(ev.args)}
        body = [{"_schema_id": ev.schema_id(), "_values": encoded, "_timestamp": ulong(time.time_ns()),
                 "_severity": uint(ev.severity)}]
        self._pending_events.append((ev.routing_part + self.key_suffix, body))
        if len(self._pending_events) == 1:
            self.loop.call_soon(self._flush_events)

    def _flush_events(self):
        pending, self._pending_events = self._pending_events, []
        for key, body in pending:
            try:
                self._publish(TOPIC, key, "_data_indication", body, content="_event")
            except Exception:   # pragma: no cover
                self.log.exception("QMF agent: event %s not sent", key)

    # -- requests ----------------------------------------------------------------------------------
    def check_request(self, msg):
        """Raise DecodeError unless the request's properties, application properties and body
        decode (and its body is an amqp-value map). A run of bad requests is logged once."""
        try:
            data = msg.body
            if len(data) <= MAX_REQUEST:
                info = scan_message(data)
                app = info.application_properties()
                info.properties()
                if 0 <= info.body_offset < len(data):
                    section, _ = decode_at(data, info.body_offset)
                    publisher = self.broker.publisher
                    if self.broker.acl.enabled and publisher is not None and isinstance(app, dict) \
                            and _text(app.get("qmf.opcode", "")) == "_query_request":
                        # qpidd's ACL on queries: refused while the request is routed (acl.LinkRefusal)
                        self.broker.acl.querying(publisher, getattr(section, "value", None))
        except AmqpError:
            raise
        except Exception as e:
            self._bad_requests += 1
            if self._bad_requests == 1:
                publisher = self.broker.publisher
                self.log.warning("QMF request from %s rejected: it does not decode (%s); further "
                                 "undecodable requests are rejected without a log line until a good one",
                                 getattr(publisher, "address", "the broker"), e)
            raise DecodeError("QMF request does not decode: %s" % e) from None
        if self._bad_requests:
            self.log.info("QMF agent: %d undecodable requests rejected", self._bad_requests)
            self._bad_requests = 0

    def on_request(self, msg, publisher=None):
        try:
            self._on_request(msg, publisher)
        except Exception as e:   # pragma: no cover - check_request let through what cannot be handled
            self.log.warning("QMF agent: request not handled: %s: %s", e.__class__.__name__, e)

    def _on_request(self, msg, publisher=None):
        data = msg.body
        if len(data) > MAX_REQUEST:
            self.log.debug("QMF request of %d bytes ignored", len(data))
            return
        info = scan_message(data)
        app = info.application_properties() or {}
        if _text(app.get("x-amqp-0-10.app-id", "")) != "qmf2":
            self.log.debug("Message without app-id qmf2 on the QMF agent's address ignored")
            return
        reply_to = info.reply_to
        if not reply_to:
            return
        props = info.properties()
        request = _Request()
        request.cid = _correlation(props[5] if len(props) > 5 else None)
        user = info.user_id
        request.user = user.decode("utf-8", "replace") if isinstance(user, bytes) else (user or "")
        request.rhost = ""
        if publisher is not None:
            request.user = publisher.user or ""
            if getattr(publisher, "address", None):
                request.rhost = "qpid." + str(publisher.address)
        request.agent_name = "broker" if msg.subject == "broker" else self.name
        request.target = self._reply_target(str(reply_to))
        body = None
        if 0 <= info.body_offset < len(data):
            section, _ = decode_at(data, info.body_offset)
            if getattr(section, "descriptor", None) in (0x77, "amqp:amqp-value:*"):
                body = section.value
        if not isinstance(body, dict):
            body = {}
        opcode = _text(app.get("qmf.opcode", ""))
        self.requests += 1
        if opcode == "_query_request":
            self._query(request, body)
        elif opcode == "_method_request":
            self._method(request, body)
        elif opcode == "_agent_locate_request":
            self._reply(request, "_agent_locate_response", self._agent_info())
        else:
            self.log.debug("QMF opcode %r: TBD", opcode)

    def _query(self, request, body):
        if "_what" not in body:
            return self._exception(request, 1, "_what element missing in Query")
        what = body["_what"]
        if not isinstance(what, str):
            return self._exception(request, 1, "_what element is not a string")
        if what != "OBJECT":
            return self._exception(request, 1, "Query for _what => '%s' not supported" % what)
        snap = Snapshot(self)
        maps = ()
        oid = body.get("_object_id")
        if isinstance(oid, dict) and oid.get("_object_name") is not None:
            cls_name, key = schema.split_object_name(_text(oid["_object_name"]))
            if cls_name in schema.CLASSES:
                entry = snap.find(cls_name, key)
                if entry is not None:
                    maps = (self.object_map(cls_name, entry),)
        else:
            sid = body.get("_schema_id")
            sid = sid if isinstance(sid, dict) else {}
            cls_name = _text(sid.get("_class_name") or "").lower()
            package = sid.get("_package_name")
            if cls_name in schema.CLASSES and (
                    not package or _text(package) == schema.CLASSES[cls_name].package):
                maps = (self.object_map(cls_name, e) for e in snap.entries(cls_name))
        # Each chunk goes as it is full: a query of every queue holds 100 maps at a time, not all.
        chunk = []
        for m in maps:
            chunk.append(m)
            if len(chunk) == CHUNK:
                self._reply(request, "_query_response", chunk, content="_data", partial=True)
                chunk = []
        self._reply(request, "_query_response", chunk, content="_data")

    def _method(self, request, body):
        oid = body.get("_object_id")
        method = body.get("_method_name")
        if not isinstance(oid, dict) or not method or oid.get("_object_name") is None:
            return self._exception(request, STATUS_PARAMETER_INVALID, "InvalidParameter")
        name = _text(oid["_object_name"])
        method = _text(method)
        args = body.get("_arguments")
        args = {_text(k): v for k, v in args.items()} if isinstance(args, dict) else {}
        try:
            out = self.invoke(request.user, name, method, args, request.rhost)
        except MethodError as e:
            return self._exception(request, e.code, e.text)
        if isinstance(out, asyncio.Future):     # a method that waits (HA promote): answered when done
            out.add_done_callback(lambda f: self._method_done(request, method, name, f))
            return
        self.log.debug("QMF method %s on %s done", method, name)
        cls_name, _ = schema.split_object_name(name)
        self._reply(request, "_method_response",
                    {"_arguments": self._output_args(schema.CLASSES[cls_name].methods[method], out)})

    def invoke(self, user, name, method, args, rhost=""):
        """Run QMF method ``method`` of the object named ``name`` for ``user``, with the ACL checks
        a console's request gets: returns the output arguments (or an asyncio.Future of them, for a
        method that waits), raises MethodError with the status code and text a console would get in
        ``_exception``. The web console's actions (broker/http) call it too."""
        cls_name, key = schema.split_object_name(name)
        # the object only, no values: a method costs nothing per queue (a broker query sums them)
        target = Snapshot(self).target(cls_name, key) if cls_name in schema.CLASSES else None
        if target is None:
            raise MethodError(STATUS_UNKNOWN_OBJECT, "No object found with ID=%s" % name)
        if method not in schema.CLASSES[cls_name].methods:
            raise MethodError(STATUS_UNKNOWN_METHOD, "UnknownMethod")
        handler = self.methods.find(cls_name, method)
        if handler is None:
            raise MethodError(STATUS_NOT_IMPLEMENTED, "NotImplemented")
        cls = schema.CLASSES[cls_name]
        acl = self.broker.acl
        if acl.enabled and not acl.allowed(user, "access", "method", method, {
                "schemapackage": cls.package, "schemaclass": cls_name}):
            raise MethodError(STATUS_FORBIDDEN, describe("access", "method", method, user))
        self.current_context = RequestContext(user, rhost)
        try:
            return handler(target, args)
        except Exception as e:
            raise self.method_error(method, name, e) from None
        finally:
            self.current_context = None

    @staticmethod
    def _output_args(method, out):
        """Output arguments as qpidd sends them: string arguments as binary (see schema.wire_str)."""
        if not out:
            return {}
        types = {name: type_name for name, type_name, _ in method.args}
        return {k: schema.wire_str(v) if types.get(k) in ("sstr", "lstr") and isinstance(v, str) else v
                for k, v in out.items()}

    def _method_done(self, request, method, name, future):
        if future.cancelled():
            return self._exception(request, STATUS_EXCEPTION, "method %s cancelled" % method)
        e = future.exception()
        if e is not None:
            return self._method_failed(request, method, name, e)
        self.log.debug("QMF method %s on %s done", method, name)
        cls_name, _ = schema.split_object_name(name)
        self._reply(request, "_method_response",
                    {"_arguments": self._output_args(schema.CLASSES[cls_name].methods[method], future.result())})

    def _method_failed(self, request, method, name, e):
        e = self.method_error(method, name, e)
        return self._exception(request, e.code, e.text)

    def method_error(self, method, name, e):
        """The MethodError (status code and text) a console gets for ``e``, raised by a method."""
        if isinstance(e, MethodError):
            return e
        if isinstance(e, UnauthorizedAccess):   # an ACL denial inside the method (create, delete, ...)
            return MethodError(STATUS_FORBIDDEN, exception_text(e))
        if isinstance(e, AmqpError):
            return MethodError(STATUS_EXCEPTION, exception_text(e))
        self.log.info("QMF method %s on %s failed: %s", method, name, e)
        return MethodError(STATUS_EXCEPTION, str(e))


class _Request:
    __slots__ = ("cid", "user", "rhost", "agent_name", "target")


__all__ = ["ManagementAgent", "AgentConsumer", "load_identity"]
