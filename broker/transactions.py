"""Local transactions (AMQP 1.0, transactions.xml): the coordinator and each transaction's work.

A client attaches a sender link whose target is a ``coordinator`` (capability
``amqp:local-transactions``) and sends on it ``declare`` (answered with ``declared`` and a txn-id)
and ``discharge`` (``fail`` false: commit, true: rollback; answered ``accepted``, or ``rejected``
with ``amqp:transaction:unknown-id`` or ``amqp:transaction:rollback``). Then:

- Transactional posting: a transfer whose state is ``transactional-state(txn-id)`` is checked (the
  message parses, the ACL lets the user publish) and kept with its transaction; the broker answers
  it with ``transactional-state(txn-id, accepted)``. Nothing is routed until the commit, where each
  message is routed once, in the order they came, as a plain transfer would be (``_routes``). At
  rollback they go. The commit is all or nothing: every queue the messages go to is checked for
  room for all of them before any is enqueued; if one would refuse one (its limit), nothing is
  applied and the discharge is answered ``amqp:transaction:rollback`` naming it. Otherwise every
  copy, durable or not, goes on its queue *held* (pyx/queue.pyx, "Held": counted, seen by nobody)
  and is shown once the commit is decided, in the order posted; if the decision fails (a journal),
  the copies are taken out unseen. So a rolled-back transaction's messages are never delivered.
- Transactional retirement: a consumer's disposition ``transactional-state(txn-id, outcome)`` leaves
  the message acquired by the transaction; the outcome (accepted: the dequeue) is applied once the
  commit is decided (durable), and at rollback, or when a journal fails before the decision, the
  message goes back to its queue, available again.
- Transactional acquisition (a consumer's flow naming a txn-id): broker/acquisition.py. The messages
  the transaction acquired go back to their queues at its rollback and stay acquired at its commit.

Durability (docs/JOURNAL-FORMAT.md, "Transactions"): at the commit every journal record the work
makes (enqueues of durable messages, dequeues of durable ones) carries the transaction's xid, and
the commit's outcome is sent only once the commit is durable. When the work touches one journal,
that journal's commit record is the decision. When it touches several, the xid records are synced
in every journal first, then the decision is written to the store's transaction log (``tpl/``, a
journal whose live records are committed xids) and synced, and only then the commit records are
appended to each journal; the decision is removed from the log once they are synced. At recovery
an xid that is open in a queue's journal is committed if the log holds it, and aborted otherwise.
So after a kill -9 at any point, all of a committed transaction's work is there and none of an
uncommitted one's. The transaction's messages become visible to consumers when the decision is
durable (with no journal work: at once). The routing's side effects are a plain transfer's, made at
the commit: the exchanges' counters and sequence numbers, an alternate exchange for what no binding
takes, a LVQ's replacement and a ring queue's drops (made even if the decision then fails, as for a
plain durable message whose sync fails); an IVE exchange's last message is set at the decision.

Bounds (one client cannot hurt the others): ``MAX_PER_SESSION`` open transactions per session
(declare is rejected with ``amqp:resource-limit-exceeded`` beyond it), ``MAX_WORK`` messages posted or
retired and ``MAX_BYTES`` bytes posted per transaction (the transfer beyond it is rejected with
``amqp:resource-limit-exceeded`` and the transaction can then only roll back: its commit answers
``amqp:transaction:rollback``), and with ``--tx-timeout`` a time a transaction may stay open. Open
transactions end (roll back) with their coordinator link.
"""
import itertools
import os
import signal
import weakref

from cypid.pyx import amqp
from cypid.pyx.codec import DESCRIPTOR_CODES, Array, DecodeError, Described, decode, decode_at, symbol, ulong
from cypid.pyx.journal import Journal, JournalError
from cypid.pyx.message import Message
from cypid.pyx.queue import Queue, QueueLimitExceeded
from cypid.pyx.store_core import Pending, record_data

from . import errors, filters
from .acquisition import Acquisitions, transactional_state, undo
from .errors import AmqpError
from .links import CREDIT_WINDOW, IncomingLink

LOCAL = "amqp:local-transactions"
MAX_PER_SESSION = 64
MAX_WORK = 10000
MAX_BYTES = 64 << 20
AMQP_VALUE_NAME = "amqp:amqp-value:*"
AMQP_VALUE = DESCRIPTOR_CODES[AMQP_VALUE_NAME]     # the section code, from the codec's table
TPL_DIRNAME = "tpl"
# A failpoint for tests (tests/faults/tx_kill_rounds.py; never set in production): "PHASE:N" makes the
# broker SIGKILL itself when the Nth commit with journal work reaches PHASE, one of KILL_PHASES.
KILL_ENV = "CYPID_TX_KILL_AT"
KILL_PHASES = ("appended", "records-synced", "decided", "committing", "committed")


def declared(txn_id):
    return Described(ulong(amqp.DECLARED), [txn_id])


def _rejected(error):
    return amqp.rejected(error.condition, error.description)


def _body_value(data):
    """The amqp-value section of an encoded message (the coordinator's declare/discharge)."""
    off = 0
    n = len(data)
    while off < n:
        value, off = decode_at(data, off)
        if getattr(value, "descriptor", None) in (AMQP_VALUE, AMQP_VALUE_NAME):
            return value.value
    return None


def _code(value, code, name):
    d = getattr(value, "descriptor", None)
    return d == code or d == name


def _refuses(queue, count, size, msg_size):
    """Why ``queue`` would refuse a message of ``msg_size`` bytes once ``count`` more messages of
    ``size`` bytes are on it, or None: the queue's policy (pyx/queue.pyx, "Limits")."""
    if queue.deleted:
        return "Queue %s has been deleted" % queue.name
    settings = queue.settings
    max_count = getattr(settings, "max_count", 0) or 0
    max_size = getattr(settings, "max_size", 0) or 0
    policy = getattr(settings, "policy_type", "reject") or "reject"
    over = (max_count and queue.msgDepth + count + 1 > max_count) or \
        (max_size and queue.byteDepth + size + msg_size > max_size)
    if not over or policy == "self-destruct" or (policy == "flow_to_disk" and queue.ftd_hook is not None):
        return None
    if policy in ("ring", "ring_strict"):
        if max_size and msg_size > max_size:
            return "Message larger than configured maximum depth on %s: size=%d, max-size=%d" % (
                queue.name, msg_size, max_size)
        if policy == "ring" or queue.msgDepth == queue.depth + queue.held:
            return None         # ring drops the oldest; ring_strict too when none is acquired
    return "Maximum depth exceeded on %s: current=[count: %d, size: %d], max=[count: %d, size: %d]" % (
        queue.name, queue.msgDepth + count, queue.byteDepth + size, max_count, max_size)


def _kill_at(text):
    """KILL_ENV's value: (phase, commit number), or None."""
    if not text:
        return None
    phase, _, n = text.partition(":")
    if phase not in KILL_PHASES or not n.isdigit():
        raise ValueError("%s=%r: PHASE:N, PHASE one of %s" % (KILL_ENV, text, ", ".join(KILL_PHASES)))
    return phase, int(n)


def _apply(retires):
    """The retired messages' outcomes, applied (the commit is decided)."""
    for link, msg, code, state in retires:
        queue = link.queue
        if queue is not None and not queue.deleted:
            link.on_outcome(msg, code, state)


class Transaction:
    """One declared transaction: the work kept until its discharge."""

    __slots__ = ("id", "coordinator", "session", "posts", "retires", "ives", "bytes", "failed", "ended",
                 "timer", "acquired", "acquirers")

    def __init__(self, txn_id, coordinator):
        self.id = txn_id
        self.coordinator = coordinator
        self.session = coordinator.session
        self.posts = []            # (IncomingLink, Message) in arrival order
        self.retires = []          # (OutgoingLink, Message, outcome code, outcome value)
        self.ives = []             # (IVE exchange, last message): the commit's routing keeps them
        self.bytes = 0
        self.failed = None         # why the transaction can only roll back
        self.ended = False
        self.timer = None          # --tx-timeout
        self.acquired = {}         # Message -> (OutgoingLink, delivery-id): acquired (broker/acquisition.py)
        self.acquirers = []        # the OutgoingLinks whose transfers it acquires now

    @property
    def work(self):
        return len(self.posts) + len(self.retires) + len(self.acquired)


class SessionTxnStats:
    """The QMF session object's transaction counters (qpidd's TxnStarts, TxnCommits, TxnRejects;
    TxnCount: the transactions open now)."""

    __slots__ = ("starts", "commits", "rejects", "open")

    def __init__(self):
        self.starts = self.commits = self.rejects = self.open = 0


_NO_STATS = SessionTxnStats()


class Transactions:
    """The broker's transactions (``broker.transactions``): txn-id -> Transaction."""

    def __init__(self, broker):
        self.broker = broker
        self.log = broker.log
        self.by_id = {}
        self._ids = itertools.count(1)
        self._nonce = os.urandom(6).hex().encode()   # xids stay unique across restarts
        self.stats = weakref.WeakKeyDictionary()   # broker Session -> SessionTxnStats (management reads them)
        self.kill_at = _kill_at(os.environ.get(KILL_ENV))
        self.works = 0              # commits with journal work (counted for the failpoint only)
        self.acquisitions = Acquisitions(self, MAX_WORK)

    def session_stats(self, session, create=False):
        """The session's counters (zeroes for a session that never declared one)."""
        st = self.stats.get(session)
        if st is None:
            if not create:
                return _NO_STATS
            st = self.stats[session] = SessionTxnStats()
        return st

    # -- declare and discharge -----------------------------------------------------------------------
    def declare(self, coordinator):
        session = coordinator.session
        st = self.session_stats(session, create=True)
        if st.open >= MAX_PER_SESSION:
            raise errors.ResourceLimitExceeded("session has %d open transactions (at most %d)"
                                               % (st.open, MAX_PER_SESSION))
        txn_id = b"%d" % next(self._ids)
        txn = Transaction(txn_id, coordinator)
        self.by_id[txn_id] = txn
        coordinator.txns[txn_id] = txn
        st.starts += 1
        st.open += 1
        timeout = self.broker.options.tx_timeout
        if timeout:
            txn.timer = self.broker.loop.call_later(timeout, self._expired, txn, timeout)
        return txn

    def _expired(self, txn, timeout):
        """--tx-timeout: the transaction was open too long. Its work is dropped (the messages it
        acquired go back to their queues) and it can only roll back; it stays known, so that its
        client's next transfer or discharge gets amqp:transaction:rollback, not unknown-id."""
        txn.timer = None
        if txn.ended:
            return
        if not txn.failed:
            txn.failed = "open longer than --tx-timeout %g seconds" % timeout
            self.log.warning("Transaction on %s rolled back: %s", txn.session.connection.address, txn.failed)
        self._drop_work(txn)

    def find(self, link, txn_id):
        """The open transaction ``txn_id`` of ``link``'s connection, or TransactionUnknownId."""
        txn = self.by_id.get(bytes(txn_id)) if isinstance(txn_id, (bytes, bytearray, memoryview)) else None
        if txn is None or txn.ended or txn.session.connection is not link.connection:
            raise errors.TransactionUnknownId("unknown transaction %r" % (txn_id,))
        return txn

    def _end(self, txn, committed):
        txn.ended = True
        if txn.timer is not None:
            txn.timer.cancel()
            txn.timer = None
        self.by_id.pop(txn.id, None)
        txn.coordinator.txns.pop(txn.id, None)
        st = self.stats.get(txn.session)
        if st is not None:
            st.open -= 1
            if committed:
                st.commits += 1
            else:
                st.rejects += 1

    def rollback(self, txn):
        """Drop the posted messages; give the retired ones back to their queues."""
        self._end(txn, False)
        self._drop_work(txn)

    def _drop_work(self, txn):
        for link, msg, _code, _state in txn.retires:
            queue = link.queue
            if queue is not None and not queue.deleted:
                queue.release(msg)
        txn.posts = txn.retires = txn.ives = []
        txn.bytes = 0
        self.acquisitions.rollback(txn)

    def commit(self, txn):
        """Apply the work; returns None (done) or a Pending the discharge is answered by. All or
        nothing: every posted message is routed once (``_routes``), and when a queue would refuse
        one (its limit) nothing is applied and the commit answers ``amqp:transaction:rollback``
        naming it. Otherwise every copy goes on its queue held (``_Work.enqueue``), seen only once
        the commit is decided."""
        if not txn.failed:
            routes, why = self._routes(txn)
            txn.failed = why
        if txn.failed:
            why = txn.failed
            self.rollback(txn)
            raise errors.TransactionRollback("transaction rolled back: %s" % why)
        store = self.broker.nodes.store
        work = _Work(b"cypid-tx-%s-%s" % (self._nonce, txn.id), txn.retires, txn.ives)
        work.acquired = self.acquisitions.take(txn)     # kept once the commit is decided
        txn.retires = []
        if store is not None and self.kill_at is not None:
            self.works += 1
            work.kill_at = self.kill_at[0] if self.works == self.kill_at[1] else None
        try:
            if store is not None:
                work.write_retires(store)
                store.txn = work
            try:
                replicated = self._enqueue(work, store, routes)
            finally:
                if store is not None:
                    store.txn = None
        except (JournalError, QueueLimitExceeded) as e:
            work.abort_journals()
            work.drop_copies(store)
            work.undo_retires()         # the retired messages go back to their queues
            undo(work.acquired)
            self.rollback(txn)
            raise errors.TransactionRollback("transaction rolled back: %s" % (
                "journal failed: %s" % e if isinstance(e, JournalError) else e))
        self._end(txn, True)
        txn.posts = []
        txn.bytes = 0
        if not work.journals:
            work.committed()
            return replicated
        discharge = work.finish(store)
        if replicated is not None and replicated.count > 0:
            discharge.count += 1        # the commit is answered once the ready backups have its copies too
            replicated.attach(_Release(discharge))
        return discharge

    def _routes(self, txn):
        """([(message, its queues)], None) for the posted messages in the order they came, routed
        once as a plain transfer would be (the exchanges count them, sequence numbers are stamped;
        an IVE exchange's last message is kept for the decision); or (None, why) when a message
        cannot be routed or a queue would refuse one. Counted as the commit enqueues them, each
        queue's depth grows with the transaction's messages before; a LVQ replacement counts as
        one more message (so this may refuse what would have fitted, never the other way round)."""
        routes = []
        added = {}
        for link, msg in txn.posts:
            try:
                queues = self._targets(link, msg, txn)
            except AmqpError as e:
                return None, "a message cannot be routed: %s" % e.description
            size = msg.size
            for queue in queues:
                count, total = added.get(queue, (0, 0))
                why = _refuses(queue, count, total, size)
                if why is not None:
                    return None, why
                added[queue] = (count + 1, total + size)
            routes.append((msg, queues))
        return routes, None

    def _targets(self, link, msg, txn):
        """The queues ``msg`` posted on ``link`` goes to (as IncomingLink.deliver routes it; its
        ACL check was made at the transfer)."""
        nodes = self.broker.nodes
        node = nodes.destination(msg) if link.anonymous else link.node
        if node is None:
            return ()
        if type(node) is Queue:
            if nodes.filtered and not filters.admits(node, msg, link.connection):
                return ()
            return (node,)
        broker = self.broker
        broker.publisher = link.connection
        try:
            queues = nodes.exchange_queues(node, msg, txn.ives)
        finally:
            broker.publisher = None
        if not queues:
            nodes.discards_no_route += 1
        return queues

    def _enqueue(self, work, store, routes):
        """Every copy of every posted message on its queues, held, in the order they came."""
        nodes = self.broker.nodes
        stamp = nodes.sequences.stamp if nodes.sequences.counters else None
        for msg, queues in routes:
            first = True
            for queue in queues:
                m = msg if first and stamp is None else msg.copy()
                first = False
                if stamp is not None:
                    stamp(queue, m)
                work.enqueue(store, queue, m)
        rep = nodes.replication
        if rep is not None and rep.routed:
            return rep.hold(None)       # HA: a Pending the ready backups release, or None
        return None

    # -- posting and retirement ----------------------------------------------------------------------
    def post(self, link, delivery, data):
        """A transfer with a delivery state: True if it was transactional (kept with its transaction,
        or refused), False for any other state (the caller routes it as usual)."""
        try:
            state = decode(delivery.state)
        except DecodeError:
            return False
        if not _code(state, amqp.TRANSACTIONAL_STATE, "amqp:transactional-state:list"):
            return False
        fields = state.value if isinstance(state.value, list) else []
        try:
            txn = self.find(link, fields[0] if fields else None)
        except AmqpError as e:
            delivery.outcome = _rejected(e)
            return True
        if txn.failed:
            delivery.outcome = amqp.rejected(errors.TRANSACTION_ROLLBACK, txn.failed)
            return True
        if txn.work >= MAX_WORK or txn.bytes + len(data) > MAX_BYTES:
            txn.failed = "more than %d messages or %d bytes of work in one transaction" % (MAX_WORK, MAX_BYTES)
            self.over_bound(link, txn.failed)
            delivery.outcome = amqp.rejected(errors.RESOURCE_LIMIT_EXCEEDED, txn.failed)
            return True
        broker = self.broker
        try:
            msg = Message(data)
            if link.check_user_id and msg.user_id is not None:
                broker.acl.verify_user_id(link.connection, msg.user_id)     # acl.LinkRefusal
            if broker.acl.transfer:
                refused = broker.acl.publish_refused(link, msg)
                if refused is not None:
                    txn.failed = "a message was refused: %s" % refused
                    delivery.outcome = amqp.rejected(errors.UNAUTHORIZED_ACCESS, refused)
                    return True
        except DecodeError as e:
            txn.failed = "a message could not be decoded: %s" % e
            delivery.outcome = amqp.rejected(errors.DECODE_ERROR, str(e))
            return True
        except AmqpError as e:      # a forged user-id: refused as a plain transfer is (links.py)
            txn.failed = "a message was refused: %s" % e.description
            if e.closes_link:
                broker.loop.call_soon(link.detach, e.condition, e.description)
            delivery.outcome = amqp.rejected(e.condition, str(e))
            return True
        txn.posts.append((link, msg))
        txn.bytes += len(data)
        delivery.outcome = transactional_state(txn.id, amqp.ACCEPTED_STATE)
        return True

    def retire(self, link, msg, state):
        """A consumer's disposition ``transactional-state(txn-id, outcome)`` for ``msg``."""
        fields = state.value if isinstance(getattr(state, "value", None), list) else []
        inner = fields[1] if len(fields) > 1 else None
        try:
            txn = self.find(link, fields[0] if fields else None)
        except AmqpError as e:
            link.queue.release(msg)
            link.detach(e.condition, e.description)
            return
        code = amqp.outcome_code(inner)
        if code == 0 or code == amqp.RECEIVED or code == amqp.TRANSACTIONAL_STATE:
            # no outcome: nothing to retire (acquisition is asked for on the flow); the message goes back
            link.queue.release(msg)
            return
        if txn.failed:
            link.queue.release(msg)
            return
        if txn.work >= MAX_WORK:
            txn.failed = "more than %d messages of work in one transaction" % MAX_WORK
            self.over_bound(link, txn.failed)
            link.queue.release(msg)
            return
        txn.retires.append((link, msg, code, inner))

    def over_bound(self, link, why):
        """One line per transaction (it can only roll back from now on, so nothing more is taken)."""
        self.log.warning("Transaction on %s over its bound: %s; it can only roll back",
                         link.connection.address, why)


class _Release:
    """Stands for a delivery in a Pending: its last release releases one hold of ``pending`` (the
    discharge's, which waits for the journals and for the HA backups' holds of the same commit)."""

    __slots__ = ("pending",)

    def __init__(self, pending):
        self.pending = pending

    def hold(self):
        return self

    def release(self, outcome=None):
        self.pending.release(None)


class _Work:
    """One commit's work (``store.txn`` while it is applied): the journals its records went to,
    the copies of its posted messages, held on their queues until the decision is durable (then
    shown, in the order they came; at a failure taken out unseen), and the retired messages, whose
    outcomes are applied in memory only once the decision is durable (at a failure they go back
    to their queues, as the journals say)."""

    __slots__ = ("xid", "journals", "copies", "ives", "retires", "taken", "discharge", "phase",
                 "waiting", "tpl_rid", "failed", "kill_at", "acquired")

    def __init__(self, xid, retires, ives):
        self.xid = xid
        self.journals = {}          # QueueJournal -> None, in first-use order
        self.copies = []            # [queue, message, ...]: held until the decision
        self.ives = ives            # (IVE exchange, its last message): set at the decision
        self.retires = retires      # (OutgoingLink, Message, outcome code, outcome value)
        self.taken = []             # (QueueJournal, Message, rid): dequeue records written
        self.discharge = None
        self.phase = 0
        self.waiting = 0
        self.tpl_rid = 0
        self.failed = None
        self.kill_at = None         # the failpoint's phase for this commit (KILL_ENV)
        self.acquired = {}          # the transaction's acquisitions: kept at the decision, undone at a failure

    def _reached(self, phase):
        if phase == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def joined(self, qj):
        """The xid for a record of journal ``qj`` (the store's hook)."""
        self.journals[qj] = None
        return self.xid

    def enqueue(self, store, queue, msg):
        """One copy of a posted message on ``queue``, held; a durable one on a durable queue gets
        its record (with the xid) first. Raises JournalError, or QueueLimitExceeded (the queue
        refused it although room was checked: the commit is rolled back)."""
        if queue.deleted:           # gone since the routing (a callback of an enqueue before)
            return
        qj = store.journals.get(queue) if store is not None and msg.durable else None
        if qj is not None and qj.durable:
            rid = store.new_rid()
            data, flags = record_data(msg)
            try:
                qj.journal.append_enqueue(rid, data, self.joined(qj), flags)
            except JournalError as e:
                store.journal_error(qj, e)
                raise
            qj.rids[msg] = rid
        else:
            qj = None
        try:
            queued = queue.enqueue(msg, True)
        except QueueLimitExceeded:
            if qj is not None:
                qj.rids.pop(msg, None)      # its record is aborted with the transaction
            raise
        if queued is not False:
            self.copies += (queue, msg)
        elif qj is not None:        # the queue's policy dropped it (ring): its record goes too
            rid = qj.rids.pop(msg, None)
            try:
                qj.journal.append_dequeue(rid, self.xid)
            except (KeyError, JournalError):
                pass

    def drop_copies(self, store):
        """Rolled back: the held copies are taken out, unseen (their records are aborted)."""
        copies = self.copies
        self.copies = []
        for i in range(0, len(copies), 2):
            queue, msg = copies[i], copies[i + 1]
            qj = store.journals.get(queue) if store is not None else None
            if qj is not None:
                qj.rids.pop(msg, None)
            queue.drop_held(msg)

    def write_retires(self, store):
        """The dequeue records (with the xid) of the retired durable messages whose outcome removes
        them (accepted, rejected). The messages stay acquired until the decision; their queues'
        dequeue hooks then find no record left to write. Raises JournalError."""
        for link, msg, code, _state in self.retires:
            if code != amqp.ACCEPTED and code != amqp.REJECTED:
                continue
            qj = store.journals.get(link.queue)
            rid = None if qj is None or qj.removed else qj.rids.get(msg)
            if rid is None:
                continue
            if msg.body is None:        # its bytes are on disk only (a rejected one may go on)
                store.read_back(qj, msg, rid)
            try:
                qj.journal.append_dequeue(rid, self.joined(qj))
            except KeyError:
                continue
            del qj.rids[msg]
            self.taken.append((qj, msg, rid))

    def undo_retires(self):
        """Rolled back: the retired messages' records are theirs again, and the messages go back
        to their queues."""
        for qj, msg, rid in self.taken:
            if not qj.removed:
                qj.rids[msg] = rid
        self.taken = []
        retires = self.retires
        self.retires = []
        for link, msg, _code, _state in retires:
            queue = link.queue
            if queue is not None and not queue.deleted:
                queue.release(msg)

    def abort_journals(self):
        for qj in self.journals:
            try:
                qj.journal.append_abort(self.xid)
            except (JournalError, ValueError):
                pass

    def finish(self, store):
        """The records are appended: make the commit durable, then answer the discharge."""
        self.discharge = Pending()
        self.discharge.count = 1
        self._reached("appended")
        if len(self.journals) == 1:
            qj = next(iter(self.journals))
            try:
                seq = qj.journal.append_commit(self.xid)
            except JournalError as e:
                self._fail(store, e)
                return self.discharge
            qj.wait(seq, _Step(self, store, self._done))
            self.waiting = 1
            store.want_sync(qj)
            return self.discharge
        # several journals: their xid records are synced first, then the decision, then the commits
        self.waiting = len(self.journals)
        for qj in self.journals:
            qj.wait(qj.journal.next_seq - 1, _Step(self, store, self._records_synced))
            store.want_sync(qj)
        return self.discharge

    def _records_synced(self, store, error):
        if error is not None:
            return self._fail(store, error)
        self.waiting -= 1
        if self.waiting:
            return
        self._reached("records-synced")
        tpl = store.decisions
        try:
            self.tpl_rid = tpl.write(self.xid, lambda err: self._decided(store, err))
        except JournalError as e:
            self._fail(store, e)

    def _decided(self, store, error):
        if error is not None:
            return self._fail(store, error)
        self._reached("decided")
        self.committed()           # recovery commits it whatever happens from here on
        self.waiting = len(self.journals)
        for qj in self.journals:
            try:
                seq = qj.journal.append_commit(self.xid)
            except JournalError:
                self.waiting -= 1       # it stays in doubt there until the next start commits it
                continue
            qj.wait(seq, _Step(self, store, self._commits_synced))
            store.want_sync(qj)
        self._reached("committing")
        if not self.waiting:
            self._commits_synced(store, None, final=True)

    def _commits_synced(self, store, error, final=False):
        """The commit records are synced: the decision can go (kept if one failed: the next start
        commits that journal's records with it)."""
        if error is not None:
            self.failed = error
        if not final:
            self.waiting -= 1
        if not self.waiting and self.failed is None:
            self._reached("committed")
            store.decisions.remove(self.tpl_rid)

    def _done(self, store, error):
        """One journal: its commit record is synced (or failed)."""
        if error is not None:
            return self._fail(store, error)
        self.committed()

    def committed(self):
        """The decision is durable (or there is none to make): the retired messages' outcomes are
        applied, the posted ones shown in the order they came, the discharge answered accepted."""
        self.phase = 2
        self.acquired = {}
        retires = self.retires
        self.retires = self.taken = []
        _apply(retires)
        copies = self.copies
        self.copies = []
        for i in range(0, len(copies), 2):
            queue = copies[i]
            if not queue.deleted:
                queue.unhold(copies[i + 1])
        for ex, msg in self.ives:
            ex.last_message = msg
        self.ives = ()
        release = self.discharge
        self.discharge = None
        if release is not None:
            release.release()

    def _fail(self, store, error):
        """A journal failed before the decision: the transaction is rolled back. Its durable
        messages go, unseen; its retired messages go back to their queues; every journal gets an
        abort (recovery would abort them anyway)."""
        if self.failed is not None or self.phase == 2:
            return
        self.failed = error
        self.abort_journals()
        self.drop_copies(store)
        self.undo_retires()
        acquired = self.acquired
        self.acquired = {}
        undo(acquired)
        self.ives = ()
        outcome = amqp.rejected(errors.TRANSACTION_ROLLBACK, "transaction rolled back: journal failed: %s" % (
            error,))
        release = self.discharge
        self.discharge = None
        if release is not None:
            release.release(outcome)


class _Step:
    """A wait in a journal's sync queue (duck-typed as a Pending: the store calls ``release`` once
    the journal is synced past it, or sets ``outcome`` and calls it when the sync failed)."""

    copies = None
    outcome = None

    def __init__(self, work, store, then):
        self.work = work
        self.store = store
        self.then = then
        self.syncs = 1

    def release(self, outcome=None):
        self.then(self.store, outcome)


class DecisionLog:
    """The store's transaction log (``<store>/tpl``): one live record per committed transaction
    whose commit records are not all durable yet; its data is the xid."""

    def __init__(self, store):
        self.store = store
        self.path = os.path.join(store.directory, TPL_DIRNAME)
        self.loop = store.loop
        self.journal = None            # opened when there is one, or at the first decision
        self.committed = {}            # xid -> rid, read at open
        self.used = []                 # queue journals where recovery committed with a decision
        self.waiting = 0
        self._rid = 1
        if os.path.isdir(self.path):
            self._open()
            for rec in self.journal.recovered:
                self.committed[bytes(rec.data)] = rec.rid
            self._rid = max(self.committed.values(), default=0) + 1

    def _open(self):
        self.journal = Journal(self.path, 3, 1, name="transaction log", writer=self.store.writer)

    def write(self, xid, then):
        """Append the decision and sync it; ``then(error)`` on the loop once it is durable."""
        if self.journal is None:
            self._open()
        rid = self._rid
        self._rid += 1
        self.journal.append_enqueue(rid, xid)
        loop = self.loop
        self.journal.flush_async(lambda seq, err: loop.call_soon_threadsafe(then, err))
        return rid

    def remove(self, rid):
        try:
            self.journal.append_dequeue(rid)
            self.journal.flush_async(None)
        except (KeyError, JournalError):
            pass

    def resolve(self, qj):
        """Recovery of ``qj``'s journal: each transaction open in it is committed if the log holds
        its decision, aborted otherwise."""
        journal = qj.journal
        for xid in list(journal.in_doubt):
            if bytes(xid) in self.committed:
                journal.append_commit(xid)
                if qj not in self.used:
                    self.used.append(qj)
            else:
                journal.append_abort(xid)

    def recovered(self):
        """Every queue is recovered: once the commits written by ``resolve`` are synced, the
        decisions read at open are no longer needed."""
        if not self.committed:
            return
        self.waiting = len(self.used)
        if not self.waiting:
            self._forget(None)
        for qj in self.used:
            try:
                qj.journal.flush_async(lambda seq, err: self.loop.call_soon_threadsafe(self._forget, err))
            except JournalError as e:
                self._forget(e)
        self.used = []

    def _forget(self, error):
        if error is not None:
            self.waiting = -1       # kept: the next start resolves with them again
            return
        self.waiting -= 1
        if self.waiting <= 0 and self.waiting != -1:
            for rid in self.committed.values():
                self.remove(rid)
            self.committed = {}

    def close(self):
        if self.journal is not None:
            try:
                self.journal.close()
            except JournalError:
                pass


class Coordinator(IncomingLink):
    """A sender link whose target is the coordinator: declare and discharge come on it."""

    def attach(self):
        target = self.target
        caps = target.fields[0] if target.fields else None
        caps = [str(c) for c in caps] if isinstance(caps, (list, tuple, Array)) else ([str(caps)] if caps else [])
        if isinstance(caps, list) and caps and not any(c == LOCAL for c in caps):
            self.refuse(errors.Unimplemented("only local transactions (%s) are offered; asked for %s"
                                             % (LOCAL, ", ".join(caps))))
            return False
        self.txns = {}
        reply = Described(ulong(amqp.COORDINATOR), [Array(0xA3, [symbol(LOCAL)])])
        self.core.accept(target=reply, rcv_settle_mode=amqp.RCV_FIRST)
        self.core.flow(credit=CREDIT_WINDOW)
        return True

    def deliver(self, data):
        """A declare or a discharge (IncomingLink.on_message settles it with what this returns)."""
        transactions = self.broker.transactions
        try:
            value = _body_value(data)
        except DecodeError as e:
            return amqp.rejected(errors.DECODE_ERROR, "coordinator: %s" % e)
        fields = value.value if isinstance(getattr(value, "value", None), list) else []
        try:
            if _code(value, amqp.DECLARE, "amqp:declare:list"):
                if fields and fields[0] is not None:
                    raise errors.Unimplemented("global transactions are not offered (declare with a global-id)")
                return declared(transactions.declare(self).id)
            if _code(value, amqp.DISCHARGE, "amqp:discharge:list"):
                if not fields:
                    raise errors.InvalidField("discharge without a txn-id")
                txn = transactions.find(self, fields[0])
                if len(fields) > 1 and fields[1]:
                    transactions.rollback(txn)
                    return None
                return transactions.commit(txn)
            raise errors.InvalidField("the coordinator takes declare and discharge, not %r"
                                      % (getattr(value, "descriptor", value),))
        except AmqpError as e:
            return _rejected(e)

    def abandon(self):
        if self.detached:
            return
        self.detached = True
        transactions = self.broker.transactions
        for txn in list(getattr(self, "txns", {}).values()):
            transactions.rollback(txn)


__all__ = ["Coordinator", "Transactions", "Transaction", "DecisionLog", "LOCAL", "MAX_PER_SESSION",
           "MAX_WORK", "MAX_BYTES"]
