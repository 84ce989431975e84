"""Exchange options set through AMQP 1.0 node properties (a sender or receiver with the topic +
create-on-demand capabilities; amqp10-mapping.md sections 3, 4 and 9), end to end with
python-qpid-proton: qpid.msg_sequence, qpid.ive, headers bindings, alternate exchanges and
auto-delete.

Receivers on an exchange get a private subscription queue (FIFO); a message that must not arrive is
shown absent without waiting: a sentinel sent after it arrives first.
"""
import uuid

import pytest
from proton import LinkException, Message, symbol
from proton.utils import BlockingConnection

from tests.support.amqp import (
    DIRECT_FILTER,
    HEADERS_FILTER,
    BindingFilter,
    Capabilities,
    CreateExchange,
)
from tests.support.broker import wait_until

SEQUENCE = symbol("qpid.msg_sequence")


@pytest.fixture
def conn(broker):
    c = BlockingConnection(broker.url, timeout=30)
    yield c
    c.close()


def subscribe(conn, exchange, options=None, name=None):
    return conn.create_receiver(exchange, credit=20, options=options,
                                name=name or "%s-%s" % (exchange, uuid.uuid4().hex[:8]))


def take(receiver, count, timeout=20):
    out = []
    for _ in range(count):
        out.append(receiver.receive(timeout=timeout))
        if receiver.fetcher.unsettled:
            receiver.accept()
    return out


def bodies(receiver, count):
    return [m.body for m in take(receiver, count)]


def exchange_exists(broker, name):
    """A sender to exchange ``name`` without create-on-demand attaches, or is refused (not-found).
    (As in qpidd, the probe's own detach may delete an auto-delete exchange that is otherwise unused.)"""
    c = BlockingConnection(broker.url, timeout=30)
    try:
        c.create_sender(name, options=Capabilities("topic")).close()
        return True
    except LinkException:
        return False
    finally:
        c.close()


# -- qpid.msg_sequence --------------------------------------------------------------------------------
def test_msg_sequence_numbers_each_exchanges_messages(conn):
    seqx = conn.create_sender("seqx", options=CreateExchange("fanout", {"qpid.msg_sequence": True}))
    seqy = conn.create_sender("seqy", options=CreateExchange("topic", {"qpid.msg_sequence": True}))
    plain = conn.create_sender("plainx", options=CreateExchange("fanout"))
    rx, ry, rp = subscribe(conn, "seqx"), subscribe(conn, "seqy"), subscribe(conn, "plainx")
    for i in range(3):
        seqx.send(Message(body="x%d" % i))
        seqy.send(Message(body="y%d" % i, subject="any.key"))
        plain.send(Message(body="p%d" % i))
    for receiver, prefix in ((rx, "x"), (ry, "y")):
        got = take(receiver, 3)
        assert [m.body for m in got] == [prefix + str(i) for i in range(3)]
        assert [m.annotations[SEQUENCE] for m in got] == [1, 2, 3]
        assert all(type(m.annotations[SEQUENCE]) is int for m in got)      # an AMQP long (int64)
    assert [m.annotations for m in take(rp, 3)] == [None] * 3


def test_msg_sequence_keeps_other_annotations_and_counts_unrouted_messages(conn):
    sender = conn.create_sender("seqd", options=CreateExchange("direct", {"qpid.msg_sequence": True}))
    sender.send(Message(body="nobody", subject="unbound"))     # dropped, but numbered (qpidd's PreRoute)
    receiver = subscribe(conn, "seqd", options=BindingFilter(DIRECT_FILTER, "k"))
    sender.send(Message(body="mine", subject="k", properties={"p": 1},
                        annotations={symbol("x-opt-origin"): "test", SEQUENCE: -5}))
    (msg,) = take(receiver, 1)
    assert msg.body == "mine" and msg.properties == {"p": 1} and msg.subject == "k"
    assert msg.annotations == {symbol("x-opt-origin"): "test", SEQUENCE: 2}


# -- qpid.ive ----------------------------------------------------------------------------------------
def test_ive_gives_the_last_message_to_each_new_binding(conn):
    sender = conn.create_sender("ivex", options=CreateExchange("fanout", {"qpid.ive": True}))
    sender.send(Message(body="first"))
    sender.send(Message(body="last", properties={"k": "v"}))     # nobody bound: both dropped, last kept
    early = subscribe(conn, "ivex")
    (msg,) = take(early, 1)
    assert msg.body == "last" and msg.properties == {"k": "v"}
    sender.send(Message(body="next"))
    assert bodies(early, 1) == ["next"]
    late = subscribe(conn, "ivex")
    assert bodies(late, 1) == ["next"]
    sender.send(Message(body="end"))
    # qpidd routes the last message through the exchange again on each new binding: the earlier
    # binding gets "next" once more (stock qpidd 1.40 does exactly this)
    assert bodies(early, 2) == ["next", "end"]
    assert bodies(late, 1) == ["end"]


def test_ive_replay_only_to_a_binding_the_message_matches(conn):
    sender = conn.create_sender("ived", options=CreateExchange("direct", {"qpid.ive": True}))
    sender.send(Message(body="for-k1", subject="k1"))
    other = subscribe(conn, "ived", options=BindingFilter(DIRECT_FILTER, "k2"))
    matching = subscribe(conn, "ived", options=BindingFilter(DIRECT_FILTER, "k1"))
    assert bodies(matching, 1) == ["for-k1"]
    sender.send(Message(body="end", subject="k2"))
    assert bodies(other, 1) == ["end"]


def test_exchange_without_ive_gives_a_new_binding_nothing(conn):
    sender = conn.create_sender("noive", options=CreateExchange("fanout"))
    sender.send(Message(body="before"))
    receiver = subscribe(conn, "noive")
    sender.send(Message(body="after"))
    assert bodies(receiver, 1) == ["after"]


# -- headers bindings -----------------------------------------------------------------------------------
def test_headers_exchange_x_match_all_and_any(conn):
    sender = conn.create_sender("hdrs", options=CreateExchange("headers"))
    r_all = subscribe(conn, "hdrs", options=BindingFilter(
        HEADERS_FILTER, {"x-match": "all", "colour": "red", "n": 3, "flag": True}))
    r_any = subscribe(conn, "hdrs", options=BindingFilter(HEADERS_FILTER, {"x-match": "any", "colour": "red",
                                                                           "shape": "round"}))
    r_present = subscribe(conn, "hdrs", options=BindingFilter(HEADERS_FILTER, {"x-match": "all",
                                                                               "tag": None}))
    # qpid-config sends binding values as strings: "4" matches the number 4
    r_text = subscribe(conn, "hdrs", options=BindingFilter(HEADERS_FILTER, {"n": "4"}))
    sent = [
        ("all", {"colour": "red", "n": 3, "flag": True}),              # all, any
        ("all+extra", {"colour": "red", "n": 3, "flag": True, "x": 1}),  # all, any
        ("wrong-n", {"colour": "red", "n": 4, "flag": True}),           # any
        ("flag-off", {"colour": "red", "n": 3, "flag": False}),        # any
        ("round", {"shape": "round"}),                                  # any
        ("tagged", {"tag": "anything"}),                                # present
        ("none", {}),
        ("end", {"colour": "red", "n": 4, "flag": True, "shape": "round", "tag": 0}),
    ]
    for body, props in sent:
        sender.send(Message(body=body, properties=props))
    assert bodies(r_all, 2) == ["all", "all+extra"]
    assert bodies(r_any, 6) == ["all", "all+extra", "wrong-n", "flag-off", "round", "end"]
    assert bodies(r_present, 2) == ["tagged", "end"]
    assert bodies(r_text, 2) == ["wrong-n", "end"]
    sender.send(Message(body="sentinel", properties={"colour": "red", "n": 3, "flag": True}))
    assert bodies(r_all, 1) == ["sentinel"]     # "end" (n=4) did not match all


# -- alternate exchange of an exchange ----------------------------------------------------------------
def test_unroutable_messages_go_to_the_exchanges_alternate(conn):
    dead = subscribe(conn, "amq.fanout", name="unroutable")
    sender = conn.create_sender("altd", options=CreateExchange("direct",
                                                               {"alternate-exchange": "amq.fanout"}))
    sender.send(Message(body="no binding yet", subject="k"))
    bound = subscribe(conn, "altd", options=BindingFilter(DIRECT_FILTER, "k"))
    sender.send(Message(body="routed", subject="k"))
    sender.send(Message(body="unroutable", subject="other", properties={"p": "v"}))
    assert bodies(bound, 1) == ["routed"]
    got = take(dead, 2)
    assert [m.body for m in got] == ["no binding yet", "unroutable"]
    assert got[1].subject == "other" and got[1].properties == {"p": "v"}


def test_alternate_exchange_must_exist(conn):
    with pytest.raises(LinkException) as info:
        conn.create_sender("bad-alt", options=CreateExchange("direct", {"alternate-exchange": "no-such-ex"}))
    assert "no-such-ex" in str(info.value)


# -- auto-delete ---------------------------------------------------------------------------------------
def test_auto_delete_exchange_goes_with_its_last_binding(broker, conn):
    first = subscribe(conn, "adx", options=CreateExchange("topic", {"auto-delete": True}))
    second = subscribe(conn, "adx")
    first.close()
    assert exchange_exists(broker, "adx")        # one binding left
    second.close()                               # its subscription queue, and so the binding, go
    wait_until(lambda: not exchange_exists(broker, "adx"), timeout=20, message="exchange adx to be deleted")


def test_auto_delete_exchange_stays_while_a_producer_is_attached(broker, conn):
    sender = conn.create_sender("adp", options=CreateExchange("fanout", {"auto-delete": True}))
    receiver = subscribe(conn, "adp")
    receiver.close()
    assert exchange_exists(broker, "adp")        # no binding, but a producer
    sender.send(Message(body="still routed"))
    sender.close()
    wait_until(lambda: not exchange_exists(broker, "adp"), timeout=20, message="exchange adp to be deleted")


def test_exchange_without_auto_delete_stays(broker, conn):
    receiver = subscribe(conn, "keepx", options=CreateExchange("topic"))
    receiver.close()
    assert exchange_exists(broker, "keepx")
    assert exchange_exists(broker, "keepx")
