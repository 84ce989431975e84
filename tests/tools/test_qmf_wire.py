"""QMF on the wire as qpidd sends it, checked on cypid and on a stock qpidd alike (any_broker): string
values, object names, schema ids, method output arguments, exception texts and agent information are
AMQP binary; map keys and application properties are strings; client-given map values keep their
type. Consoles written for qpidd (qpid-bow calls ``.decode()`` on them) can tell the difference."""
from __future__ import annotations

import uuid

from proton import Message
from proton.utils import BlockingConnection

PKG = "org.apache.qpid.broker"
BROKER_ID = PKG + ":broker:amqp-broker"
TIMEOUT = 60


class RawConsole:
    """QMF requests with python-qpid-proton, replies kept exactly as decoded (no conversion)."""

    def __init__(self, url):
        self.conn = BlockingConnection(url, timeout=TIMEOUT)
        self.receiver = self.conn.create_receiver(None, dynamic=True, credit=100)
        self.sender = self.conn.create_sender("qmf.default.direct")
        self.reply_to = self.receiver.remote_source.address

    def request(self, opcode, body):
        cid = str(uuid.uuid4())
        self.sender.send(Message(subject="broker", reply_to=self.reply_to, correlation_id=cid, body=body,
                                 properties={"qmf.opcode": opcode, "x-amqp-0-10.app-id": "qmf2",
                                             "method": "request"}))
        while True:
            msg = self.receiver.receive(timeout=TIMEOUT)
            self.receiver.accept()
            if msg.correlation_id == cid:
                # the kinds, taken now: the views die with the next receive
                return shape(msg.properties), shape(msg.body)

    def method(self, name, arguments):
        return self.request("_method_request", {"_object_id": {"_object_name": BROKER_ID},
                                                "_method_name": name, "_arguments": arguments})

    def close(self):
        self.conn.close()


def shape(value):
    """The value with every leaf replaced by what a console sees: ('binary', text), ('string', text),
    or the leaf itself for other types."""
    if isinstance(value, (memoryview, bytes)):
        return ("binary", bytes(value).decode())
    if isinstance(value, str):
        return ("string", str(value))
    if isinstance(value, dict):
        return {shape(k): shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return value


def B(text):
    return ("binary", text)


def S(text):
    return ("string", text)


def test_strings_are_binary_as_qpidd_sends_them(any_broker):
    console = RawConsole(any_broker.url)
    try:
        name = "wire-%s" % uuid.uuid4().hex[:8]
        props, body = console.method("create", {"type": "queue", "name": name,
                                                "properties": {"durable": False, "x-note": "kept"}})
        assert props[S("qmf.opcode")] == S("_method_response") and body == {S("_arguments"): {}}
        props, body = console.request("_query_request", {"_what": "OBJECT",
                                                         "_object_id": {"_object_name": PKG + ":queue:" + name}})
        assert props[S("qmf.opcode")] == S("_query_response") and props[S("method")] == S("response")
        (obj,) = body
        assert obj[S("_object_id")][S("_object_name")] == B(PKG + ":queue:" + name)
        sid = obj[S("_schema_id")]
        assert (sid[S("_package_name")], sid[S("_class_name")], sid[S("_type")]) == (B(PKG), B("queue"), B("_data"))
        values = obj[S("_values")]
        assert values[S("name")] == B(name)
        assert values[S("vhostRef")] == {S("_object_name"): B(PKG + ":vhost:" + BROKER_ID + ",/")}
        assert values[S("durable")] is False
        assert values[S("arguments")][S("x-note")] == S("kept")      # the client's value, as given

        props, body = console.method("getLogLevel", {})
        assert isinstance(body[S("_arguments")][S("level")], tuple)
        assert body[S("_arguments")][S("level")][0] == "binary"
        props, body = console.method("echo", {"sequence": 7, "body": "hello"})
        assert body[S("_arguments")] == {S("sequence"): 7, S("body"): B("hello")}

        props, body = console.method("create", {"type": "queue", "name": name, "properties": {}})
        assert props[S("qmf.opcode")] == S("_exception")
        assert body[S("_values")][S("error_code")] == 7
        assert body[S("_values")][S("error_text")] == B("object already exists: " + name)

        props, body = console.request("_agent_locate_request", {})
        info = body[S("_values")]
        assert info[S("_vendor")] == B("apache.org") and info[S("_product")] == B("qpidd")
        assert info[S("_name")][0] == "binary" and info[S("_instance")][0] == "binary"
        console.method("delete", {"type": "queue", "name": name, "options": {}})
    finally:
        console.close()
