"""FAULT TESTS: one client cannot stall or bloat the broker (issue 10, "Bounded").

Each test has a hostile raw client (tests/support/rawclient.py) doing its worst on its own thread,
while the test times a python-qpid-proton bystander's round trips (send one message to its own queue,
receive it back): every one must stay under 0.5 s. Then the hostile client must have got the precise
error the spec gives, and the broker logged one line about it.

The limits are the broker's defaults (docs/INTERFACES.md, "Limits"): max-sessions-per-connection 256
(channel-max 255), max-links-per-session 1024 (handle-max 1023), max-links-per-connection 4096,
max-message-size 100 MiB, max-connection-output 4 MiB.
"""
import socket
import threading
import time

import pytest
from proton import Message
from proton.utils import BlockingConnection

from cypid.pyx.codec import encode_frame

from tests.support.amqp import CreateQueue
from tests.support.broker import wait_until
from tests.support.faults import Bystander, assert_no_trouble, lines_about
from tests.support.rawclient import (
    ATTACH, BEGIN, DETACH, END, FLOW, RECEIVER, SENDER, TRANSFER, RawClient, encode_message, source, target,
    uint,
)

# The 0.5 s bystander bound is about the broker, not about test workers competing for the cores:
# make test runs these tests alone (see the Makefile).
pytestmark = pytest.mark.solo

ROUND_TRIP = 0.5
CHANNEL_MAX = 255
HANDLE_MAX = 1023
LINKS_PER_CONNECTION = 4096
MAX_MESSAGE_SIZE = 100 * 1024 * 1024
FRAMING_ERROR = "amqp:connection:framing-error"
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
SIZE_EXCEEDED = "amqp:link:message-size-exceeded"


def opened(broker, **kwargs) -> RawClient:
    c = RawClient.connect(broker, **kwargs)
    c.handshake()
    return c


class Hostile(threading.Thread):
    """Runs ``attack()`` on a thread; its exception, if any, is raised again by ``result()``."""

    def __init__(self, attack):
        super().__init__(daemon=True)
        self.attack = attack
        self.error = None
        self.value = None

    def run(self):
        try:
            self.value = self.attack()
        except BaseException as e:   # pragma: no cover - reported by result()
            self.error = e

    def result(self, timeout=120):
        self.join(timeout)
        assert not self.is_alive(), "the hostile client did not finish in time"
        if self.error is not None:
            raise self.error
        return self.value


def while_attacked(bystander, attack, at_least=3):
    """Start ``attack`` on a thread and time the bystander's round trips until it ends (and
    ``at_least`` times); returns (the attack's result, the slowest round trip)."""
    hostile = Hostile(attack)
    hostile.start()
    slowest = 0.0
    rounds = 0
    while hostile.is_alive() or rounds < at_least:
        start = time.monotonic()
        bystander.check()
        slowest = max(slowest, time.monotonic() - start)
        rounds += 1
    return hostile.result(), slowest


def fill(broker, queue, body, count):
    """A new queue without a size limit, holding ``count`` messages of ``body``."""
    conn = BlockingConnection(broker.url, timeout=60)
    try:
        sender = conn.create_sender(queue, options=CreateQueue({"qpid.max_size": 0}))
        for _ in range(count):
            sender.send(Message(body=body))
    finally:
        conn.close()


def rss(broker) -> int:
    """The broker process's resident set, in bytes."""
    with open("/proc/%d/status" % broker.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# -- sessions and links: O(1) each, bounded by channel-max / handle-max / a per-connection limit ----
def test_open_and_begin_offer_the_limits(shared_broker):
    with opened(shared_broker) as c:
        assert c.remote_open.field(3) == CHANNEL_MAX
        c.begin(0)
        begin = c.frames[-1]
        assert begin.code == BEGIN and begin.field(4) == HANDLE_MAX
        c.close_cleanly()


def test_sessions_beyond_channel_max_close_the_connection(shared_broker, shared_bystander):
    """A client beginning a session on every channel it can: all of channel-max's are answered, the
    next channel closes the connection with framing-error; nobody else waits meanwhile."""
    c = opened(shared_broker)

    def attack():
        frames = b"".join(c_frame(ch) for ch in range(CHANNEL_MAX + 2))
        c.send(frames)
        begins = 0
        while True:
            frame = c.read_frame(timeout=60)
            if frame is None:
                raise AssertionError("EOF without close after %d begins" % begins)
            if frame.code == BEGIN:
                begins += 1
            elif frame.code == 0x18:
                return begins, frame.error

    def c_frame(ch):
        return encode_frame(ch, BEGIN, [None, uint(0), uint(0x7FFFFFFF), uint(0x7FFFFFFF)])

    with c:
        (begins, error), slowest = while_attacked(shared_bystander, attack)
    assert begins == CHANNEL_MAX + 1
    assert error.condition == FRAMING_ERROR and "channel-max" in error.description, error
    assert slowest < ROUND_TRIP, "a shared_bystander round trip took %.3fs" % slowest
    wait_until(lambda: lines_about(shared_broker, c), message="a log line about the connection")
    assert_no_trouble(shared_broker)


def test_handle_beyond_handle_max_closes_the_connection(shared_broker, shared_bystander):
    with opened(shared_broker) as c:
        ch = c.begin(0)
        c.attach(ch, "beyond", HANDLE_MAX + 1, SENDER, src=source("me"), tgt=target("amq.fanout"),
                 wait=False)
        frame = c.expect_close(FRAMING_ERROR)
        assert "handle-max" in frame.error.description
    shared_bystander.check()
    assert_no_trouble(shared_broker)


def test_links_beyond_the_connection_limit_are_refused(shared_broker, shared_bystander):
    """Thousands of attaches sent at once over four sessions: each costs O(1), the shared_bystander never
    waits, and every link past max-links-per-connection is refused with resource-limit-exceeded
    (one log line for the episode)."""
    extra = 20
    total = LINKS_PER_CONNECTION + extra
    per_session = HANDLE_MAX + 1
    c = opened(shared_broker)

    def attack():
        sessions = [c.begin(ch) for ch in range((total + per_session - 1) // per_session)]
        out = []
        for i in range(total):
            ch, handle = divmod(i, per_session)
            out.append(encode_frame(ch, ATTACH, [
                "link-%d" % i, uint(handle), False, None, None, source("me"), target("amq.fanout"),
                None, None, uint(0)]))
        c.send(b"".join(out))
        attached = refused = 0
        while attached + refused < total:
            frame = c.read_frame(timeout=60)
            assert frame is not None, "EOF after %d attaches" % (attached + refused)
            if frame.code == ATTACH:
                attached += frame.field(6) is not None
            elif frame.code == DETACH:
                refused += 1
                assert frame.error.condition == RESOURCE_LIMIT, frame
        return sessions, attached, refused

    with c:
        (_, attached, refused), slowest = while_attacked(shared_bystander, attack)
        assert (attached, refused) == (LINKS_PER_CONNECTION, extra)
        assert slowest < ROUND_TRIP, "a shared_bystander round trip took %.3fs" % slowest
        c.close_cleanly(timeout=60)
    lines = [line for line in lines_about(shared_broker, c) if "refused" in line]
    assert len(lines) == 1 and "max-links-per-connection" in lines[0], lines
    assert_no_trouble(shared_broker)


def test_session_churn_with_many_queues_does_not_stall(broker_factory):
    """Ending a session costs what the session owned, not one look at every queue: with 20,000
    queues, a client beginning and ending sessions as fast as it can never stalls the bystander."""
    broker = broker_factory()
    queues = 20000
    for first in range(0, queues, 4000):
        with opened(broker) as c:
            for ch in range(4):
                c.begin(ch)
            c.send(b"".join(encode_frame(i % 4, ATTACH, [
                "q%d" % i, uint(i // 4 % 1000), False, None, None, source("me"),
                target("churn-%d" % i, capabilities=["queue", "create-on-demand"]), None, None, uint(0)])
                for i in range(first, first + 4000)))
            for _ in range(4000):
                c.expect(ATTACH, timeout=60, skip=(FLOW,))
            c.close_cleanly(timeout=60)
    bystander = Bystander(broker)
    c = opened(broker)

    def attack():
        rounds = 40
        churn = b"".join(encode_frame(ch, BEGIN, [None, uint(0), uint(100), uint(100)]) for ch in range(200)) \
            + b"".join(encode_frame(ch, END, []) for ch in range(200))
        for _ in range(rounds):
            c.send(churn)
        ends = 0
        while ends < rounds * 200:
            frame = c.read_frame(timeout=60)
            assert frame is not None, "EOF after %d ends" % ends
            ends += frame.code == END
        return ends

    try:
        with c:
            _, slowest = while_attacked(bystander, attack)
            c.close_cleanly(timeout=30)
        assert slowest < ROUND_TRIP, "a bystander round trip took %.3fs" % slowest
    finally:
        bystander.close()
    assert_no_trouble(broker)


# -- max-message-size ---------------------------------------------------------------------------
def test_attach_offers_max_message_size(shared_broker):
    with opened(shared_broker) as c:
        ch = c.begin(0)
        reply = c.attach(ch, "p", 0, SENDER, src=source("me"), tgt=target("amq.fanout"))
        assert reply.field(10) == MAX_MESSAGE_SIZE
        c.close_cleanly()


def test_never_finished_delivery_past_max_message_size_is_cut_off(shared_broker, shared_bystander):
    """One multi-frame delivery that never ends: the shared_broker holds at most max-message-size of it,
    then detaches the link with amqp:link:message-size-exceeded."""
    before = rss(shared_broker)
    c = opened(shared_broker, max_frame_size=1 << 20)
    frame_size = c.remote_max_frame
    ch = c.begin(0)
    c.attach(ch, "huge", 0, SENDER, src=source("me"), tgt=target("amq.fanout"))
    c.expect(FLOW, ch)
    chunk = b"\0" * (frame_size - 64)

    def attack():
        first = encode_frame(ch, TRANSFER, [uint(0), uint(0), b"tag", uint(0), False, True], chunk)
        more = encode_frame(ch, TRANSFER, [uint(0), None, None, None, None, True], chunk)
        c.send(first)
        sent = len(chunk)
        while sent < MAX_MESSAGE_SIZE + 8 * len(chunk):
            c.send(more * 8)
            sent += 8 * len(chunk)
        return c.expect_detach(SIZE_EXCEEDED, timeout=60)

    with c:
        detach, slowest = while_attacked(shared_bystander, attack)
        assert "max-message-size %d" % MAX_MESSAGE_SIZE in detach.error.description
        assert slowest < ROUND_TRIP, "a shared_bystander round trip took %.3fs" % slowest
        c.detach(ch, 0)
        c.close_cleanly(timeout=30)
    # What it sent is dropped: the shared_broker did not keep growing with it.
    assert rss(shared_broker) - before < MAX_MESSAGE_SIZE + (64 << 20)
    lines = lines_about(shared_broker, c)
    assert len(lines) == 1 and "max-message-size" in lines[0], lines
    assert_no_trouble(shared_broker)


def test_message_over_max_message_size_in_one_frame_is_refused(broker_factory):
    broker = broker_factory("--max-message-size", "1000")
    with opened(broker) as c:
        ch = c.begin(0)
        reply = c.attach(ch, "p", 0, SENDER, src=source("me"),
                         tgt=target("small", capabilities=["queue", "create-on-demand"]))
        assert reply.field(10) == 1000
        c.expect(FLOW, ch)
        c.transfer(ch, 0, encode_message("x" * 2000))
        c.expect_detach(SIZE_EXCEEDED)
    # The same message under the limit still goes through on a new link.
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        conn.create_sender("small").send(Message(body="x" * 500))
        receiver = conn.create_receiver("small", credit=1)
        assert receiver.receive(timeout=10).body == "x" * 500
        receiver.accept()
    finally:
        conn.close()


# -- output: a consumer that never reads its socket -----------------------------------------------
def test_consumer_that_never_reads_does_not_bloat_the_broker(broker_factory):
    """8 browsers of a 48 MB queue with credit for all of it, on a client that never reads: the
    broker encodes about max-connection-output for it and waits (+396 MB before the bound)."""
    broker = broker_factory()
    fill(broker, "deep", b"x" * (100 * 1000), 480)
    bystander = Bystander(broker)
    before = rss(broker)
    c = opened(broker)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    ch = c.begin(0)
    for handle in range(8):
        c.attach(ch, "browser-%d" % handle, handle, RECEIVER, src=source("deep", distribution_mode="copy"))
    try:
        for handle in range(8):
            c.flow(ch, handle, credit=1000)
        c.expect(TRANSFER, ch)           # the broker has begun answering the flows
        start = time.monotonic()
        bystander.check()
        slowest = time.monotonic() - start
        for _ in range(3):
            start = time.monotonic()
            bystander.check()
            slowest = max(slowest, time.monotonic() - start)
        growth = rss(broker) - before
        assert growth < 48 << 20, "the broker grew by %d MB" % (growth >> 20)
        assert slowest < ROUND_TRIP, "a bystander round trip took %.3fs" % slowest
    finally:
        c.close()
        bystander.close()
    # Once the client is gone, the browsers' output goes with it and the broker serves on.
    Bystander(broker).close()
    assert_no_trouble(broker)


def test_drain_completes_past_the_output_bound(shared_broker):
    """Messages bigger than max-connection-output: the link stops taking after each until the
    socket drains, and a drain still ends with the drained flow once the queue is empty."""
    body = b"B" * (5 << 20)
    fill(shared_broker, "drain-big", body, 3)
    with opened(shared_broker) as c:
        ch = c.begin(0)
        c.attach(ch, "drainer", 0, RECEIVER, src=source("drain-big"))
        got = c.receive_all(ch, 0, credit=10, timeout=60)
        assert len(got) == 3 and all(len(data) > len(body) for _, data in got)
        c.close_cleanly()


# -- delivery tags ------------------------------------------------------------------------------
def test_delivery_tag_over_32_bytes_is_a_decode_error(shared_broker, shared_bystander):
    with opened(shared_broker) as c:
        ch = c.begin(0)
        c.attach(ch, "tags", 0, SENDER, src=source("me"), tgt=target("amq.fanout"))
        c.expect(FLOW, ch)
        # 32 bytes is allowed, whatever the encodings around the tag (small and 4-byte delivery-ids,
        # more fields after it).
        c.send(encode_frame(ch, TRANSFER, [uint(0), uint(0), b"t" * 32, uint(0), True], encode_message("ok")))
        c.send(encode_frame(ch, TRANSFER, [uint(0), uint(1 << 20), b"t" * 32, uint(0), True, False, None,
                                           None, False, False, False], encode_message("ok")))
        c.send(encode_frame(ch, TRANSFER, [uint(0), uint((1 << 20) + 1), b"t" * 33, uint(0), True],
                            encode_message("no")))
        frame = c.expect_close("amqp:decode-error")
        assert "delivery-tag of 33 bytes" in frame.error.description
    shared_bystander.check()
    assert_no_trouble(shared_broker)
