"""The ACL on QMF queries, and the ACL module's QMF events, on a real broker with --auth yes.

Queries (qpidd 1.40's answers, checked on the stock broker): a class query asks ``access query
<class>``, an object query ``access query <object name>``; denied, the request is refused while it is
routed -- the link that sent it is closed with amqp:precondition-failed "unauthorized-access: ACL
denied QMF query of object class queue from bob@QPID" -- not answered with ``_exception``. A method
the ACL denies answers ``_exception`` code 6.

Events (package org.apache.qpid.acl, as qpid-printevents prints them): allow / deny for *-log rules
(userId action objectType objectName arguments), fileLoaded / fileLoadFailed on reloadACLFile,
connectionDeny (userId clientAddr) and queueQuotaDeny (userId queueName) for quota refusals.
"""
import re

import pytest
from proton.utils import BlockingConnection

from tests.integration.test_qmf_agent import Console, QmfError
from tests.integration.test_tools import start as start_tool, stop as stop_tool
from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess
from tests.support.sasl import auth_args

TIMEOUT = 30
ACL_ID = "org.apache.qpid.acl:acl:org.apache.qpid.broker:broker:amqp-broker"
BROKER_ID = "org.apache.qpid.broker:broker:amqp-broker"
USERS = ("admin", "alice", "bob", "carol")

POLICY = """\
quota connections 1 carol@QPID
quota connections 100 all
quota queues 1 carol@QPID
quota queues 100 all
acl deny-log bob@QPID access query name=queue
acl deny bob@QPID access query name=org.apache.qpid.broker:exchange:amq.direct
acl deny-log bob@QPID access method name=echo
acl allow-log all create queue name=logme
acl allow all all
"""


@pytest.fixture
def broker(tmp_path):
    args = auth_args(tmp_path, {u: "pw-%s" % u for u in USERS})
    (tmp_path / "p.acl").write_text(POLICY)
    with BrokerProcess(tmp_path, args + ["--acl-file", str(tmp_path / "p.acl")]) as b:
        yield b


def console(broker, user):
    return Console("%s:pw-%s@%s" % (user, user, broker.url))


def test_queries_denied_close_the_requesting_link(broker):
    bob = console(broker, "bob")
    try:
        assert bob.query("exchange")                                   # allowed
        with pytest.raises(Exception) as info:
            bob.query("queue")
        text = str(info.value)
        assert "amqp:precondition-failed" in text, text
        assert "unauthorized-access: ACL denied QMF query of object class queue from bob@QPID" in text
        bob.sender = bob.conn.create_sender("qmf.default.direct", name="again")
        with pytest.raises(Exception, match="ACL denied QMF query of object "
                                            "org.apache.qpid.broker:exchange:amq.direct from bob@QPID"):
            bob.query(object_name="org.apache.qpid.broker:exchange:amq.direct")
        bob.sender = bob.conn.create_sender("qmf.default.direct", name="third")
        assert bob.query(object_name="org.apache.qpid.broker:exchange:amq.topic")
        with pytest.raises(QmfError) as denied:
            bob.method(BROKER_ID, "echo", {"sequence": 1, "body": "x"})
        assert denied.value.code == 6
    finally:
        bob.close()
    alice = console(broker, "alice")
    try:
        assert alice.query("queue") is not None                        # the rule names bob only
    finally:
        alice.close()


def test_acl_events_reach_qpid_printevents(broker, tmp_path):
    proc, out = start_tool("qpid-printevents", "admin/pw-admin@%s" % broker.url)
    line = r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} org\.apache\.qpid\.acl:"
    try:
        out.wait_for(r"NOTIC qpid-printevents:brokerConnected")
        bob = console(broker, "bob")
        with pytest.raises(QmfError):
            bob.method(BROKER_ID, "echo", {"sequence": 1, "body": "x"})
        out.wait_for(line + r"deny action=access arguments=\{'schemaclass': 'broker', 'schemapackage': "
                            r"'org\.apache\.qpid\.broker'\} objectName=echo objectType=method userId=bob@QPID$")
        bob.method(BROKER_ID, "create", {"type": "queue", "name": "logme", "properties": {}, "strict": True})
        out.wait_for(line + r"allow action=create arguments=\{.*\} objectName=logme objectType=queue "
                            r"userId=bob@QPID$")
        with pytest.raises(Exception):
            bob.query("queue")
        out.wait_for(line + r"deny action=access arguments=\{\} objectName=queue objectType=query userId=bob@QPID$")
        bob.close()

        admin = console(broker, "admin")
        path = tmp_path / "p.acl"
        path.write_text(POLICY + "bad line\n")
        with pytest.raises(QmfError):
            admin.method(ACL_ID, "reloadACLFile")
        out.wait_for(line + r"fileLoadFailed reason=.*p\.acl:10: expected 'group', 'acl' or 'quota', "
                            r"got 'bad' userId=admin@QPID$")
        path.write_text(POLICY)
        admin.method(ACL_ID, "reloadACLFile")
        out.wait_for(line + r"fileLoaded userId=admin@QPID$")
        admin.close()

        carol = BlockingConnection(broker.url, timeout=TIMEOUT, user="carol", password="pw-carol")
        with pytest.raises(Exception, match="amqp:resource-limit-exceeded"):
            BlockingConnection(broker.url, timeout=TIMEOUT, user="carol", password="pw-carol")
        out.wait_for(line + r"connectionDeny clientAddr=127\.0\.0\.1 userId=carol@QPID$")
        carol.create_sender("c1", options=CreateQueue()).close()
        with pytest.raises(Exception, match="ACL denied queue create request for c2 from carol@QPID"):
            carol.create_sender("c2", options=CreateQueue()).close()
        out.wait_for(line + r"queueQuotaDeny queueName=c2 userId=carol@QPID$")
        carol.close()
    finally:
        stop_tool(proc)
    # what printevents printed for the ACL, in order
    acl_lines = [re.sub(r"^.* org\.apache\.qpid\.acl:(\w+) .*$", r"\1", text) for text in out.text.splitlines()
                 if "org.apache.qpid.acl:" in text]
    assert acl_lines == ["deny", "allow", "deny", "fileLoadFailed", "fileLoaded", "connectionDeny",
                         "queueQuotaDeny"], acl_lines
