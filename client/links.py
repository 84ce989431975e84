"""Sender and receiver links.

A sender queues (message bytes, count) requests; the connection's once-per-turn flush asks each sender
with work to ``_pump``, which encodes as many deliveries as credit, the outstanding window and the
peer's session window allow in one ``SenderCore.encode`` call. Outcomes come back as ranged
dispositions and are counted per sender (``Session._settle_range``).

A receiver's transfers are consumed by ``clientcore.InboundCore``; after each read burst the
connection calls ``_on_burst`` once, which moves kept messages to the receiver's buffer, wakes
waiters, tops the credit window up and sends accepts in ranges.
"""
import asyncio
import collections

from cypid.pyx.clientcore import ReceiverCore, SenderCore, frames_per_message
from cypid.pyx.codec import Described, ubyte, uint, ulong

from .errors import ClientError, DeliveryFailed, LinkDetached, error_from
from .message import Message
from .terminus import make_source, make_target

ATTACH, FLOW, DISPOSITION, DETACH = 0x12, 0x13, 0x15, 0x16
ACCEPTED = Described(ulong(0x24), [])
RELEASED = Described(ulong(0x26), [])
MASK32 = 0xFFFFFFFF
SND_UNSETTLED, SND_SETTLED = 0, 1
RCV_FIRST = 0
# L_ATTACHING -> L_ATTACHED -> (L_DETACH_SENT) -> L_DETACHED
L_ATTACHING, L_ATTACHED, L_DETACH_SENT, L_DETACHED = range(4)
MAX_BATCH = 2000      # deliveries encoded in one go (one loop turn sends at most ~1 MiB)


class Link:
    is_sender = False

    def __init__(self, session, name, handle):
        self.session = session
        self.connection = session.connection
        self.loop = session.loop
        self.name = name
        self.handle = handle
        self.remote_handle = None
        self.state = L_ATTACHING
        self.attached = self.loop.create_future()
        self.detached = self.loop.create_future()
        self.error = None
        self.remote_source = None
        self.remote_target = None
        self._refused = False

    def _attach_fields(self, snd_mode, rcv_mode, source, target):
        return [self.name, uint(self.handle), not self.is_sender, ubyte(snd_mode), ubyte(rcv_mode), source,
                target, None, None, uint(0) if self.is_sender else None]

    def _on_attach(self, fields):
        n = len(fields)
        self.remote_handle = fields[1]
        self.remote_source = fields[5] if n > 5 else None
        self.remote_target = fields[6] if n > 6 else None
        terminus = self.remote_target if self.is_sender else self.remote_source
        if terminus is None:
            self._refused = True    # the peer's detach with the reason follows
            return
        self.state = L_ATTACHED
        self._attached(fields)
        if not self.attached.done():
            self.attached.set_result(self)

    def _attached(self, fields):
        pass

    def _on_detach(self, fields):
        n = len(fields)
        condition, description, info = error_from(fields[2] if n > 2 else None)
        if self.state != L_DETACH_SENT:
            self.session.send(DETACH, [uint(self.handle), True])
            if self._refused or self.state == L_ATTACHING:
                exc = LinkDetached(description or "attach refused", condition, info)
            else:
                exc = LinkDetached(description or "link detached by the peer", condition, info)
        else:
            exc = LinkDetached(description, condition, info) if condition else None
        self.session.links.pop(self.handle, None)
        self._terminate(exc or LinkDetached("link closed"), clean=exc is None)

    def _terminate(self, exc, clean=False):
        if self.state == L_DETACHED:
            return
        self.state = L_DETACHED
        self.error = None if clean else exc
        if not self.attached.done():
            self.attached.set_exception(exc)
            self.attached.exception()
        if not self.detached.done():
            self.detached.set_result(None)
        self._fail_waiters(exc)

    def _fail_waiters(self, exc):
        pass

    def check_attached(self):
        if self.state != L_ATTACHED:
            raise self.error or LinkDetached("link %r is not attached" % self.name)

    @property
    def address(self):
        terminus = self.remote_target if self.is_sender else self.remote_source
        fields = getattr(terminus, "value", None)
        return fields[0] if isinstance(fields, list) and fields else None

    async def close(self, timeout=10.0):
        """Detach (closed=true) and wait for the peer's detach."""
        if self.state == L_ATTACHED:
            self._before_close()
            self.session.send(DETACH, [uint(self.handle), True])
            self.state = L_DETACH_SENT
        if self.state == L_DETACH_SENT:
            try:
                await asyncio.wait_for(asyncio.shield(self.detached), timeout)
            except TimeoutError:
                self._terminate(LinkDetached("no detach from the peer within %ss" % timeout), clean=True)

    def _before_close(self):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class _Request:
    __slots__ = ("message", "remaining", "seq_offset", "seq", "clock", "future", "frames")

    def __init__(self, message, count, seq_offset, seq, future, frames):
        self.message = message
        self.clock = seq if callable(seq) else None
        seq = 0 if callable(seq) else seq
        self.remaining = count
        self.seq_offset = seq_offset
        self.seq = seq
        self.future = future
        self.frames = frames


class Sender(Link):
    """Sends encoded messages: ``await send(message, count)``, then ``await wait_settled()``."""

    is_sender = True

    def __init__(self, session, name, handle, address, *, settled=False, window=5000, **node):
        super().__init__(session, name, handle)
        self.target = make_target(address, **node)
        self.settled = settled
        self.window = max(1, int(window))
        self.core = SenderCore(handle, settled)
        self._queue = collections.deque()
        self._in_pump_list = False
        self.outstanding = 0          # deliveries sent and not settled by the peer
        self.counts = collections.Counter()
        self.last_failure = None      # (outcome, state) of the last delivery not accepted
        self._settle_waiters = []
        self._room_waiters = []

    def _send_attach(self):
        mode = SND_SETTLED if self.settled else SND_UNSETTLED
        self.session.send(ATTACH, self._attach_fields(mode, RCV_FIRST, None, self.target))

    @property
    def credit(self):
        return self.core.credit

    @property
    def sent(self):
        return self.core.sent

    # -- sending -----------------------------------------------------------------------------
    def send_nowait(self, message, count=1, *, seq_offset=-1, seq=0):
        """Queue ``count`` deliveries of ``message`` (bytes from ``Message.encode()``, or a Message, or a
        body); returns a future done once all of them are written. With ``seq_offset >= 0`` the 8 bytes at
        that offset of each copy carry a big-endian counter from ``seq``; if ``seq`` is callable (e.g.
        ``time.time_ns``) the counter starts from its value at the moment the copies are encoded."""
        self.check_attached()
        if not isinstance(message, (bytes, bytearray, memoryview)):
            message = message.encode() if isinstance(message, Message) else Message(message).encode()
        message = bytes(message)
        future = self.loop.create_future()
        if count <= 0:
            future.set_result(None)
            return future
        frames = frames_per_message(len(message), self.connection.remote_max_frame)
        self._queue.append(_Request(message, count, seq_offset, seq, future, frames))
        self.connection._want_pump(self)
        return future

    async def send(self, message, count=1, *, seq_offset=-1, seq=0):
        """Send ``count`` deliveries of ``message``; returns once they are written (not settled)."""
        await self.send_nowait(message, count, seq_offset=seq_offset, seq=seq)

    async def wait_settled(self, timeout=None, check=True):
        """Wait until every delivery sent has been settled by the peer. With ``check``, raise
        DeliveryFailed if any since the last check came back other than accepted."""
        if self.outstanding or self._queue:
            future = self.loop.create_future()
            self._settle_waiters.append(future)
            if timeout is None:
                await future
            else:
                await asyncio.wait_for(future, timeout)
        if self.error is not None and (self.outstanding or self._queue):
            raise self.error
        if check:
            self.check_outcomes()

    def check_outcomes(self):
        """Raise DeliveryFailed if deliveries were rejected/released/modified since the last check."""
        failed = {k: v for k, v in self.counts.items() if k in ("rejected", "released", "modified") and v}
        if failed:
            for k in failed:
                self.counts["failed_" + k] += self.counts.pop(k)
            outcome, state = self.last_failure
            condition, description, info = (None, "", None)
            if outcome == "rejected" and isinstance(getattr(state, "value", None), list) and state.value:
                condition, description, info = error_from(state.value[0])
            text = ", ".join("%d %s" % (v, k) for k, v in sorted(failed.items()))
            text += (": " + description) if description else ""
            raise DeliveryFailed("deliveries not accepted: %s" % text, condition, info, failed)

    def _pump(self, budget):
        """Encode and write what credit and windows allow, at most ``budget`` bytes; returns what is left
        of the budget."""
        self._in_pump_list = False
        if self.state != L_ATTACHED:
            return budget
        core = self.core
        session = self.session
        score = session.core
        conn = self.connection
        queue = self._queue
        max_frame = conn.remote_max_frame
        settled = self.settled
        while queue:
            request = queue[0]
            n = request.remaining
            if n > core.credit:
                n = core.credit
            if not settled and n > self.window - self.outstanding:
                n = self.window - self.outstanding
            frames = request.frames
            room = score.remote_incoming_window // frames
            if n > room:
                n = room
            limit = budget // (len(request.message) + 40) + 1
            if n > limit:
                n = limit
            if n > MAX_BATCH:
                n = MAX_BATCH
            if n <= 0:
                break
            first = session.did_count
            seq = request.seq
            if request.clock is not None:
                seq = request.clock()
            data = core.encode(score, request.message, n, max_frame, request.seq_offset, seq)
            session.did_count = first + n
            if not settled:
                session.add_unsettled(first, n, self)
                self.outstanding += n
            conn._out.append(data)
            budget -= len(data)
            request.remaining -= n
            request.seq = seq + n
            if request.remaining == 0:
                queue.popleft()
                if not request.future.done():
                    request.future.set_result(None)
            if budget <= 0:
                break
        if queue and budget <= 0:
            # Out of budget, not of credit: carry on next turn.
            self._in_pump_list = True
            conn._pumping.append(self)
        elif not queue and not self.outstanding:
            self._wake_settled()
        return budget

    def _settled(self, n, outcome, state):
        self.outstanding -= n
        self.counts[outcome] += n
        if outcome != "accepted" and outcome != "settled":
            self.last_failure = (outcome, state)
        if self._queue:
            self.connection._want_pump(self)
        elif not self.outstanding:
            self._wake_settled()

    def _wake_settled(self):
        waiters = self._settle_waiters
        if waiters:
            self._settle_waiters = []
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def _on_flow(self, fields):
        n = len(fields)
        core = self.core
        remote_count = fields[5] if n > 5 and fields[5] is not None else 0
        link_credit = fields[6] if n > 6 and fields[6] is not None else 0
        credit = (remote_count + link_credit - core.delivery_count) & MASK32
        core.credit = credit if credit <= 0x7FFFFFFF else 0
        drain = n > 8 and fields[8]
        if core.credit > 0 and self._queue:
            self.connection._want_pump(self)
        elif drain and core.credit > 0:
            # Nothing to send: use the credit up, as drain asks.
            core.delivery_count = (core.delivery_count + core.credit) & MASK32
            core.credit = 0
            self._send_flow(drain=True)
        elif n > 9 and fields[9]:
            self._send_flow()

    def _send_flow(self, drain=False):
        core = self.core
        self.session.send(FLOW, self.session.flow_fields() + [uint(self.handle), uint(core.delivery_count),
                                                              uint(core.credit), None, drain])

    def _fail_waiters(self, exc):
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(exc)
                request.future.exception()
        self._queue.clear()
        self.session.drop_unsettled(self)
        waiters, self._settle_waiters = self._settle_waiters, []
        for future in waiters:
            if not future.done():
                future.set_exception(exc)

    def __repr__(self):
        return "<Sender %s handle=%d credit=%d outstanding=%d>" % (self.name, self.handle, self.core.credit,
                                                                   self.outstanding)


class Receiver(Link):
    """Receives messages: ``await get()`` (a Message), ``await get_raw()`` (bytes), or, with
    ``keep=False``, ``await wait_for(n)`` (count only)."""

    def __init__(self, session, name, handle, address, *, credit=1000, settled=False, auto_accept=True,
                 keep=True, ack_batch=None, limit=None, **node):
        super().__init__(session, name, handle)
        self.source = make_source(address, **node)
        self.settled = settled
        self.window = max(1, int(credit))
        self.low = self.window // 2
        self.limit = limit
        self.ack_batch = max(1, int(ack_batch if ack_batch else self.window // 2))
        self.core = ReceiverCore(session.core, self, keep, auto_accept)
        self._buffer = collections.deque()     # (bytes, delivery-id or None)
        self._get_waiters = collections.deque()
        self._count_waiters = []
        self._drain_waiter = None
        self.draining = False

    def _send_attach(self):
        mode = SND_SETTLED if self.settled else SND_UNSETTLED
        self.session.send(ATTACH, self._attach_fields(mode, RCV_FIRST, self.source, None))

    def _attached(self, fields):
        n = len(fields)
        initial = fields[9] if n > 9 and fields[9] is not None else 0
        self.core.delivery_count = initial
        self.connection.core.add_receiver(self.session.remote_channel, self.remote_handle, self.core)
        self._refill()

    @property
    def received(self):
        return self.core.received

    @property
    def credit(self):
        return self.core.credit

    # -- credit --------------------------------------------------------------------------------
    def _refill(self):
        if self.state != L_ATTACHED or self.draining:
            return
        core = self.core
        buffered = len(self._buffer)
        if core.credit + buffered > self.low:
            return
        target = self.window - buffered
        if self.limit is not None:
            target = min(target, self.limit - core.received)
        if target > core.credit:
            core.credit = target
            self._send_flow()

    def _send_flow(self, drain=False):
        core = self.core
        self.session.send(FLOW, self.session.flow_fields() + [uint(self.handle), uint(core.delivery_count),
                                                              uint(core.credit), None, drain])

    def allow(self, n):
        """Raise ``limit`` (the deliveries credit is ever granted for) by ``n`` and top the credit up."""
        self.limit = (self.limit or 0) + n
        self._refill()

    def add_credit(self, n):
        """Grant ``n`` more credit now (beyond the window's own top-ups)."""
        self.check_attached()
        self.core.credit += n
        self._send_flow()

    def _on_flow(self, fields):
        n = len(fields)
        core = self.core
        if n > 5 and fields[5] is not None:
            core.delivery_count = fields[5]
        if n > 6 and fields[6] is not None:
            core.credit = fields[6]
        if self.draining and core.credit <= 0:
            self._drained()
        elif n > 9 and fields[9]:
            self._send_flow()

    # -- deliveries ------------------------------------------------------------------------------
    def _on_burst(self):
        core = self.core
        if core.keep and core.messages:
            msgs, ids = core.take_messages()
            if ids:
                self._buffer.extend(zip(msgs, ids))
            else:
                self._buffer.extend(zip(msgs, [None] * len(msgs)))
            waiters = self._get_waiters
            while waiters and self._buffer:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
        if self._count_waiters:
            received = core.received
            keep = []
            for count, future in self._count_waiters:
                if received >= count:
                    if not future.done():
                        future.set_result(received)
                else:
                    keep.append((count, future))
            self._count_waiters = keep
        if self.session.core.pending_accepts:
            self.session._accepts_pending(self.ack_batch)
        if self.draining and core.credit <= 0 and not core.in_partial:
            self._drained()
        else:
            self._refill()

    async def _wait_message(self, timeout):
        while not self._buffer:
            self.check_attached()
            future = self.loop.create_future()
            self._get_waiters.append(future)
            try:
                if timeout is None:
                    await future
                else:
                    await asyncio.wait_for(future, timeout)
            finally:
                if not future.done():
                    future.cancel()

    def get_raw_nowait(self):
        """(message bytes, delivery-id or None) of the next message, or None if none is buffered."""
        if not self._buffer:
            return None
        item = self._buffer.popleft()
        if len(self._buffer) + self.core.credit <= self.low:
            self._refill()
        return item

    async def get_raw(self, timeout=None):
        """The next message's bytes (waits up to ``timeout`` seconds: asyncio.TimeoutError)."""
        await self._wait_message(timeout)
        return self.get_raw_nowait()[0]

    async def get(self, timeout=None):
        """The next message, decoded (a Message; ``delivery_id`` set if it waits for accept())."""
        await self._wait_message(timeout)
        data, did = self.get_raw_nowait()
        msg = Message.decode(data)
        msg.delivery_id = did
        msg.receiver = self
        return msg

    def get_nowait(self):
        item = self.get_raw_nowait()
        if item is None:
            return None
        msg = Message.decode(item[0])
        msg.delivery_id = item[1]
        msg.receiver = self
        return msg

    @property
    def buffered(self):
        return len(self._buffer)

    async def wait_for(self, count, timeout=None):
        """Wait until ``count`` deliveries in all have been received; returns the number received."""
        if self.core.received >= count:
            return self.core.received
        self.check_attached()
        future = self.loop.create_future()
        self._count_waiters.append((count, future))
        if timeout is None:
            return await future
        return await asyncio.wait_for(future, timeout)

    # -- settling ------------------------------------------------------------------------------
    def _settle(self, message, state):
        did = message if isinstance(message, int) else message.delivery_id
        if did is None:
            return   # pre-settled, or auto-accepted already
        if state is ACCEPTED:
            self.session.core.accept(did)
            conn = self.connection
            conn._ack_sessions.add(self.session)
            conn._schedule_flush()
        else:
            self.session.send(DISPOSITION, [True, uint(did), None, True, state])
        if not isinstance(message, int):
            message.delivery_id = None

    def accept(self, message):
        """Accept a message (or delivery-id) received with ``auto_accept=False``; accepts go in ranges."""
        self._settle(message, ACCEPTED)

    def release(self, message):
        self._settle(message, RELEASED)

    def reject(self, message, condition=None, description=None):
        from .connection import error_value
        error = error_value(condition, description) if condition else None
        self._settle(message, Described(ulong(0x25), [error] if error else []))

    def modify(self, message, failed=True, undeliverable=False):
        self._settle(message, Described(ulong(0x27), [failed, undeliverable]))

    # -- drain -----------------------------------------------------------------------------------
    async def drain(self, timeout=None):
        """Ask the sender to use up our credit now or give it back (drain); returns once no credit is
        left. Credit is not topped up while draining; call ``add_credit`` or ``resume()`` after."""
        self.check_attached()
        self.draining = True
        if self.core.credit <= 0:
            self.core.credit = max(1, self.window - len(self._buffer))
        self._drain_waiter = self.loop.create_future()
        self._send_flow(drain=True)
        try:
            if timeout is None:
                await self._drain_waiter
            else:
                await asyncio.wait_for(self._drain_waiter, timeout)
        finally:
            self._drain_waiter = None

    def resume(self):
        """Back to the credit window after a drain."""
        self.draining = False
        self._refill()

    def _drained(self):
        future = self._drain_waiter
        if future is not None and not future.done():
            future.set_result(None)

    # -- ending ----------------------------------------------------------------------------------
    def _before_close(self):
        self.session._flush_accepts()
        if self.remote_handle is not None and self.session.remote_channel is not None:
            self.connection.core.remove_receiver(self.session.remote_channel, self.remote_handle)

    def _terminate(self, exc, clean=False):
        if self.remote_handle is not None and self.session.remote_channel is not None:
            self.connection.core.remove_receiver(self.session.remote_channel, self.remote_handle)
        super()._terminate(exc, clean)

    def _fail_waiters(self, exc):
        for future in list(self._get_waiters) + [f for _, f in self._count_waiters] + [self._drain_waiter]:
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()
        self._get_waiters.clear()
        self._count_waiters = []

    def __repr__(self):
        return "<Receiver %s handle=%d credit=%d received=%d>" % (self.name, self.handle, self.core.credit,
                                                                  self.core.received)


__all__ = ["Sender", "Receiver", "ClientError", "ACCEPTED", "RELEASED"]
