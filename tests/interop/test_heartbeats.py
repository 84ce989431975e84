"""Heartbeats (idle-time-out). A quiet connection with a short idle timeout stays up because both
sides send empty frames; a peer that goes silent is dropped by the broker after about twice the
idle timeout it announced (qpidd's local idle-time-out = 2 x the peer's), with one log line."""
import re
import socket
import struct
import time

from proton import Data, Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import wait_until
from tests.support.reactor import ClientHandler, run

QUIET = 3.5   # seconds of silence from the application: 3.5 x the 1 s idle timeouts


def test_quiet_connection_with_heartbeats_stays_up(broker):
    # proton: heartbeat=1 is a 1 s local idle timeout, announced to the broker as 500 ms.
    conn = BlockingConnection(broker.url, timeout=20, heartbeat=1)
    try:
        sender = conn.create_sender("hb", options=CreateQueue())
        receiver = conn.create_receiver("hb", credit=1)
        assert conn.conn.transport.remote_idle_timeout == 1.0    # the broker's: 2 x 500 ms
        deadline = time.monotonic() + QUIET
        # poll: proton's event loop runs (sending and checking heartbeats) until the deadline;
        # a dropped connection ends the wait with ConnectionException.
        conn.wait(lambda: time.monotonic() >= deadline, timeout=QUIET + 10, msg="quiet period")
        sender.send(Message(body="still alive"))
        assert receiver.receive(timeout=10).body == "still alive"
        receiver.accept()
        # The broker logged no idle-timeout on it.
        assert not broker.log_lines("idle")
    finally:
        conn.close()


class QuietHandler(ClientHandler):
    """Handler API: a connection with a 1 s heartbeat does nothing for QUIET seconds (a container
    timer), then sends and receives one message over it."""

    def __init__(self, url):
        super().__init__(url, timeout=QUIET + 20)
        self.got = None
        self.disconnected = False

    def setup(self, event):
        self.conn = self.connect(heartbeat=1)
        self.sender = event.container.create_sender(self.conn, "hb-h", options=CreateQueue())
        self.receiver_made = False
        event.container.schedule(QUIET, self)

    def on_timer_task(self, event):
        event.container.create_receiver(self.conn, "hb-h")
        self.sender.send(Message(body="after the quiet"))

    def on_message(self, event):
        self.got = event.message.body
        self.finish()

    def on_disconnected(self, event):
        if not self.finished:
            raise AssertionError("connection dropped while quiet")


def test_quiet_connection_with_heartbeats_stays_up_container_api(broker):
    h = run(QuietHandler(broker.url))
    assert h.got == "after the quiet"


# -- a dead peer ------------------------------------------------------------------------------
def amqp_frame(body, channel=0):
    return struct.pack(">IBBH", 8 + len(body), 2, 0, channel) + body


def open_frame(container_id, idle_timeout_ms):
    # open = described(0x10, [container-id, hostname, max-frame-size, channel-max, idle-time-out])
    cid = container_id.encode()
    fields = (b"\xa1" + bytes([len(cid)]) + cid + b"\x40\x40\x40"
              + b"\x70" + struct.pack(">I", idle_timeout_ms))
    return amqp_frame(b"\x00\x53\x10" + b"\xc0" + bytes([len(fields) + 1, 5]) + fields)


def read_frames(buffer):
    """Split complete frames off ``buffer`` (after the protocol header): [(body)], rest."""
    frames = []
    while len(buffer) >= 8:
        size, doff = struct.unpack(">IB", buffer[:5])
        if len(buffer) < size:
            break
        frames.append(buffer[doff * 4:size])
        buffer = buffer[size:]
    return frames, buffer


def performative(body):
    data = Data()
    data.decode(body)
    data.rewind()
    data.next()
    return data.get_object()      # Described(descriptor, [fields])


def test_silent_peer_is_dropped_after_twice_its_idle_timeout(broker):
    idle_ms = 500
    sock = socket.create_connection((broker.host, broker.port), timeout=10)
    try:
        local_port = sock.getsockname()[1]
        sock.sendall(b"AMQP\x00\x01\x00\x00" + open_frame("silent-peer", idle_ms))
        opened = time.monotonic()
        received = b""
        deadline = opened + 10
        # poll: read whatever the broker sends until it closes the socket or the deadline passes
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        else:
            raise AssertionError(f"the broker did not drop the silent connection within 10 s: {received!r}")
        closed_after = time.monotonic() - opened
    finally:
        sock.close()

    assert received[:8] == b"AMQP\x00\x01\x00\x00"
    frames, rest = read_frames(received[8:])
    assert rest == b""
    open_reply = performative(frames[0])
    assert open_reply.descriptor == 0x10
    assert open_reply.value[4] == 2 * idle_ms       # the broker expects traffic within 2 x ours
    heartbeats = [f for f in frames[1:] if not f]
    assert heartbeats, "the broker sent no empty frames while we were silent"
    close = performative(frames[-1])
    assert close.descriptor == 0x18
    error = close.value[0]
    assert error.descriptor == 0x1D and error.value[0] == "amqp:resource-limit-exceeded"
    # About twice the announced timeout: not before it, and not much after.
    assert 2 * idle_ms / 1000 * 0.9 <= closed_after <= 2 * idle_ms / 1000 + 2.0, closed_after

    # One log line names the connection (by our end's port) and says why.
    mine = re.compile(rf"127\.0\.0\.1:{local_port}\b")
    line = wait_until(lambda: broker.log_lines(mine), timeout=10, message="a log line naming the connection")
    assert len(line) == 1, line
    assert "idle" in line[0]


def test_largest_idle_timeout_is_answered_within_range(broker):
    """A peer announcing the largest idle-time-out (2^32-1 ms) gets an open whose own idle-time-out
    is clamped to that range (twice the peer's would not fit a uint: the broker closed with an
    internal error), and the connection is served."""
    sock = socket.create_connection((broker.host, broker.port), timeout=10)
    try:
        sock.sendall(b"AMQP\x00\x01\x00\x00" + open_frame("lazy-peer", 0xFFFFFFFF))
        received = b""
        deadline = time.monotonic() + 10
        frames = []
        while not frames and time.monotonic() < deadline:   # poll: until the open arrives
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            assert chunk, "the broker closed the connection: %r" % received
            received += chunk
            if len(received) > 8:
                frames, _ = read_frames(received[8:])
    finally:
        sock.close()
    open_reply = performative(frames[0])
    assert open_reply.descriptor == 0x10
    assert open_reply.value[4] == 0xFFFFFFFF
    assert not broker.log_lines("internal-error")
