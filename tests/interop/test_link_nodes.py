"""Links and the nodes they name, seen from python-qpid-proton clients.

A receiver on an exchange gets a private subscription queue named `<container-id>_<link-name>`
(`shared`: the link name). A queue of that name that is not that very subscription's (an application
queue, or another exchange's subscription) is never taken over: the attach is refused with
amqp:precondition-failed and the queue keeps its messages, its bindings and its life.

A node deleted under its producers detaches them with amqp:resource-deleted (as its consumers), so
nothing sent afterwards is accepted into nothing.
"""
import uuid

import pytest
from proton import Message, Timeout
from proton.reactor import Container, DurableSubscription
from proton.utils import BlockingConnection, LinkDetached

from cypid.tools import qmf
from tests.support.amqp import Capabilities, CreateExchange, CreateQueue
from tests.support.blocking import take_all
from tests.support.broker import wait_until

DURABLE = {"durable": True}


def connect(broker, container_id):
    return BlockingConnection(broker.url, timeout=20, container=Container(container_id=container_id))


def fill(conn, queue, bodies, durable=True):
    sender = conn.create_sender(queue, options=CreateQueue(DURABLE if durable else None))
    for body in bodies:
        sender.send(Message(body=body, durable=durable))
    sender.close()


def drain(conn, queue):
    """Every message the queue holds (accepted), in order; proves it is still there, unbound."""
    return [m.body for m in take_all(conn, queue)]


def refused(make):
    with pytest.raises(LinkDetached) as info:
        make()
    assert "amqp:precondition-failed" in str(info.value), str(info.value)
    return str(info.value)


def publish(conn, exchange, bodies, subject=None):
    sender = conn.create_sender(exchange)
    for body in bodies:
        sender.send(Message(body=body, subject=subject))
    sender.close()


# -- item 3 of issue 9: subscription queues never take over another queue ------------------------
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "transient"])
def test_subscription_does_not_take_over_an_application_queue(broker, conn, durable):
    """`evil`'s receiver on amq.fanout named `sub` would get queue `evil_sub`: an application's
    queue of that name is refused, not bound, not consumed, not deleted on detach."""
    fill(conn, "evil_sub", ["secret 0", "secret 1"], durable=durable)
    evil = connect(broker, "evil")
    try:
        text = refused(lambda: evil.create_receiver("amq.fanout", name="sub", credit=10))
        assert "evil_sub" in text
    finally:
        evil.close()
    publish(conn, "amq.fanout", ["fanned"])          # the queue was not bound to amq.fanout
    assert drain(conn, "evil_sub") == ["secret 0", "secret 1"]


def test_shared_subscription_does_not_take_over_an_application_queue(conn):
    fill(conn, "app-q", ["kept"])
    refused(lambda: conn.create_receiver("amq.direct", name="app-q", credit=10,
                                         options=Capabilities("shared")))
    publish(conn, "amq.direct", ["routed?"], subject="")
    assert drain(conn, "app-q") == ["kept"]


def test_shared_subscription_of_another_exchange_is_refused(broker, conn):
    first = conn.create_receiver("amq.fanout", name="s-" + uuid.uuid4().hex[:6], credit=10,
                                 options=[Capabilities("shared"), DurableSubscription()])
    name = first.link.name
    other = BlockingConnection(broker.url, timeout=20)
    try:
        refused(lambda: other.create_receiver("amq.topic", name=name, credit=10,
                                              options=[Capabilities("shared"), DurableSubscription()]))
        # The same exchange's shared subscription is joined, as before.
        second = other.create_receiver("amq.fanout", name=name, credit=10,
                                       options=[Capabilities("shared"), DurableSubscription()])
        publish(conn, "amq.topic", ["not for the fanout queue"], subject="x")
        publish(conn, "amq.fanout", ["fanned"])

        def arrived():
            for receiver in (first, second):   # one of the shared queue's two consumers gets it
                try:
                    return receiver.receive(timeout=0.05)
                except Timeout:
                    pass

        assert wait_until(arrived, timeout=30, message="the fanned message at either consumer").body == "fanned"
        for receiver in (first, second):   # and nothing else (the topic's message never came)
            with pytest.raises(Timeout):
                receiver.receive(timeout=0.3)
    finally:
        other.close()


def test_own_durable_subscription_is_resumed(broker):
    """The subscription's own queue (expiry never) is found again by the same container and link."""
    c = connect(broker, "resumer")
    try:
        sub = c.create_receiver("amq.fanout", name="dsub", credit=10, options=DurableSubscription())
        sub.close()
        publish(c, "amq.fanout", ["while away"])
        again = c.create_receiver("amq.fanout", name="dsub", credit=10, options=DurableSubscription())
        assert again.receive(timeout=10).body == "while away"   # pre-settled: nothing to accept
    finally:
        c.close()


# -- item 6 of issue 9: producers of a deleted node are detached --------------------------------
def qmf_delete(broker, kind, name):
    agent = qmf.connect(broker.url, timeout=20)
    try:
        agent.delete(kind, name)
    finally:
        agent.close()


def wait_detached(conn, sender):
    with pytest.raises(LinkDetached) as info:
        conn.wait(lambda: False, timeout=10, msg="the producer's detach")
    assert info.value.link.name == sender.link.name
    assert sender.link.remote_condition.name == "amqp:resource-deleted", sender.link.remote_condition


def test_producer_of_a_deleted_queue_is_detached(broker, conn):
    sender = conn.create_sender("doomed", options=CreateQueue(DURABLE))
    sender.send(Message(body="before", durable=True))
    qmf_delete(broker, "queue", "doomed")
    wait_detached(conn, sender)
    agent = qmf.connect(broker.url, timeout=20)
    try:
        assert agent.get_queue("doomed") is None
    finally:
        agent.close()


def test_producer_of_a_deleted_exchange_is_detached(broker, conn):
    sender = conn.create_sender("doomed-x", options=CreateExchange("fanout"))
    sender.send(Message(body="before"))
    qmf_delete(broker, "exchange", "doomed-x")
    wait_detached(conn, sender)
    # A new exchange of that name gets its own producers; the old link sends nothing into it.
    conn.create_sender("doomed-x", options=CreateExchange("fanout")).close()
