"""Queue options set through AMQP 1.0 node properties (create-on-demand), end to end, as an
unmodified python-qpid-proton client sees them (amqp10-mapping.md sections 4 and 8).

Receivers are created with ``credit=None`` where the count matters: proton's BlockingReceiver then
asks for exactly one message per ``receive()`` (a numeric credit keeps the window topped up, so the
receiver would acquire more than it asked for). Nothing here sleeps for a fixed time: a thing that
must not have happened yet is checked right after the event that would have caused it, then
``wait_until`` waits for it to happen.
"""
import time
import uuid

import pytest
from proton import Delivery, LinkException, Message
from proton.reactor import Copy
from proton.utils import BlockingConnection, LinkDetached, SendException

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain
from tests.support.broker import wait_until


@pytest.fixture
def conn(broker):
    c = BlockingConnection(broker.url, timeout=30)
    yield c
    c.close()


def receiver(conn, address, options=None, name=None):
    """A receiver that gets exactly one message per receive() (no prefetch)."""
    return conn.create_receiver(address, credit=None, options=options,
                                name=name or "%s-%s" % (address, uuid.uuid4().hex[:8]))


def take(recv, count, timeout=20, accept=True):
    """The bodies of the next ``count`` messages (accepted unless told not to)."""
    out = []
    for _ in range(count):
        out.append(recv.receive(timeout=timeout).body)
        if accept:
            recv.accept()
    return out


def take_all(conn, address, timeout=20):
    """Every message waiting on queue ``address`` (accepted), then nothing more (drained)."""
    recv = receiver(conn, address)
    out = []
    while True:
        if not drain(conn, recv, credit=1, timeout=timeout):
            break
        out.append(recv.receive(timeout=timeout).body)
        recv.accept()
    recv.close()
    return out


def node_exists(broker, name):
    """Whether a queue ``name`` exists: a sender without create-on-demand attaches, or is refused."""
    c = BlockingConnection(broker.url, timeout=30)
    try:
        c.create_sender(name).close()
        return True
    except LinkException:
        return False
    finally:
        c.close()


def send_unchecked(sender, body, **props):
    """Send and wait for the broker's settlement; return the delivery whatever its outcome."""
    return sender.send(Message(body=body, **props), error_states=[])


# -- limits and policies ----------------------------------------------------------------------------
def test_ring_queue_keeps_the_newest(conn):
    sender = conn.create_sender("ring10", options=CreateQueue({"qpid.max_count": 10,
                                                               "qpid.policy_type": "ring"}))
    for i in range(100):
        sender.send(Message(body=i))      # every one accepted: ring drops the oldest instead
    assert take_all(conn, "ring10") == list(range(90, 100))


def test_reject_policy_refuses_past_the_limit_and_keeps_the_first(conn):
    # Without qpid.flow_stop_count=0 the default flow control (80% of max_count, as qpidd) would hold
    # the 5th message's accept: see the next test.
    sender = conn.create_sender("rej5", options=CreateQueue({"qpid.max_count": 5,
                                                             "qpid.policy_type": "reject",
                                                             "qpid.flow_stop_count": 0}))
    for i in range(5):
        sender.send(Message(body=i))
    with pytest.raises(SendException) as info:
        sender.send(Message(body=5))
    assert info.value.state == Delivery.REJECTED
    refused = send_unchecked(sender, 6)
    assert refused.remote_state == Delivery.REJECTED
    condition = refused.remote.condition
    assert condition.name == "amqp:resource-limit-exceeded"
    assert "rej5" in condition.description and "count: 5" in condition.description
    # The link stays up: once there is room again the producer goes on.
    assert take_all(conn, "rej5") == [0, 1, 2, 3, 4]
    sender.send(Message(body="after"))
    assert take_all(conn, "rej5") == ["after"]


def test_reject_limit_with_the_default_flow_control(conn):
    """max_count 5 gives flow_stop_count 4 and flow_resume_count 3 (qpidd's 80%/70%): the 5th message
    is queued but its accept held, the 6th is refused at once, and the 5th is accepted once the
    depth is below 3."""
    sender = conn.create_sender("rejflow", options=CreateQueue({"qpid.max_count": 5}))
    deliveries = [sender.link.send(Message(body=i)) for i in range(6)]
    conn.wait(lambda: deliveries[5].remote_state, timeout=20, msg="the 6th message's outcome")
    assert deliveries[5].remote_state == Delivery.REJECTED
    assert [d.remote_state for d in deliveries[:4]] == [Delivery.ACCEPTED] * 4
    assert not deliveries[4].remote_state
    consumer = receiver(conn, "rejflow")
    assert take(consumer, 3) == [0, 1, 2]                  # depth 2 < 3: flow resumes
    conn.wait(lambda: deliveries[4].remote_state == Delivery.ACCEPTED, timeout=20, msg="the held accept")
    assert take(consumer, 2) == [3, 4]


def test_ring_strict_refuses_while_the_oldest_is_acquired(conn):
    sender = conn.create_sender("strict3", options=CreateQueue({"qpid.max_count": 3,
                                                                "qpid.policy_type": "ring_strict"}))
    for body in "abc":
        sender.send(Message(body=body))
    holder = receiver(conn, "strict3")
    assert take(holder, 1, accept=False) == ["a"]           # acquired, not settled
    refused = send_unchecked(sender, "d")
    assert refused.remote_state == Delivery.REJECTED
    assert refused.remote.condition.name == "amqp:resource-limit-exceeded"
    assert "strict3" in refused.remote.condition.description
    holder.release(delivered=False)                         # "a" waits again: it may now be dropped
    holder.close()
    sender.send(Message(body="d"))                           # drops "a", the oldest
    sender.send(Message(body="e"))                           # drops "b"
    assert take_all(conn, "strict3") == ["c", "d", "e"]


def test_max_size_in_bytes_with_reject(conn):
    sender = conn.create_sender("small", options=CreateQueue({"qpid.max_size": 3000,
                                                              "qpid.policy_type": "reject"}))
    states = [send_unchecked(sender, "x" * 1000).remote_state for _ in range(4)]
    assert states[:2] == [Delivery.ACCEPTED, Delivery.ACCEPTED] and states[-1] == Delivery.REJECTED
    assert len(take_all(conn, "small")) == states.count(Delivery.ACCEPTED)


# -- ordering -----------------------------------------------------------------------------------------
def test_lvq_keeps_the_last_value_per_key_and_browsers_see_the_latest(conn):
    sender = conn.create_sender("prices", options=CreateQueue({"qpid.last_value_queue_key": "sym"}))
    for sym, price in (("A", 1), ("B", 2), ("A", 3), ("B", 4), ("C", 5)):
        sender.send(Message(body=price, properties={"sym": sym}))
    browser = receiver(conn, "prices", options=Copy())
    assert take(browser, 3, accept=False) == [3, 4, 5]
    sender.send(Message(body=6, properties={"sym": "A"}))    # replaces 3; the browser sees the update
    assert take(browser, 1, accept=False) == [6]
    assert drain(conn, browser, credit=1) == 0
    browser.close()
    assert take_all(conn, "prices") == [4, 5, 6]


def test_priorities_come_out_highest_first(conn):
    sender = conn.create_sender("prio", options=CreateQueue({"qpid.priorities": 10}))
    for i, p in enumerate((1, 5, 9, 3, 7, 0, 9)):
        sender.send(Message(body="p%d-%d" % (p, i), priority=p))
    got = take_all(conn, "prio")
    assert [int(b.split("-")[0][1:]) for b in got] == [9, 9, 7, 5, 3, 1, 0]
    nines = [b for b in got if b.startswith("p9-")]
    assert nines == sorted(nines, key=lambda b: int(b.split("-")[1]))   # FIFO within a level


def test_message_groups_go_to_one_consumer_at_a_time(conn):
    sender = conn.create_sender("grp", options=CreateQueue({"qpid.group_header_key": "g",
                                                           "qpid.shared_msg_group": 1}))
    for body in ("A1", "A2", "B1", "B2", "A3", "B3"):
        sender.send(Message(body=body, properties={"g": body[0]}))
    first = receiver(conn, "grp", name="first")
    second = receiver(conn, "grp", name="second")
    assert take(first, 1, accept=False) == ["A1"]           # group A now belongs to `first`
    assert take(second, 3) == ["B1", "B2", "B3"]            # A2, A3 are skipped
    assert drain(conn, second, credit=1) == 0               # nothing but group A is left
    first.accept()                                          # A1 settled: group A is free again
    assert take(second, 2) == ["A2", "A3"]


# -- TTL ------------------------------------------------------------------------------------------------
def test_expired_message_is_never_delivered_and_goes_to_the_alternate_exchange(conn):
    dead = conn.create_receiver("amq.fanout", credit=10, name="dead-letters")
    sender = conn.create_sender("ttlq", options=CreateQueue({"alternate-exchange": "amq.fanout"}))
    sender.send(Message(body="short", ttl=0.05))
    sender.send(Message(body="kept"))
    sent = time.monotonic()
    wait_until(lambda: time.monotonic() > sent + 0.2, message="the TTL to pass")
    assert take_all(conn, "ttlq") == ["kept"]
    assert dead.receive(timeout=20).body == "short"
    assert drain(conn, dead) == 0


def test_expired_message_without_alternate_is_dropped(conn):
    sender = conn.create_sender("ttl-drop", options=CreateQueue())
    sender.send(Message(body="short", ttl=0.05))
    sent = time.monotonic()
    wait_until(lambda: time.monotonic() > sent + 0.2, message="the TTL to pass")
    sender.send(Message(body="kept"))
    assert take_all(conn, "ttl-drop") == ["kept"]


def test_queue_purge_interval_sweeps_expired_messages(broker_factory):
    """--queue-purge-interval: expired messages leave the queue with nobody consuming from it."""
    broker = broker_factory("--queue-purge-interval", "0.1")
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        dead = conn.create_receiver("amq.fanout", credit=10, name="swept")
        sender = conn.create_sender("idle", options=CreateQueue({"alternate-exchange": "amq.fanout"}))
        sender.send(Message(body="stays"))
        for i in range(3):
            sender.send(Message(body="expires-%d" % i, ttl=0.05))
        # No consumer on "idle": only the sweep can have moved them to the alternate exchange.
        swept = sorted(dead.receive(timeout=20).body for _ in range(3))
        assert swept == ["expires-0", "expires-1", "expires-2"]
        assert take_all(conn, "idle") == ["stays"]
    finally:
        conn.close()


# -- lifetime and ownership -----------------------------------------------------------------------------
def test_auto_delete_queue_goes_when_its_last_consumer_leaves(broker, conn):
    r1 = receiver(conn, "ad", options=CreateQueue({"auto-delete": True}))
    r2 = receiver(conn, "ad")
    r1.close()
    assert node_exists(broker, "ad")            # one consumer left
    r2.close()
    wait_until(lambda: not node_exists(broker, "ad"), timeout=20, message="queue ad to be deleted")


def test_auto_delete_timeout_delays_the_delete(broker, conn):
    timeout = 2
    r = receiver(conn, "adt", options=CreateQueue({"auto-delete": True, "qpid.auto_delete_timeout": timeout}))
    conn.create_sender("adt").send(Message(body="m"))
    closed = time.monotonic()                  # before the detach: the broker's delay starts after it
    r.close()
    assert node_exists(broker, "adt")           # right after the last consumer left: still there
    wait_until(lambda: not node_exists(broker, "adt"), timeout=30, interval=0.1,
               message="queue adt to be deleted after its timeout")
    assert time.monotonic() - closed >= timeout * 0.9


def test_auto_delete_timeout_restarts_when_a_consumer_comes_and_goes(broker, conn):
    timeout = 3
    r = receiver(conn, "adt2", options=CreateQueue({"auto-delete": True, "qpid.auto_delete_timeout": timeout}))
    r.close()
    first_unused = time.monotonic()
    again = receiver(conn, "adt2")
    wait_until(lambda: time.monotonic() > first_unused + timeout - 1, message="a while")
    again.close()                               # unused again: the delay starts over
    wait_until(lambda: time.monotonic() > first_unused + timeout + 0.5, message="the first delay to pass")
    assert node_exists(broker, "adt2")
    wait_until(lambda: not node_exists(broker, "adt2"), timeout=30, interval=0.1)


def test_exclusive_queue_refuses_a_second_session(broker, conn):
    owner = receiver(conn, "excl", options=CreateQueue({"exclusive": True}))
    conn.create_sender("excl").send(Message(body="mine"))
    other = BlockingConnection(broker.url, timeout=30)
    try:
        with pytest.raises(LinkDetached) as info:
            receiver(other, "excl")
        assert info.value.condition == "amqp:precondition-failed"
        assert "Cannot consume from exclusive queue excl" in str(info.value)
        peek = receiver(other, "excl", options=Copy())       # browsing is not consuming
        assert take(peek, 1, accept=False) == ["mine"]
    finally:
        other.close()
    assert take(owner, 1) == ["mine"]


# -- producer flow control ------------------------------------------------------------------------------
def test_flow_stopped_queue_holds_the_producers_accept_until_resume(conn):
    sender = conn.create_sender("flowq", options=CreateQueue({"qpid.flow_stop_count": 5,
                                                             "qpid.flow_resume_count": 2}))
    for i in range(5):
        sender.send(Message(body=i))
    held = sender.link.send(Message(body=5))               # depth 6 > 5: flow stops
    browser = receiver(conn, "flowq", options=Copy())
    assert take(browser, 6, accept=False) == list(range(6))     # the broker has queued it ...
    assert not held.remote_state and not held.settled           # ... and holds its accept
    browser.close()
    consumer = receiver(conn, "flowq")
    assert take(consumer, 4) == [0, 1, 2, 3]                     # depth 2: not below 2 yet
    assert take(consumer, 1, accept=False) == [4]                # (the 4th accept was handled first)
    assert not held.remote_state
    consumer.accept()                                            # depth 1 < 2: resumes
    conn.wait(lambda: held.remote_state == Delivery.ACCEPTED, timeout=20, msg="the held accept")
    assert take(consumer, 1) == [5]
