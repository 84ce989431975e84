"""qpidd's user-id check, with --auth yes: a message whose properties' user-id is not the sender's
authenticated user (``bob@QPID``, or ``bob`` in the default realm) is refused -- rejected, and its
link closed with amqp:not-allowed "Authenticated user id is bob@QPID but user id in message declared
as alice" (what qpidd 1.40 answers) -- and never delivered; one log line per connection. Messages
without a user-id pass. Another broker's connection (a federation link's ``qpid.federation_tag``, an
HA backup's ``qpid.ha-backup``) forwards other users' messages: exempt when its user may ``create
link`` (any user without an ACL). With --auth no nothing is checked (as qpidd).
"""
import pytest
from proton import Message, symbol
from proton.utils import BlockingConnection, LinkDetached, SendException

from tests.interop.test_link_nodes import drain
from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess, wait_until
from tests.support.sasl import auth_args

TIMEOUT = 30
USERS = ("alice", "bob", "fed")


def start(tmp_path, policy=None, auth=True):
    args = auth_args(tmp_path, {u: "pw-%s" % u for u in USERS}) if auth else ["--auth", "no"]
    if policy is not None:
        (tmp_path / "p.acl").write_text(policy)
        args += ["--acl-file", str(tmp_path / "p.acl")]
    return BrokerProcess(tmp_path, args)


def connect(broker, user=None, **kw):
    if user is None:
        return BlockingConnection(broker.url, timeout=TIMEOUT, **kw)
    return BlockingConnection(broker.url, timeout=TIMEOUT, user=user, password="pw-%s" % user, **kw)


def send(conn, address, user_id, body):
    """'' if the message was accepted, else the error text the sender met."""
    sender = conn.create_sender(address)
    try:
        msg = Message(body=body)
        if user_id is not None:
            msg.user_id = user_id
        sender.send(msg)
    except (SendException, LinkDetached) as e:
        return str(e) + " " + str(getattr(sender.link.remote_condition, "description", ""))
    sender.close()
    return ""


def test_forged_user_id_refused_own_forms_accepted(tmp_path):
    with start(tmp_path) as broker:
        bob = connect(broker, "bob")
        bob.create_sender("q", options=CreateQueue()).close()
        assert send(bob, "q", b"bob@QPID", "qualified") == ""
        assert send(bob, "q", b"bob", "default realm") == ""
        assert send(bob, "q", None, "no user-id") == ""
        for forged in (b"alice@QPID", b"alice", b"BOB", b"bob@OTHER"):
            text = send(bob, "q", forged, "forged %r" % forged)
            assert "amqp:not-allowed" in text, text
            assert ("Authenticated user id is bob@QPID but user id in message declared as %s"
                    % forged.decode()) in text
        # never delivered, the connection still serves
        assert drain(bob, "q") == ["qualified", "default realm", "no user-id"]
        assert len(broker.log_lines(r"Authenticated user id is bob@QPID but user id in message")) == 1
        bob.close()


def test_anonymous_relay_and_exchanges_checked_too(tmp_path):
    with start(tmp_path) as broker:
        bob = connect(broker, "bob")
        assert "amqp:not-allowed" in send(bob, "amq.fanout", b"alice@QPID", "x")
        sender = bob.create_sender(None)
        with pytest.raises((SendException, LinkDetached)):
            sender.send(Message(address="amq.fanout", body="x", user_id=b"alice@QPID"))
        bob.close()


def test_no_check_without_authentication(tmp_path):
    with start(tmp_path, auth=False) as broker:
        c = connect(broker)
        c.create_sender("q", options=CreateQueue()).close()
        assert send(c, "q", b"alice@QPID", "anyone") == ""
        assert drain(c, "q") == ["anyone"]
        c.close()


FED = {symbol("qpid.federation_tag"): "other-broker"}


@pytest.mark.parametrize("policy,exempt", [
    (None, True),                                                       # no ACL: everything allowed
    ("acl allow fed@QPID create link\nacl allow all all\n", True),      # may create links
    ("acl deny fed@QPID create link\nacl allow all all\n", False),      # may not
])
def test_another_brokers_connection_is_exempt_when_it_may_create_links(tmp_path, policy, exempt):
    with start(tmp_path, policy) as broker:
        fed = connect(broker, "fed", properties=FED)
        fed.create_sender("q", options=CreateQueue()).close()
        text = send(fed, "q", b"alice@QPID", "forwarded")
        assert (text == "") is exempt, text
        # a client without the property is checked whatever the ACL says
        plain = connect(broker, "fed")
        assert "amqp:not-allowed" in send(plain, "q", b"alice@QPID", "forged")
        assert drain(plain, "q") == (["forwarded"] if exempt else [])
        fed.close()
        plain.close()


def test_a_push_route_forwards_other_users_messages(broker_factory, tmp_path):
    """cypid's own federation under --auth yes: B pushes to A over a link that logs in as fed@QPID;
    alice's messages (user-id alice@QPID) cross it, since A's ACL lets fed@QPID create links."""
    from tests.integration.test_federation import FAST_LINKS
    from tests.integration.test_tools import ok, run
    (tmp_path / "a.acl").write_text("acl allow fed@QPID create link\nacl allow all all\n")
    a = broker_factory(*FAST_LINKS, *auth_args(tmp_path / "a", {"fed": "pw-fed", "alice": "pw-alice"}),
                       "--acl-file", str(tmp_path / "a.acl"))
    b = broker_factory(*FAST_LINKS, *auth_args(tmp_path / "b", {"alice": "pw-alice"}))
    a_url, b_url = "fed/pw-fed@" + a.url, "alice/pw-alice@" + b.url
    for url in (a_url, b_url):
        ok(run("qpid-config", "-b", url, "add", "exchange", "direct", "fed.direct"))
    ok(run("qpid-config", "-b", a_url, "add", "queue", "pushed"))
    ok(run("qpid-config", "-b", a_url, "bind", "fed.direct", "pushed", "k"))
    ok(run("qpid-route", "-s", "route", "add", a_url, b_url, "fed.direct", "k"))
    wait_until(lambda: "Operational" in ok(run("qpid-route", "link", "list", b_url)), message="B's link up")
    alice_b, alice_a = connect(b, "alice"), connect(a, "alice")
    try:
        sender = alice_b.create_sender("fed.direct")
        for i in range(5):
            sender.send(Message(body="p%d" % i, subject="k", user_id=b"alice@QPID"))
        receiver = alice_a.create_receiver("pushed", credit=10)
        got = []
        for _ in range(5):
            got.append(receiver.receive(timeout=TIMEOUT).body)
            receiver.accept()
        assert got == ["p%d" % i for i in range(5)]
    finally:
        alice_b.close()
        alice_a.close()
    assert not a.log_lines(r"Authenticated user id is")


def test_forged_user_id_in_a_transaction_is_refused(tmp_path):
    """A transactional transfer gets the same check: refused, its link closed, and the transaction
    can then only roll back (nothing of it is ever delivered)."""
    from tests.support.txclient import TxClient, descriptor
    with start(tmp_path) as broker:
        bob = connect(broker, "bob")
        bob.create_sender("q", options=CreateQueue()).close()
        with TxClient(broker, user="bob", password="pw-bob") as c:
            txn = c.declare()
            s = c.sender("q")
            assert descriptor(c.send(s, "own", txn=txn, user_id=b"bob")) == 0x34
            state = c.send(s, "forged", txn=txn, user_id=b"alice")
            assert descriptor(state) == 0x25 and str(state.value[0].value[0]) == "amqp:not-allowed"
            state = c.discharge(txn)
            assert descriptor(state) == 0x25 and str(state.value[0].value[0]) == "amqp:transaction:rollback"
        assert drain(bob, "q") == []
        bob.close()
