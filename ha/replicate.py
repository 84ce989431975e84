"""Replication of one queue from another broker, outside a cluster (``--ha-queue-replication yes``,
``qpid-ha replicate <remote-broker> <queue>``, the QMF method ``replicate(broker, queue)``).

As in qpidd, the broker the method is called on (the *replica*) pulls the queue of the same name from
the remote broker (the *source*): the queue must exist on the replica; its messages are replaced by
the source's, and from then on every message enqueued on the source's queue is enqueued on the
replica's and every one that leaves the source's queue leaves the replica's.

It is the cluster's stream narrowed to one queue. ``QueueReplicator`` is a ``Backup`` (ha/backup.py)
that connects to the source only, to the stream queue ``qpid.ha-backup.<replica id>.<queue>`` whose
``qpid.ha-info`` names the queue; the source (which runs a ``Primary`` with ``--ha-queue-replication``,
ha/primary.py) answers such a stream with ``qsnap`` (the replica empties its queue), the queue's
messages (``enqs``), ``end``, and then only that queue's enqueues and dequeues. The replica accepts each
stream message once applied (a durable message once synced), and the source holds its producers'
settlements until the replica has their messages, as it does for a ready backup. A lost link is tried
again every ``--link-maintenance-interval``, starting over with a new ``qsnap``.

``Replicas`` keeps the replica's side: its ``QueueReplicator``s, each remembered in the config store
(a row of the store's federation table, kind ``ha-replicate``, beside qpid-route's links and bridges)
so that a restarted replica (stopped or killed) replicates its durable queues from their sources
again; a queue deleted on the replica ends its replication and the row (a transient queue gets no row:
it is not there after a restart). The restarted replica starts over as any lost link does: ``qsnap``
replaces what its journal kept with the source's queue as it is then, so nothing is duplicated or lost
relative to the source; until that copy arrives the queue shows what it held when it stopped. qpidd
does not do this: its replication link and bridge are not durable, so a restarted qpidd replica keeps
its messages and replicates no more until ``qpid-ha replicate`` is run again.
"""
import asyncio

from .backup import Backup
from .habroker import NOTICE, STREAM_PREFIX
from .primary import QUEUE_INFO
from .url import UrlError, parse_url

#: the config store's federation rows of single-queue replications: name = queue, {"broker": url}
ROW_KIND = "ha-replicate"


class QueueReplicator(Backup):
    def __init__(self, ha, url, queue_name):
        super().__init__(ha)
        self.url = parse_url(url)           # UrlError for a bad one
        self.queue_name = queue_name
        self.ship_journals = False

    def _others(self):
        return list(self.url.addresses), self.url

    def stream_name(self, info):
        return "%s%s.%s" % (STREAM_PREFIX, info["system-id"], self.queue_name)

    def stream_info(self, info):
        return dict(info, **{QUEUE_INFO: self.queue_name, "ship-journals": False})

    def _op_qsnap(self, f):
        """The source's copy starts: the replica's messages of the queue make way for it."""
        name = str(f["q"])
        if name != self.queue_name:
            raise ValueError("HA: stream for queue %r sent queue %r" % (self.queue_name, name))
        queue = self.nodes.queues.get(name)
        if queue is not None and queue.msgDepth:
            self.log.log(25, "HA: queue %r: %d message(s) here replaced by the copy from %s",
                         name, queue.msgDepth, self.connected_to)
            queue.purge()
        self.ids = {name: {}}

    def _op_end(self, f):
        self.log.log(25, "HA: queue %r replicated from %s:%s", self.queue_name, *(self.connected_to or ("?", 0)))
        self.journal_fault = None       # the copy went into the journal: a fault's episode is over


class Replicas:
    """The queues this broker replicates from other brokers (``qpid-ha replicate``), remembered in
    its config store and started again at start-up. A broker observer: a deleted queue's replication
    ends."""

    def __init__(self, ha):
        self.ha = ha
        self.log = ha.log
        self.broker = ha.broker
        self.replicators = {}           # queue name -> QueueReplicator
        self.stopping = set()           # the stops of replications whose queue was deleted

    @property
    def config(self):
        store = self.broker.nodes.store
        return getattr(store, "config", None)

    def start(self):
        self.broker.events.add(self)
        config = self.config
        if config is None:
            return
        for kind, name, props in config.federation():
            if kind != ROW_KIND:
                continue
            source = str(props.get("broker") or "")
            if self.broker.nodes.queues.get(name) is None:
                self.log.warning("HA: queue %r no longer exists: its replication from %s is forgotten",
                                 name, source)
                config.remove_federation(ROW_KIND, name)
                continue
            try:
                self._start(source, name)
            except UrlError as e:
                self.log.error("HA: queue %r: replication from %r not restarted: %s", name, source, e)
                continue
            self.log.log(NOTICE, "HA: replicating queue %r from %s again", name, source)

    def _start(self, source, name):
        replicator = QueueReplicator(self.ha, source, name)     # UrlError for a bad URL
        old = self.replicators.pop(name, None)
        self.replicators[name] = replicator
        replicator.start()
        return old

    def replicate(self, source, name):
        """Start replicating queue ``name`` from ``source`` and remember it; returns the replicator
        it replaces (to be stopped) or None. UrlError for a bad URL."""
        old = self._start(source, name)
        config = self.config
        if config is not None:
            queue = self.broker.nodes.queues.get(name)
            if queue is not None and queue.durable:     # a transient queue is not there after a restart
                config.add_federation(ROW_KIND, name, {"broker": source})
            else:
                config.remove_federation(ROW_KIND, name)
        return old

    async def stop(self):
        self.broker.events.remove(self)
        replicators, self.replicators = self.replicators, {}
        for r in replicators.values():
            await r.stop()
        if self.stopping:
            await asyncio.wait(self.stopping)

    def queue_deleted(self, queue, context=None):
        replicator = self.replicators.pop(queue.name, None)
        if replicator is None:
            return
        config = self.config
        if config is not None:
            config.remove_federation(ROW_KIND, queue.name)
        self.log.log(NOTICE, "HA: queue %r deleted: its replication ends", queue.name)
        task = asyncio.ensure_future(replicator.stop())
        self.stopping.add(task)
        task.add_done_callback(self.stopping.discard)


__all__ = ["QueueReplicator", "Replicas", "QUEUE_INFO", "ROW_KIND"]
