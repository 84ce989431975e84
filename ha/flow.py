"""Flow control on the replication stream (--ha-flow-messages, --ha-flow-bytes; ha/README.md, "Flow
control").

qpidd bounds what is in flight on each queue's replication subscription to a backup with a credit
window of ``--ha-flow-messages`` messages and ``--ha-flow-bytes`` bytes (0: no bound); the rest waits
on the primary's queue, whose own limits then hold its producers. cypid's stream to a backup carries
copies of the live enqueues (on the backup's stream queue, or, while journals are shipped, in
``RemoteBackup.deferred``), so the same bound is kept here: ``StreamFlow`` counts, per replicated
queue, the live enqueues put on one backup's stream and not yet acknowledged by it. When a queue goes
over either bound for any backup, the queue is **flow-stopped** for replication: each producer's
message routed to it gets one more hold on its settlement (``Primary.hold``), released when every
backup is back under the resume mark (70 % of the bounds, qpidd's default flow resume threshold).
Nothing is dropped; a stalled backup holds the producers of the queues it lags on until it catches up
or goes (its link's heartbeat), as its guards already hold them when it is ready.

The snapshot's messages are not counted: they are copies of the queue's contents, bounded by the
queue's own limits, and counting them would hold every producer while a backup catches up.
"""

#: a flow-stopped queue resumes when every backup is at or under this share of the bounds
RESUME = 0.7


class StreamFlow:
    """One backup's in-flight live enqueues, per replicated queue (``ReplicatedQueue``)."""

    __slots__ = ("primary", "rb", "max_count", "max_bytes", "resume_count", "resume_bytes",
                 "inflight", "open", "by_msg", "stopped")

    def __init__(self, primary, rb, max_count, max_bytes):
        self.primary, self.rb = primary, rb
        self.max_count = max(0, int(max_count or 0))
        self.max_bytes = max(0, int(max_bytes or 0))
        self.resume_count = int(self.max_count * RESUME)
        self.resume_bytes = int(self.max_bytes * RESUME)
        self.inflight = {}      # rq -> [count, bytes] on the stream (or deferred), not acknowledged
        self.open = {}          # rq -> [count, bytes] of the batch being filled in this loop turn
        self.by_msg = {}        # stream message -> its {rq: [count, bytes]}
        self.stopped = set()    # the queues over a bound for this backup

    @property
    def bounded(self):
        return bool(self.max_count or self.max_bytes)

    def add(self, rq, size):
        """One live enqueue of ``size`` bytes for ``rq`` joins the batch being filled."""
        c = self.inflight.get(rq)
        if c is None:
            c = self.inflight[rq] = [0, 0]
        c[0] += 1
        c[1] += size
        o = self.open.get(rq)
        if o is None:
            self.open[rq] = [1, size]
        else:
            o[0] += 1
            o[1] += size
        if rq not in self.stopped and ((self.max_count and c[0] > self.max_count) or
                                       (self.max_bytes and c[1] > self.max_bytes)):
            self.stopped.add(rq)
            self.primary.flow_stop(rq, self.rb, c[0], c[1])

    def sent(self, msg):
        """The batch went out (or was deferred) as stream message ``msg``."""
        if self.open:
            self.by_msg[msg] = self.open
            self.open = {}

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

    def forget(self, rq):
        """``rq`` is no longer replicated (deleted): nothing of it holds producers any more."""
        self.inflight.pop(rq, None)
        self.open.pop(rq, None)
        if rq in self.stopped:
            self.stopped.discard(rq)
            self.primary.flow_resume(rq, self.rb)

    def clear(self):
        """The backup went: it holds nothing."""
        stopped, self.stopped = self.stopped, set()
        self.inflight, self.open, self.by_msg = {}, {}, {}
        for rq in stopped:
            self.primary.flow_resume(rq, self.rb)


__all__ = ["StreamFlow", "RESUME"]
