"""FAULT TESTS: clients SIGKILLed in the middle of a transfer.

A separate client process (python-qpid-proton, or the raw client for exact control over what is on
the wire) is killed with SIGKILL at a known point. The broker must then clean up after it -- its
links, its sessions, the deliveries it held unsettled, a half-received message -- and keep serving:

- a consumer killed holding unsettled deliveries: a new consumer gets every message back exactly
  once, in order, delivery-count incremented for those that had been delivered (and only once, even
  when the dead connection had another consumer with spare credit on the same queue);
- a producer killed in the middle of a multi-frame (5 MB) message: the complete messages it sent
  are there, the partial one never appears.

The broker logs at debug here so that the test can wait for the line saying the dead connection is
gone (no fixed sleeps). Queue depth is checked by a new consumer that drains the queue.
"""
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.faults import Bystander, assert_no_trouble
from tests.support.rawclient import RECEIVER, RawClient, source, symbol, target

REPO = Path(__file__).resolve().parents[2]
BIG = 5 << 20


@pytest.fixture
def debug_broker(broker_factory):
    return broker_factory("--log-enable", "debug+")


@pytest.fixture
def bystander(debug_broker):
    b = Bystander(debug_broker)
    try:
        yield b
    finally:
        b.close()


class Child:
    """A client process: ``expect_line()`` reads what it reports, ``kill()`` SIGKILLs it."""

    def __init__(self, script, *args, tmp_path):
        self.stderr_path = tmp_path / ("child-%s.err" % uuid.uuid4().hex[:6])
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=str(REPO),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        self.buffer = b""

    def expect_line(self, timeout=30.0) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while b"\n" not in self.buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise TimeoutError("child said nothing in %ss; stderr:\n%s" % (timeout, self.errors()))
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise AssertionError("child exited (%s); stderr:\n%s" % (self.proc.wait(), self.errors()))
                self.buffer += chunk
        finally:
            sel.close()
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def errors(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()
        self.stderr.close()


@pytest.fixture
def spawn(tmp_path):
    children = []

    def start(script, *args):
        child = Child(script, *args, tmp_path=tmp_path)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def wait_connection_gone(broker, address_pattern: str) -> None:
    """Wait for the broker's (debug) line saying the connection has been torn down."""
    broker.wait_for_log(re.compile(r"Connection %s closed$" % address_pattern, re.M), timeout=15)


def connection_of(broker, container_id: str) -> str:
    """The broker's name for the connection a container opened (from its info line)."""
    m = broker.wait_for_log(r"Connection (\S+) opened by '%s'" % re.escape(container_id))
    return re.escape(m.group(1))


def fill(broker, queue, count, prefix="m"):
    conn = BlockingConnection(broker.url, timeout=10)
    try:
        sender = conn.create_sender(queue, options=CreateQueue())
        for i in range(count):
            sender.send(Message(body="%s%d" % (prefix, i), properties={"i": i}))
    finally:
        conn.close()


def drain(broker, queue, credit=100):
    """Every message the queue holds, taken (and not accepted) by a new raw consumer: [Message]."""
    with RawClient.connect(broker) as c:
        c.handshake()
        ch = c.begin(0)
        c.attach(ch, "drain-" + uuid.uuid4().hex[:6], 0, RECEIVER, src=source(queue), tgt=target())
        got = c.receive_all(ch, 0, credit=credit, timeout=30)
        c.close_cleanly()
    out = []
    for _, data in got:
        m = Message()
        m.decode(data)
        out.append(m)
    return out


def node_exists(broker, name) -> bool:
    """Does a queue of that name exist? (A browsing attach is answered with a source or refused.)"""
    with RawClient.connect(broker) as c:
        c.handshake()
        ch = c.begin(0)
        reply = c.attach(ch, "probe", 0, RECEIVER, src=source(name, distribution_mode=symbol("copy")),
                         tgt=target())
        exists = reply.field(5) is not None
        c.close_cleanly()
        return exists


# ---------------------------------------------------------------------------------------------------
CONSUMER_CHILD = r"""
import sys
from proton import Terminus
from proton.handlers import MessagingHandler
from proton.reactor import Container

url, container_id = sys.argv[1], sys.argv[2]


class Child(MessagingHandler):
    # Takes deliveries and never settles them. Session 1: "a" on victim (credit 10), "b1" on victim2
    # (credit 5), "sub" on amq.fanout (a private subscription queue). Then session 2: "b2" on victim2
    # (credit 100: spare credit when session 1's deliveries come back).
    def __init__(self):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        self.counts = {}
        self.b2 = None

    def on_start(self, event):
        self.conn = event.container.connect(url)
        self.a = self.receiver(self.conn.session(), "a", "victim", 10)
        self.b1 = self.receiver(self.a.session, "b1", "victim2", 5)
        self.sub = self.receiver(self.a.session, "sub", "amq.fanout", 5)

    def receiver(self, session, name, address, credit):
        if session.state & session.LOCAL_UNINIT:
            session.open()
        r = session.receiver(name)
        r.source.address = address
        r.target.type = Terminus.TARGET
        r.open()
        r.flow(credit)
        return r

    def on_link_opened(self, event):
        if event.link.name == "sub":
            print("sub", flush=True)

    def on_message(self, event):
        name = event.link.name
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.b2 is None and self.counts.get("a") == 10 and self.counts.get("b1") == 5:
            self.b2 = self.receiver(self.conn.session(), "b2", "victim2", 100)
        if self.counts.get("b2") == 5:
            print("holding", sorted(self.counts.items()), flush=True)


Container(Child(), container_id=container_id).run()
"""


def test_consumer_killed_with_unsettled_deliveries(debug_broker, bystander, spawn):
    broker = debug_broker
    fill(broker, "victim", 15)
    fill(broker, "victim2", 10)
    container_id = "doomed-consumer-" + uuid.uuid4().hex[:6]
    child = spawn(CONSUMER_CHILD, broker.url, container_id)
    assert child.expect_line() == "sub"
    line = child.expect_line()
    assert line == "holding [('a', 10), ('b1', 5), ('b2', 5)]", line
    subscription = "%s_sub" % container_id
    assert node_exists(broker, subscription)
    address = connection_of(broker, container_id)

    child.kill()
    wait_connection_gone(broker, address)

    # victim: m0..m9 were delivered (once) and come back first, counted; m10..m14 never were.
    got = drain(broker, "victim")
    assert [m.body for m in got] == ["m%d" % i for i in range(15)]
    assert [m.delivery_count for m in got] == [1] * 10 + [0] * 5
    assert [m.first_acquirer for m in got[:10]] == [False] * 10
    assert [m.properties for m in got] == [{"i": i} for i in range(15)]
    # victim2: every message was delivered exactly once before the kill, so each is counted once --
    # b1's returned deliveries must not be handed to b2 (same dead connection) and counted again.
    got = drain(broker, "victim2")
    assert [m.body for m in got] == ["m%d" % i for i in range(10)]
    assert [m.delivery_count for m in got] == [1] * 10
    # The dead consumer's private subscription queue went with its link.
    assert not node_exists(broker, subscription)
    bystander.check()
    assert_no_trouble(broker)


# ---------------------------------------------------------------------------------------------------
RAW_PRODUCER_CHILD = r"""
import sys
from tests.support.rawclient import (DISPOSITION, FLOW, SENDER, RawClient, encode_message, source,
                                     split_frames, target)

host, port, queue, big = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
c = RawClient(host, port, timeout=30)
c.handshake(container_id="doomed-producer")
ch = c.begin(0)
c.attach(ch, "doomed-producer", 0, SENDER, src=source("p"),
         tgt=target(queue, capabilities=["queue", "create-on-demand"]))
c.expect(FLOW, ch)
for i in range(3):
    c.transfer(ch, 0, encode_message("complete %d" % i))
settled = set()
while len(settled) < 3:
    d = c.expect(DISPOSITION, ch, skip=(FLOW,))
    settled.update(range(d.field(1), d.field(2, d.field(1)) + 1))
frames = split_frames(c.transfer_frames(ch, 0, encode_message(b"P" * big)))
half = len(frames) // 2
c.send(b"".join(frames[:half]))
# The broker answers an echo flow after it has read everything before it: half the message is in.
c.flow(ch, echo=True)
while c.expect(FLOW, ch, skip=(DISPOSITION,)).field(4) is not None:
    pass
c.send(frames[half][:len(frames[half]) // 2])      # and a frame cut in the middle
print(c.address_tag, len(frames), half, flush=True)
sys.stdin.read()
"""


def test_producer_killed_in_the_middle_of_a_multi_frame_message(debug_broker, bystander, spawn):
    broker = debug_broker
    child = spawn(RAW_PRODUCER_CHILD, broker.host, broker.port, "half-sent", BIG)
    tag, nframes, half = child.expect_line().split()
    assert int(nframes) > 40 and int(half) >= 20, (nframes, half)    # truly multi-frame
    child.kill()
    wait_connection_gone(broker, r"\S+-%s" % re.escape(tag))

    got = drain(broker, "half-sent")
    assert [m.body for m in got] == ["complete 0", "complete 1", "complete 2"]
    assert [m.delivery_count for m in got] == [0, 0, 0]
    # The queue works on, and the half message does not turn up behind a new one either.
    fill(broker, "half-sent", 1, prefix="after")
    assert [m.body for m in drain(broker, "half-sent")] == ["complete 0", "complete 1", "complete 2",
                                                           "after0"]
    bystander.check()
    assert_no_trouble(broker)


PROTON_PRODUCER_CHILD = r"""
import sys
from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

url, queue, big = sys.argv[1], sys.argv[2], int(sys.argv[3])
payload = b"B" * big


class Child(MessagingHandler):
    # One small message, then 5 MB messages back to back until killed; says "go" once the first
    # big one is accepted, while the next ones stream.
    def __init__(self):
        super().__init__()
        self.sent = 0
        self.accepted = 0

    def on_start(self, event):
        self.sender = event.container.create_sender(url + "/" + queue)

    def on_sendable(self, event):
        # At most 3 unsettled at a time: enough to keep the wire busy, without encoding GBs.
        while self.sender.credit and self.sent - self.accepted < 3:
            if self.sent == 0:
                self.sender.send(Message(body="small", properties={"i": 0}))
            else:
                self.sender.send(Message(body=payload, properties={"i": self.sent}))
            self.sent += 1

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == 2:
            print("go", flush=True)
        self.on_sendable(event)


Container(Child(), container_id="doomed-proton-producer").run()
"""


def test_proton_producer_killed_while_sending_5mb_messages(debug_broker, bystander, spawn):
    """The same with a real client: whatever was on the wire when it died, only whole messages,
    each once and in order, are in the queue."""
    broker = debug_broker
    fill(broker, "big", 0)      # create the queue
    child = spawn(PROTON_PRODUCER_CHILD, broker.url, "big", BIG)
    assert child.expect_line() == "go"
    address = connection_of(broker, "doomed-proton-producer")
    child.kill()
    wait_connection_gone(broker, address)

    got = drain(broker, "big")
    assert got[0].body == "small"
    assert len(got) >= 2                 # the first big one was accepted before the kill
    for i, m in enumerate(got[1:], start=1):
        assert m.properties == {"i": i}
        assert m.body == b"B" * BIG
        assert m.delivery_count == 0
    bystander.check()
    assert_no_trouble(broker)
