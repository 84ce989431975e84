"""The primary's side of replication (ha/README.md, "The stream" and "At least once").

``Primary`` registers on the broker's observer list (configuration changes), installs the queue
hooks of every replicated ``all`` queue (each message queued gets a replication id; each one that
leaves is reported), and is ``nodes.replication``: after routing a producer's message, the broker
asks ``hold(outcome)`` to add one hold per ready backup to its settlement.

A backup is a ``RemoteBackup``: its private stream queue on this broker (``qpid.ha-backup.<id>``),
which it consumes. Every operation is one message queued there; the backup's accept of a message
dequeues it here, and that dequeue (the stream queue's ``dequeue_hook``) is the backup's
acknowledgement.
"""
from cypid.pyx.message import Message

from cypid.broker.store import Pending

from .flow import StreamFlow
from .habroker import CATCHUP, READY, RECOVERING, STREAM_PREFIX
from .ship import Shipper, ship_job
from .stream import encode_op

INFO_ARG = "qpid.ha-info"
#: in the stream's qpid.ha-info: the one queue a replica asks for (ha/replicate.py)
QUEUE_INFO = "queue"
#: a snapshot's messages go to a backup this many (or this many bytes) to a stream message
SNAPSHOT_BATCH_COUNT = 1000
SNAPSHOT_BATCH_BYTES = 256 * 1024
#: live enqueues of one loop turn share a stream message up to this many bytes
LIVE_BATCH_BYTES = 256 * 1024
#: in Primary.routed: the message went to a queue flow-stopped for replication (ha/flow.py)
FLOW = "flow"


class Guard:
    """One ready backup's hold on one routed message copy: released when the backup acknowledges
    the stream message carrying it, or when the copy leaves the primary's queue first (consumed,
    expired, purged: it need not be on the backup then, as in qpidd)."""

    __slots__ = ("pending", "rq", "i", "done")

    def __init__(self, pending, rq, i):
        self.pending, self.rq, self.i, self.done = pending, rq, i, False


class Batch:
    """Enqueues of one loop turn for one backup (one ``enqs`` stream message), and the producers'
    settlements waiting for the backup to acknowledge it."""

    __slots__ = ("qs", "ids", "data", "size", "pendings")

    def __init__(self):
        self.qs, self.ids, self.data, self.size, self.pendings = [], [], [], 0, []

    def add(self, q, i, data):
        self.qs.append(q)
        self.ids.append(i)
        self.data.append(data)
        self.size += len(data)


class RemoteBackup:
    """One connected backup: its stream queue, what of the snapshot it has not acknowledged, and the
    producers' settlements waiting for it."""

    def __init__(self, primary, queue):
        self.primary = primary
        self.queue = queue
        info = queue.settings.other.get(INFO_ARG) or {}
        self.info = {str(k): v for k, v in info.items()} if isinstance(info, dict) else {}
        self.system_id = str(self.info.get("system-id", queue.name[len(STREAM_PREFIX):]))
        only = self.info.get(QUEUE_INFO)
        self.only = None if only is None else str(only)     # a replica of this one queue (replicate.py)
        self.status = CATCHUP
        self.snapshot = set()       # stream messages of the snapshot not yet acknowledged
        self.snapshot_sent = False
        self.holds = {}             # stream message -> [Pending] (producers' settlements)
        self.batch = None           # this loop turn's enqueues, not yet sent
        self.deferred = None        # while journals are shipped: the live events, in order
        self.shipper = None
        self._acked = None          # asyncio.Event while the shipper waits for acknowledgements
        opts = primary.ha.options
        self.flow = StreamFlow(primary, self, opts.ha_flow_messages, opts.ha_flow_bytes)
        queue.observe_dequeues = True
        queue.dequeue_hook = self.acknowledged

    @property
    def ready(self):
        return self.status == READY

    def put(self, op, **fields):
        msg = Message(encode_op(op, **fields))
        self.queue.enqueue(msg)
        return msg

    def send(self, op, **fields):
        """A live event: on the stream now, or after the journals being shipped."""
        if self.deferred is None:
            return self.put(op, **fields)
        msg = Message(encode_op(op, **fields))
        self.deferred.append(msg)
        return msg

    def snap(self, op, **fields):
        self.snapshot.add(self.put(op, **fields))

    def snapshot_done(self):
        self.snap("end")

    def defer(self):
        self.deferred = []

    def undefer(self):
        """The journals are shipped: the live events of the meantime follow them."""
        deferred, self.deferred = self.deferred, None
        enqueue = self.queue.enqueue
        for msg in deferred or ():
            enqueue(msg)
        self._check_ready()

    async def window(self, limit):
        """Wait until at most ``limit`` snapshot messages are unacknowledged."""
        while len(self.snapshot) > limit and not self.queue.deleted:
            self._acked = self.primary.loop.create_future()
            await self._acked

    def abandon(self):
        """Shipping failed: drop this backup's link (it connects again and starts over)."""
        self.primary.broker.nodes.delete_queue(self.queue)

    def acknowledged(self, msg):
        """The stream queue's dequeue_hook: the backup accepted ``msg`` (applied it)."""
        if self.queue.deleted:      # drained because the backup went: not acknowledged
            return
        guards = self.holds.pop(msg, None)
        if guards:
            self.primary.release_guards(guards)
        if self.flow.by_msg:
            self.flow.acked(msg)
        snapshot = self.snapshot
        if snapshot and msg in snapshot:
            snapshot.discard(msg)
            acked = self._acked
            if acked is not None:
                self._acked = None
                if not acked.done():
                    acked.set_result(None)
            self._check_ready()

    def _check_ready(self):
        if not self.snapshot and self.deferred is None and self.snapshot_sent and self.status == CATCHUP:
            self.status = READY
            self.primary.backup_ready(self)

    def flush(self):
        """Send this turn's enqueues (one stream message); its holds wait for the acknowledgement."""
        batch, self.batch = self.batch, None
        if batch is not None:
            msg = self.send("enqs", qs=batch.qs, ids=batch.ids, data=batch.data)
            self.holds[msg] = batch.pendings    # hold() may still add to it in this turn
            self.flow.sent(msg)

    def gone(self):
        shipper, self.shipper = self.shipper, None
        if shipper is not None:
            shipper.cancel()
        self.deferred = None
        self.flow.clear()
        holds, self.holds = self.holds, {}
        if self.batch is not None:
            holds[None] = self.batch.pendings
            self.batch = None
        for guards in holds.values():
            self.primary.release_guards(guards)
        self.snapshot.clear()

    def __repr__(self):
        return "<RemoteBackup %s %s>" % (self.system_id, self.status)


class ReplicatedQueue:
    """The primary's ids for an ``all`` queue's messages."""

    __slots__ = ("primary", "queue", "ids", "next_id", "previous_hook", "guards", "on_demand")

    def __init__(self, primary, queue):
        self.primary = primary
        self.queue = queue
        self.guards = {}            # id -> [Guard] of ready backups that do not have it yet
        self.on_demand = False      # replicated only for a replica of this queue (replicate.py)
        self.ids = {}
        self.next_id = 1
        for msg in queue.all_messages():
            self.ids[msg] = self.next_id
            self.next_id += 1
        self.previous_hook = queue.dequeue_hook      # the store's, for a durable queue
        queue.enqueue_hook = self.enqueued
        queue.observe_dequeues = True
        queue.dequeue_hook = self.dequeued

    def unhook(self):
        queue = self.queue
        queue.enqueue_hook = None
        queue.observe_dequeues = False
        if queue.dequeue_hook == self.dequeued:
            queue.dequeue_hook = self.previous_hook

    def enqueued(self, msg):
        i = self.next_id
        self.next_id = i + 1
        self.ids[msg] = i
        self.primary.enqueued(self, msg, i)

    def dequeued(self, msg):
        hook = self.previous_hook
        if hook is not None:
            hook(msg)
        i = self.ids.pop(msg, None)
        if i is not None:
            guards = self.guards.pop(i, None)
            if guards is not None:
                self.primary.release_guards(guards)
            self.primary.dequeued(self, i)


class Primary:
    def __init__(self, ha):
        self.ha = ha
        self.broker = ha.broker
        self.nodes = ha.broker.nodes
        self.log = ha.log
        self.loop = ha.loop
        self.backups = {}           # stream queue -> RemoteBackup
        self.queues = {}            # queue -> ReplicatedQueue
        self.routed = []            # (RemoteBackup or None, Batch, ReplicatedQueue, id) since the last hold()
        self.recovering_holds = []  # settlements held until the status is active
        self.flow_stops = {}        # ReplicatedQueue -> {RemoteBackup} over its flow bound (ha/flow.py)
        self.flow_holds = {}        # ReplicatedQueue -> [Pending] held until no backup is over
        self._deqs = {}             # ReplicatedQueue -> [ids] not yet sent
        self._flush_scheduled = False
        self._touched = set()       # connections with settlements to write
        self._clear_scheduled = False
        for queue in list(self.nodes.queues.values()):
            if self.ha.queue_level(queue) != "none":
                self.ha.identity("queue", queue.name)
                if self.ha.queue_level(queue) == "all":
                    self.queues[queue] = ReplicatedQueue(self, queue)
        for ex in self.nodes.exchanges:
            if self.ha.exchange_level(ex) != "none":
                self.ha.identity("exchange", ex.name)
        self.broker.events.add(self)
        self.nodes.replication = self

    async def stop(self):
        self.broker.events.remove(self)
        if self.nodes.replication is self:
            self.nodes.replication = None
        for rq in self.queues.values():
            rq.unhook()
        self.queues.clear()
        for rb in list(self.backups.values()):
            rb.gone()
        self.backups.clear()
        for rq in list(self.flow_holds):
            self._flow_release(rq)
        self.flow_stops.clear()
        self.activated()

    # -- membership ---------------------------------------------------------------------------------
    def backup_infos(self):
        return [dict(rb.info, status=rb.status) for rb in self.backups.values() if rb.only is None]

    def is_ready(self, system_id):
        return any(rb.ready and rb.system_id == str(system_id) for rb in self.backups.values())

    def publish_members(self, members):
        for rb in self.backups.values():
            if rb.only is None:
                rb.send("members", members=members)

    def backup_ready(self, rb):
        if rb.only is not None:
            self.log.log(25, "HA: replica of queue %r on %s:%s is ready", rb.only, rb.info.get("host-name"),
                         rb.info.get("port"))
            return
        self.log.log(25, "HA: backup %s:%s is ready", rb.info.get("host-name"), rb.info.get("port"))
        self.ha.members_changed()
        self.ha.backup_ready(rb.system_id)

    def activated(self):
        holds, self.recovering_holds = self.recovering_holds, []
        for pending in holds:
            self.release(pending)

    # -- holds on producers' settlements ----------------------------------------------------------
    def hold(self, outcome):
        """After routing a producer's message: one hold per ready backup sent a copy (and one while
        recovering). Returns the outcome to settle with (a Pending when anything holds it)."""
        routed, self.routed = self.routed, []
        if outcome is not None and outcome.__class__ is not Pending:
            return outcome          # refused: nothing to wait for
        for rb, batch, rq, i in routed:
            if outcome is None:
                outcome = Pending()
            outcome.count += 1
            if rb is None:
                self.recovering_holds.append(outcome)
            elif rb is FLOW:
                held = self.flow_holds.get(rq)
                if held is None:
                    self.flow_holds[rq] = [outcome]
                else:
                    held.append(outcome)
            else:
                guard = Guard(outcome, rq, i)
                batch.pendings.append(guard)
                guards = rq.guards.get(i)
                if guards is None:
                    rq.guards[i] = [guard]
                else:
                    guards.append(guard)
        return outcome

    def release_guards(self, guards):
        """Release each hold not released yet (a backup acknowledged, a copy left the queue)."""
        release = self.release
        for guard in guards:
            if not guard.done:
                guard.done = True
                release(guard.pending)
                rq = guard.rq
                others = rq.guards.get(guard.i)
                if others is not None and all(g.done for g in others):
                    del rq.guards[guard.i]

    def release(self, pending):
        conn = pending.release()        # the connection whose settlements to write, if any
        if conn is not None:
            if not self._touched:
                self.loop.call_soon(self._flush_settlements)
            self._touched.add(conn)

    def _flush_settlements(self):
        touched, self._touched = self._touched, set()
        for conn in touched:
            conn.flush_dirty()

    # -- flow control on the stream (ha/flow.py) -------------------------------------------------
    def flow_stop(self, rq, rb, count, size):
        stops = self.flow_stops.get(rq)
        if stops is None:
            stops = self.flow_stops[rq] = set()
            self.log.info("HA: queue %r: %d message(s), %d byte(s) in flight to backup %s:%s: its producers "
                          "wait (--ha-flow-messages %d, --ha-flow-bytes %d)", rq.queue.name, count, size,
                          rb.info.get("host-name"), rb.info.get("port"), rb.flow.max_count, rb.flow.max_bytes)
        stops.add(rb)

    def flow_resume(self, rq, rb):
        stops = self.flow_stops.get(rq)
        if stops is None:
            return
        stops.discard(rb)
        if not stops:
            del self.flow_stops[rq]
            self._flow_release(rq)

    def _flow_release(self, rq):
        for pending in self.flow_holds.pop(rq, ()):
            self.release(pending)

    def _clear_routed(self):
        """Messages the broker queued itself (no producer asked hold()) hold nothing."""
        self._clear_scheduled = False
        self.routed = []

    # -- messages -----------------------------------------------------------------------------------
    def _wire(self, rq, msg):
        if msg.body is None and self.nodes.store is not None:       # flowed to disk
            return self.nodes.store.encoded(rq.queue, msg, keep=False)
        return msg.encoded()

    def enqueued(self, rq, msg, i):
        if not self.backups and self.ha.status != RECOVERING:
            return
        data = None
        name = rq.queue.name
        routed = self.routed
        for rb in self.backups.values():
            if not rb.snapshot_sent or (rb.only is not None and rb.only != name):
                continue
            if data is None:
                data = self._wire(rq, msg)
            batch = rb.batch
            if batch is None:
                batch = rb.batch = Batch()
                self._schedule_flush()
            batch.add(name, i, data)
            if rb.flow.bounded:
                rb.flow.add(rq, len(data))
            if rb.ready:
                routed.append((rb, batch, rq, i))
            if batch.size >= LIVE_BATCH_BYTES:
                rb.flush()
        if self.ha.status == RECOVERING:
            routed.append((None, None, None, None))
        if self.flow_stops and rq in self.flow_stops:
            routed.append((FLOW, None, rq, None))
        if routed and not self._clear_scheduled:
            self._clear_scheduled = True
            self.loop.call_soon(self._clear_routed)

    def dequeued(self, rq, i):
        if not self.backups:
            return
        ids = self._deqs.get(rq)
        if ids is None:
            ids = self._deqs[rq] = []
            self._schedule_flush()
        ids.append(i)

    def _schedule_flush(self):
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self):
        """Send what this turn batched: every backup's enqueues, then the dequeues (a dequeue never
        goes before the enqueue of the same message)."""
        self._flush_scheduled = False
        for rb in self.backups.values():
            if rb.batch is not None:
                rb.flush()
        deqs, self._deqs = self._deqs, {}
        for rq, ids in deqs.items():
            name = rq.queue.name
            for rb in self.backups.values():
                if rb.snapshot_sent and (rb.only is None or rb.only == name):
                    rb.send("deq", q=name, ids=ids)

    def _broadcast(self, op, **fields):
        self.flush()
        for rb in self.backups.values():
            if rb.snapshot_sent and rb.only is None:
                rb.send(op, **fields)

    # -- configuration (the broker-observer interface) -------------------------------------------
    def _queue_fields(self, queue, new=False):
        settings = queue.settings
        props = dict(settings.as_arguments())
        props.update({"durable": bool(queue.durable), "auto-delete": bool(queue.auto_delete),
                      "exclusive": bool(settings.exclusive)})
        if queue.alternate_exchange:
            props["alternate-exchange"] = queue.alternate_exchange
        return {"name": queue.name, "uuid": self.ha.identity("queue", queue.name, new),
                "level": self.ha.queue_level(queue), "props": props}

    def _exchange_fields(self, ex, new=False):
        props = dict(ex.arguments or {})
        props.update({"exchange-type": ex.type, "durable": bool(ex.durable),
                      "auto-delete": bool(ex.auto_delete)})
        if ex.alternate:
            props["alternate-exchange"] = ex.alternate
        return {"name": ex.name, "uuid": self.ha.identity("exchange", ex.name, new), "props": props}

    def queue_declared(self, queue, context=None):
        if queue.name.startswith(STREAM_PREFIX):
            self._backup_connected(queue)
            return
        level = self.ha.queue_level(queue)
        if level == "none":
            return
        if level == "all":
            self.queues[queue] = ReplicatedQueue(self, queue)
        self._broadcast("queue", **self._queue_fields(queue, new=True))

    def queue_deleted(self, queue, context=None):
        rb = self.backups.pop(queue, None)
        if rb is not None:
            rb.gone()
            self.log.log(25, "HA: backup %s:%s disconnected", rb.info.get("host-name"), rb.info.get("port"))
            self.ha.members_changed()
            return
        rq = self.queues.pop(queue, None)
        if rq is not None:
            rq.unhook()
            for rb in self.backups.values():
                rb.flow.forget(rq)
        if (rq is not None and not rq.on_demand) or self.ha.queue_level(queue) != "none":
            self._broadcast("qdel", name=queue.name)
            self.ha.uuids.pop(("queue", queue.name), None)

    def exchange_declared(self, exchange, context=None):
        if self.ha.exchange_level(exchange) != "none":
            self._broadcast("exchange", **self._exchange_fields(exchange, new=True))

    def exchange_deleted(self, exchange, context=None):
        if self.ha.exchange_level(exchange) != "none":
            self._broadcast("xdel", name=exchange.name)
            self.ha.uuids.pop(("exchange", exchange.name), None)

    def _binding_replicated(self, exchange, queue):
        return self.ha.exchange_level(exchange) != "none" and self.ha.queue_level(queue) != "none"

    def bound(self, exchange, queue, key, arguments=None, context=None):
        if self._binding_replicated(exchange, queue):
            self._broadcast("bind", exchange=exchange.name, queue=queue.name, key=key,
                            args=dict(arguments or {}))

    def unbound(self, exchange, queue, key, context=None):
        if self._binding_replicated(exchange, queue):
            self._broadcast("unbind", exchange=exchange.name, queue=queue.name, key=key)

    # -- a backup connects: its snapshot ---------------------------------------------------------
    def _backup_connected(self, stream):
        self.flush()
        rb = RemoteBackup(self, stream)
        self.backups[stream] = rb
        if rb.only is not None:
            self._replica_connected(rb)
            return
        ha = self.ha
        queues = [q for q in self.nodes.queues.values() if ha.queue_level(q) != "none" and not q.deleted]
        exchanges = [ex for ex in self.nodes.exchanges if ha.exchange_level(ex) != "none"]
        exchanges.sort(key=lambda ex: bool(ex.alternate))
        rb.snap("begin", queues={q.name: ha.identity("queue", q.name) for q in queues},
                exchanges={ex.name: ha.identity("exchange", ex.name) for ex in exchanges})
        for ex in exchanges:
            rb.snap("exchange", **self._exchange_fields(ex))
        for q in queues:
            rb.snap("queue", **self._queue_fields(q))
        for ex in exchanges:
            for q, key, args in list(ex.bindings):
                if ha.queue_level(q) != "none":
                    rb.snap("bind", exchange=ex.name, queue=q.name, key=key, args=dict(args or {}))
        count = 0
        jobs = []
        ship = rb.info.get("ship-journals", True) and self.nodes.store is not None
        for q in queues:
            rq = self.queues.get(q)
            if rq is None:
                continue
            job = ship_job(self.nodes.store, rq) if ship else None
            if job is not None:
                jobs.append(job)
                count += job.count
            else:
                count += self.snapshot_messages(rb, rq)
        rb.snapshot_sent = True         # live events flow from here on
        if jobs:
            rb.defer()
            rb.shipper = Shipper(self, rb, jobs)
        else:
            rb.snapshot_done()
        self.log.log(25, "HA: backup %s:%s connected: %d queue(s), %d exchange(s), %d message(s) to copy%s",
                     rb.info.get("host-name"), rb.info.get("port"), len(queues), len(exchanges), count,
                     ", %d queue(s) by journal" % len(jobs) if jobs else "")
        ha.members_changed()

    def _replica_connected(self, rb):
        """A broker replicating one queue (qpid-ha replicate): that queue's messages, then its live
        enqueues and dequeues (ha/replicate.py)."""
        queue = self.nodes.queues.get(rb.only)
        if queue is None or queue.deleted:
            self.log.warning("HA: %s:%s asked to replicate queue %r: no such queue", rb.info.get("host-name"),
                             rb.info.get("port"), rb.only)
            rb.abandon()
            return
        rq = self.queues.get(queue)
        if rq is None:
            rq = self.queues[queue] = ReplicatedQueue(self, queue)
            rq.on_demand = True
        rb.snap("qsnap", q=queue.name)
        count = self.snapshot_messages(rb, rq)
        rb.snapshot_sent = True
        rb.snapshot_done()
        self.log.log(25, "HA: %s:%s replicates queue %r: %d message(s) to copy", rb.info.get("host-name"),
                     rb.info.get("port"), queue.name, count)

    def snapshot_messages(self, rb, rq, last_id=None):
        """A queue's messages for a new backup, many to a stream message (``enqs``); with
        ``last_id``, only those with an id up to it (the ship point's, after a failed shipment)."""
        ids, name = rq.ids, rq.queue.name
        batch_ids, batch_data, size, count = [], [], 0, 0
        for msg in rq.queue.all_messages():
            i = ids.get(msg)
            if i is None or (last_id is not None and i > last_id):
                continue
            data = self._wire(rq, msg)
            batch_ids.append(i)
            batch_data.append(data)
            size += len(data)
            if size >= SNAPSHOT_BATCH_BYTES or len(batch_ids) >= SNAPSHOT_BATCH_COUNT:
                rb.snap("enqs", qs=[name] * len(batch_ids), ids=batch_ids, data=batch_data)
                count += len(batch_ids)
                batch_ids, batch_data, size = [], [], 0
        if batch_ids:
            rb.snap("enqs", qs=[name] * len(batch_ids), ids=batch_ids, data=batch_data)
            count += len(batch_ids)
        return count


__all__ = ["Primary", "RemoteBackup", "INFO_ARG", "QUEUE_INFO"]
