"""A canned qpidd QMF agent for the tools' unit tests, and tests of the shared console (tools/qmf.py).

``FakeQpidd`` is a transport for ``qmf.BrokerAgent``: it answers the request messages the console
sends the way qmf2.md says qpidd does (query responses in chunks marked ``partial``, string
correlation ids, ``_exception`` maps with error_code/error_text), from a small in-memory model of
queues, exchanges and bindings. Other test_tools_* modules import it.
"""
from __future__ import annotations

import collections
import uuid

import pytest
from proton import Message

from cypid.tools import qmf

PKG = "org.apache.qpid.broker"
T0 = 1_700_000_000 * 10**9  # a fixed "boot time" in ns


def oname(cls: str, key: str) -> str:
    return "%s:%s:%s" % (PKG, cls, key)


def ref(cls: str, key: str) -> dict:
    return {"_object_name": oname(cls, key)}


VHOST = "org.apache.qpid.broker:broker:amqp-broker,/"


class FakeQpidd:
    """An in-memory qpidd management agent behind a message transport."""

    def __init__(self, chunk: int = 100):
        self.chunk = chunk
        self.reply_to = "reply-queue-1"
        self.inbox: collections.deque = collections.deque()
        self.sent: list[Message] = []      # every request, as sent
        self.calls: list[tuple] = []       # (object name, method, arguments)
        self.objects: dict[str, dict] = {}  # object name -> entry (as in a query response)
        self.log_level = "notice+"
        self.silent = False                # True: never answer (timeouts)
        self.closed = False
        self.clock = T0
        self._add("broker", "amqp-broker", {
            "name": "amqp-broker", "port": 5672, "version": "1.36.0", "uptime": 3723 * 10**9,
            "queueCount": 0, "msgDepth": 0, "byteDepth": 0, "msgTotalEnqueues": 0, "byteTotalEnqueues": 0,
            "discardsNoRoute": 2, "acquires": 1234567, "systemRef": {"_object_name": oname("system", "sys-1")}})
        self._add("vhost", VHOST, {"name": "/", "federationTag": "",
                                    "brokerRef": {"_object_name": qmf.BROKER_OBJECT}}, name=oname("vhost", VHOST))
        for name, type_ in (("", "direct"), ("amq.direct", "direct"), ("amq.topic", "topic"),
                            ("amq.fanout", "fanout"), ("amq.match", "headers"),
                            ("qmf.default.direct", "direct"), ("qmf.default.topic", "topic"),
                            ("qpid.management", "topic")):
            self.add_exchange(name, type_)

    # -- model ---------------------------------------------------------------------------------------
    def _add(self, cls: str, key: str, values: dict, name: str | None = None) -> dict:
        self.clock += 10**9
        entry = {
            "_object_id": {"_object_name": name or oname(cls, key)},
            "_schema_id": {"_package_name": PKG, "_class_name": cls, "_type": "_data",
                           "_hash": uuid.UUID(int=0)},
            "_values": dict(values), "_create_ts": self.clock, "_update_ts": self.clock + 5 * 10**9,
            "_delete_ts": 0,
        }
        self.objects[entry["_object_id"]["_object_name"]] = entry
        return entry

    def values(self, cls: str, key: str) -> dict:
        return self.objects[oname(cls, key)]["_values"]

    def add_exchange(self, name, type_, durable=False, arguments=None, alt=None):
        values = {"vhostRef": {"_object_name": oname("vhost", VHOST)}, "name": name, "type": type_,
                  "durable": durable, "autoDelete": False, "arguments": dict(arguments or {}),
                  "producerCount": 0, "bindingCount": 0, "msgReceives": 0, "msgDrops": 0, "msgRoutes": 0,
                  "byteReceives": 0, "byteDrops": 0, "byteRoutes": 0}
        if alt:
            values["altExchange"] = ref("exchange", alt)
        return self._add("exchange", name, values)

    def add_queue(self, name, durable=False, auto_delete=False, exclusive=False, arguments=None, alt=None,
                  depth=0, bind_default=True):
        values = {"vhostRef": {"_object_name": oname("vhost", VHOST)}, "name": name, "durable": durable,
                  "autoDelete": auto_delete, "exclusive": exclusive, "arguments": dict(arguments or {}),
                  "msgDepth": depth, "byteDepth": depth * 1024, "msgTotalEnqueues": depth,
                  "msgTotalDequeues": 0, "byteTotalEnqueues": depth * 1024, "byteTotalDequeues": 0,
                  "consumerCount": 0, "consumerCountHigh": 0, "consumerCountLow": 0,
                  "bindingCount": 0, "unackedMessages": 0, "flowStopped": False, "flowStoppedCount": 0,
                  "messageLatencyCount": 0, "messageLatencyMin": 0, "messageLatencyMax": 0,
                  "messageLatencyAvg": 0}
        if alt:
            values["altExchange"] = ref("exchange", alt)
        entry = self._add("queue", name, values)
        if bind_default:
            self.add_binding("", name, name)
        return entry

    def add_binding(self, exchange, queue, key, arguments=None):
        name = "%s:binding:%s,%s,%s" % (PKG, oname("exchange", exchange), oname("queue", queue), key)
        if name in self.objects:
            return None
        self._add("binding", "", {"exchangeRef": ref("exchange", exchange), "queueRef": ref("queue", queue),
                                  "bindingKey": key, "arguments": dict(arguments or {}), "msgMatched": 0},
                  name=name)
        for cls, key_ in (("exchange", exchange), ("queue", queue)):
            self.values(cls, key_)["bindingCount"] += 1
        return name

    def bindings_of(self, queue):
        return [e for e in self.objects.values() if e["_schema_id"]["_class_name"] == "binding"
                and e["_values"]["queueRef"]["_object_name"] == oname("queue", queue)]

    # -- transport -----------------------------------------------------------------------------------
    def send(self, message: Message, timeout=None) -> None:
        assert not self.closed
        self.sent.append(message)
        props = message.properties or {}
        assert props.get("x-amqp-0-10.app-id") == "qmf2"
        assert message.reply_to == self.reply_to
        assert message.subject == "broker"
        if self.silent:
            return
        opcode = props["qmf.opcode"]
        cid = message.correlation_id
        try:
            if opcode == "_query_request":
                results = self.query(message.body)
                chunks = [results[i:i + self.chunk] for i in range(0, len(results), self.chunk)] or [[]]
                if len(results) % self.chunk == 0 and results:
                    chunks.append([])  # qpidd ends with an empty final message in that case
                for i, chunk in enumerate(chunks):
                    reply_props = {"method": "response", "qmf.opcode": "_query_response", "qmf.agent": "broker",
                                   "qmf.content": "_data"}
                    if i < len(chunks) - 1:
                        reply_props["partial"] = ""
                    self.inbox.append(Message(body=chunk, correlation_id=str(cid), properties=reply_props))
            elif opcode == "_method_request":
                out = self.method(message.body)
                self.inbox.append(Message(body={"_arguments": out}, correlation_id=str(cid),
                                          properties={"method": "response", "qmf.opcode": "_method_response",
                                                      "qmf.agent": "broker"}))
        except AgentError as e:
            self.inbox.append(Message(body={"_values": {"error_code": e.code, "error_text": e.text}},
                                      correlation_id=str(cid),
                                      properties={"method": "indication", "qmf.opcode": "_exception",
                                                  "qmf.agent": "broker"}))

    def receive(self, timeout):
        if self.inbox:
            return self.inbox.popleft()
        return None

    def close(self):
        self.closed = True

    # -- the agent -------------------------------------------------------------------------------------
    def query(self, body: dict) -> list[dict]:
        if body.get("_what") != "OBJECT":
            raise AgentError(1, "_what element missing in Query")
        if "_object_id" in body:
            entry = self.objects.get(body["_object_id"]["_object_name"])
            return [entry] if entry else []
        sid = body.get("_schema_id") or {}
        cls = sid.get("_class_name", "")
        pkg = sid.get("_package_name")
        return [e for e in self.objects.values() if e["_schema_id"]["_class_name"] == cls
                and (pkg is None or e["_schema_id"]["_package_name"] == pkg)]

    def method(self, body: dict) -> dict:
        name = body["_object_id"]["_object_name"]
        method = body["_method_name"]
        args = body.get("_arguments") or {}
        self.calls.append((name, method, args))
        if name not in self.objects:
            raise AgentError(1, "No object found with ID=%s" % name)
        cls = self.objects[name]["_schema_id"]["_class_name"]
        if cls == "queue" and method == "purge":
            v = self.objects[name]["_values"]
            n = v["msgDepth"] if not args.get("request") else min(args["request"], v["msgDepth"])
            v["msgDepth"] -= n
            v["msgTotalDequeues"] += n
            return {}
        if cls != "broker":
            raise AgentError(2, "UnknownMethod")
        if method == "create":
            return self.create(args["type"], args["name"], args.get("properties") or {})
        if method == "delete":
            return self.delete(args["type"], args["name"], args.get("options") or {})
        if method == "getLogLevel":
            return {"level": self.log_level}
        if method == "setLogLevel":
            self.log_level = args["level"]
            return {}
        if method == "echo":
            return dict(args)
        raise AgentError(2, "UnknownMethod")

    def create(self, type_, name, props) -> dict:
        if type_ == "queue":
            if oname("queue", name) in self.objects:
                raise AgentError(7, "object already exists: %s" % name)
            if name.startswith("qpid."):
                raise AgentError(7, "names prefixed with 'qpid.' are reserved: %s" % name)
            args = {k: v for k, v in props.items() if k not in ("durable", "auto-delete", "alternate-exchange")}
            self.add_queue(name, durable=bool(props.get("durable")), auto_delete=bool(props.get("auto-delete")),
                           arguments=args, alt=props.get("alternate-exchange"))
            return {}
        if type_ == "exchange":
            if oname("exchange", name) in self.objects:
                raise AgentError(7, "object already exists: %s" % name)
            ex_type = props.get("exchange-type", "topic")
            if ex_type not in ("direct", "topic", "fanout", "headers", "xml"):
                raise AgentError(7, "Invalid exchange type: %s" % ex_type)
            args = {k: v for k, v in props.items()
                    if k not in ("durable", "auto-delete", "alternate-exchange", "exchange-type")}
            self.add_exchange(name, ex_type, durable=bool(props.get("durable")), arguments=args,
                              alt=props.get("alternate-exchange"))
            return {}
        if type_ == "binding":
            parts = name.split("/")
            if len(parts) > 3:
                raise AgentError(7, "invalid binding: %s" % name)
            ex, q, key = (parts + ["", ""])[:3] if len(parts) > 1 else ("", parts[0], parts[0])
            if oname("exchange", ex) not in self.objects:
                raise AgentError(7, "not-found: Bind failed. No such exchange: %s" % ex)
            if oname("queue", q) not in self.objects:
                raise AgentError(7, "not-found: Bind failed. No such queue: %s" % q)
            self.add_binding(ex, q, key, props)
            return {}
        raise AgentError(7, "unknown object type: %s" % type_)

    def delete(self, type_, name, options) -> dict:
        if type_ == "queue":
            entry = self.objects.get(oname("queue", name))
            if entry is None:
                raise AgentError(7, "not-found: Delete failed. No such queue: %s" % name)
            v = entry["_values"]
            if options.get("if_empty") and v["msgDepth"]:
                raise AgentError(7, "Cannot delete queue %s; queue not empty" % name)
            if options.get("if_unused") and v["consumerCount"]:
                raise AgentError(7, "Cannot delete queue %s; queue in use" % name)
            for b in self.bindings_of(name):
                del self.objects[b["_object_id"]["_object_name"]]
            del self.objects[oname("queue", name)]
            return {}
        if type_ == "exchange":
            if oname("exchange", name) not in self.objects:
                raise AgentError(7, "not-found: Delete failed. No such exchange: %s" % name)
            del self.objects[oname("exchange", name)]
            return {}
        if type_ == "binding":
            ex, q, key = (name.split("/") + ["", ""])[:3]
            bname = "%s:binding:%s,%s,%s" % (PKG, oname("exchange", ex), oname("queue", q), key)
            if bname not in self.objects:
                raise AgentError(7, "not-found: Unbind failed. No such binding: %s" % name)
            del self.objects[bname]
            return {}
        raise AgentError(7, "unknown object type: %s" % type_)


class AgentError(Exception):
    def __init__(self, code, text):
        super().__init__(text)
        self.code, self.text = code, text


@pytest.fixture
def fake():
    return FakeQpidd()


def agent_for(fake: FakeQpidd, timeout=2) -> qmf.BrokerAgent:
    fake.closed = False
    return qmf.BrokerAgent(fake, timeout=timeout)


@pytest.fixture
def use_fake(monkeypatch, fake):
    """Make every tool's qmf.connect() return an agent on ``fake``; records the connect arguments."""
    seen = []

    def connect(url="localhost", timeout=10, **options):
        seen.append((str(url), timeout, options))
        return agent_for(fake, timeout=timeout or 2)

    monkeypatch.setattr(qmf, "connect", connect)
    fake.connects = seen
    return fake


# -- tests of the console itself ---------------------------------------------------------------------

def test_query_by_class_returns_objects_with_values(fake):
    fake.add_queue("q1", durable=True, arguments={"qpid.max_count": 10})
    agent = agent_for(fake)
    queues = agent.get_objects("queue")
    assert [q.name for q in queues] == ["q1"]
    q = queues[0]
    assert q.object_name == "org.apache.qpid.broker:queue:q1"
    assert q.class_name == "queue" and q.package == PKG
    assert q.durable is True and q.arguments == {"qpid.max_count": 10}
    assert q.vhostRef == "org.apache.qpid.broker:broker:amqp-broker,/"  # reference: after the 2nd ':'
    assert q.ref("vhostRef") == oname("vhost", VHOST)
    request = fake.sent[-1]
    assert request.properties["qmf.opcode"] == "_query_request"
    assert request.properties["method"] == "request"
    assert request.body == {"_what": "OBJECT", "_schema_id": {"_class_name": "queue"}}


def test_query_by_object_name_and_unknown_object(fake):
    fake.add_queue("q1")
    agent = agent_for(fake)
    assert agent.get_queue("q1").name == "q1"
    assert fake.sent[-1].body == {"_what": "OBJECT", "_object_id": {"_object_name": oname("queue", "q1")}}
    assert agent.get_queue("nope") is None


def test_partial_responses_are_joined(fake):
    fake.chunk = 3
    for i in range(10):
        fake.add_queue("q%02d" % i, bind_default=False)
    agent = agent_for(fake)
    names = [q.name for q in agent.get_objects("queue")]
    assert names == ["q%02d" % i for i in range(10)]
    assert not fake.inbox


def test_partial_responses_exact_multiple_of_the_chunk(fake):
    fake.chunk = 5
    for i in range(10):
        fake.add_queue("q%02d" % i, bind_default=False)
    assert len(agent_for(fake).get_objects("queue")) == 10
    assert not fake.inbox


def test_method_call_returns_output_arguments(fake):
    agent = agent_for(fake)
    assert agent.broker_call("echo", {"sequence": 7, "body": "hi"}) == {"sequence": 7, "body": "hi"}
    req = fake.sent[-1]
    assert req.properties["qmf.opcode"] == "_method_request"
    assert req.body["_object_id"] == {"_object_name": qmf.BROKER_OBJECT}
    assert req.body["_method_name"] == "echo"


def test_exception_response_raises_qmf_error_with_error_text(fake):
    fake.add_queue("q1")
    agent = agent_for(fake)
    with pytest.raises(qmf.QmfError) as info:
        agent.create("queue", "q1", {})
    e = info.value
    assert e.error_code == 7
    assert e.error_text == "object already exists: q1"
    assert str(e) == "Exception from Agent: {'error_code': 7, 'error_text': 'object already exists: q1'}"


def test_no_answer_times_out(fake):
    fake.silent = True
    agent = agent_for(fake, timeout=0.05)
    with pytest.raises(qmf.QmfTimeout, match="no answer to the QMF query"):
        agent.get_objects("queue")
    with pytest.raises(qmf.QmfTimeout, match="method 'create'"):
        agent.create("queue", "q", {})


def test_late_answers_to_other_requests_are_skipped(fake):
    agent = agent_for(fake)
    fake.inbox.append(Message(body=[], correlation_id="stale-1",
                              properties={"qmf.opcode": "_query_response"}))
    fake.add_queue("q1")
    assert [q.name for q in agent.get_objects("queue")] == ["q1"]


def test_correlation_ids_differ_per_request(fake):
    agent = agent_for(fake)
    agent.get_objects("queue")
    agent.get_objects("exchange")
    ids = [m.correlation_id for m in fake.sent]
    assert len(set(ids)) == 2


def test_delete_sends_options_only_when_given(fake):
    agent = agent_for(fake)
    agent.delete("exchange", "amq.direct")
    assert "options" not in fake.calls[-1][2]
    fake.add_queue("q")
    agent.delete("queue", "q", {"if_empty": True, "if_unused": True})
    assert fake.calls[-1][2]["options"] == {"if_empty": True, "if_unused": True}


@pytest.mark.parametrize("text,host,port,user,password", [
    ("localhost", "localhost", 5672, None, None),
    ("10.1.1.7:10000", "10.1.1.7", 10000, None, None),
    ("guest/guest@localhost", "localhost", 5672, "guest", "guest"),
    ("guest@broker-host:10000", "broker-host", 10000, "guest", None),
    ("amqps://h", "h", 5671, None, None),
    ("[::1]:5673", "::1", 5673, None, None),
])
def test_broker_url(text, host, port, user, password):
    u = qmf.BrokerURL(text)
    assert (u.host, u.port, u.user, u.password) == (host, port, user, password)


@pytest.mark.parametrize("text", ["", "a:b:c", "host:port", "http://x", "h:70000"])
def test_broker_url_rejects(text):
    with pytest.raises(ValueError):
        qmf.BrokerURL(text)


def test_broker_url_text():
    assert str(qmf.BrokerURL("guest/pw@[::1]:1")) == "guest/pw@[::1]:1"
    assert qmf.BrokerURL("h").proton_url() == "amqp://h:5672"


def test_unreachable_broker_is_a_connect_error():
    with pytest.raises(qmf.ConnectError, match="cannot connect to 127.0.0.1:1"):
        qmf.connect("127.0.0.1:1", timeout=5)


def test_events_are_parsed_from_indications():
    msg = Message(body=[{"_schema_id": {"_package_name": PKG, "_class_name": "queueDeclare", "_type": "_event"},
                         "_values": {"qName": "q1", "durable": False}, "_timestamp": T0, "_severity": 6}],
                  properties={"method": "indication", "qmf.opcode": "_data_indication",
                              "qmf.content": "_event", "qmf.agent": "apache.org:qpidd:x"})
    (ev,) = qmf.parse_events(msg)
    assert (ev.package, ev.name, ev.values, ev.timestamp, ev.severity) == \
        (PKG, "queueDeclare", {"qName": "q1", "durable": False}, T0, 6)
    heartbeat = Message(body={"_values": {}}, properties={"qmf.opcode": "_agent_heartbeat_indication"})
    assert qmf.parse_events(heartbeat) == []
