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
"""
from .backup import Backup
from .habroker import STREAM_PREFIX
from .primary import QUEUE_INFO
from .url import parse_url


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


__all__ = ["QueueReplicator", "QUEUE_INFO"]
