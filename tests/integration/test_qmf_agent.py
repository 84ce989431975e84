"""The broker's QMF v2 agent, driven by a console written here with python-qpid-proton alone.

The console does what ../shared/reference/qmf2.md documents for qpidd (and nothing else), so this
file also runs against a stock qpidd (CYPID_TEST_QPIDD=/usr/sbin/qpidd): requests go to
``qmf.default.direct`` with subject ``broker``, app-properties ``qmf.opcode`` and
``x-amqp-0-10.app-id: qmf2``, a reply-to (a dynamic queue, or ``qmf.default.topic/<key>``) and a
correlation-id; answers are ``_query_response`` lists (``partial`` on all but the last),
``_method_response`` or ``_exception`` maps; events and heartbeats arrive on ``qmf.default.topic``.

No fixed sleeps: every wait is a receive or a poll with a deadline.
"""
import uuid

import pytest
from proton import Described, Message, symbol
from proton.reactor import Filter
from proton.utils import BlockingConnection

from tests.support.amqp import qmf_text
from tests.support.broker import BrokerProcess, wait_until

PKG = "org.apache.qpid.broker"
BROKER_ID = PKG + ":broker:amqp-broker"
TIMEOUT = 60          # generous: the machine is shared by several test runs
TOPIC_FILTER = "apache.org:legacy-amqp-topic-binding:string"


def receive(receiver, timeout=None):
    msg = receiver.receive(timeout=TIMEOUT if timeout is None else timeout)
    msg.body = qmf_text(msg.body)
    return msg


def topic_filter(key):
    return Filter({symbol("subject-filter"): Described(symbol(TOPIC_FILTER), key)})


class QmfError(Exception):
    def __init__(self, values):
        super().__init__("Exception from Agent: %r" % (values,))
        self.code = values.get("error_code")
        self.text = values.get("error_text")


class Console:
    """A minimal QMF v2 console over AMQP 1.0 (what a port of qpidtoollibs' BrokerAgent does)."""

    def __init__(self, url, reply_exchange=False):
        self.conn = BlockingConnection(url, timeout=TIMEOUT)
        if reply_exchange:      # qpidtoollibs' way: a topic subscription, reply-to exchange/key
            key = "direct.%s" % uuid.uuid4()
            self.receiver = self.conn.create_receiver("qmf.default.topic", credit=500,
                                                      options=topic_filter(key))
            self.reply_to = "qmf.default.topic/" + key
        else:
            self.receiver = self.conn.create_receiver(None, dynamic=True, credit=500)
            self.reply_to = self.receiver.remote_source.address
        self.sender = self.conn.create_sender("qmf.default.direct")

    def close(self):
        self.conn.close()

    def send(self, opcode, body, correlation_id=None, subject="broker", sender=None):
        cid = correlation_id if correlation_id is not None else str(uuid.uuid4())
        msg = Message(subject=subject, reply_to=self.reply_to, correlation_id=cid, body=body,
                      properties={"qmf.opcode": opcode, "x-amqp-0-10.app-id": "qmf2", "method": "request"})
        (sender or self.sender).send(msg)
        return cid

    def responses(self, cid, many=False):
        """The response messages to request ``cid`` (a query's chunks until one lacks ``partial``)."""
        out = []
        while True:
            msg = receive(self.receiver)
            accept(self.receiver)
            if msg.correlation_id != cid:
                continue
            out.append(msg)
            if not many or "partial" not in (msg.properties or {}):
                return out

    def request(self, opcode, body, many=False):
        return self.responses(self.send(opcode, body), many)

    def query_messages(self, body):
        return self.request("_query_request", body, many=True)

    def query(self, cls=None, object_name=None):
        body = {"_what": "OBJECT"}
        if object_name is not None:
            body["_object_id"] = {"_object_name": object_name}
        elif cls is not None:
            body["_schema_id"] = {"_class_name": cls}
        objects = []
        for msg in self.query_messages(body):
            if msg.properties.get("qmf.opcode") == "_exception":
                raise QmfError(msg.body["_values"])
            assert msg.properties.get("qmf.opcode") == "_query_response"
            objects.extend(msg.body)
        return objects

    def values(self, cls, name):
        """The ``_values`` of one object by its index name (queue / exchange), or None."""
        found = self.query(object_name="%s:%s:%s" % (PKG, cls, name))
        return found[0]["_values"] if found else None

    def method(self, object_name, name, arguments=None):
        (msg,) = self.request("_method_request", {"_object_id": {"_object_name": object_name},
                                                  "_method_name": name, "_arguments": arguments or {}})
        if msg.properties.get("qmf.opcode") == "_exception":
            raise QmfError(msg.body["_values"])
        assert msg.properties.get("qmf.opcode") == "_method_response"
        return msg.body.get("_arguments", {})

    def create(self, kind, name, properties=None):
        return self.method(BROKER_ID, "create", {"type": kind, "name": name,
                                                 "properties": properties or {}, "strict": True})

    def delete(self, kind, name, options=None):
        return self.method(BROKER_ID, "delete", {"type": kind, "name": name, "options": options or {}})


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def qmf_broker(tmp_path_factory):
    broker = BrokerProcess(tmp_path_factory.mktemp("qmf"), ["--mgmt-pub-interval", "1"])
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def console(qmf_broker):
    c = Console(qmf_broker.url)
    yield c
    c.close()


@pytest.fixture
def client(qmf_broker):
    c = BlockingConnection(qmf_broker.url, timeout=TIMEOUT)
    yield c
    c.close()


def send_messages(conn, address, count, size=0, subject=None):
    sender = conn.create_sender(address)
    body = b"x" * size
    for i in range(count):
        sender.send(Message(body=body if size else "m%d" % i, subject=subject))
    sender.close()


# -- queries ----------------------------------------------------------------------------------
def test_queue_statistics_after_500_messages(console, client):
    busy, idle = unique("busy"), unique("idle")
    console.create("queue", busy)
    console.create("queue", idle, {"durable": False})
    send_messages(client, busy, 500, size=1024)
    queues = {q["_values"]["name"]: q for q in console.query("queue")}
    assert busy in queues and idle in queues
    q = queues[busy]
    v = q["_values"]
    assert v["msgTotalEnqueues"] == 500
    assert v["msgDepth"] == 500
    assert v["byteDepth"] >= 500 * 1024
    assert v["byteTotalEnqueues"] >= 500 * 1024
    assert v["msgTotalDequeues"] == 0
    assert v["consumerCount"] == 0
    assert v["bindingCount"] == 1          # the default exchange's binding
    assert v["unackedMessages"] == 0
    assert v["durable"] is False and v["autoDelete"] is False and v["exclusive"] is False
    assert q["_object_id"]["_object_name"] == "%s:queue:%s" % (PKG, busy)
    assert q["_schema_id"]["_class_name"] == "queue"
    assert q["_schema_id"]["_package_name"] == PKG
    assert q["_create_ts"] > 0 and q["_update_ts"] >= q["_create_ts"] and q["_delete_ts"] == 0
    assert queues[idle]["_values"]["msgTotalEnqueues"] == 0

    # the counters move with consumption (the receiver shares the console's connection, so that
    # its dispositions go out while the console waits for answers)
    receiver = console.conn.create_receiver(busy, credit=10)
    for _ in range(10):
        receiver.receive(timeout=TIMEOUT)
        receiver.accept()
    wait_until(lambda: console.values("queue", busy)["msgTotalDequeues"] == 10, timeout=TIMEOUT)
    v = console.values("queue", busy)
    assert v["msgDepth"] == 490 and v["consumerCount"] == 1
    receiver.close()


def test_query_by_object_id_and_empty_answers(console):
    name = unique("byid")
    console.create("queue", name)
    found = console.query(object_name="%s:queue:%s" % (PKG, name))
    assert len(found) == 1 and found[0]["_values"]["name"] == name
    assert console.query(object_name="%s:queue:%s" % (PKG, unique("missing"))) == []
    # neither a class nor an object id: an empty list, not an error
    assert console.query() == []
    # a package filter that matches nothing
    msgs = console.query_messages({"_what": "OBJECT", "_schema_id": {"_class_name": "queue",
                                                                     "_package_name": "com.example"}})
    assert [m.body for m in msgs] == [[]]


def test_query_errors(console):
    (msg,) = console.request("_query_request", {"_schema_id": {"_class_name": "queue"}})
    assert msg.properties["qmf.opcode"] == "_exception"
    assert msg.body["_values"]["error_text"] == "_what element missing in Query"
    (msg,) = console.request("_query_request", {"_what": "SCHEMA_ID"})
    assert msg.properties["qmf.opcode"] == "_exception"
    assert "SCHEMA_ID" in msg.body["_values"]["error_text"]


def test_query_exchanges(console):
    exchanges = {e["_values"]["name"]: e["_values"] for e in console.query("exchange")}
    for name, kind in (("amq.direct", "direct"), ("amq.topic", "topic"), ("amq.fanout", "fanout"),
                       ("amq.match", "headers"), ("qmf.default.direct", "direct"),
                       ("qmf.default.topic", "topic"), ("", "direct")):
        assert exchanges[name]["type"] == kind, name
    for key in ("durable", "autoDelete", "arguments", "bindingCount", "msgReceives", "msgRoutes",
                "msgDrops", "byteReceives", "byteRoutes", "byteDrops", "producerCount"):
        assert key in exchanges["amq.direct"], key


def test_query_bindings(console, client):
    queue = unique("bound")
    console.create("queue", queue)
    console.create("binding", "amq.direct/%s/k1" % queue)
    console.create("binding", "amq.topic/%s/a.#" % queue)

    def mine():
        return {(b["_values"]["exchangeRef"]["_object_name"], b["_values"]["bindingKey"])
                for b in console.query("binding")
                if b["_values"]["queueRef"]["_object_name"] == "%s:queue:%s" % (PKG, queue)}
    assert mine() == {("%s:exchange:amq.direct" % PKG, "k1"), ("%s:exchange:amq.topic" % PKG, "a.#"),
                      ("%s:exchange:" % PKG, queue)}
    assert console.values("queue", queue)["bindingCount"] == 3
    send_messages(client, "amq.direct", 1, subject="k1")
    send_messages(client, "amq.topic", 2, subject="a.b.c")
    wait_until(lambda: console.values("queue", queue)["msgDepth"] == 3, timeout=TIMEOUT)
    console.delete("binding", "amq.direct/%s/k1" % queue)
    assert ("%s:exchange:amq.direct" % PKG, "k1") not in mine()


def test_query_connections_sessions_broker(console, qmf_broker):
    before = {c["_values"]["address"] for c in console.query("connection")}
    assert before, "the console's own connection is listed"
    other = BlockingConnection(qmf_broker.url, timeout=TIMEOUT)
    try:
        def new_ones():
            return {c["_values"]["address"] for c in console.query("connection")} - before
        (address,) = wait_until(new_ones, timeout=TIMEOUT)
        (conn,) = [c for c in console.query("connection") if c["_values"]["address"] == address]
        assert conn["_values"]["incoming"] is True
        assert conn["_object_id"]["_object_name"] == "%s:connection:%s" % (PKG, address)
    finally:
        other.close()
    wait_until(lambda: address not in {c["_values"]["address"] for c in console.query("connection")},
               timeout=TIMEOUT)
    assert console.query("session"), "the console's session is listed"

    (broker,) = console.query("broker")
    assert broker["_object_id"]["_object_name"] == BROKER_ID
    assert broker["_values"]["name"] == "amqp-broker"
    assert broker["_values"]["port"] == qmf_broker.port
    assert "uptime" in broker["_values"] and broker["_update_ts"] >= broker["_create_ts"]
    assert console.query(object_name=BROKER_ID)[0]["_values"]["name"] == "amqp-broker"
    (system,) = console.query("system")
    assert broker["_values"]["systemRef"]["_object_name"] == system["_object_id"]["_object_name"]
    assert len(console.query("vhost")) == 1


def test_broker_statistics_after_known_traffic(tmp_path):
    """The broker object's figures (kept as the queues count, never summed at query time) after
    enqueues, dequeues, a purge and the deletion of a queue holding messages: the durable and
    discard counters move by exactly the traffic, the depths are the sums over the queues."""
    broker = BrokerProcess(tmp_path)
    broker.start()
    console = Console(broker.url)
    client = BlockingConnection(broker.url, timeout=TIMEOUT)
    try:
        (before,) = console.query("broker")
        before = before["_values"]
        kept, deleted = unique("kept"), unique("deleted")
        console.create("queue", kept, {"durable": True})
        console.create("queue", deleted, {"durable": True})
        sender = client.create_sender(None)
        for address, count in ((kept, 10), (deleted, 4)):
            for _ in range(count):
                sender.send(Message(address=address, body=b"y" * 100, durable=True))
        # three consumed (accepted), two purged, and the deleted queue goes with its four
        receiver = console.conn.create_receiver(kept, credit=3)
        for _ in range(3):
            receiver.receive(timeout=TIMEOUT)
            receiver.accept()
        receiver.close()
        wait_until(lambda: console.values("queue", kept)["msgTotalDequeues"] == 3, timeout=TIMEOUT)
        console.method("%s:queue:%s" % (PKG, kept), "purge", {"request": 2})
        size = console.values("queue", kept)["byteTotalEnqueues"] // 10
        size_deleted = console.values("queue", deleted)["byteDepth"] // 4    # its address is longer
        console.delete("queue", deleted)
        (after,) = console.query("broker")
        after = after["_values"]
        queues = [q["_values"] for q in console.query("queue")]
    finally:
        client.close()
        console.close()
        broker.stop()

    def delta(name):
        return after[name] - before[name]

    assert delta("msgPersistEnqueues") == 14 and delta("bytePersistEnqueues") == 10 * size + 4 * size_deleted
    assert delta("msgPersistDequeues") == 3 + 2 + 4
    assert delta("bytePersistDequeues") == 5 * size + 4 * size_deleted
    assert delta("discardsPurge") == 2
    assert delta("msgDepth") == 5 and delta("byteDepth") == 5 * size
    assert delta("msgTotalEnqueues") - delta("msgTotalDequeues") == 5
    assert after["queueCount"] == len(queues)
    assert after["msgDepth"] == sum(q["msgDepth"] for q in queues)
    assert after["byteDepth"] == sum(q["byteDepth"] for q in queues)


def test_partial_responses(console):
    names = [unique("many") for _ in range(130)]
    for name in names:
        console.create("queue", name)
    msgs = console.query_messages({"_what": "OBJECT", "_schema_id": {"_class_name": "queue"}})
    assert len(msgs) >= 2
    assert all("partial" in m.properties for m in msgs[:-1])
    assert "partial" not in msgs[-1].properties
    assert all(len(m.body) <= 100 for m in msgs)
    listed = {o["_values"]["name"] for m in msgs for o in m.body}
    assert set(names) <= listed
    for name in names:
        console.delete("queue", name)


def test_reply_to_exchange_and_correlation_id(qmf_broker):
    console = Console(qmf_broker.url, reply_exchange=True)
    try:
        console.send("_query_request", {"_what": "OBJECT", "_object_id": {"_object_name": BROKER_ID}},
                     correlation_id=42)
        (msg,) = console.responses("42")
        assert msg.properties["qmf.opcode"] == "_query_response"
        assert msg.properties["qmf.agent"] == "broker"
        assert msg.body[0]["_values"]["name"] == "amqp-broker"
    finally:
        console.close()


def test_agent_locate(console):
    topic = console.conn.create_sender("qmf.default.topic")
    cid = console.send("_agent_locate_request", {}, subject="console.request.agent_locate", sender=topic)
    (msg,) = console.responses(cid)
    assert msg.properties["qmf.opcode"] == "_agent_locate_response"
    values = msg.body["_values"]
    assert values["_vendor"] == "apache.org" and values["_product"] == "qpidd"
    assert values["_name"] == "apache.org:qpidd:%s" % values["_instance"]


# -- methods ----------------------------------------------------------------------------------
def test_create_use_and_delete_queue(console, client):
    name = unique("made")
    assert console.create("queue", name, {"qpid.max_count": 50, "durable": False}) == {}
    v = console.values("queue", name)
    assert v["arguments"].get("qpid.max_count") == 50
    send_messages(client, name, 3)
    receiver = client.create_receiver(name, credit=3)
    got = []
    for _ in range(3):
        got.append(receive(receiver).body)
        receiver.accept()
    assert got == ["m0", "m1", "m2"]
    receiver.close()
    wait_until(lambda: console.values("queue", name)["consumerCount"] == 0, timeout=TIMEOUT)
    assert console.delete("queue", name) == {}
    assert console.values("queue", name) is None


def test_create_and_delete_exchange(console, client):
    name = unique("fan")
    console.create("exchange", name, {"exchange-type": "fanout"})
    v = console.values("exchange", name)
    assert v["type"] == "fanout"
    queue = unique("fanq")
    console.create("queue", queue)
    console.create("binding", "%s/%s" % (name, queue))
    send_messages(client, name, 2)
    wait_until(lambda: console.values("queue", queue)["msgDepth"] == 2, timeout=TIMEOUT)
    assert console.values("exchange", name)["msgReceives"] == 2
    with pytest.raises(QmfError) as e:
        console.create("exchange", unique("bad"), {"exchange-type": "nosuchtype"})
    assert e.value.code == 7 and "nosuchtype" in e.value.text
    console.delete("exchange", name)
    assert console.values("exchange", name) is None


def test_purge(console, client):
    name = unique("purge")
    console.create("queue", name)
    send_messages(client, name, 10)
    queue_id = "%s:queue:%s" % (PKG, name)
    console.method(queue_id, "purge", {"request": 3})
    assert console.values("queue", name)["msgDepth"] == 7
    console.method(queue_id, "purge", {"request": 0})
    v = console.values("queue", name)
    assert v["msgDepth"] == 0 and v["msgTotalDequeues"] == 10 and v["msgTotalEnqueues"] == 10


def test_reroute(console, client):
    source, target, exchange = unique("from"), unique("to"), unique("via")
    console.create("queue", source)
    console.create("queue", target)
    console.create("exchange", exchange, {"exchange-type": "fanout"})
    console.create("binding", "%s/%s" % (exchange, target))
    send_messages(client, source, 5)
    console.method("%s:queue:%s" % (PKG, source), "reroute",
                   {"request": 2, "useAltExchange": False, "exchange": exchange})
    assert console.values("queue", source)["msgDepth"] == 3
    assert console.values("queue", target)["msgDepth"] == 2
    with pytest.raises(QmfError) as e:   # no alternate exchange to use
        console.method("%s:queue:%s" % (PKG, source), "reroute", {"request": 0, "useAltExchange": True})
    assert e.value.code == 4


def test_close_connection(console, qmf_broker):
    before = {c["_values"]["address"] for c in console.query("connection")}
    other = BlockingConnection(qmf_broker.url, timeout=TIMEOUT)
    (address,) = wait_until(lambda: {c["_values"]["address"] for c in console.query("connection")} - before,
                            timeout=TIMEOUT)
    console.method("%s:connection:%s" % (PKG, address), "close")
    wait_until(lambda: address not in {c["_values"]["address"] for c in console.query("connection")},
               timeout=TIMEOUT)
    with pytest.raises(Exception):      # the client finds its connection closed
        other.create_sender(unique("after-close"))


def test_method_errors(console):
    missing = unique("missing")
    with pytest.raises(QmfError) as e:
        console.delete("queue", missing)
    assert e.value.code == 7
    assert "Delete failed. No such queue: %s" % missing in e.value.text

    name = unique("twice")
    console.create("queue", name, {"durable": False})
    with pytest.raises(QmfError) as e:
        console.create("queue", name, {"durable": True, "qpid.max_count": 7})
    assert e.value.code == 7 and e.value.text == "object already exists: %s" % name
    assert console.values("queue", name)["durable"] is False

    with pytest.raises(QmfError) as e:
        console.create("nosuchtype", unique("x"))
    assert e.value.code == 7 and "unknown object type" in e.value.text

    with pytest.raises(QmfError) as e:
        console.method("%s:queue:%s" % (PKG, missing), "purge", {"request": 0})
    assert e.value.code == 1

    with pytest.raises(QmfError) as e:
        console.method(BROKER_ID, "noSuchMethod")
    assert e.value.code == 2


def test_log_level(console):
    level = console.method(BROKER_ID, "getLogLevel")["level"]
    assert isinstance(level, str) and level
    console.method(BROKER_ID, "setLogLevel", {"level": "notice+"})
    assert console.method(BROKER_ID, "getLogLevel")["level"] == "notice+"


# -- events and heartbeats ----------------------------------------------------------------------
def accept(receiver):
    """Accept the last message unless it came pre-settled (topic subscriptions may be)."""
    if receiver.fetcher.unsettled:
        receiver.accept()


def receive_until(receiver, want, deadline=TIMEOUT):
    """Receive messages until ``want(msg)`` has been true for each of its keys; returns {key: msg}."""
    found = {}
    keys = set(want)
    while keys - set(found):
        msg = receive(receiver, deadline)
        accept(receiver)
        for key in keys - set(found):
            if want[key](msg):
                found[key] = msg
    return found


def _event(name, **values):
    def match(msg):
        body = msg.body
        if not isinstance(body, list) or not body:
            return False
        ev = body[0]
        if ev.get("_schema_id", {}).get("_class_name") != name:
            return False
        return all(ev.get("_values", {}).get(k) == v for k, v in values.items())
    return match


def test_events(console, qmf_broker):
    events = console.conn.create_receiver("qmf.default.topic", credit=1000,
                                          options=topic_filter("agent.ind.event.#"))
    name, exchange = unique("evq"), unique("evx")
    console.create("queue", name)
    console.create("exchange", name=exchange, properties={"exchange-type": "direct"})
    console.create("binding", "%s/%s/evkey" % (exchange, name))
    other = BlockingConnection(qmf_broker.url, timeout=TIMEOUT)
    other.close()
    console.delete("queue", name)
    found = receive_until(events, {
        "declare": _event("queueDeclare", qName=name, disp="created", durable=False),
        "exchange": _event("exchangeDeclare", exName=exchange, exType="direct"),
        "bind": _event("bind", exName=exchange, qName=name, key="evkey"),
        "connect": _event("clientConnect"),
        "disconnect": _event("clientDisconnect"),
        "delete": _event("queueDelete", qName=name),
    })
    msg = found["declare"]
    assert msg.properties["qmf.opcode"] == "_data_indication"
    assert msg.properties["qmf.content"] == "_event"
    assert msg.properties["method"] == "indication"
    assert msg.subject.startswith("agent.ind.event.org_apache_qpid_broker.queueDeclare.info.")
    ev = msg.body[0]
    assert ev["_schema_id"]["_package_name"] == PKG
    assert ev["_schema_id"]["_type"] == "_event"
    assert ev["_timestamp"] > 0 and ev["_severity"] == 6
    for arg in ("rhost", "user", "qName", "durable", "excl", "autoDel", "altEx", "args", "disp"):
        assert arg in ev["_values"], arg
    connect = found["connect"].body[0]["_values"]
    assert set(connect) >= {"rhost", "user", "properties"}
    events.close()


def test_heartbeats(console):
    beats = console.conn.create_receiver("qmf.default.topic", credit=10,
                                         options=topic_filter("agent.ind.heartbeat.#"))
    msg = receive(beats)
    accept(beats)
    assert msg.properties["qmf.opcode"] == "_agent_heartbeat_indication"
    assert msg.subject.startswith("agent.ind.heartbeat.apache_org.qpidd.")
    values = msg.body["_values"]
    assert values["_vendor"] == "apache.org" and values["_product"] == "qpidd"
    assert values["_name"].startswith("apache.org:qpidd:")
    assert values["_heartbeat_interval"] == 1
    assert values["_timestamp"] > 0
    second = receive(beats)
    accept(beats)
    assert second.body["_values"]["_timestamp"] > values["_timestamp"]
    beats.close()


def test_data_indications(console):
    """--mgmt-publish (on by default): new, changed and deleted objects are published."""
    data = console.conn.create_receiver("qmf.default.topic", credit=1000,
                                        options=topic_filter("agent.ind.data.org_apache_qpid_broker.queue.#"))
    name = unique("published")
    console.create("queue", name)
    oid = "%s:queue:%s" % (PKG, name)

    def has(predicate):
        def match(msg):
            return msg.properties.get("qmf.opcode") == "_data_indication" and \
                msg.properties.get("qmf.content") == "_data" and \
                any(o["_object_id"]["_object_name"] == oid and predicate(o) for o in msg.body)
        return match
    found = receive_until(data, {"live": has(lambda o: o["_delete_ts"] == 0)})
    live = [o for o in found["live"].body if o["_object_id"]["_object_name"] == oid][0]
    assert live["_values"]["name"] == name and live["_schema_id"]["_class_name"] == "queue"
    assert found["live"].subject.startswith("agent.ind.data.org_apache_qpid_broker.queue.apache_org.qpidd.")
    console.delete("queue", name)
    receive_until(data, {"deleted": has(lambda o: o["_delete_ts"] > 0)})
    data.close()


def test_shutdown(broker_factory):
    """The broker exits (a tool sees its connection drop; it is not closed here: proton would wait
    for a close the broker never sends)."""
    broker = broker_factory()
    console = Console(broker.url)
    assert console.method(BROKER_ID, "shutdown") == {}
    wait_until(lambda: not broker.is_running(), timeout=TIMEOUT)
    assert broker.returncode == 0
