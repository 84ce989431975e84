"""Exchange routing as qpidd does it, seen from unmodified python-qpid-proton clients.

A 1.0 client binds by attaching a receiver to an exchange with a legacy binding filter: the broker
gives that receiver a private subscription queue bound with the filter's key (or headers map). A
sender attached to an exchange routes each message with its subject as the routing key.

Absence is proven without waiting: every receiver's last expected message is a sentinel sent after
all the others, and subscription queues are FIFO, so a message that should not have arrived would
show up before the sentinel.
"""
import uuid

import pytest
from proton import Described, Message, symbol
from proton.reactor import DurableSubscription, LinkOption
from proton.utils import BlockingConnection, LinkDetached

from tests.support.amqp import (
    DIRECT_FILTER, HEADERS_FILTER, TOPIC_FILTER, BindingFilter, Capabilities, CreateExchange, CreateQueue,
)
from tests.support.reactor import ClientHandler, run


class EmptyTargetAddress(LinkOption):
    """Target address "" (the default exchange); proton's create_sender("") would send a null
    address, i.e. an anonymous-relay link."""

    def apply(self, link):
        link.target.address = ""


def remote_value(data):
    """The value of a remote terminus field (filter, capabilities) as Python objects."""
    data.rewind()
    return data.get_object() if data.next() else None


@pytest.fixture
def conn(broker):
    c = BlockingConnection(broker.url, timeout=20)
    yield c
    c.close()


def subscribe(conn, exchange, credit=10, options=None, name=None):
    """A receiver on an exchange; links get unique names (proton names them after the address,
    and two links of one name in a session are not allowed)."""
    return conn.create_receiver(exchange, credit=credit, options=options,
                                name=name or "%s-%s" % (exchange, uuid.uuid4().hex[:8]))


def send(conn, address, messages, options=None):
    sender = conn.create_sender(address, options=options)
    for msg in messages:
        sender.send(msg)
    sender.close()


def accept(receiver):
    """Accept the last message unless it came pre-settled (non-shared subscriptions are
    at-most-once by default in qpidd)."""
    if receiver.fetcher.unsettled:
        receiver.accept()


def take(receiver, count, timeout=10):
    """Receive ``count`` messages (accepting each) and return their bodies."""
    bodies = []
    for _ in range(count):
        msg = receiver.receive(timeout=timeout)
        bodies.append(msg.body)
        accept(receiver)
    return bodies


def take_until(receiver, last, timeout=10, limit=100):
    """Bodies received up to and including ``last`` (the sentinel)."""
    bodies = []
    while len(bodies) < limit:
        msg = receiver.receive(timeout=timeout)
        accept(receiver)
        bodies.append(msg.body)
        if msg.body == last:
            return bodies
    raise AssertionError(f"no sentinel {last!r} in {bodies}")


# -- amq.direct -------------------------------------------------------------------------------
def test_direct_exchange_routes_on_subject(conn):
    r1 = subscribe(conn, "amq.direct", credit=10, options=BindingFilter(DIRECT_FILTER, "k1"))
    r2 = subscribe(conn, "amq.direct", credit=10, options=BindingFilter(DIRECT_FILTER, "k2"))
    send(conn, "amq.direct", [
        Message(subject="k1", body="a"), Message(subject="k3", body="nobody"),
        Message(subject="k2", body="b"),
        Message(body="no subject"), Message(subject="k1", body="c"), Message(subject="k1.x", body="not k1"),
        Message(subject="k1", body="end"), Message(subject="k2", body="end"),
    ])
    assert take_until(r1, "end") == ["a", "c", "end"]
    assert take_until(r2, "end") == ["b", "end"]
    # The reply source carries the filter the broker applied.
    assert r1.link.remote_source.address == "amq.direct"
    assert remote_value(r1.link.remote_source.filter) == {symbol("binding"): Described(DIRECT_FILTER, "k1")}


def test_direct_exchange_receiver_without_filter_gets_empty_key(conn):
    r = subscribe(conn, "amq.direct", credit=10)
    send(conn, "amq.direct", [Message(subject="k", body="keyed"), Message(body="plain")])
    assert take(r, 1) == ["plain"]


# -- amq.topic ----------------------------------------------------------------------------------
def test_topic_exchange_star_and_hash_patterns(conn):
    patterns = {"star": "a.*", "hash": "a.#", "mid": "*.b.#", "all": "#"}
    receivers = {name: subscribe(conn, "amq.topic", credit=20, options=BindingFilter(TOPIC_FILTER, pattern))
                 for name, pattern in patterns.items()}
    subjects = ["a", "a.b", "a.b.c", "x.b", "a.c.d", "b", "x.y.z"]
    send(conn, "amq.topic",
         [Message(subject=s, body=s) for s in subjects] + [Message(subject="a.b", body="end")])
    assert take_until(receivers["star"], "end") == ["a.b", "end"]
    assert take_until(receivers["hash"], "end") == ["a", "a.b", "a.b.c", "a.c.d", "end"]
    assert take_until(receivers["mid"], "end") == ["a.b", "a.b.c", "x.b", "end"]
    assert take_until(receivers["all"], "end") == subjects + ["end"]


def test_topic_exchange_receiver_without_filter_gets_everything(conn):
    r = subscribe(conn, "amq.topic", credit=10)
    send(conn, "amq.topic", [Message(subject="x.y", body=1), Message(body=2)])
    assert take(r, 2) == [1, 2]


# -- amq.fanout ---------------------------------------------------------------------------------
def test_fanout_exchange_gives_every_receiver_a_copy(broker, conn):
    other = BlockingConnection(broker.url, timeout=20)
    try:
        r1 = subscribe(conn, "amq.fanout", credit=10)
        r2 = subscribe(other, "amq.fanout")
        r3 = subscribe(conn, "amq.fanout", credit=10, options=BindingFilter(TOPIC_FILTER, "ignored"))
        send(conn, "amq.fanout", [Message(subject="any", body=i, properties={"i": i}) for i in range(5)])
        for r in (r1, r2, r3):
            msgs = [r.receive(timeout=10) for _ in range(5)]
            assert [m.body for m in msgs] == list(range(5))
            assert [m.properties for m in msgs] == [{"i": i} for i in range(5)]
    finally:
        other.close()


# -- amq.match (headers) -------------------------------------------------------------------------
def test_headers_exchange_x_match_all_and_any(conn):
    r_all = subscribe(conn, "amq.match", credit=20, options=BindingFilter(
        HEADERS_FILTER, {"x-match": "all", "colour": "red", "size": "big"}))
    r_any = subscribe(conn, "amq.match", credit=20, options=BindingFilter(
        HEADERS_FILTER, {"x-match": "any", "colour": "red", "shape": "round"}))
    sent = [
        ("red-big", {"colour": "red", "size": "big"}),          # all, any
        ("red", {"colour": "red"}),                              # any
        ("round-big", {"shape": "round", "size": "big"}),        # any
        ("big", {"size": "big"}),                                # neither
        ("blue-big", {"colour": "blue", "size": "big"}),         # neither
        ("red-big-extra", {"colour": "red", "size": "big", "weight": 3}),  # all, any
        ("none", {}),                                            # neither
        ("end", {"colour": "red", "size": "big", "shape": "round"}),
    ]
    send(conn, "amq.match", [Message(body=b, properties=p, subject="ignored") for b, p in sent])
    assert take_until(r_all, "end") == ["red-big", "red-big-extra", "end"]
    assert take_until(r_any, "end") == ["red-big", "red", "round-big", "red-big-extra", "end"]


def test_headers_exchange_without_filter_matches_all_of_nothing(conn):
    # qpidd binds with {x-match: all} when no headers filter is given: every message matches.
    r = subscribe(conn, "amq.match", credit=10)
    send(conn, "amq.match", [Message(body="p", properties={"k": "v"}), Message(body="q")])
    assert take(r, 2) == ["p", "q"]


# -- default exchange ---------------------------------------------------------------------------
def test_default_exchange_routes_to_the_queue_named_by_the_subject(conn):
    send(conn, "dq1", [], options=CreateQueue())
    send(conn, "dq2", [], options=CreateQueue())
    # A sender to a queue's name goes straight to it ...
    send(conn, "dq1", [Message(body="direct to dq1")])
    # ... and a sender to the default exchange "" routes on the subject (= queue name).
    send(conn, None, options=EmptyTargetAddress(), messages=[
        Message(subject="dq2", body="via default 1"), Message(subject="nowhere", body="dropped"),
        Message(subject="dq1", body="via default 2"), Message(subject="dq2", body="end")])
    r1 = conn.create_receiver("dq1", credit=10)
    r2 = conn.create_receiver("dq2", credit=10)
    assert take(r1, 2) == ["direct to dq1", "via default 2"]
    assert take_until(r2, "end") == ["via default 1", "end"]


# -- exchanges and queues created by clients ------------------------------------------------------
@pytest.mark.parametrize("ex_type, filt, key, other", [
    ("direct", DIRECT_FILTER, "red", "green"),
    ("topic", TOPIC_FILTER, "red.#", "green.x"),
    ("fanout", None, None, None),
])
def test_exchange_created_on_demand(conn, ex_type, filt, key, other):
    name = "made-" + ex_type
    sender = conn.create_sender(name, options=CreateExchange(ex_type))
    caps = remote_value(sender.link.remote_target.capabilities)
    assert set(caps) == {symbol("topic"), symbol("create-on-demand")}
    opts = [BindingFilter(filt, key)] if filt else []
    r = subscribe(conn, name, options=opts)
    subject = key.replace("#", "z") if key else "whatever"
    if other:
        sender.send(Message(subject=other, body="unmatched"))
    sender.send(Message(subject=subject, body="matched"))
    sender.send(Message(subject=subject, body="end"))
    assert take_until(r, "end") == ["matched", "end"]
    sender.close()
    # Asking for the same name with another type is refused, as qpidd does.
    wrong = "fanout" if ex_type != "fanout" else "direct"
    with pytest.raises(LinkDetached) as info:
        conn.create_sender(name, options=CreateExchange(wrong))
    assert "amqp:precondition-failed" in str(info.value)
    # The same type again is fine (create-on-demand finds the existing exchange).
    conn.create_sender(name, options=CreateExchange(ex_type)).close()


def test_headers_exchange_created_on_demand(conn):
    sender = conn.create_sender("made-headers", options=CreateExchange("headers"))
    r = subscribe(conn, "made-headers", options=BindingFilter(
        HEADERS_FILTER, {"x-match": "any", "a": "1", "b": "2"}))
    sender.send(Message(body="no", properties={"c": "3"}))
    sender.send(Message(body="yes", properties={"b": "2"}))
    sender.send(Message(body="end", properties={"a": "1"}))
    assert take_until(r, "end") == ["yes", "end"]


def test_shared_subscription_queue_outlives_its_receiver(conn):
    """A receiver on an exchange with the `shared` capability gets a subscription queue named after
    the link (as qpidd); with expiry-policy never, the queue and its binding outlive the receiver
    and can be read by name. (A queue of that name made otherwise is never taken over:
    tests/interop/test_link_nodes.py.)"""
    binder = conn.create_receiver("amq.direct", name="bound-q", credit=0, options=[
        Capabilities("shared"), BindingFilter(DIRECT_FILTER, "bq-key"), DurableSubscription()])
    binder.close()
    send(conn, "amq.direct", [Message(subject="bq-key", body="routed 1"), Message(subject="other", body="no"),
                              Message(subject="bq-key", body="routed 2")])
    r = conn.create_receiver("bound-q", credit=10)
    assert take(r, 2) == ["routed 1", "routed 2"]


# -- subscription queues ----------------------------------------------------------------------
def test_subscription_queue_is_private_and_goes_away_on_detach(broker, conn):
    link_name = "sub-" + uuid.uuid4().hex[:8]
    queue_name = f"{conn.container.container_id}_{link_name}"
    sub = conn.create_receiver("amq.topic", name=link_name, credit=10,
                               options=BindingFilter(TOPIC_FILTER, "s.#"))
    send(conn, "amq.topic", [Message(subject="s.1", body="one")])
    assert take(sub, 1) == ["one"]

    other = BlockingConnection(broker.url, timeout=20)
    try:
        # The subscription queue exists under qpidd's name and is exclusive to its session.
        with pytest.raises(LinkDetached) as info:
            other.create_receiver(queue_name, options=Capabilities("queue"))
        assert "amqp:precondition-failed" in str(info.value)
        sender = other.create_sender(queue_name, options=Capabilities("queue"))
        sender.send(Message(body="straight in"))
        sender.close()
        assert take(sub, 1) == ["straight in"]

        sub.close()
        # Gone once its receiver detached.
        with pytest.raises(LinkDetached) as info:
            other.create_sender(queue_name, options=Capabilities("queue"))
        assert "amqp:not-found" in str(info.value)
        # And nothing is left bound to the exchange: a message for it goes nowhere, other
        # subscribers are unaffected.
        watcher = subscribe(other, "amq.topic", options=BindingFilter(TOPIC_FILTER, "s.#"))
        send(conn, "amq.topic", [Message(subject="s.2", body="two")])
        assert take(watcher, 1) == ["two"]
    finally:
        other.close()


def test_subscription_queue_goes_away_with_its_connection(broker, conn):
    third = BlockingConnection(broker.url, timeout=20)
    queue_name = f"{third.container.container_id}_gone-with-conn"
    subscribe(third, "amq.fanout", name="gone-with-conn")
    conn.create_sender(queue_name, options=Capabilities("queue")).close()   # exists
    third.close()    # no detach: the connection just closes
    with pytest.raises(LinkDetached) as info:
        conn.create_sender(queue_name, options=Capabilities("queue"))
    assert "amqp:not-found" in str(info.value)


# -- the same with the Container/MessagingHandler API ----------------------------------------------
class TopicFanIn(ClientHandler):
    """Handler API: three subscribers with different topic patterns on amq.topic, one publisher.
    Publishing starts once every receiver's attach has been answered (binding done)."""

    PATTERNS = {"news": "news.#", "sport": "*.sport.*", "all": "#"}
    SUBJECTS = ["news.uk", "news.sport.football", "weather", "tv.sport.f1", "news", "x.sport"]

    def __init__(self, url):
        super().__init__(url)
        self.got = {name: [] for name in self.PATTERNS}
        self.opened = 0
        self.sender = None
        self.sent = False

    def setup(self, event):
        conn = self.connect()
        self.receivers = {}
        for name, pattern in self.PATTERNS.items():
            link = event.container.create_receiver(conn, "amq.topic", name=name,
                                                   options=BindingFilter(TOPIC_FILTER, pattern))
            self.receivers[link] = name

    def on_link_opened(self, event):
        if event.receiver in self.receivers:
            self.opened += 1
            if self.opened == len(self.PATTERNS):
                self.sender = event.container.create_sender(event.connection, "amq.topic")

    def on_sendable(self, event):
        if not self.sent:
            self.sent = True
            for s in self.SUBJECTS:
                event.sender.send(Message(subject=s, body=s))
            event.sender.send(Message(subject="news.sport.end", body="end"))

    def on_message(self, event):
        name = self.receivers[event.receiver]
        self.got[name].append(event.message.body)
        if all(bodies and bodies[-1] == "end" for bodies in self.got.values()):
            self.finish()

    def progress(self):
        return str(self.got)


def test_topic_routing_with_container_api(broker):
    h = run(TopicFanIn(broker.url))
    assert h.got["news"] == ["news.uk", "news.sport.football", "news", "end"]
    assert h.got["sport"] == ["news.sport.football", "tv.sport.f1", "end"]
    assert h.got["all"] == TopicFanIn.SUBJECTS + ["end"]
