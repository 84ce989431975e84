"""Selectors (apache.org:selector-filter:string, proton's Selector option) and subject filters on
receivers, against a real broker: a consumer on a queue gets only the messages its selector matches
and the others stay for other consumers; on an exchange only matching messages enter the
subscription queue; a malformed selector refuses the link with amqp:invalid-field and the
position; the reply echoes a filter only when the broker applies it."""
import pytest
from proton import Described, Message, symbol, ulong
from proton.reactor import Copy, LinkOption, Selector
from proton.utils import LinkDetached

from tests.support.amqp import DIRECT_FILTER, TOPIC_FILTER, BindingFilter, CreateQueue
from tests.support.blocking import drain


SELECTOR = ulong(0x0000468C00000004)


class Filters(LinkOption):
    """A source filter map with several entries (proton's options each write a map of their own)."""

    def __init__(self, filters):
        self.filters = filters

    def apply(self, link):
        link.source.filter.put_dict(self.filters)


def send(conn, address, messages, options=None):
    sender = conn.create_sender(address, options=options)
    for m in messages:
        sender.send(m)
    sender.close()


def take(receiver, count, timeout=10):
    out = []
    for _ in range(count):
        out.append(receiver.receive(timeout=timeout).body)
        receiver.accept()
    return out


def remote_filter(receiver):
    data = receiver.link.remote_source.filter
    data.rewind()
    if not data.next():
        return {}
    return data.get_object()


def colours(conn, queue):
    send(conn, queue, [Message(body="%s-%d" % (c, i), properties={"colour": c, "i": i}, priority=i % 10)
                       for i, c in enumerate(["red", "green", "blue", "red", "green", "red"])],
         options=CreateQueue())


def test_selector_consumer_gets_only_matches_and_others_stay(conn):
    colours(conn, "sel-q")
    reds = conn.create_receiver("sel-q", name="r1", credit=10, options=Selector("colour = 'red'"))
    assert take(reds, 3) == ["red-0", "red-3", "red-5"]
    assert drain(conn, reds) == 0        # nothing else matches: the drain comes back empty
    # The filter is echoed: the broker applies it.
    echoed = remote_filter(reds)
    assert list(echoed.values())[0].value == "colour = 'red'"
    # The non-matching messages are still on the queue, in order, for another consumer.
    rest = conn.create_receiver("sel-q", name="r2", credit=10)
    assert take(rest, 3) == ["green-1", "blue-2", "green-4"]
    # A red message sent now goes to the selecting consumer.
    reds.flow(5)        # the drain took its credit
    send(conn, "sel-q", [Message(body="late-green", properties={"colour": "green"}),
                         Message(body="late-red", properties={"colour": "red"})])
    assert take(reds, 1) == ["late-red"]
    assert take(rest, 1) == ["late-green"]


def test_two_selector_consumers_share_a_queue(conn):
    odd = conn.create_receiver("sel-split", name="r3", credit=20,
                               options=[CreateQueue(), Selector("i / 2 * 2 <> i")])
    even = conn.create_receiver("sel-split", name="r4", credit=20, options=Selector("i / 2 * 2 = i"))
    send(conn, "sel-split", [Message(body=i, properties={"i": i}) for i in range(10)])
    assert sorted(take(odd, 5)) == [1, 3, 5, 7, 9]
    assert sorted(take(even, 5)) == [0, 2, 4, 6, 8]


def test_header_fields_and_three_valued_logic(conn):
    send(conn, "sel-hdr", [
        Message(body="a", priority=9, durable=True, id="m-1", correlation_id="c-1", subject="s1"),
        Message(body="b", priority=2, id=7, properties={"x": 1}),
        Message(body="c", priority=5, subject="s2", properties={"x": None}),
    ], options=CreateQueue())
    def select(expr):
        r = conn.create_receiver("sel-hdr", name="r5", credit=10, options=[Copy(), Selector(expr)])
        n = drain(conn, r, 10)
        got = [r.receive(timeout=1).body for _ in range(n)]
        r.close()
        return got
    assert select("JMSPriority > 4") == ["a", "c"]
    assert select("JMSDeliveryMode = 'PERSISTENT'") == ["a"]
    assert select("JMSMessageID = 'm-1' OR JMSMessageID = '7'") == ["a", "b"]
    assert select("JMSCorrelationID LIKE 'c-%'") == ["a"]
    assert select("JMSType IN ('s1', 's2')") == ["a", "c"]
    # x is NULL on a and c: neither x = 1 nor NOT (x = 1) selects them.
    assert select("x = 1") == ["b"]
    assert select("NOT (x = 1)") == []
    assert select("x IS NULL") == ["a", "c"]
    assert select("x IS NULL OR x = 1") == ["a", "b", "c"]


def test_malformed_selector_refuses_the_link_with_the_position(conn, broker):
    with pytest.raises(LinkDetached) as info:
        conn.create_receiver("amq.topic", name="r6", options=Selector("colour = 'red' AND"))
    text = str(info.value)
    assert "amqp:invalid-field" in text
    assert "position 18" in text
    with pytest.raises(LinkDetached) as info:
        conn.create_receiver("sel-bad", name="r7", options=[CreateQueue(), Selector("a LIKE 5")])
    assert "amqp:invalid-field" in str(info.value) and "position 7" in str(info.value)
    # Nothing was left behind by the refused subscription, and the connection carries on.
    r = conn.create_receiver("sel-bad", name="r8", credit=1)
    r.close()


def test_exchange_subscription_only_matching_messages_enter(conn, broker):
    sub = conn.create_receiver("amq.topic", name="r9", credit=0, options=Selector("n >= 3"))
    echoed = remote_filter(sub)
    assert [v.value for v in echoed.values()] == ["n >= 3"]
    send(conn, "amq.topic", [Message(subject="k", body=i, properties={"n": i}) for i in range(6)])
    sub.flow(10)
    assert [sub.receive(timeout=10).body for _ in range(3)] == [3, 4, 5]
    # The others never entered the subscription queue.
    assert drain(conn, sub) == 0


def test_subject_filter_on_a_queue_source(conn):
    send(conn, "sel-subj", [Message(subject=s, body=s) for s in ("a.b", "a.c", "x.b", "a.b.c")],
         options=CreateQueue())
    r = conn.create_receiver("sel-subj", name="r10", credit=10, options=BindingFilter(TOPIC_FILTER, "a.*"))
    assert take(r, 2) == ["a.b", "a.c"]
    assert drain(conn, r) == 0
    assert list(remote_filter(r).values())[0].value == "a.*"
    exact = conn.create_receiver("sel-subj", name="r11", credit=10, options=BindingFilter(DIRECT_FILTER, "a.b.c"))
    assert take(exact, 1) == ["a.b.c"]
    # Both at once: the subject filter and the selector must both match.
    send(conn, "sel-subj", [Message(subject="t.1", body="no", properties={"ok": False}),
                            Message(subject="t.1", body="yes", properties={"ok": True}),
                            Message(subject="u.1", body="other", properties={"ok": True})])
    both = conn.create_receiver("sel-subj", name="r12", credit=10, options=Filters({
        symbol("subject"): Described(TOPIC_FILTER, "t.#"), symbol("selector"): Described(SELECTOR, "ok")}))
    assert take(both, 1) == ["yes"]
    assert drain(conn, both) == 0
    assert len(remote_filter(both)) == 2


def test_no_filter_no_echo(conn):
    r = conn.create_receiver("sel-none", name="r13", credit=1, options=CreateQueue())
    assert remote_filter(r) == {}
    sub = conn.create_receiver("amq.fanout", name="r14", credit=1)
    assert symbol("selector") not in remote_filter(sub)


NO_LOCAL = ulong(0x0000468C00000003)


def test_no_local_subscription_skips_its_own_connections_messages(conn, broker):
    from proton.utils import BlockingConnection
    sub = conn.create_receiver("amq.fanout", name="nl", credit=10,
                               options=Filters({symbol("no-local"): Described(NO_LOCAL, [])}))
    assert list(remote_filter(sub).keys()) == [symbol("no-local")]     # applied, so echoed
    send(conn, "amq.fanout", [Message(body="mine")])
    other = BlockingConnection(broker.url, timeout=20)
    try:
        send(other, "amq.fanout", [Message(body="theirs")])
    finally:
        other.close()
    assert sub.receive(timeout=10).body == "theirs"
    assert drain(conn, sub) == 0
    # Without the filter the same connection's messages arrive.
    plain = conn.create_receiver("amq.fanout", name="plain", credit=10)
    send(conn, "amq.fanout", [Message(body="mine again")])
    assert plain.receive(timeout=10).body == "mine again"
