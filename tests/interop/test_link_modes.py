"""The broker says only what it does in its attach: settle modes it follows, filters it applies.

python-qpid-proton for what a client sees; the raw client (tests/support/rawclient.py) where the
exact frames matter (rcv-settle-mode second).
"""
import pytest
from proton import Described, Message, symbol, ulong
from proton.reactor import Copy, Filter, Selector
from proton.utils import BlockingConnection

from tests.support.amqp import TOPIC_FILTER, CreateQueue
from tests.support.rawclient import (
    ACCEPTED, DISPOSITION, RECEIVER, TRANSFER, RawClient, outcome, source, uint,
)

NO_LOCAL = symbol("apache.org:no-local-filter:list")
SELECTOR = symbol("apache.org:selector-filter:string")


def fill(conn, queue, bodies):
    sender = conn.create_sender(queue, options=CreateQueue())
    for body in bodies:
        sender.send(Message(body=body))
    sender.close()


def remote_filter(receiver):
    data = receiver.link.remote_source.filter
    data.rewind()
    return data.get_object() if data.next() else None


def test_browser_can_accept_as_its_attach_announced(conn):
    """The attach says snd-settle-mode unsettled, so browsed deliveries come unsettled:
    BlockingReceiver.accept() works (it failed with IndexError on pre-settled ones) and the
    message stays on the queue."""
    fill(conn, "modes-browse", ["a", "b"])
    browser = conn.create_receiver("modes-browse", credit=10, options=Copy())
    assert browser.link.remote_snd_settle_mode == browser.link.SND_UNSETTLED
    for body in ("a", "b"):
        assert browser.receive(timeout=10).body == body
        browser.accept()
    browser.close()
    consumer = conn.create_receiver("modes-browse", credit=10)
    got = []
    for _ in range(2):
        got.append(consumer.receive(timeout=10).body)
        consumer.accept()
    assert got == ["a", "b"]


def test_applied_selector_is_echoed(conn):
    fill(conn, "modes-selector", [])
    receiver = conn.create_receiver("modes-selector", credit=10, options=Selector("colour = 'red'"))
    assert [v.value for v in remote_filter(receiver).values()] == ["colour = 'red'"]


XQUERY = ulong(0x0000468C00000005)


def test_only_applied_filters_are_echoed_on_a_subscription(conn):
    """A topic binding filter, no-local and a selector are applied (echoed); an xquery filter on a
    topic exchange is not (not echoed)."""
    receiver = conn.create_receiver("amq.topic", name="modes-sub", credit=10, options=Filter({
        symbol("binding"): Described(TOPIC_FILTER, "a.#"),
        symbol("nolocal"): Described(NO_LOCAL, []),
        symbol("selector"): Described(SELECTOR, "colour = 'red'"),
        symbol("xquery"): Described(XQUERY, "true()")}))
    echoed = remote_filter(receiver)
    assert set(echoed) == {symbol("binding"), symbol("nolocal"), symbol("selector")}, echoed
    unapplied = conn.create_receiver("amq.topic", name="modes-sub-2", credit=10, options=Filter({
        symbol("xquery"): Described(XQUERY, "true()")}))
    assert not remote_filter(unapplied)


@pytest.mark.parametrize("browse", [False, True], ids=["consumer", "browser"])
def test_rcv_settle_mode_second_gets_the_brokers_settlement(broker, browse):
    """A receiver in rcv-settle-mode second sends its outcome unsettled and waits for the broker's
    settlement (spec 2.6.12 / 3.4.1): the broker must send it, and say `second` in its attach."""
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        fill(conn, "modes-second", ["one"])
    finally:
        conn.close()
    with RawClient.connect(broker) as c:
        c.handshake()
        ch = c.begin(0)
        src = source("modes-second", distribution_mode="copy") if browse else source("modes-second")
        reply = c.attach(ch, "second", 0, RECEIVER, src=src, snd_settle_mode=0, rcv_settle_mode=1)
        assert reply.field(3) == 0 and reply.field(4) == 1, reply
        c.flow(ch, 0, credit=1)
        transfer = c.expect(TRANSFER, ch)
        did = transfer.field(1)
        assert not transfer.field(4, False), "delivery came settled: %r" % (transfer,)
        c.disposition(ch, did, settled=False, state=outcome(ACCEPTED))
        answer = c.expect(DISPOSITION, ch)
        assert answer.field(0) is False and answer.field(1) == did and answer.field(3) is True, answer
        c.disposition(ch, did, settled=True, state=outcome(ACCEPTED))
        c.close_cleanly()


def test_transactional_acquisition_of_an_unknown_transaction_is_refused_not_ignored(broker):
    """A consumer's flow naming a txn-id asks for transactional acquisition (spec 4.4.3,
    tests/interop/test_transactional_acquisition.py); naming one that is not open on the connection
    detaches the link with amqp:transaction:unknown-id before anything is sent (the client would
    otherwise believe the messages acquired by its transaction), and the message stays for the next
    consumer. A flow with other properties is a plain flow."""
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        fill(conn, "modes-txn-acquire", ["kept"])
    finally:
        conn.close()
    with RawClient.connect(broker) as c:
        c.handshake()
        ch = c.begin(0)
        c.attach(ch, "acquire", 0, RECEIVER, src=source("modes-txn-acquire"))
        c.flow(ch, 0, credit=1, properties={symbol("txn-id"): b"1"})
        detach = c.expect_detach("amqp:transaction:unknown-id", channel=ch)
        assert "unknown transaction" in detach.error.description, detach
        assert not [f for f in c.frames if f.code == TRANSFER]
        c.attach(ch, "plain", 1, RECEIVER, src=source("modes-txn-acquire"))
        c.flow(ch, 1, credit=1, properties={symbol("other"): 1})
        assert c.expect(TRANSFER, ch).field(0) == c.peer_handles[1]
        c.close_cleanly()
    assert broker.log_lines(r"detached: unknown transaction")
