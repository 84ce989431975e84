"""Transactional acquisition (AMQP 1.0 transactions, section 4.4.3): a consumer's flow naming a txn-id.

A receiver asks for the messages it is given to be acquired by one of its connection's open
transactions by putting ``txn-id`` in a flow's properties. From then on every transfer on that link
carries ``transactional-state(txn-id)`` (no outcome) as its delivery state, and the message it
delivers is acquired by the transaction:

- At **rollback** (discharge with ``fail`` true; the coordinator link, session or connection ending
  with the transaction open; ``--tx-timeout``; a commit that fails) every message the transaction
  acquired and its consumer has not settled goes back to its queue, in its place, available again
  to any consumer, its delivery-count as a ``released`` outcome leaves it (not a failed attempt).
  The broker settles that delivery on the link with ``released`` (a disposition from the sender),
  so that the consumer's own settlement cannot touch a message another consumer may have by then.
- At **commit** the acquisitions stay: the deliveries stay unsettled and the consumer settles them
  as usual afterwards (accepted: gone), with a plain outcome or in another transaction.
- A delivery the consumer settles while the transaction is open leaves the transaction's
  acquisitions: a plain outcome applies at once, as for any delivery; an outcome in a transaction
  (``transactional-state(txn-id, outcome)``, this one or another) is that transaction's retirement
  (broker/transactions.py), undone at its rollback (the message goes back once).
- After the discharge (commit or rollback) the link is **no longer transactional**: the credit it
  has left is used for plain transfers (no delivery state), as the transfers show; a new flow naming
  an open transaction makes it transactional again. A flow naming another transaction moves the link
  to that one (what the first acquired stays the first's); a flow without properties changes nothing.
- A flow naming a txn-id that is not open on this connection detaches the link with
  ``amqp:transaction:unknown-id``; one naming a transaction that can only roll back (over its bound,
  timed out) with ``amqp:transaction:rollback``; one on a browser or on a link whose transfers are
  pre-settled (nothing could be undone) with ``amqp:not-allowed``.
- A consumer link ending gives back its unsettled deliveries; those acquired by an open transaction
  go back as its rollback would give them (not counted as failed attempts) and leave it.
- Bound: each acquisition counts as one unit of the transaction's work (``MAX_WORK``); at the bound
  the transaction can only roll back and its links stop acquiring for it.

Durability: an acquisition writes nothing to the journal (a message's acquisition is never durable:
after a restart an unsettled message is available again). A durable message acquired and then
retired in the same transaction is dequeued by the retirement's records, with the transaction's xid:
all or nothing after a kill -9, as any transactional retirement.
"""
from cypid.pyx import amqp
from cypid.pyx.codec import Described, encode, ulong

from . import errors
from .errors import AmqpError


def transactional_state(txn_id, outcome=None):
    return Described(ulong(amqp.TRANSACTIONAL_STATE), [txn_id, outcome])


def undo(acquired):
    """Rollback of ``acquired`` ({message: (link, delivery-id)}): each delivery its consumer has
    not settled is settled ``released`` by the broker and its message goes back to its queue."""
    for msg, (link, did) in acquired.items():
        if link.core.settle_sent(did, msg, amqp.RELEASED_STATE):
            queue = link.queue
            if queue is not None:
                queue.release(msg)
            link.connection.want_flush()


class Acquisitions:
    """The flows that name a transaction and what the links then deliver (``transactions.acquisitions``)."""

    def __init__(self, transactions, max_work):
        self.transactions = transactions
        self.max_work = max_work

    def flow(self, link, txn_id):
        """A flow on consumer ``link`` naming ``txn_id``: True when the link was detached for it."""
        try:
            if link.browsing or link.presettled:
                raise errors.NotAllowed("transactional acquisition needs unsettled transfers (this link %s)"
                                        % ("browses" if link.browsing else "sends pre-settled"))
            txn = self.transactions.find(link, txn_id)
            if txn.failed:
                raise errors.TransactionRollback("transaction %r can only roll back: %s" % (txn.id, txn.failed))
        except AmqpError as e:
            self.transactions.log.warning("Link %r on %s detached: %s", link.name, link.connection.address,
                                          e.description)
            link.detach(e.condition, e.description)
            return True
        current = link.acq_txn
        if current is txn:
            return False
        if current is not None:
            self._leave(link)
        link.acq_txn = txn
        link.txn_state = encode(transactional_state(txn.id))
        txn.acquirers.append(link)
        if txn not in link.acq_txns:
            link.acq_txns = [t for t in link.acq_txns if not t.ended]
            link.acq_txns.append(txn)
        return False

    def acquired(self, link, msg, did):
        """``link`` sent ``msg`` (delivery ``did``) with its transaction's state (pyx/broker_core.pyx)."""
        txn = link.acq_txn
        if did < 0 or txn is None:
            return
        txn.acquired[msg] = (link, did)
        if txn.work >= self.max_work and not txn.failed:
            txn.failed = "more than %d messages of work in one transaction" % self.max_work
            self.transactions.over_bound(link, txn.failed)
            self.stop(txn)

    @staticmethod
    def _leave(link):
        txn = link.acq_txn
        link.acq_txn = None
        link.txn_state = None
        if txn is not None and link in txn.acquirers:
            txn.acquirers.remove(link)

    @staticmethod
    def stop(txn):
        """The transaction is discharged (or can only roll back): its links deliver plainly from now on."""
        for link in txn.acquirers:
            if link.acq_txn is txn:
                link.acq_txn = None
                link.txn_state = None
        txn.acquirers = []

    def take(self, txn):
        """The commit: the links stop acquiring for ``txn``; its acquisitions, which the commit keeps
        (or undoes if it fails)."""
        self.stop(txn)
        acquired = txn.acquired
        txn.acquired = {}
        return acquired

    def rollback(self, txn):
        self.stop(txn)
        acquired = txn.acquired
        txn.acquired = {}
        undo(acquired)

    def link_gone(self, link):
        """``link`` ends: the messages it delivered for a transaction still open (they go back as the
        rollback would give them, and leave the transaction)."""
        self._leave(link)
        gone = set()
        for txn in link.acq_txns:
            if txn.ended:
                continue
            for msg, (l, _did) in list(txn.acquired.items()):
                if l is link:
                    del txn.acquired[msg]
                    gone.add(msg)
        link.acq_txns = []
        return gone


__all__ = ["Acquisitions", "undo", "transactional_state"]
