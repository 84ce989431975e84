"""Flow-to-disk: a queue with ``qpid.policy_type=flow_to_disk`` keeps at most its limit of messages
in memory; the bodies of the rest live only in its journal and are read back, in order, as
consumers take them.

20,000 durable messages of 10 KiB (about 200 MiB) go into a durable queue limited to 500 messages:
the broker's resident memory (VmRSS in /proc/PID/status, which also counts mapped journal pages)
grows by less than 200 MiB while they are queued and while they are consumed, and every message
comes out, in order. Non-durable messages to a flow-to-disk queue go to its journal too (as qpidd
did), on a durable or a non-durable queue, and are not recovered after a restart.
"""
import threading

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container, Copy
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain

MiB = 1 << 20
FTD = {"durable": True, "qpid.policy_type": "flow_to_disk", "qpid.max_count": 500,
       "qpid.file_count": 16, "qpid.file_size": 256}          # journal: 16 files of 16 MiB


def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Sender(MessagingHandler):
    """Sends ``count`` messages with up to ``window`` unsettled; counts the accepted ones."""

    def __init__(self, url, address, count, body, durable=True, window=200):
        super().__init__()
        self.url, self.address, self.count, self.body = url, address, count, body
        self.durable, self.window = durable, window
        self.sent = self.accepted = self.other = 0

    def on_start(self, event):
        conn = event.container.connect(self.url, reconnect=False)
        self.sender = event.container.create_sender(conn, self.address)

    def on_sendable(self, event):
        self._pump()

    def _pump(self):
        s = self.sender
        while s.credit and self.sent < self.count and self.sent - self.accepted - self.other < self.window:
            s.send(Message(id=self.sent, body=self.body, durable=self.durable))
            self.sent += 1

    def on_accepted(self, event):
        self.accepted += 1
        self._settled(event)

    def on_rejected(self, event):
        self.other += 1
        self._settled(event)

    def on_released(self, event):
        self.other += 1
        self._settled(event)

    def _settled(self, event):
        if self.accepted + self.other == self.count:
            event.connection.close()
        else:
            self._pump()


def send_all(url, address, count, body, durable=True):
    handler = Sender(url, address, count, body, durable)
    Container(handler).run()
    assert (handler.accepted, handler.other) == (count, 0)


def test_flow_to_disk_keeps_memory_bounded(broker_factory):
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=30)
    conn.create_sender("ftd", options=CreateQueue(FTD)).close()
    conn.close()
    base = vm_rss(broker.pid)
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], vm_rss(broker.pid))
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    count = 20_000
    body = b"\xab" * 10240
    try:
        send_all(broker.url, "ftd", count, body)
        queued = vm_rss(broker.pid)
        conn = BlockingConnection(broker.url, timeout=30)
        try:
            receiver = conn.create_receiver("ftd", credit=200)
            for i in range(count):
                msg = receiver.receive(timeout=30)
                assert msg.id == i and msg.body == body, (i, msg.id)
                receiver.accept()
            assert drain(conn, receiver, 10) == 0
        finally:
            conn.close()
    finally:
        done.set()
        watcher.join()
    growth = peak[0] - base
    print("\nflow-to-disk: %d x 10 KiB through a 500-message queue: VmRSS %.0f MiB at start, %.0f "
          "MiB with all queued, peak %.0f MiB (growth %.0f MiB)"
          % (count, base / MiB, queued / MiB, peak[0] / MiB, growth / MiB))
    assert growth < 200 * MiB, growth


def test_non_durable_messages_flow_to_disk_too(broker_factory):
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        small = dict(FTD, **{"qpid.max_count": 5, "qpid.file_count": 4, "qpid.file_size": 8})
        conn.create_sender("ftd-d", options=CreateQueue(small)).close()
        transient = dict(small, durable=False)
        conn.create_sender("ftd-t", options=CreateQueue(transient)).close()
        for q in ("ftd-d", "ftd-t"):
            sender = conn.create_sender(q)
            for i in range(30):
                sender.send(Message(id=i, body="%s-%d" % (q, i) * 100, durable=i % 2 == 0))
            sender.close()
        # The queue holding 30 past a limit of 5: every body comes back, in order.
        receiver = conn.create_receiver("ftd-t", credit=None)
        assert drain(conn, receiver, 100) == 30
        assert [receiver.receive(timeout=10).id for _ in range(30)] == list(range(30))
        receiver.accept()
        receiver.close()
        # A browser reads the bodies back without taking the messages (nor keeping the bodies).
        browser = conn.create_receiver("ftd-d", credit=None, options=Copy())
        assert drain(conn, browser, 100) == 30
        assert [browser.receive(timeout=10).body for _ in range(30)] == [
            "ftd-d-%d" % i * 100 for i in range(30)]
        browser.close()
    finally:
        conn.close()
    broker.restart()
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        receiver = conn.create_receiver("ftd-d", credit=None)
        assert drain(conn, receiver, 100) == 15        # the durable ones only
        got = [receiver.receive(timeout=10) for _ in range(15)]
        assert [m.id for m in got] == list(range(0, 30, 2))
        assert all(m.body == "ftd-d-%d" % m.id * 100 for m in got)
        receiver.accept()
    finally:
        conn.close()
    store = broker.data_dir / "cypid-store"
    assert not any((store / "ftd").glob("*/journal-*")), "a transient queue's journal outlived its broker"
