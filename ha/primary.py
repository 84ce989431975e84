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
from cypid.pyx.ha_stream import UNBOUNDED, PrimaryCore, ReplicatedQueue, pack_records
from cypid.pyx.message import Message

from .flow import CONFIG_FACTOR, StreamFlow
from .habroker import CATCHUP, READY, RECOVERING, STREAM_PREFIX
from .ship import Shipper, ship_job
from .stream import encode_op

INFO_ARG = "qpid.ha-info"
#: in the stream's qpid.ha-info: the one queue a replica asks for (ha/replicate.py)
QUEUE_INFO = "queue"
#: a snapshot's messages go to a backup this many (or this many bytes) to a stream message
SNAPSHOT_BATCH_COUNT = 1000
SNAPSHOT_BATCH_BYTES = 256 * 1024


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
        self.holds = {}             # stream message -> Blob (producers' settlements waiting for it)
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
        return self.send_encoded(encode_op(op, **fields))

    def send_encoded(self, data):
        """A live event (an encoded stream message, shared by the backups): on the stream now, or
        after the journals being shipped."""
        msg = Message(data)
        if self.deferred is None:
            self.queue.enqueue(msg)
        else:
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
        blob = self.holds.pop(msg, None)
        if blob is not None:
            self.primary.acknowledged(blob)
        if self.flow.by_msg:
            self.flow.acked(msg)
        if self.flow.config:
            self.flow.config.discard(msg)
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
            self.primary.recount()
            self.primary.backup_ready(self)

    def gone(self):
        """The backup went: what it held is released (as if acknowledged)."""
        shipper, self.shipper = self.shipper, None
        if shipper is not None:
            shipper.cancel()
        self.deferred = None
        self.flow.clear()
        holds, self.holds = self.holds, {}
        for blob in holds.values():
            self.primary.acknowledged(blob)
        self.snapshot.clear()

    def __repr__(self):
        return "<RemoteBackup %s %s>" % (self.system_id, self.status)


class Primary(PrimaryCore):
    """The primary's role: PrimaryCore (cypid.pyx.ha_stream) batches each loop turn's enqueues and
    holds producers' settlements; this sends them and follows the backups and the configuration."""

    def __init__(self, ha):
        self.ha = ha
        self.broker = ha.broker
        self.nodes = ha.broker.nodes
        self.log = ha.log
        self.loop = ha.loop
        self.backups = {}           # stream queue -> RemoteBackup
        self.queues = {}            # queue -> ReplicatedQueue
        self.flow_stops = {}        # ReplicatedQueue -> {RemoteBackup} over its flow bound (ha/flow.py)
        opts = ha.options
        self.flow_bounded = bool(opts.ha_flow_messages or opts.ha_flow_bytes)
        self.recount()
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
        self.recount()
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

    def recount(self):
        """The counts PrimaryCore's per-message path reads: backups the live stream goes to, ready
        ones, and whether this primary is recovering."""
        backups = [rb for rb in self.backups.values() if rb.snapshot_sent]
        self.senders = len(backups)
        self.ready = sum(1 for rb in backups if rb.ready)
        self.recovering = self.ha.status == RECOVERING

    def activated(self):
        self.recount()
        holds, self.recovering_holds = self.recovering_holds, []
        for pending in holds:
            pending.release()

    # -- messages (PrimaryCore's per-message path calls these) ------------------------------------
    def wire(self, rq, msg):
        if msg.body is None and self.nodes.store is not None:       # flowed to disk
            return self.nodes.store.encoded(rq.queue, msg, keep=False)
        return msg.encoded()

    def flush(self):
        """Send what was batched: the enqueues (one ``enqb`` stream message, encoded once for every
        backup; its holds wait for each ready backup's acknowledgement), then the dequeues (a
        dequeue never goes before the enqueue of the same message)."""
        backups = [rb for rb in self.backups.values() if rb.snapshot_sent]
        batch = self.take_enqueues()
        if batch is not None:
            qs, data, blob = batch
            counts = self.take_flowed() if self.flow_bounded else None
            ready = 0
            for rb in backups:
                if rb.only is not None and rb.only not in qs:
                    continue        # a replica of another queue (it skips the others' records)
                msg = rb.send_encoded(data)
                if counts:
                    rb.flow.sent(msg, counts if rb.only is None else
                                 {rq: c for rq, c in counts.items() if rq.queue.name == rb.only})
                if rb.ready and blob is not None:
                    rb.holds[msg] = blob
                    ready += 1
            self.arm(blob, ready)
            if counts:
                self.flow_room(counts)
        for rq, ids in self.take_dequeues().items():
            name = rq.queue.name
            to = [rb for rb in backups if rb.only is None or rb.only == name]
            if to:
                data = encode_op("deq", q=name, ids=ids)
                for rb in to:
                    rb.send_encoded(data)

    # -- flow control on the stream (ha/flow.py) -------------------------------------------------
    def flow_crossed(self, rq):
        for rb in self.backups.values():
            if rb.snapshot_sent and (rb.only is None or rb.only == rq.queue.name):
                rb.flow.crossed(rq, rq.open_count, rq.open_bytes)
        self.flow_room((rq,))

    def flow_room(self, rqs):
        """The least room each of ``rqs`` has left on any backup's stream (PrimaryCore checks its
        turn's enqueues against it)."""
        backups = [rb for rb in self.backups.values() if rb.snapshot_sent]
        for rq in rqs:
            rooms = [rb.flow.room(rq) for rb in backups if rb.only is None or rb.only == rq.queue.name]
            rq.room_count = min([r[0] for r in rooms], default=UNBOUNDED)
            rq.room_bytes = min([r[1] for r in rooms], default=UNBOUNDED)

    def flow_stop(self, rq, rb, count, size):
        stops = self.flow_stops.get(rq)
        if stops is None:
            stops = self.flow_stops[rq] = set()
            self.log.info("HA: queue %r: %d message(s), %d byte(s) in flight to backup %s:%s: its producers "
                          "wait (--ha-flow-messages %d, --ha-flow-bytes %d)", rq.queue.name, count, size,
                          rb.info.get("host-name"), rb.info.get("port"), rb.flow.max_count, rb.flow.max_bytes)
        stops.add(rb)
        rq.flow_stopped = True

    def flow_resume(self, rq, rb):
        stops = self.flow_stops.get(rq)
        if stops is None:
            return
        stops.discard(rb)
        if not stops:
            del self.flow_stops[rq]
            rq.flow_stopped = False
            self._flow_release(rq)

    def _flow_release(self, rq):
        for pending in self.flow_holds.pop(rq, ()):
            pending.release()

    def _broadcast(self, op, **fields):
        self.flush()
        for rb in self.backups.values():
            if rb.snapshot_sent and rb.only is None:
                if rb.flow.config_sent(rb.send(op, **fields)):
                    self._config_overrun(rb)

    def _config_overrun(self, rb):
        """``rb`` left too many configuration events unacknowledged (ha/flow.py): given up, after
        this observer call (it connects again and catches up)."""
        self.log.warning("HA: backup %s:%s left %d configuration events unacknowledged (%d x "
                         "--ha-flow-messages): given up; it catches up again when it connects",
                         rb.info.get("host-name"), rb.info.get("port"), len(rb.flow.config),
                         CONFIG_FACTOR)
        self.loop.call_soon(rb.abandon)

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
            self.recount()
            rb.gone()
            self.flow_room(list(self.queues.values()))
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
        self.recount()
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
        rb.snapshot_sent = True         # live events flow from here on: counted, or none is batched
        self.recount()
        rb.snapshot_done()
        self.log.log(25, "HA: %s:%s replicates queue %r: %d message(s) to copy", rb.info.get("host-name"),
                     rb.info.get("port"), queue.name, count)

    def snapshot_messages(self, rb, rq, last_id=None):
        """A queue's messages for a new backup, many to a stream message (``enqb``); with
        ``last_id``, only those with an id up to it (the ship point's, after a failed shipment)."""
        ids, name = rq.ids, rq.queue.name
        batch_ids, batch_data, size, count = [], [], 0, 0
        for msg in rq.queue.all_messages():
            i = ids.get(msg)
            if i is None or (last_id is not None and i > last_id):
                continue
            data = self.wire(rq, msg)
            batch_ids.append(i)
            batch_data.append(data)
            size += len(data)
            if size >= SNAPSHOT_BATCH_BYTES or len(batch_ids) >= SNAPSHOT_BATCH_COUNT:
                rb.snap("enqb", qs=[name], recs=pack_records(batch_ids, batch_data))
                count += len(batch_ids)
                batch_ids, batch_data, size = [], [], 0
        if batch_ids:
            rb.snap("enqb", qs=[name], recs=pack_records(batch_ids, batch_data))
            count += len(batch_ids)
        return count


__all__ = ["Primary", "RemoteBackup", "INFO_ARG", "QUEUE_INFO"]
