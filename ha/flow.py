"""Flow control on the replication stream (--ha-flow-messages, --ha-flow-bytes; ha/README.md, "Flow
control").

qpidd bounds what is in flight on each queue's replication subscription to a backup with a credit
window of ``--ha-flow-messages`` messages and ``--ha-flow-bytes`` bytes (0: no bound); the rest waits
on the primary's queue, whose own limits then hold its producers. cypid's stream to a backup carries
copies of the live enqueues (on the backup's stream queue, or, while journals are shipped, in
``RemoteBackup.deferred``), so the same bound is kept here: ``StreamFlow`` counts, per replicated
queue, the live enqueues put on one backup's stream and not yet acknowledged by it. The loop turn's
enqueues not yet sent are counted per queue in C (cypid.pyx.ha_stream: ``open_count``/``open_bytes``
against ``room_count``/``room_bytes``, the least room any backup has left): the message that takes a
queue over a bound for a backup is the first one held, as if each were counted as it is queued. When a queue goes
over either bound for any backup, the queue is **flow-stopped** for replication: each producer's
message routed to it gets one more hold on its settlement (``Primary.hold``), released when every
backup is back under the resume mark (70 % of the bounds, qpidd's default flow resume threshold).
Nothing is dropped; a stalled backup holds the producers of the queues it lags on until it catches up
or goes (its link's heartbeat), as its guards already hold them when it is ready.

The snapshot's messages are not counted: they are copies of the queue's contents, bounded by the
queue's own limits, and counting them would hold every producer while a backup catches up.

Configuration events (declares, deletes, bindings) hold no producer: a client churning them while a
backup is stopped would grow that backup's stream until its heartbeat gives it up. So a backup that
leaves more than ``CONFIG_FACTOR`` x ``--ha-flow-messages`` of them unacknowledged is given up at once
(its stream queue is deleted; it connects again and catches up from a snapshot of the configuration
as it is then, which the configuration's own limits bound). ``--ha-flow-messages 0``: no bound.
"""

from cypid.pyx.ha_stream import UNBOUNDED

#: a flow-stopped queue resumes when every backup is at or under this share of the bounds
RESUME = 0.7
#: a backup leaving this many times --ha-flow-messages configuration events unacknowledged is given up
CONFIG_FACTOR = 10


class StreamFlow:
    """One backup's in-flight live enqueues, per replicated queue (``ReplicatedQueue``)."""

    __slots__ = ("primary", "rb", "max_count", "max_bytes", "resume_count", "resume_bytes",
                 "inflight", "by_msg", "stopped", "max_config", "config")

    def __init__(self, primary, rb, max_count, max_bytes):
        self.primary, self.rb = primary, rb
        self.max_count = max(0, int(max_count or 0))
        self.max_bytes = max(0, int(max_bytes or 0))
        self.resume_count = int(self.max_count * RESUME)
        self.resume_bytes = int(self.max_bytes * RESUME)
        self.inflight = {}      # rq -> [count, bytes] on the stream (or deferred), not acknowledged
        self.by_msg = {}        # stream message -> its {rq: [count, bytes]}
        self.stopped = set()    # the queues over a bound for this backup
        self.max_config = CONFIG_FACTOR * self.max_count
        self.config = set()     # configuration events on the stream, not acknowledged

    @property
    def bounded(self):
        return bool(self.max_count or self.max_bytes)

    def room(self, rq):
        """(messages, bytes) ``rq`` may still put on this backup's stream before going over."""
        c = self.inflight.get(rq)
        count, size = (c[0], c[1]) if c is not None else (0, 0)
        return (self.max_count - count if self.max_count else UNBOUNDED,
                self.max_bytes - size if self.max_bytes else UNBOUNDED)

    def crossed(self, rq, count, size):
        """``count`` messages, ``size`` bytes of ``rq`` are about to join the stream: over a bound?"""
        c = self.inflight.get(rq)
        count += c[0] if c is not None else 0
        size += c[1] if c is not None else 0
        if rq not in self.stopped and ((self.max_count and count > self.max_count) or
                                       (self.max_bytes and size > self.max_bytes)):
            self.stopped.add(rq)
            self.primary.flow_stop(rq, self.rb, count, size)

    def sent(self, msg, counts):
        """A turn's live enqueues ({rq: (count, bytes)}) went out (or were deferred) as stream
        message ``msg``."""
        inflight = self.inflight
        for rq, (n, size) in counts.items():
            self.crossed(rq, n, size)
            c = inflight.get(rq)
            if c is None:
                inflight[rq] = [n, size]
            else:
                c[0] += n
                c[1] += size
        self.by_msg[msg] = counts

    def config_sent(self, msg):
        """Configuration event ``msg`` went on the stream: True when it is one too many (the backup
        is to be given up)."""
        if not self.max_config:
            return False
        config = self.config
        config.add(msg)
        return len(config) == self.max_config + 1

    def acked(self, msg):
        """The backup acknowledged stream message ``msg``."""
        counts = self.by_msg.pop(msg, None)
        if counts is None:
            return
        inflight, stopped = self.inflight, self.stopped
        for rq, (n, size) in counts.items():
            c = inflight.get(rq)
            if c is None:
                continue
            c[0] -= n
            c[1] -= size
            if c[0] <= 0:
                del inflight[rq]
            if rq in stopped and c[0] <= self.resume_count and c[1] <= self.resume_bytes:
                stopped.discard(rq)
                self.primary.flow_resume(rq, self.rb)
        self.primary.flow_room(counts)

    def forget(self, rq):
        """``rq`` is no longer replicated (deleted): nothing of it holds producers any more."""
        self.inflight.pop(rq, None)
        if rq in self.stopped:
            self.stopped.discard(rq)
            self.primary.flow_resume(rq, self.rb)

    def clear(self):
        """The backup went: it holds nothing."""
        stopped, self.stopped = self.stopped, set()
        self.inflight, self.by_msg, self.config = {}, {}, set()
        for rq in stopped:
            self.primary.flow_resume(rq, self.rb)


__all__ = ["StreamFlow", "RESUME", "CONFIG_FACTOR"]
