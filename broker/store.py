"""The message store: durable queues' journals, wired to the broker's queues.

The journal (cypid.pyx.journal) sees only bytes; the queue does not know the journal exists. This
module is the seam between them, for one broker (nothing here is global):

- ``Store`` owns the store directory ``<store-dir or data-dir>/cypid-store/``: the configuration
  store (``config.sqlite``, broker/config_store.py), one journal per durable queue under ``jrnl/``,
  the journals of non-durable flow-to-disk queues under ``ftd/`` (emptied at every start), and one
  ``JournalWriter`` thread that syncs them all.
- ``QueueJournal`` is one queue's journal plus what the store keeps for it: the record id of each
  journalled message (a dict keyed by the message object), and the producers waiting for a sync.
  The per-message path (``Store.enqueue`` for one queue, the sync's release of its producers,
  ``QueueJournal.dequeued``) is in C: cypid.pyx.store_core, whose classes these subclass.

Hooks, and what each costs per message:

- Enqueue: ``Nodes.route`` (and exchange routing) call ``Store.enqueue``/``enqueue_all`` only for a
  message whose header says durable (non-durable messages cost one attribute test). The record
  is appended (a memcpy into the journal's write buffer), the message queued, and a ``Pending`` returned
  that the producer's link hands its delivery to: the disposition goes out when every journal the
  message went to has synced past the record. One sync is requested per loop turn for each journal
  appended to (``loop.call_soon``), on the writer thread; the sync's callback comes back with
  ``loop.call_soon_threadsafe``, so many producers' records share one sync (group commit) and the
  loop never waits for the disk.
- Dequeue: the queue calls ``queue.dequeue_hook(msg)`` when a durable message leaves a durable
  queue (accepted, expired, purged, replaced, dropped): one dequeue record, synced lazily.
- Redelivery: ``Nodes.released`` (called by sessions and links only when a release counts a failed
  attempt) writes an update record with the message's new delivery count.
- Flow-to-disk: the queue calls ``queue.ftd_hook(msg)`` for a message it takes past its limit; the
  message's record is written if it was not already (non-durable messages too, flagged transient,
  as qpidd did) and its body is dropped from memory; ``Store.encoded(queue, msg)`` reads it back
  when a consumer gets it.

Record data: the message's kept bytes (``msg.body``, from the bare message on), with its header
fields in the record's user flags (durable, priority up to 15, and the bytes its header section and
delivery-annotations took on arrival, so that its size, and the queue's byteDepth, are the same
after a restart); a message with a ttl or a larger priority keeps its header section in front
(``F_HEADER``). docs/JOURNAL-FORMAT.md, "The broker's record data", has the layout.

Recovery (``recover``): each durable queue's journal is scanned in C, and its live records become
messages without their bodies being read (cypid.pyx.store_recovery): a body stays in the journal,
as a flowed-to-disk one does, until a consumer gets it.
"""
import errno
import fcntl
import gc
import logging
import os
import re
import shutil
import time

from cypid.pyx.codec import Described, encode_header, symbol, ulong
from cypid.pyx.journal import (Journal, JournalCorrupt, JournalError, JournalFull, JournalWriter,
                               read_file_header)
from cypid.pyx.message import Message
from cypid.pyx.store_core import (EXTRA_MAX, EXTRA_SHIFT, F_DURABLE, F_HEADER, F_PRIORITY, F_TRANSIENT,
                                  Pending, QueueJournalCore, StoreCore, record_data, split_record)
from cypid.pyx.store_recovery import complete, fill_queue, max_rid

from . import errors
from .config_store import ConfigStore

STORE_DIRNAME = "cypid-store"
LOST_DIRNAME = "lost+found"     # journal data the broker cannot account for, kept aside
# A full journal is logged at most this often (seconds) while producers keep trying.
FULL_LOG_INTERVAL = 10.0
# Recovery puts this many of a queue's messages in before the broker serves, then this many per
# loop turn (about 10 ms); whatever must see the whole queue first loads the rest at once.
FILL_FIRST = 1000
FILL_CHUNK = 20000


_JOURNAL_FILE = re.compile(r"^journal-(\d{4,5})\.cjf(\.tmp)?$")


def _grown_file(header, count, match):
    """A file past the journal's file count is its own when the journal grew: its header (None if
    unreadable) says so."""
    if match.group(2) or header is None:
        return False
    return header["valid"] and header["count"] == count and header["index"] == int(match.group(1))


class _JournalLog(logging.Handler):
    """Hands the journal module's errors to the broker's log (category Store). Its damage
    warnings are not wanted: the store logs each damage once, naming the queue."""

    def __init__(self, target):
        super().__init__(logging.ERROR)
        self.target = target

    def emit(self, record):
        record.category = "Store"
        self.target.handle(record)


class _Loader:
    """A recovered queue's messages going into it (cypid.pyx.store_recovery.fill_queue): a record
    whose flags say all the queue needs becomes a message without its data being read, one with a
    header section or an expiry is read and parsed (``slow``). ``step(n)`` puts in the next n;
    ``next_chunk`` runs on the loop until all are in; ``finish`` (the queue's ``loading`` hook: an
    enqueue or a look at the whole queue) puts in the rest at once."""

    def __init__(self, store, qj, entries):
        self.store = store
        self.qj = qj
        self.entries = entries
        self.pos = 0
        self.queued = self.refused = self.expired = 0
        self.why = None
        self.done = False
        settings = qj.queue.settings
        self.keyed = getattr(settings, "lvq_key", None) is not None or \
            getattr(settings, "group_header_key", None) is not None
        self.now_wall = time.time()
        self.now_mono = time.monotonic()

    @property
    def left(self):
        return len(self.entries) - self.pos if not self.done else 0

    def slow(self, e):
        journal = self.qj.journal
        rid = e.rid
        flags = e.uflags
        if flags & F_TRANSIENT:
            journal.append_dequeue(rid)
            return None
        at, size, data = split_record(journal.read(rid), flags)
        if at:
            left = at / 1000.0 - self.now_wall
            if left <= 0:              # expired while the broker was down: never delivered
                journal.append_dequeue(rid)
                self.expired += 1
                return None
        msg = Message(data)
        if at:
            msg.expires = self.now_mono + left
        elif not flags & F_HEADER:      # the header fields are in the flags
            msg.durable = bool(flags & F_DURABLE)
            msg.priority = flags & F_PRIORITY
        msg.size = size if size is not None else msg.size + ((flags >> EXTRA_SHIFT) & EXTRA_MAX)
        if e.dcount:
            msg.delivery_count = e.dcount
            msg.acquired_before = True
        return msg

    def step(self, n):
        qj = self.qj
        stop = min(len(self.entries), self.pos + n)
        # A million messages that live on: the cyclic GC would traverse them again and again.
        enabled = gc.isenabled()
        gc.disable()
        try:
            queued, refused, why = fill_queue(qj.queue, self.entries, self.pos, stop, qj.rids,
                                              self.slow, qj.journal.append_dequeue, self.keyed)
        finally:
            if enabled:
                gc.freeze()
                gc.enable()
        self.pos = stop
        self.queued += queued
        self.refused += refused
        self.why = why or self.why
        if stop >= len(self.entries):
            self._done()

    def next_chunk(self):
        if self.done:
            return
        if self.store.closed or self.qj.removed:
            self._done()
            return
        self.step(FILL_CHUNK)
        if not self.done:
            self.store.loop.call_soon(self.next_chunk)

    def finish(self, queue=None):
        if not self.done:
            self.step(len(self.entries))

    def _done(self):
        self.done = True
        self.entries = []
        qj = self.qj
        qj.loader = None
        if qj.queue.loading == self.finish:
            qj.queue.loading = None
        log = self.store.log
        name = qj.queue.name
        if self.refused:
            log.error("Queue %r: %d recovered messages refused (%s); they stay in its journal and "
                      "come back at the next start", name, self.refused, self.why)
        if self.queued or qj.journal.damage or self.expired:
            log.info("Queue %r: %d messages recovered%s", name, self.queued,
                     ", %d expired while the broker was down" % self.expired if self.expired else "")


def _rejected(condition, description):
    return Described(ulong(0x25), [Described(ulong(0x1D), [symbol(condition), description])])


class QueueJournal(QueueJournalCore):
    """One queue's journal and the store's bookkeeping for it (the per-message hooks are
    QueueJournalCore's, in C: ``dequeued``, the producers waiting for a sync)."""

    def __init__(self, store, queue, journal, durable, ftd):
        self.store = store
        self.queue = queue
        self.journal = journal
        self.flush_wanted = False
        self.durable = durable              # records of durable messages survive a restart
        self.ftd = ftd
        self.removed = False
        self.ftd_warned = False
        self.full_logged = -FULL_LOG_INTERVAL
        self.failing = False                # a write or sync failed; no successful sync since
        self.loader = None                  # _Loader while recovered messages are still going in
        loop = store.loop
        synced = store._synced
        self.on_synced = lambda seq, err: loop.call_soon_threadsafe(synced, self, seq, err)

    def flow_to_disk(self, msg):
        """queue.ftd_hook: ``msg`` is past the queue's in-memory limit: keep only its record."""
        if self.removed or msg.body is None:
            return
        if msg not in self.rids:
            rid = self.store.new_rid()
            data, flags = record_data(msg)
            try:
                self.journal.append_enqueue(rid, data, None, flags | F_TRANSIENT)
            except JournalError as e:
                if not self.ftd_warned:
                    self.ftd_warned = True
                    self.store.log.warning("Queue %r: cannot flow a message to disk (%s); "
                                           "keeping it in memory", self.queue.name, e)
                return
            self.rids[msg] = rid
            self.store.lazy_flush(self)
        self.ftd_warned = False
        msg.body = None


class FaultyJournal:
    """A failpoint for tests (``CYPID_JOURNAL_FAULT_FILE``; never set in production): a journal
    that, while that file exists, fails as a broken disk does under the journal's contract. Appends
    still go to the buffer until a sync fails; that sync reports EIO and every record appended since
    the last good sync is gone (a dequeue is written for it, so recovery never sees it); then
    appends raise JournalError(EIO) until the file is removed (the disk works again)."""

    def __init__(self, journal, flag):
        self._journal = journal
        self._flag = flag
        self._since = []            # rids appended since the last sync request
        self._failed = False

    def __getattr__(self, name):
        return getattr(self._journal, name)

    def _check(self):
        if self._failed:
            if os.path.exists(self._flag):
                raise JournalError(errno.EIO, "journal %s: write failed earlier (failpoint %s)"
                                   % (self._journal.name, self._flag))
            self._failed = False

    def append_enqueue(self, rid, data, xid=None, flags=0):
        self._check()
        seq = self._journal.append_enqueue(rid, data, xid, flags)
        self._since.append(rid)
        return seq

    def append_dequeue(self, rid, xid=None):
        self._check()
        return self._journal.append_dequeue(rid, xid)

    def append_update(self, rid, count):
        self._check()
        return self._journal.append_update(rid, count)

    def append_commit(self, xid):
        """A transaction's commit record appended while the disk is broken is lost with the sync
        that fails: not written at all (recovery finds the transaction open, and aborts it)."""
        self._check()
        if os.path.exists(self._flag):
            return self._journal.next_seq - 1
        return self._journal.append_commit(xid)

    def flush_async(self, callback):
        lost, self._since = self._since, []
        if not os.path.exists(self._flag):
            return self._journal.flush_async(callback)
        self._failed = True
        for rid in lost:
            try:
                self._journal.append_dequeue(rid)
            except KeyError:
                pass
        self._journal.flush_async(None)
        if callback is not None:
            callback(0, JournalError(errno.EIO, "journal %s: sync failed: %s (failpoint %s)"
                                     % (self._journal.name, os.strerror(errno.EIO), self._flag)))


class Store(StoreCore):
    """``Store(broker, path)``: the store in ``path/cypid-store`` (created if need be)."""

    def __init__(self, broker, path):
        self.broker = broker
        self.loop = broker.loop
        self.log = broker.log.getChild("Store")
        self.options = broker.options
        self.directory = os.path.join(os.fspath(path), STORE_DIRNAME)
        self.jrnl_dir = os.path.join(self.directory, "jrnl")
        self.lost_dir = os.path.join(self.directory, LOST_DIRNAME)
        self.ftd_dir = os.path.join(self.directory, "ftd")
        os.makedirs(self.jrnl_dir, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise RuntimeError("store %s is in use by another broker" % self.directory) from None
        shutil.rmtree(self.ftd_dir, ignore_errors=True)
        self._journal_log = logging.getLogger("cypid.journal")
        for handler in list(self._journal_log.handlers):
            if isinstance(handler, _JournalLog):
                self._journal_log.removeHandler(handler)
        self._journal_log.addHandler(_JournalLog(self.log))
        self._journal_log.setLevel(logging.ERROR)
        self._journal_log.propagate = False
        self.config = ConfigStore(self.directory)
        self.writer = JournalWriter(name="journal-writer")
        self.journals = {}              # queue -> QueueJournal
        self._dirty = []                # QueueJournals to sync at the end of this loop turn
        self._flush_handle = None
        self._lazy = set()              # QueueJournals with only dequeues/updates unsynced
        self._lazy_handle = None
        self._next_rid = 1
        self._ftd_serial = 0
        self.recovering = None          # during recover(): queue name -> journal dir
        # broker/transactions.py: the commit whose work is being applied (its records carry its xid),
        # and the transaction log (decisions of commits that span several journals).
        self.txn = None
        self.decisions = None
        # Tests only: while this file exists every journal fails as a broken disk does.
        self.fault_file = os.environ.get("CYPID_JOURNAL_FAULT_FILE") or None
        self.closed = False

    def enqueue_all(self, queues, msg, stamp=None):
        """Route a durable ``msg`` to several queues (copies after the first; with ``stamp``, a copy
        for each, and ``stamp(queue, copy)`` before its record is written). Every journal takes
        its record before any queue takes the message, so a full journal refuses the message
        everywhere. Returns None, a Pending (settled when all are synced) or a rejected outcome; a
        queue that refuses the message (its limit) does not stop the others, and its exception is
        raised once they all have it."""
        if len(queues) == 1:
            if stamp is not None:
                stamp(queues[0], msg)
            return self.enqueue(queues[0], msg)
        journals = self.journals
        pending = None
        entries = []
        first = True
        for queue in queues:
            m = msg if first and stamp is None else msg.copy()
            if stamp is not None:
                stamp(queue, m)
            first = False
            qj = journals.get(queue)
            if qj is not None and qj.durable:
                if pending is None:
                    pending = Pending()
                rid = self.new_rid()
                data, flags = record_data(m)
                try:
                    seq = qj.journal.append_enqueue(rid, data, None if self.txn is None else self.txn.joined(qj),
                                                    flags)
                except JournalError as e:
                    for qj2, m2, _ in entries:
                        if qj2 is not None:
                            self._undo(qj2, m2)
                    if isinstance(e, JournalFull):
                        return self._full(qj, e)
                    return self._failed(qj, e)
                qj.rids[m] = rid
                pending.count += 1
                pending.syncs += 1
                qj.wait(seq, pending)
                if not qj.flush_wanted:
                    self._want_flush(qj)
            else:
                qj = None
            entries.append((qj, m, queue))
        refused = None
        hold = pending is not None      # every copy waits for every journal (then all are shown)
        copies = [] if hold else None
        for qj, m, queue in entries:
            try:
                queued = queue.enqueue(m, hold)
            except Exception as e:         # a queue's limit: the other queues still get it
                if qj is not None:
                    self._undo(qj, m)
                refused = refused or e
                continue
            if queued is False:
                if qj is not None:
                    self._undo(qj, m)
            elif hold:
                copies += (queue, m)
        if hold:
            pending.copies = copies
        if refused is not None:
            raise refused
        return pending

    def _undo(self, qj, msg):
        """The queue did not keep ``msg``: drop its record (its producer still waits for the sync,
        which changes nothing)."""
        rid = qj.rids.pop(msg, None)
        if rid is not None and not qj.removed:
            try:
                qj.journal.append_dequeue(rid)
            except (KeyError, JournalError):
                pass

    def _full(self, qj, e):
        now = time.monotonic()
        if now - qj.full_logged >= FULL_LOG_INTERVAL:     # once per episode, not per message
            qj.full_logged = now
            self.log.warning("%s: messages refused", e.strerror)
        return _rejected(errors.RESOURCE_LIMIT_EXCEEDED, e.strerror)

    def _failed(self, qj, e):
        """An append failed (the journal refuses records after a failed write or sync): the
        message is refused; logged once per episode."""
        self.journal_error(qj, e)
        return _rejected(errors.INTERNAL_ERROR, "Queue %s: journal error: %s" % (qj.queue.name, e))

    def journal_error(self, qj, e):
        """One error line per episode: from the first failure to the next successful sync."""
        if not qj.failing:
            qj.failing = True
            self.log.error("Queue %r: journal failed: %s; durable messages are refused until it "
                           "works again", qj.queue.name, e)

    # -- syncing --------------------------------------------------------------------------------
    def want_sync(self, qj):
        """Sync ``qj`` at the end of this loop turn (broker/transactions.py: a commit's records)."""
        if not qj.flush_wanted:
            self._want_flush(qj)

    def _flush_lazy(self):
        self._lazy_handle = None
        lazy = self._lazy
        self._lazy = set()
        for qj in lazy:
            if not qj.removed:
                try:
                    qj.journal.flush_async(None)
                except JournalError:
                    pass

    def _take_out(self, pending, failed):
        """A record of the message was lost with journal ``failed``: every copy goes (nobody has
        seen one: they are held until all records are synced). The lost record needs no dequeue;
        the other journals get one through the queue's dequeue hook."""
        copies = pending.copies
        pending.copies = None
        if copies is None:
            return
        for i in range(0, len(copies), 2):
            queue, msg = copies[i], copies[i + 1]
            if queue is failed.queue:
                failed.rids.pop(msg, None)
            queue.drop_held(msg)

    def journal_failed(self, qj, err):
        """A sync failed: every record appended since the last successful sync is lost (the
        journal's contract), so every message waiting for it is taken out of its queues, unseen,
        and its producer refused. One error line per episode."""
        self.journal_error(qj, err)
        outcome = _rejected(errors.INTERNAL_ERROR, "Queue %s: journal failed: %s" % (qj.queue.name, err))
        for pending in qj.take_waits():
            pending.outcome = outcome
            pending.syncs -= 1
            self._take_out(pending, qj)
            pending.release(outcome)

    # -- consumers ------------------------------------------------------------------------------
    def encoded(self, queue, msg, keep=True):
        """The bytes to deliver for a message whose body flowed to disk. ``keep``: the body stays
        in memory (the message was acquired); a browser's copy does not keep it."""
        qj = self.journals.get(queue)
        rid = qj.rids.get(msg) if qj is not None else None
        if rid is None:
            raise errors.InternalError("message body of queue %s is in no journal" % queue.name)
        flags = self.read_back(qj, msg, rid)
        out = msg.encoded()
        if not keep:
            msg.body = None
        elif flags & F_TRANSIENT:       # in memory again: its record has done its job
            del qj.rids[msg]
            try:
                qj.journal.append_dequeue(rid)
            except (KeyError, JournalError):
                pass
            self.lazy_flush(qj)
        return out

    @staticmethod
    def read_back(qj, msg, rid):
        """Put the bytes of ``msg`` (record ``rid`` of ``qj``) back in ``msg.body`` (and the fields
        of a message recovered without reading them). Returns the record's flags."""
        journal = qj.journal
        flags = journal.get(rid, False).flags
        data = split_record(journal.read(rid), flags)[2]
        if flags & F_HEADER:
            data = data[len(encode_header(msg.durable, msg.priority, msg.ttl, False, 0)):]
        complete(msg, data)
        return flags

    def released(self, queue, msg):
        """A durable message went back to ``queue`` counting a failed delivery attempt."""
        qj = self.journals.get(queue)
        if qj is None or qj.removed:
            return
        rid = qj.rids.get(msg)
        if rid is None or not qj.durable:
            return
        try:
            qj.journal.append_update(rid, msg.delivery_count)
        except (KeyError, JournalError):
            return
        self.lazy_flush(qj)

    # -- queues ---------------------------------------------------------------------------------
    def queue_declared(self, queue, properties):
        """A queue was made (declared, or recovered): give it a journal if it is durable or flows
        to disk. Raises an AmqpError (nothing kept) if it cannot have one."""
        settings = queue.settings
        ftd = bool(getattr(settings, "flow_to_disk", False))
        durable = bool(settings.durable)
        if not durable and not ftd:
            return None
        count, pages = settings.file_count, settings.file_size
        if count < 3:
            raise errors.InvalidArgument("qpid.file_count: a journal has at least 3 files, not %d" % count)
        if durable:
            jdir = self.recovering.get(queue.name) if self.recovering is not None else None
            if jdir is None:
                old = self.config.queue_journal(queue.name)
                if old is not None and self._inside(old) and os.path.lexists(os.path.join(self.jrnl_dir, old)):
                    # a queue of that name that was not recovered: its journal is kept, not reused
                    self.set_aside(os.path.join(self.jrnl_dir, old), "queue %r declared anew; this "
                                   "is the journal of the one that was not recovered" % queue.name)
                jdir = self.config.add_queue(queue.name, properties)
                recovering = False
            else:
                recovering = True
            path = os.path.join(self.jrnl_dir, jdir)
            if recovering and not os.path.isdir(path):
                self.log.error("Queue %r: its journal directory %s is missing: the queue is recovered "
                               "empty (messages it held are lost)", queue.name, path)
                recovering = False
            elif recovering:
                self._set_aside_strays(queue, path, count)
        else:
            self._ftd_serial += 1
            path = os.path.join(self.ftd_dir, "%06d" % self._ftd_serial)
            recovering = False
        try:
            journal = self._open(queue, path, count, pages, recovering and not ftd)
        except (OSError, ValueError) as e:
            if not recovering:
                shutil.rmtree(path, ignore_errors=True)
                if durable:
                    self.config.remove_queue(queue.name)
            cls = errors.InvalidArgument if isinstance(e, ValueError) else errors.ResourceLimitExceeded
            raise cls("Queue %s: cannot create its journal: %s" % (queue.name, e)) from None
        qj = QueueJournal(self, queue, journal, durable, ftd)
        self.journals[queue] = qj
        # A durable message leaving a durable queue, or any message whose body flowed to disk.
        queue.dequeue_hook = qj.dequeued
        if ftd:
            queue.ftd_hook = qj.flow_to_disk
        if recovering:
            self._recover_messages(qj)
        return qj

    def _open(self, queue, path, count, pages, recovering):
        journal = self._open_journal(queue, path, count, pages, recovering)
        if self.fault_file:
            journal = FaultyJournal(journal, self.fault_file)
        return journal

    def _open_journal(self, queue, path, count, pages, recovering):
        limit = getattr(queue.settings, "journal_max_size", 4096) << 20
        if not recovering:
            return Journal(path, count, pages, name=queue.name, writer=self.writer, max_size=limit)
        try:
            journal = Journal(path, count, pages, name=queue.name, writer=self.writer,
                              load_data=False, max_size=limit)
        except JournalCorrupt as e:
            where = "%s.quarantined-%d" % (path, int(time.time()))
            os.rename(path, where)
            self.log.error("Queue %r: journal unreadable, moved to %s; the queue starts empty: %s",
                           queue.name, where, e)
            return Journal(path, count, pages, name=queue.name, writer=self.writer, max_size=limit)
        for d in journal.damage:
            self.log.warning("Queue %r: journal damage in %s at offset %d: %s; recovered what came "
                             "before it", queue.name, d.file, d.offset, d.reason)
        return journal

    def _recover_messages(self, qj):
        """The journal's live records back into the queue, in order (_Loader): the first
        FILL_FIRST now, the rest in chunks on the loop once the broker serves."""
        journal = qj.journal
        if journal.in_doubt:        # resolved by the transaction log (broker/transactions.py)
            self.decisions.resolve(qj)
        entries = journal.take_recovered()
        top = max_rid(entries)
        if top >= self._next_rid:
            self._next_rid = top + 1
        loader = _Loader(self, qj, entries)
        loader.step(FILL_FIRST)
        if not loader.done:
            qj.loader = loader
            qj.queue.loading = loader.finish
            self.loop.call_soon(loader.next_chunk)
        try:
            journal.flush_async(None)       # its first sync makes what was recovered durable
        except JournalError:
            pass

    def adopt_journal(self, queue, staged):
        """HA catch-up (ha/ship.py): the journal files in directory ``staged`` (a primary's journal
        as shipped, checked and synced by the caller) become ``queue``'s journal, and its live
        records the queue's messages, as at a restart. The queue's own journal must hold no live
        record (the backup purged it); it is closed and its files are removed. Returns the count
        of messages recovered."""
        qj = self.journals.get(queue)
        if qj is None or not qj.durable or qj.rids or qj.loader is not None:
            raise ValueError("queue %r has no empty durable journal to replace" % queue.name)
        old = qj.journal
        path = old.directory
        old.close()
        self._synced(qj, 1 << 64, None)
        for name in os.listdir(path):
            if _JOURNAL_FILE.match(name):
                os.unlink(os.path.join(path, name))
        for name in os.listdir(staged):
            os.rename(os.path.join(staged, name), os.path.join(path, name))
        os.rmdir(staged)
        qj.journal = self._open(queue, path, old.file_count, old.file_size, True)
        self._recover_messages(qj)
        if qj.loader is not None:
            qj.loader.finish()
        return len(qj.rids)

    def queue_deleted(self, queue):
        """The queue is gone: its row and its journal go too. Producers waiting for a sync of its
        journal are answered (the message reached the queue before it went)."""
        qj = self.journals.pop(queue, None)
        if queue.settings.durable and (qj is None or qj.durable):
            self.config.remove_queue(queue.name)
        if qj is None:
            return
        qj.removed = True
        queue.dequeue_hook = None
        queue.ftd_hook = None
        qj.rids.clear()
        self._synced(qj, 1 << 64, None)
        qj.journal.remove()

    # -- exchanges and bindings -----------------------------------------------------------------
    def exchange_declared(self, ex, properties):
        if ex.durable and self.recovering is None:
            self.config.add_exchange(ex.name, ex.type, properties)

    def exchange_deleted(self, ex):
        if ex.durable:
            self.config.remove_exchange(ex.name)

    def binding_added(self, ex, queue, key, arguments):
        if ex.durable and queue.durable and self.recovering is None:
            self.config.add_binding(ex.name, queue.name, key, arguments)

    def binding_removed(self, ex, queue, key):
        if ex.durable and queue.durable:
            self.config.remove_binding(ex.name, queue.name, key)

    # -- recovery -------------------------------------------------------------------------------
    def recover(self, nodes):
        """Declare every durable exchange, queue (with its messages) and binding again."""
        t0 = time.monotonic()
        log = self.log
        config = self.config
        exchanges = config.exchanges()
        queues = []
        for name, props, jdir in config.queues():
            if self._inside(jdir):
                queues.append((name, props, jdir))
            else:
                log.error("Queue %r not recovered: its journal path %r is outside the store (%s); "
                          "nothing there is read or changed", name, jdir, self.jrnl_dir)
        bindings = config.bindings()
        from .transactions import DecisionLog     # (it imports this module)
        self.decisions = DecisionLog(self)
        self.recovering = {name: jdir for name, _, jdir in queues}
        counts = [0, 0, 0, 0]
        # Recovery makes a million objects that live on (journal entries, messages); with the cyclic
        # GC on, its collections would traverse them all again and again (two thirds of the time).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for name, _type, props in exchanges:
                try:
                    nodes.declare_exchange(name, props)
                    counts[0] += 1
                except Exception as e:
                    log.error("Exchange %r not recovered: %s", name, e)
            for name, props, _jdir in queues:
                try:
                    queue, _ = nodes.declare_queue(name, props)
                    counts[1] += 1
                    qj = self.journals.get(queue)
                    if qj is not None:
                        counts[3] += len(qj.rids) + (qj.loader.left if qj.loader is not None else 0)
                except Exception as e:
                    log.error("Queue %r not recovered: %s", name, e)
            for exname, qname, key, args in bindings:
                ex = nodes.exchanges.get(exname)
                queue = nodes.queues.get(qname)
                if ex is None or queue is None:
                    log.warning("Binding %r -> %r (key %r) not recovered: %s not found", exname,
                                qname, key, "exchange" if ex is None else "queue")
                    continue
                try:
                    nodes.bind(ex, queue, key, args)
                    counts[2] += 1
                except Exception as e:
                    log.error("Binding %r -> %r (key %r) not recovered: %s", exname, qname, key, e)
        finally:
            self.recovering = None
            if gc_was_enabled:
                gc.freeze()         # what recovery made is never traversed by later collections
                gc.enable()
        self._set_aside_orphans({jdir for _, _, jdir in queues})
        self.decisions.recovered()
        if any(counts):
            log.log(25, "Recovered %d exchanges, %d queues, %d bindings, %d messages in %.3f s",
                    counts[0], counts[1], counts[2], counts[3], time.monotonic() - t0)

    def _inside(self, jdir):
        """Whether a config row's journal directory is a plain name inside jrnl/ (a row pointing
        elsewhere is never used: path traversal)."""
        if not jdir or not isinstance(jdir, str) or jdir in (".", "..") or "/" in jdir or \
                "\0" in jdir or (os.altsep and os.altsep in jdir):
            return False
        path = os.path.realpath(os.path.join(self.jrnl_dir, jdir))
        return os.path.dirname(path) == os.path.realpath(self.jrnl_dir)

    def _set_aside_orphans(self, known):
        """Journal directories no config row owns (a lost or empty config.sqlite, a lost table, a
        crash between a delete and its files' removal) go to lost+found, never deleted."""
        for name in sorted(os.listdir(self.jrnl_dir)):
            if name in known or ".quarantined-" in name:
                continue
            self.set_aside(os.path.join(self.jrnl_dir, name), "no durable queue owns it")

    def _set_aside_strays(self, queue, path, count):
        """Files in a queue's journal directory that are not its journal's: names the journal does
        not use, or journal-NNNN.cjf past its file count (read from the files it wrote). Each is
        moved to lost+found alone; the journal itself is recovered."""
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return
        counts = []
        headers = {}                    # name -> header, read once (a deep journal has hundreds)
        for name in names:
            m = _JOURNAL_FILE.match(name)
            if m and not m.group(2):
                try:
                    headers[name] = read_file_header(os.path.join(path, name))
                    counts.append(headers[name]["count"])
                except (OSError, KeyError):
                    pass
        if counts:
            count = max(set(counts), key=counts.count)
        for name in names:
            m = _JOURNAL_FILE.match(name)
            if m is None or not os.path.isfile(os.path.join(path, name)) or (
                    int(m.group(1)) >= count and not _grown_file(headers.get(name), count, m)):
                self.set_aside(os.path.join(path, name), "not a file of the journal of queue %r"
                               % queue.name, prefix=os.path.basename(path))

    def set_aside(self, path, why, prefix=None):
        """Move ``path`` (a file or directory) into lost+found and log one error line naming each
        file it holds. Returns the new path, or None if it could not be moved (then it stays)."""
        os.makedirs(self.lost_dir, exist_ok=True)
        base = os.path.basename(path)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = os.path.join(self.lost_dir, "%s-%s%s" % (stamp, prefix + "-" if prefix else "", base))
        n = 1
        while os.path.lexists(target):
            n += 1
            target = os.path.join(self.lost_dir, "%s-%s%s.%d" % (stamp, prefix + "-" if prefix else "",
                                                                 base, n))
        if os.path.isdir(path):
            files = sorted(os.path.relpath(os.path.join(d, f), path)
                           for d, _, fs in os.walk(path) for f in fs)
        else:
            files = [base]
        try:
            os.rename(path, target)
        except OSError as e:
            self.log.error("Store: %s (%s) cannot be set aside: %s; left where it is, untouched: %s",
                           path, why, e, ", ".join(files) or "no files")
            return None
        self.log.error("Store: kept aside %s (%s): moved to %s; files: %s", path, why, target,
                       ", ".join(files) or "none")
        return target

    # -- closing --------------------------------------------------------------------------------
    def close(self):
        """Sync and close every journal, stop the writer, close the config store."""
        if self.closed:
            return
        self.closed = True
        for handle in (self._flush_handle, self._lazy_handle):
            if handle is not None:
                handle.cancel()
        self.writer.drain(30)
        self.writer.close(30)
        if self.decisions is not None:
            self.decisions.close()
        for qj in self.journals.values():
            try:
                qj.journal.close()
            except JournalError as e:
                self.log.error("Queue %r: journal close failed: %s", qj.queue.name, e)
        self.journals.clear()
        self.config.close()
        shutil.rmtree(self.ftd_dir, ignore_errors=True)
        for handler in list(self._journal_log.handlers):
            if isinstance(handler, _JournalLog) and handler.target is self.log:
                self._journal_log.removeHandler(handler)
        os.close(self._lock_fd)


__all__ = ["Store", "QueueJournal", "Pending", "F_TRANSIENT", "F_HEADER", "F_DURABLE"]
