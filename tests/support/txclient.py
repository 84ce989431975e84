"""A synchronous transactional AMQP 1.0 client for tests, on tests/support/rawclient.py.

python-qpid-proton's blocking API has no transactions, and its reactor API makes a model test or a
kill test hard to write as plain steps. This client says exactly what goes on the wire:

    with TxClient(broker) as c:
        txn = c.declare()
        q = c.sender("q")
        c.send(q, "one", txn=txn)              # answered transactional-state(txn, accepted)
        assert c.discharge(txn) == ACCEPTED    # commit (fail=True: rollback)
        r = c.receiver("q")
        [(did, body)] = c.fetch(r, 1)
        c.accept(r, did, txn=txn2)             # retire in a transaction

Each call waits for the broker's answer against the client's deadline.
"""
from __future__ import annotations

import time

from cypid.pyx.codec import Array, Described, decode_at, encode_frame, symbol, uint, ulong

from .rawclient import (ATTACH, CLOSE, DETACH, DISPOSITION, FLOW, RECEIVER, SENDER, TRANSFER, ProtocolError,
                        RawClient, encode_message, outcome, source, target)

COORDINATOR, DECLARE, DISCHARGE, DECLARED, TRANSACTIONAL_STATE = 0x30, 0x31, 0x32, 0x33, 0x34
ACCEPTED, REJECTED, RELEASED = 0x24, 0x25, 0x26


def descriptor(value) -> int | None:
    d = getattr(value, "descriptor", None)
    return int(d) if isinstance(d, int) else d


def body_of(data: bytes):
    """The amqp-value of an encoded message."""
    off = 0
    while off < len(data):
        value, off = decode_at(data, off)
        if descriptor(value) == 0x77:
            return value.value
    return None


def txn_state(txn: bytes, inner=None) -> Described:
    return Described(ulong(TRANSACTIONAL_STATE), [txn, inner])


class TxClient:
    """One connection, one session, a coordinator link; links to nodes as asked."""

    def __init__(self, broker, timeout: float = 10.0, coordinator: bool = True, user: str | None = None,
                 password: str = ""):
        self.raw = RawClient.connect(broker, timeout=timeout)
        if user is None:
            self.raw.handshake()
        else:                       # SASL PLAIN as ``user``
            if self.raw.sasl("PLAIN", b"\0" + user.encode() + b"\0" + password.encode()) != 0:
                raise ProtocolError("login as %s failed" % user)
            self.raw.amqp_header()
            self.raw.open()
        self.ch = self.raw.begin()
        self.timeout = timeout
        self.next_handle = 0
        self.outcomes: dict[int, Described] = {}     # our delivery-id -> the broker's state
        self.transfers: list = []                    # transfers not yet taken by fetch
        self.delivery_counts: dict[int, int] = {}
        self.detached: dict[int, object] = {}        # our handle -> the broker's detach error
        self.states: dict[int, object] = {}          # delivery-id -> the state its transfer carried
        self.broker_settled: dict[int, object] = {}  # delivery-id -> state: the broker settled it first
        self.coordinator = self._attach_coordinator() if coordinator else None

    def __enter__(self) -> TxClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection as a client should (close, the broker's close), then the socket."""
        try:
            if not self.raw.eof:
                self.raw.send_close()
                deadline = time.monotonic() + 5
                while not self.raw.eof and time.monotonic() < deadline:
                    frame = self.raw.read_frame(max(0.0, deadline - time.monotonic()))
                    if frame is None or frame.code == CLOSE:
                        break
        except (OSError, TimeoutError, ProtocolError):
            pass
        finally:
            self.raw.close()

    # -- links ---------------------------------------------------------------------------------
    def _handle(self) -> int:
        h = self.next_handle
        self.next_handle += 1
        return h

    def _attach_coordinator(self, capabilities=("amqp:local-transactions",)):
        h = self._handle()
        tgt = Described(ulong(COORDINATOR), [Array(0xA3, [symbol(c) for c in capabilities])])
        frame = self.raw.attach(self.ch, "txn-%d" % h, h, SENDER, src=source("coordinator-src"), tgt=tgt)
        self.coordinator_attach = frame
        return h

    def sender(self, address: str | None) -> int:
        h = self._handle()
        self.raw.attach(self.ch, "sender-%d" % h, h, SENDER, src=source("s"), tgt=target(address))
        return h

    def receiver(self, address: str) -> int:
        h = self._handle()
        self.raw.attach(self.ch, "receiver-%d" % h, h, RECEIVER, src=source(address), tgt=target("r"))
        self.delivery_counts[h] = 0
        return h

    # -- reading ---------------------------------------------------------------------------------
    def _pump(self, deadline: float) -> None:
        """Read one frame and note what it says."""
        try:
            frame = self.raw.read_frame(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise ProtocolError("no answer in time; last frames %r" % self.raw.frames[-5:]) from None
        if frame is None:
            raise ProtocolError("EOF; last frames %r" % self.raw.frames[-5:])
        if frame.code == DISPOSITION and frame.field(0) is True:
            first = frame.field(1)
            last = frame.field(2, first)
            for did in range(first, last + 1):
                self.outcomes[did] = frame.field(4)
        elif frame.code == DISPOSITION:             # the broker, as sender, settles its deliveries
            first = frame.field(1)
            for did in range(first, frame.field(2, first) + 1):
                self.broker_settled[did] = frame.field(4)
        elif frame.code == TRANSFER:
            self.transfers.append(frame)
        elif frame.code == DETACH:
            self.detached[frame.field(0)] = frame.error
        elif frame.code == FLOW:
            self.last_flow = frame
        elif frame.code != ATTACH and frame.error is not None:
            raise ProtocolError("broker ended: %r" % (frame,))

    def wait_outcome(self, did: int, timeout: float | None = None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while did not in self.outcomes:
            self._pump(deadline)
        return self.outcomes.pop(did)

    # -- sending ----------------------------------------------------------------------------------
    def transfer(self, handle: int, message: bytes, state=None, settled: bool = False) -> int:
        raw = self.raw
        did = raw.next_delivery_id
        raw.next_delivery_id += 1
        chunk = max(512, raw.remote_max_frame - 512)     # room for the transfer performative
        frames = []
        for off in range(0, max(len(message), 1), chunk):
            more = off + chunk < len(message)
            fields = [uint(handle), uint(did), did.to_bytes(4, "big"), uint(0), settled, more, None, state] \
                if off == 0 else [uint(handle), None, None, None, None, more]
            frames.append(encode_frame(self.ch, TRANSFER, fields, message[off:off + chunk]))
            raw.next_outgoing_id += 1
        raw.send(b"".join(frames))
        return did

    def send(self, handle: int, body, txn: bytes | None = None, durable: bool = False, wait: bool = True,
             user_id: bytes | None = None):
        """Send one message (its body an amqp-value); returns the broker's state (or the delivery-id
        with ``wait=False``)."""
        msg = encode_message(body, header=[durable] if durable else None,
                             properties=[None, user_id] if user_id is not None else None)
        did = self.transfer(handle, msg, txn_state(txn) if txn is not None else None)
        return self.wait_outcome(did) if wait else did

    def declare(self, wait: bool = True):
        did = self.transfer(self.coordinator, encode_message(Described(ulong(DECLARE), [])))
        if not wait:
            return did
        state = self.wait_outcome(did)
        if descriptor(state) != DECLARED:
            raise ProtocolError("declare answered %r" % (state,))
        return bytes(state.value[0])

    def discharge(self, txn: bytes, fail: bool = False, wait: bool = True):
        """Commit (or roll back with ``fail``); returns the broker's state (accepted, or rejected
        with its error)."""
        did = self.transfer(self.coordinator, encode_message(Described(ulong(DISCHARGE), [txn, fail])))
        return self.wait_outcome(did) if wait else did

    # -- receiving -------------------------------------------------------------------------------
    def fetch(self, handle: int, n: int, timeout: float | None = None,
              txn: bytes | None = None) -> list[tuple[int, object]]:
        """Grant ``n`` credit with drain; every message the queue had for us, up to ``n``, as
        (delivery-id, body). Nothing is settled. With ``txn`` the flow asks for transactional
        acquisition (its properties name the txn-id); each transfer's state is kept in ``states``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        dc = self.delivery_counts[handle]
        self.raw.flow(self.ch, handle, delivery_count=dc, credit=n, drain=True,
                      next_incoming_id=0, properties=None if txn is None else {symbol("txn-id"): txn})
        peer = self.raw.peer_handles.get(handle, handle)
        out = []
        partial = None
        while True:
            while self.transfers:
                frame = self.transfers.pop(0)
                if partial is None:
                    partial = [frame.field(1), bytearray()]
                    self.states[frame.field(1)] = frame.field(7)
                partial[1] += frame.payload
                if not frame.field(5, False):
                    out.append((partial[0], body_of(bytes(partial[1]))))
                    partial = None
                    self.delivery_counts[handle] += 1
            if len(out) >= n:
                return out
            flow = getattr(self, "last_flow", None)
            if flow is not None and flow.code == FLOW and flow.field(4) == peer and flow.field(8, False) \
                    and flow.field(6, 0) == 0:
                self.last_flow = None
                self.delivery_counts[handle] = flow.field(5, dc)
                return out
            self._pump(deadline)

    def accept(self, did: int, txn: bytes | None = None, settled: bool = True, last: int | None = None) -> None:
        state = txn_state(txn, outcome(ACCEPTED)) if txn is not None else outcome(ACCEPTED)
        self.raw.disposition(self.ch, did, last, settled=settled, state=state)

    def release(self, did: int) -> None:
        self.raw.disposition(self.ch, did, settled=True, state=outcome(RELEASED))


__all__ = ["TxClient", "body_of", "txn_state", "descriptor", "ACCEPTED", "REJECTED", "DECLARED",
           "TRANSACTIONAL_STATE"]
