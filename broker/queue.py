"""A plain FIFO message queue with acquiring consumers and browsers.

This is the broker core's queue; the queues issue moves ordering and limits into pyx/queue.pyx.
Messages waiting are kept in a deque in sequence order. A delivered, unsettled message is held by its
delivery record (the session's unsettled map) until the consumer accepts, rejects or releases it.
"""
import bisect
import time
from collections import deque


def _seq(msg):
    return msg.seq


class Queue:
    def __init__(self, name, settings, reroute, on_unused=None):
        self.name = name
        self.settings = settings
        self.durable = settings.durable
        self.auto_delete = settings.auto_delete
        self.alternate_exchange = settings.alternate_exchange
        self.exclusive_owner = None       # the session that owns an exclusive queue
        self.deleted = False
        self._reroute = reroute           # reroute(msg, exchange_name) for rejected/expired messages
        self._on_unused = on_unused       # called when the last consumer of an auto-delete queue leaves
        self.dequeue_hook = None          # dequeue_hook(msg): a durable message left a durable queue
        self.ftd_hook = None              # (flow-to-disk: the Cython queue's; unused here)
        self._messages = deque()
        self._next_seq = 1
        self.consumers = []
        self._rr = 0
        self.had_consumers = False
        # Statistics, with the names management reports.
        self.msgTotalEnqueues = 0
        self.msgTotalDequeues = 0
        self.byteTotalEnqueues = 0
        self.byteTotalDequeues = 0
        self.byteDepth = 0
        self.msgPersistEnqueues = 0
        self.acquires = 0
        self.releases = 0
        self.discardsTtl = 0
        self.discardsSubscriber = 0
        self.unacked = 0

    # -- producers -------------------------------------------------------
    def enqueue(self, msg):
        msg.seq = self._next_seq
        self._next_seq += 1
        self._messages.append(msg)
        self.msgTotalEnqueues += 1
        self.byteTotalEnqueues += msg.size
        self.byteDepth += msg.size
        if msg.durable:
            self.msgPersistEnqueues += 1
        if self.consumers:
            self.dispatch()

    @property
    def depth(self):
        return len(self._messages)

    # -- consumers -------------------------------------------------------
    def add_consumer(self, link):
        self.consumers.append(link)
        self.had_consumers = True

    def remove_consumer(self, link):
        try:
            self.consumers.remove(link)
        except ValueError:
            return
        if not self.consumers and self.auto_delete and self._on_unused is not None:
            self._on_unused(self)

    def dispatch(self):
        """Hand available messages to consumers that can take them, round robin."""
        consumers = self.consumers
        messages = self._messages
        n = len(consumers)
        if n == 1:
            link = consumers[0]
            if link.browsing:
                self._browse(link)
                return
            while messages and link.can_take():
                msg = messages.popleft()
                if msg.expires and msg.expired(time.monotonic()):
                    self._expire(msg)
                    continue
                self._acquired(msg)
                link.deliver(msg, self)
            return
        idle = 0
        while n and idle < n:
            self._rr = (self._rr + 1) % n
            link = consumers[self._rr]
            if link.browsing:
                self._browse(link)
                idle += 1
                continue
            if not messages:
                return
            if not link.can_take():
                idle += 1
                continue
            idle = 0
            msg = messages.popleft()
            if msg.expires and msg.expired(time.monotonic()):
                self._expire(msg)
                continue
            self._acquired(msg)
            link.deliver(msg, self)

    def _acquired(self, msg):
        self.acquires += 1
        self.unacked += 1
        self.byteDepth -= msg.size

    def _browse(self, link):
        messages = self._messages
        while link.can_take():
            i = bisect.bisect_right(messages, link.browse_position, key=_seq)
            if i >= len(messages):
                return
            msg = messages[i]
            link.browse_position = msg.seq
            link.deliver(msg, self)

    def has_message_for(self, link):
        if not link.browsing:
            return bool(self._messages)
        messages = self._messages
        return bool(messages) and messages[-1].seq > link.browse_position

    # -- settlement of acquired messages ------------------------------------
    def dequeued(self, msg):
        """An acquired message was accepted (or sent pre-settled)."""
        self.unacked -= 1
        self.msgTotalDequeues += 1
        self.byteTotalDequeues += msg.size
        if self.dequeue_hook is not None and msg.durable:
            self.dequeue_hook(msg)

    def release(self, msg, count_failure=False):
        """Put an acquired message back where it was."""
        self.unacked -= 1
        self.releases += 1
        msg.acquired_before = True
        if count_failure:
            msg.delivery_count += 1
        if self.deleted:
            return
        messages = self._messages
        if not messages or msg.seq < messages[0].seq:
            messages.appendleft(msg)
        else:
            messages.insert(bisect.bisect_left(messages, msg.seq, key=_seq), msg)
        self.byteDepth += msg.size
        if self.consumers:
            self.dispatch()

    def reject(self, msg):
        """An acquired message was rejected: it goes to the alternate exchange, if any, else is dropped."""
        self.dequeued(msg)
        self.discardsSubscriber += 1
        if self.alternate_exchange:
            self._reroute(msg, self.alternate_exchange)

    def _expire(self, msg):
        self.byteDepth -= msg.size
        self.msgTotalDequeues += 1
        self.byteTotalDequeues += msg.size
        self.discardsTtl += 1
        if self.dequeue_hook is not None and msg.durable:
            self.dequeue_hook(msg)
        if self.alternate_exchange:
            self._reroute(msg, self.alternate_exchange)

    def purge(self, request=0, exchange=None):
        """Remove up to ``request`` waiting messages (0: all), oldest first; rerouted through the
        exchange named ``exchange`` if given, else discarded. Returns how many (QMF purge/reroute;
        the same contract as pyx/queue.pyx)."""
        messages = self._messages
        n = len(messages) if not request else min(request, len(messages))
        for _ in range(n):
            msg = messages.popleft()
            self.msgTotalDequeues += 1
            self.byteTotalDequeues += msg.size
            self.byteDepth -= msg.size
            if self.dequeue_hook is not None and msg.durable:
                self.dequeue_hook(msg)
            if exchange:
                self._reroute(msg, exchange)
        if exchange:
            self.reroutes = getattr(self, "reroutes", 0) + n
        else:
            self.discardsPurge = getattr(self, "discardsPurge", 0) + n
        return n

    def drain_all(self):
        """Remove and return every waiting message (used when the queue is deleted)."""
        msgs = list(self._messages)
        self._messages.clear()
        self.byteDepth = 0
        if self.dequeue_hook is not None:
            for msg in msgs:
                if msg.durable:
                    self.dequeue_hook(msg)
        return msgs
