"""``qpid.queue_msg_sequence`` (a queue argument whose value is an annotation key): each message the
queue takes gets that key in its message-annotations, holding the queue's own enqueue count as a
uint32 (1 for the first message; it wraps as qpidd's does). A message routed to several queues is
numbered by each on its own copy. The number is part of the message from then on: a durable
message's journal record carries it. The count itself is not stored: after a restart a recovered
queue numbers new messages from 1 again, while its recovered messages keep their numbers (qpidd
renumbers recovered messages 1..n as it loads them and goes on from n+1; doing that here would mean
reading every recovered body at start-up).
"""
from cypid.pyx.codec import uint


class QueueSequences:
    """The sequencing queues of one broker and their counts (broker/nodes.py holds one)."""

    def __init__(self):
        self.counters = {}      # queue -> [annotation key, last number given]

    def declared(self, queue):
        key = queue.settings.queue_msg_sequence
        if key:
            self.counters[queue] = [str(key), 0]

    def deleted(self, queue):
        self.counters.pop(queue, None)

    def stamp(self, queue, msg):
        """Number ``msg`` (about to enter ``queue``) if ``queue`` sequences its messages."""
        entry = self.counters.get(queue)
        if entry is not None:
            entry[1] = (entry[1] + 1) & 0xFFFFFFFF
            msg.annotate({entry[0]: uint(entry[1])})
