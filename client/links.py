"""Sender and receiver links: the API over the engine's links (``core``, a cypid.pyx.engine.Link).

A sender queues (message bytes, count) requests; the connection's once-per-turn flush asks each sender
with work to ``_pump``, which has the engine encode as many deliveries as credit, the outstanding window,
the peer's session window and the output bound allow in one ``Link.send_batch`` call. Outcomes come back
as ranged dispositions, counted per sender by the engine's ``on_settled``.

A receiver is a batch link: the engine consumes its transfers in C and the connection calls
``_on_burst`` once per read burst, which moves kept messages to the receiver's buffer, wakes waiters and
tops the credit window up; accepts go out in ranges.
"""
import asyncio
import collections

from cypid.pyx import amqp
from cypid.pyx.engine import LinkState, frames_per_message

from .errors import ClientError, DeliveryFailed, LinkDetached, error_from
from .message import Message
from .terminus import make_source, make_target

ACCEPTED = amqp.ACCEPTED_STATE
RELEASED = amqp.RELEASED_STATE
MASK32 = 0xFFFFFFFF
ATTACHED = LinkState.ATTACHED
MAX_BATCH = 2000      # deliveries encoded in one go (one loop turn sends at most ~1 MiB)


class Link:
    """The API over one engine link (``core``): its state is the engine's (``state``, an
    engine.LinkState); ``attached`` and ``detached`` are futures for the moments it changes."""

    is_sender = False

    def __init__(self, session, core):
        self.session = session
        self.connection = session.connection
        self.loop = session.loop
        self.core = core
        core.context = self
        self.name = core.name
        self.handle = core.handle
        self.attached = self.loop.create_future()
        self.detached = self.loop.create_future()
        self.error = None

    @property
    def state(self):
        return self.core.state

    @property
    def is_attached(self):
        """Attached, and not given up on (the session's ``close()`` timeout ends its links here)."""
        return self.core.state == ATTACHED and not self.detached.done()

    @property
    def remote_handle(self):
        return self.core.remote_handle if self.core.has_remote else None

    @property
    def remote_source(self):
        return self.core.remote_source

    @property
    def remote_target(self):
        return self.core.remote_target

    def _on_attach(self):
        terminus = self.core.remote_target if self.is_sender else self.core.remote_source
        if terminus is None:
            return      # refused: the peer's detach with the reason follows
        self._attached()
        if not self.attached.done():
            self.attached.set_result(self)

    def _attached(self):
        pass

    def _on_detach(self, error, lost=None):
        """The engine ended the link; ``lost``: the connection's exception when it went."""
        if lost is not None:
            exc = lost
        elif self.core.detached_here:
            exc = LinkDetached(error[1], error[0], error[2]) if error else None
        elif not self.attached.done():
            exc = LinkDetached(error[1] if error else "attach refused", error and error[0],
                               error and error[2])
        else:
            exc = LinkDetached((error[1] if error else "") or "link detached by the peer",
                               error and error[0], error and error[2])
        self.session.links.pop(self.handle, None)
        self._terminate(exc or LinkDetached("link closed"), clean=exc is None)

    def _terminate(self, exc, clean=False):
        """Fail what waits on the link, with ``exc`` (once)."""
        if self.detached.done():
            return
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
        if not self.is_attached:
            raise self.error or LinkDetached("link %r is not attached" % self.name)

    @property
    def address(self):
        terminus = self.core.remote_target if self.is_sender else self.core.remote_source
        fields = getattr(terminus, "value", None)
        return fields[0] if isinstance(fields, list) and fields else None

    async def close(self, timeout=10.0):
        """Detach (closed=true) and wait for the peer's detach."""
        if self.is_attached:
            self.core.detach()
            self.connection._schedule_flush()
        if self.core.state == LinkState.DETACH_SENT and not self.detached.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.detached), timeout)
            except TimeoutError:
                self._terminate(LinkDetached("no detach from the peer within %ss" % timeout), clean=True)

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

    def __init__(self, session, name, address, *, settled=False, window=5000, **node):
        self.target = make_target(address, **node)
        core = session.core.attach(name, True, None, self.target,
                                   snd_settle_mode=amqp.SND_SETTLED if settled else amqp.SND_UNSETTLED,
                                   rcv_settle_mode=amqp.RCV_FIRST)
        super().__init__(session, core)
        self.settled = settled
        self.window = max(1, int(window))
        self._queue = collections.deque()
        self._in_pump_list = False
        self.counts = collections.Counter()
        self.last_failure = None      # (outcome, state) of the last delivery not accepted
        self._settle_waiters = []
        self._unsettled_at_end = None  # the engine forgets a link's unsettled deliveries once it ends

    @property
    def credit(self):
        return self.core.credit

    @property
    def sent(self):
        return self.core.sent

    @property
    def outstanding(self):
        """Deliveries sent and not settled by the peer (once the link has ended: those it never settled)."""
        return self.core.unsettled if self._unsettled_at_end is None else self._unsettled_at_end

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
        if (self.outstanding or self._queue) and not self.detached.done():
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
        """Have the engine encode what credit, windows and the output bound allow, at most ``budget``
        bytes; returns what is left of the budget."""
        self._in_pump_list = False
        if self.core.state != ATTACHED:
            return budget
        core = self.core
        queue = self._queue
        settled = self.settled
        while queue:
            request = queue[0]
            n = request.remaining
            if not settled and n > self.window - core.unsettled:
                n = self.window - core.unsettled
            size = len(request.message) + 40 * request.frames
            limit = budget // size + 1
            if n > limit:
                n = limit
            if n > MAX_BATCH:
                n = MAX_BATCH
            if n <= 0:
                break
            seq = request.seq
            if request.clock is not None:
                seq = request.clock()
            n = core.send_batch(request.message, n, None, request.seq_offset, seq)
            if n <= 0:
                break
            budget -= n * size
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
            self.connection._pumping.append(self)
        elif not queue and not core.unsettled:
            self._wake_settled()
        return budget

    def _settled(self, n, outcome, state):
        self.counts[outcome] += n
        if outcome != "accepted" and outcome != "settled":
            self.last_failure = (outcome, state)
        if self._queue:
            self.connection._want_pump(self)
        elif not self.core.unsettled:
            self._wake_settled()

    def _wake_settled(self):
        waiters = self._settle_waiters
        if waiters:
            self._settle_waiters = []
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def _on_flow(self):
        core = self.core
        if core.credit > 0 and self._queue:
            self.connection._want_pump(self)
        elif core.drain and core.credit > 0:
            core.drained()          # nothing to send: use the credit up, as drain asks
            self.connection._schedule_flush()

    def _fail_waiters(self, exc):
        self._unsettled_at_end = self.core.unsettled
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(exc)
                request.future.exception()
        self._queue.clear()
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

    def __init__(self, session, name, address, *, credit=1000, settled=False, auto_accept=True,
                 keep=True, ack_batch=None, limit=None, **node):
        self.source = make_source(address, **node)
        core = session.core.attach(name, False, self.source, None,
                                   snd_settle_mode=amqp.SND_SETTLED if settled else amqp.SND_UNSETTLED,
                                   rcv_settle_mode=amqp.RCV_FIRST, batch=True)
        super().__init__(session, core)
        core.keep = keep
        core.auto_accept = auto_accept
        self.settled = settled
        self.window = max(1, int(credit))
        self.low = self.window // 2
        self.limit = limit
        self.ack_batch = max(1, int(ack_batch if ack_batch else self.window // 2))
        sc = session.core
        sc.settle_batch = self.ack_batch if not sc.settle_batch else min(sc.settle_batch, self.ack_batch)
        self._buffer = collections.deque()     # (bytes, delivery-id or None)
        self._get_waiters = collections.deque()
        self._count_waiters = []
        self._drain_waiter = None
        self.draining = False

    def _attached(self):
        self._refill()

    @property
    def received(self):
        return self.core.received

    @property
    def credit(self):
        return self.core.credit

    # -- credit --------------------------------------------------------------------------------
    def _refill(self):
        if not self.is_attached or self.draining:
            return
        core = self.core
        buffered = len(self._buffer)
        if core.credit + buffered > self.low:
            return
        target = self.window - buffered
        if self.limit is not None:
            target = min(target, self.limit - core.received)
        if target > core.credit:
            core.flow(target, False)
            self.connection._schedule_flush()

    def allow(self, n):
        """Raise ``limit`` (the deliveries credit is ever granted for) by ``n`` and top the credit up."""
        self.limit = (self.limit or 0) + n
        self._refill()

    def add_credit(self, n):
        """Grant ``n`` more credit now (beyond the window's own top-ups)."""
        self.check_attached()
        self.core.flow(self.core.credit + n)
        self.connection._schedule_flush()

    def _on_flow(self):
        if self.draining and self.core.credit <= 0:
            self._drained()

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
        self.session._accepts_pending()
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
        if self.is_attached:
            self.session.core.settle(did, None if state is ACCEPTED else state)
            if state is ACCEPTED:
                self.session._accepts_pending()
            self.connection._schedule_flush()
        if not isinstance(message, int):
            message.delivery_id = None

    def accept(self, message):
        """Accept a message (or delivery-id) received with ``auto_accept=False``; accepts go in ranges."""
        self._settle(message, ACCEPTED)

    def release(self, message):
        self._settle(message, RELEASED)

    def reject(self, message, condition=None, description=None):
        self._settle(message, amqp.rejected(condition, description))

    def modify(self, message, failed=True, undeliverable=False):
        self._settle(message, amqp.modified(failed, undeliverable))

    # -- drain -----------------------------------------------------------------------------------
    async def drain(self, timeout=None):
        """Ask the sender to use up our credit now or give it back (drain); returns once no credit is
        left. Credit is not topped up while draining; call ``add_credit`` or ``resume()`` after."""
        self.check_attached()
        self.draining = True
        credit = self.core.credit
        if credit <= 0:
            credit = max(1, self.window - len(self._buffer))
        self._drain_waiter = self.loop.create_future()
        self.core.flow(credit, True)
        self.connection._schedule_flush()
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
        if self.is_attached:
            self.core.flow(None, False)
        self._refill()

    def _drained(self):
        future = self._drain_waiter
        if future is not None and not future.done():
            future.set_result(None)

    # -- ending ----------------------------------------------------------------------------------
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
