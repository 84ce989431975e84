"""--acl-file against a real broker with --auth yes: one table row per action / object / property
kind, allowed and denied, by user and by group rules, with wildcards, driven through AMQP
(python-qpid-proton; a raw client where the rejected outcome's error must be read) and QMF. Also:
*-log rules write one line per decision, reloadACLFile, a bad file refused with its line number.
"""
import sys
from pathlib import Path

import pytest
from proton import Message
from proton.utils import BlockingConnection, SendException

from tests.integration.test_qmf_agent import Console, QmfError
from tests.support.amqp import TOPIC_FILTER, BindingFilter, CreateQueue
from tests.support.broker import BrokerProcess, BrokerStartError, wait_until
from tests.support.sasl import auth_args
from tests.support.rawclient import (
    DISPOSITION, REJECTED, SENDER, RawClient, encode_message, source, target,
)

TIMEOUT = 30
BIN = Path(sys.executable).parent
ACL_ID = "org.apache.qpid.acl:acl:org.apache.qpid.broker:broker:amqp-broker"
BROKER_ID = "org.apache.qpid.broker:broker:amqp-broker"
USERS = ("admin", "alice", "bob", "carol", "dave")

POLICY = """\
# cypid's ACL test table policy
group admins admin@QPID
group readers bob@QPID \\
              carol@QPID
acl allow admins all all
acl deny-log dave@QPID create connection host=127.0.0.1
acl deny-log carol@QPID access queue name=private*
acl allow all access queue
acl allow all access exchange
acl deny-log alice@QPID create queue durable=true
acl allow alice@QPID create queue name=alice.*
acl allow all create queue autodelete=true
acl deny-log bob@QPID consume queue name=secret*
acl allow readers consume queue
acl allow all consume queue autodelete=true
acl allow bob@QPID bind exchange name=amq.topic routingkey=news.#
acl allow all bind exchange name=qmf.default.topic
acl allow alice@QPID publish exchange name=amq.topic routingkey=news.*
acl allow alice@QPID publish exchange routingkey=alice.*
acl allow all publish exchange name=qmf.default.direct
acl allow all access method name=getLogLevel
acl allow carol@QPID access method name=purge schemaclass=queue
acl allow-log carol@QPID purge queue name=work*
acl allow alice@QPID access method name=create
acl allow alice@QPID access method name=delete
acl allow alice@QPID delete queue name=alice.*
acl deny alice@QPID consume queue name=bob.*
acl allow alice@QPID create exchange name=alice.* type=fanout
acl allow alice@QPID delete exchange name=alice.*
acl allow alice@QPID bind exchange name=amq.direct queuename=alice.*
acl allow alice@QPID unbind exchange name=amq.direct queuename=alice.* routingkey=k1
acl deny-log all all
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    base = tmp_path_factory.mktemp("acl")
    args = auth_args(base, {user: "pw-%s" % user for user in USERS})
    (base / "policy.acl").write_text(POLICY)
    b = BrokerProcess(base, args + ["--acl-file", str(base / "policy.acl")])
    b.start()
    admin = BlockingConnection(b.url, timeout=TIMEOUT, user="admin", password="pw-admin")
    for q in ("secret.q", "private.q", "work.q", "bob.q", "shared.q", "alice.made"):  # each test runs alone
        admin.create_sender(q, options=CreateQueue()).close()
    b.admin = admin
    yield b
    admin.close()
    b.stop()


def connect(broker, user):
    return BlockingConnection(broker.url, timeout=TIMEOUT, user=user, password="pw-%s" % user)


def denied(fn):
    """Run fn; '' if it went through, else the text of the amqp:unauthorized-access it met."""
    try:
        fn()
    except Exception as e:   # proton's LinkDetached / ConnectionException carry the condition text
        text = str(e)
        assert "amqp:unauthorized-access" in text, text
        return text
    return ""


def raw_publish(broker, user, address, subject=None):
    """Publish one message with a raw client; returns the rejected outcome's error or None."""
    with RawClient.connect(broker) as c:
        assert c.sasl("PLAIN", b"\x00%s\x00pw-%s" % (user.encode(), user.encode())) == 0
        c.amqp_header()
        c.open()
        ch = c.begin()
        c.attach(ch, "p", 0, SENDER, source("src"), target(address))
        did = c.transfer(ch, 0, encode_message("m", properties=[None, None, None, subject]))
        while True:
            frame = c.expect(DISPOSITION, skip=(0x13,))
            if frame.field(1) <= did <= (frame.field(2) if frame.field(2) is not None else frame.field(1)):
                break
        state = frame.field(4)
        if state.descriptor == REJECTED:
            condition, description = state.value[0].value[0], state.value[0].value[1]
            return "%s %s" % (condition, description)
        return None


# -- the table: (row id, user, operation, argument, expected denial text or "" for allowed) ---------------
def op_connect(broker, user, _):
    connect(broker, user).close()


def op_create_queue(broker, user, arg):
    name, props = arg
    with_conn(broker, user, lambda c: c.create_sender(name, options=CreateQueue(props)).close())


def op_consume(broker, user, name):
    with_conn(broker, user, lambda c: c.create_receiver(name).close())


def op_subscribe(broker, user, key):
    with_conn(broker, user, lambda c: c.create_receiver(
        "amq.topic", options=BindingFilter(TOPIC_FILTER, key)).close())


def with_conn(broker, user, fn):
    conn = connect(broker, user)
    try:
        fn(conn)
    finally:
        conn.close()


TABLE = [
    ("connect allowed, user", "alice", op_connect, None, ""),
    ("connect denied by host rule", "dave", op_connect, None, "ACL denied connection create request for 127.0.0.1 from dave@QPID"),
    ("create queue, user wildcard", "alice", op_create_queue, ("alice.q1", {}), ""),
    ("create queue, other name", "alice", op_create_queue, ("bob.q1", {}), "ACL denied queue create request for bob.q1 from alice@QPID"),
    ("create queue, durable=true property", "alice", op_create_queue, ("alice.d", {"durable": True}),
     "ACL denied queue create request for alice.d from alice@QPID"),
    ("create queue, admins group all", "admin", op_create_queue, ("anything.q", {"durable": True}), ""),
    ("consume, readers group", "carol", op_consume, "shared.q", ""),
    ("consume, user deny wildcard before group allow", "bob", op_consume, "secret.q",
     "ACL denied queue consume request for secret.q from bob@QPID"),
    ("consume, not a reader", "alice", op_consume, "shared.q", "ACL denied queue consume request for shared.q from alice@QPID"),
    ("access, user deny wildcard", "carol", op_consume, "private.q", "ACL denied queue access request for private.q from carol@QPID"),
    ("subscribe: create+bind+consume, topic key", "bob", op_subscribe, "news.#", ""),
    ("subscribe: bind with another key", "bob", op_subscribe, "sport.#",
     "ACL denied exchange bind request for amq.topic from bob@QPID"),
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_amqp_table(broker, row):
    _, user, op, arg, want = row
    got = denied(lambda: op(broker, user, arg))
    if want:
        assert want in got
    else:
        assert got == ""


PUBLISH = [
    ("publish exchange, key in topic pattern", "alice", "amq.topic", "news.today", None),
    ("publish exchange, key outside pattern", "alice", "amq.topic", "news.a.b",
     "amqp:unauthorized-access ACL denied exchange publish request for amq.topic from alice@QPID with routing key news.a.b"),
    ("publish to a queue: default exchange, key = queue", "alice", "alice.made", None, None),
    ("publish to a queue not allowed", "alice", "bob.q", None,
     "amqp:unauthorized-access ACL denied exchange publish request for  from alice@QPID with routing key bob.q"),
    ("publish, no publish rule for the user", "carol", "amq.topic", "news.today",
     "amqp:unauthorized-access ACL denied exchange publish request for amq.topic from carol@QPID"),
    ("publish, admins group", "admin", "amq.topic", "x.y", None),
]


@pytest.mark.parametrize("row", PUBLISH, ids=[r[0] for r in PUBLISH])
def test_publish_table(broker, row):
    _, user, address, subject, want = row
    got = raw_publish(broker, user, address, subject)
    if want is None:
        assert got is None
    else:
        assert got is not None and got.startswith(want)


def test_publish_denied_through_proton(broker):
    conn = connect(broker, "alice")
    try:
        sender = conn.create_sender("amq.topic")
        sender.send(Message(subject="news.ok", body="fine"))
        with pytest.raises(SendException):
            sender.send(Message(subject="sport", body="not allowed"))
        sender.send(Message(subject="news.again", body="the link stays up"))
    finally:
        conn.close()


# -- QMF: access method (code 6), and what a method does ----------------------------------------------
def console(broker, user):
    return Console("%s:pw-%s@%s" % (user, user, broker.url), reply_exchange=True)


QMF = [
    ("method allowed to all", "bob", BROKER_ID, "getLogLevel", {}, None),
    ("method not allowed", "bob", BROKER_ID, "setLogLevel", {"level": "debug+"},
     "ACL denied method access request for setLogLevel from bob@QPID"),
    ("create allowed: method and queue name", "alice", BROKER_ID, "create",
     {"type": "queue", "name": "alice.qmf", "properties": {}, "strict": True}, None),
    ("create: method allowed, queue denied", "alice", BROKER_ID, "create",
     {"type": "queue", "name": "nope.qmf", "properties": {}, "strict": True},
     "ACL denied queue create request for nope.qmf from alice@QPID"),
    ("delete allowed by wildcard", "alice", BROKER_ID, "delete", {"type": "queue", "name": "alice.qmf", "options": {}}, None),
    ("delete denied", "alice", BROKER_ID, "delete", {"type": "queue", "name": "shared.q", "options": {}},
     "ACL denied queue delete request for shared.q from alice@QPID"),
    ("create exchange, name and type properties", "alice", BROKER_ID, "create",
     {"type": "exchange", "name": "alice.fx", "properties": {"exchange-type": "fanout"}, "strict": True}, None),
    ("create exchange, another type", "alice", BROKER_ID, "create",
     {"type": "exchange", "name": "alice.tx", "properties": {"exchange-type": "topic"}, "strict": True},
     "ACL denied exchange create request for alice.tx from alice@QPID"),
    ("delete exchange allowed by wildcard", "alice", BROKER_ID, "delete",
     {"type": "exchange", "name": "alice.fx", "options": {}}, None),
    ("delete exchange denied", "alice", BROKER_ID, "delete", {"type": "exchange", "name": "amq.match", "options": {}},
     "ACL denied exchange delete request for amq.match from alice@QPID"),
    ("bind, queuename property", "alice", BROKER_ID, "create",
     {"type": "binding", "name": "amq.direct/alice.made/k1", "properties": {}, "strict": True}, None),
    ("bind, another queue", "alice", BROKER_ID, "create",
     {"type": "binding", "name": "amq.direct/shared.q/k1", "properties": {}, "strict": True},
     "ACL denied exchange bind request for amq.direct from alice@QPID"),
    ("unbind, queuename wildcard and routingkey", "alice", BROKER_ID, "delete",
     {"type": "binding", "name": "amq.direct/alice.made/k1", "options": {}}, None),
    ("unbind, key outside the wildcard", "alice", BROKER_ID, "delete",
     {"type": "binding", "name": "amq.direct/alice.made/x1", "options": {}},
     "ACL denied exchange unbind request for amq.direct from alice@QPID"),
    ("purge allowed with allow-log", "carol", "org.apache.qpid.broker:queue:work.q", "purge", {"request": 0}, None),
    ("purge denied for other queue", "carol", "org.apache.qpid.broker:queue:shared.q", "purge", {"request": 0},
     "ACL denied queue purge request for shared.q from carol@QPID"),
    ("purge method denied by schemaclass", "bob", "org.apache.qpid.broker:queue:work.q", "purge", {"request": 0},
     "ACL denied method access request for purge from bob@QPID"),
]


#: What an allowed delete deletes, made first by the admin (if an earlier row has not): each row runs
#: alone (-k), in any order, on any worker.
QMF_MADE_FIRST = {
    "delete allowed by wildcard": ("queue", "alice.qmf", {}),
    "delete exchange allowed by wildcard": ("exchange", "alice.fx", {"exchange-type": "fanout"}),
    "unbind, queuename wildcard and routingkey": ("binding", "amq.direct/alice.made/k1", {}),
}


@pytest.mark.parametrize("row", QMF, ids=[r[0] for r in QMF])
def test_qmf_table(broker, row):
    name, user, oid, method, args, want = row
    if name in QMF_MADE_FIRST:
        admin = console(broker, "admin")
        try:
            admin.create(*QMF_MADE_FIRST[name])
        except QmfError as e:
            assert e.code == 7 and "already exists" in e.text, e.text
        finally:
            admin.close()
    c = console(broker, user)
    try:
        if want is None:
            c.method(oid, method, args)
        else:
            with pytest.raises(QmfError) as info:
                c.method(oid, method, args)
            assert info.value.code == 6
            assert want in info.value.text
    finally:
        c.close()


def test_log_rules_write_one_line_per_decision(broker):
    before = len(broker.log_lines(r"ACL denied: bob@QPID consume queue secret\.q"))
    for _ in range(3):
        assert denied(lambda: op_consume(broker, "bob", "secret.q"))
    wait_until(lambda: len(broker.log_lines(r"ACL denied: bob@QPID consume queue secret\.q")) == before + 3,
               timeout=TIMEOUT)
    line = broker.log_lines(r"ACL denied: bob@QPID consume queue secret\.q")[-1]
    assert "policy.acl:13)" in line
    c = console(broker, "carol")
    try:
        c.method("org.apache.qpid.broker:queue:work.q", "purge", {"request": 0})
    finally:
        c.close()
    broker.wait_for_log(r"ACL allowed: carol@QPID purge queue work\.q .*policy\.acl:23\)")
    # a plain deny rule logs no ACL line
    assert "ACL denied queue consume request for bob.q from alice@QPID" in \
        denied(lambda: op_consume(broker, "alice", "bob.q"))
    broker.wait_for_log(r"refused: amqp:unauthorized-access: ACL denied queue consume request for bob\.q")
    assert not broker.log_lines(r"ACL denied: alice@QPID consume queue bob\.q")


def test_acl_object_lookup_and_reload(broker):
    c = console(broker, "admin")
    try:
        (acl,) = c.query("acl")
        values = acl["_values"]
        assert values["enforcingAcl"] is True and values["transferAcl"] is True
        assert values["policyFile"].endswith("policy.acl")
        assert c.method(ACL_ID, "Lookup", {"userId": "bob@QPID", "action": "consume", "object": "queue",
                                           "objectName": "secret.x", "propertyMap": {}})["result"] == "deny-log"
        assert c.method(ACL_ID, "LookupPublish", {"userId": "alice@QPID", "exchangeName": "amq.topic",
                                                  "routingKey": "news.x"})["result"] == "allow"
        path = Path(values["policyFile"])
        path.write_text(POLICY.replace("acl allow alice@QPID create queue name=alice.*",
                                       "acl allow alice@QPID create queue name=alice.*\n"
                                       "acl allow alice@QPID create queue name=bob.*"))
        c.method(ACL_ID, "reloadACLFile")
        assert denied(lambda: op_create_queue(broker, "alice", ("bob.q2", {}))) == ""
        path.write_text(POLICY + "acl allow all frobnicate\n")
        with pytest.raises(QmfError) as info:
            c.method(ACL_ID, "reloadACLFile")
        assert "policy.acl:%d: unknown action 'frobnicate'" % (POLICY.count("\n") + 1) in info.value.text
        broker.wait_for_log("ACL file not reloaded")
        assert denied(lambda: op_create_queue(broker, "alice", ("bob.q3", {}))) == ""   # the last good one
        path.write_text(POLICY)
        c.method(ACL_ID, "reloadACLFile")
        assert denied(lambda: op_create_queue(broker, "alice", ("bob.q4", {})))
    finally:
        c.close()
    b = console(broker, "bob")
    try:
        with pytest.raises(QmfError) as info:
            b.method(ACL_ID, "reloadACLFile")
        assert info.value.code == 6
    finally:
        b.close()


def test_bad_acl_file_stops_the_broker_naming_the_line(tmp_path):
    (tmp_path / "bad.acl").write_text("group g a@QPID\n\nacl allow g consume queue\nacl allow all explode\n")
    with pytest.raises(BrokerStartError, match=r"bad\.acl:4: unknown action 'explode'"):
        BrokerProcess(tmp_path, ["--acl-file", str(tmp_path / "bad.acl")], start_timeout=TIMEOUT).start()


def test_relative_file_in_data_dir_and_unauthenticated_user_is_anonymous(tmp_path):
    broker = BrokerProcess(tmp_path, ["--acl-file", "p.acl"])
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "p.acl").write_text("acl deny-log anonymous create queue name=no.*\nacl allow all all\n")
    with broker:
        conn = BlockingConnection(broker.url, timeout=TIMEOUT)
        try:
            conn.create_sender("yes.q", options=CreateQueue()).close()
            assert "ACL denied queue create request for no.q from anonymous" in \
                denied(lambda: conn.create_sender("no.q", options=CreateQueue()).close())
        finally:
            conn.close()
