"""The QMF schema tables and value encoding of the management agent (no broker needed)."""
import uuid

from cypid.broker.management import schema
from cypid.pyx.codec import decode, encode, uint, ulong, ushort


def test_value_encoding_widths_and_clamps():
    assert type(schema.encode_value("uint16", 70000)) is ushort
    assert schema.encode_value("uint16", 70000) == 0xFFFF
    assert type(schema.encode_value("count64", 5)) is ulong
    assert type(schema.encode_value("hilo32", 3)) is uint
    assert schema.encode_value("count64", -1) == 0
    assert schema.encode_value("objId", "org.apache.qpid.broker:queue:q") == {
        "_object_name": b"org.apache.qpid.broker:queue:q"}   # strings are binary, as qpidd's
    assert schema.encode_value("objId", None) is None
    assert schema.encode_value("map", {"k": 1}) == {"k": 1}
    u = uuid.uuid4()
    assert schema.encode_value("uuid", str(u)) == u
    assert schema.encode_value("sstr", None) == b""
    assert schema.encode_value("lstr", "caf\u00e9") == "caf\u00e9".encode()
    assert schema.encode_value("sstr", 1234) == b"1234"
    # every encoded value goes through the codec
    for t in ("uint8", "uint16", "uint32", "uint64", "count32", "count64", "hilo32", "mmaTime",
              "deltaTime", "absTime", "bool", "sstr", "lstr", "map", "list"):
        decode(encode(schema.encode_value(t, 1 if t not in ("map", "list", "sstr", "lstr") else None)))


def test_value_names_expand_watermarks_and_mma():
    q = schema.CLASSES["queue"]
    names = [n for e in q.elements for n in e.value_names()]
    assert names[:6] == ["vhostRef", "name", "durable", "autoDelete", "exclusive", "arguments"]
    for n in ("consumerCount", "consumerCountHigh", "consumerCountLow", "bindingCount", "unackedMessages",
              "messageLatencyCount", "messageLatencyMin", "messageLatencyMax", "messageLatencyAvg",
              "msgTotalEnqueues", "msgDepth", "byteDepth", "discardsPurge", "flowStopped", "creator"):
        assert n in names, n
    assert len(names) == len(set(names))


def test_object_names():
    assert schema.object_name("queue", "q1") == "org.apache.qpid.broker:queue:q1"
    assert schema.split_object_name("org.apache.qpid.broker:queue:a:b") == ("queue", "a:b")
    assert schema.split_object_name("org.apache.qpid.broker:exchange:") == ("exchange", "")
    assert schema.split_object_name("amqp-broker") == ("memory", "amqp-broker")
    assert schema.split_object_name("com.example:queue:q") == (None, None)
    assert schema.BROKER_OBJECT_NAME == "org.apache.qpid.broker:broker:amqp-broker"


def test_events_and_hashes():
    ev = schema.EVENTS["queueDeclare"]
    assert [a for a, _ in ev.args] == ["rhost", "user", "qName", "durable", "excl", "autoDel", "altEx",
                                       "args", "disp"]
    assert ev.routing_part == "agent.ind.event.org_apache_qpid_broker.queueDeclare.info."
    assert schema.EVENTS["clientConnectFail"].routing_part.endswith(".warn.")
    assert ev.schema_id()["_type"] == b"_event"
    hashes = {c.hash for c in schema.CLASSES.values()} | {e.hash for e in schema.EVENTS.values()}
    assert len(hashes) == len(schema.CLASSES) + len(schema.EVENTS)
    assert schema.CLASSES["broker"].hash == schema.schema_hash(schema.CLASSES["broker"])
    assert set(schema.CLASSES["broker"].methods) >= {"create", "delete", "query", "echo", "getLogLevel",
                                                     "setLogLevel", "shutdown"}
    assert set(schema.CLASSES["queue"].methods) == {"purge", "reroute"}
