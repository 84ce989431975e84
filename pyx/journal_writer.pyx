# cython: language_level=3
"""cypid.pyx.journal_writer: the thread that does every journal's I/O, and the sync-copy failpoint.

``JournalWriter.flush(journal, callback)`` queues a request (thread-safe, never blocks on a disk);
the thread syncs each journal with requests pending once (group commit: any number of appends per
sync), then calls each ``callback(synced_seq, error)`` from the writer thread. A journal whose sync
failed is retried every RETRY_INTERVAL seconds until it resumes, without holding up the others.

Failpoint (tests only): with CYPID_FAILPOINT_SYNC_COPY=<dir> in the environment, after each sync
that wrote something (data and checkpoint fdatasync'ed, callbacks not yet run) the store directory
holding the journal (the nearest parent with config.sqlite, else the journal's own directory) is
copied to <dir>/NNNNNN/ with a file ``failpoint.json`` giving the CLOCK_MONOTONIC time of the copy,
the queue, the synced seq and the durable write position. Every producer told ``accepted`` before
that time has its message in the copy. CYPID_FAILPOINT_SYNC_COPY_EVERY=N copies every Nth such sync
(default 1); CYPID_FAILPOINT_SYNC_COPY_MAX=N stops after N copies (default 200). Unset: nothing is
done and nothing is looked up per sync (the hook is None).

``JournalWriter.sync_times`` (a ``SyncTimes``) counts every sync the thread runs and how long it took
(write and fdatasync of one journal), in fixed buckets: the broker's /metrics reads it at scrape time.
"""
import heapq
import json
import logging
import os
import shutil
import threading
import time

from libc.stdint cimport uint64_t

log = logging.getLogger("cypid.journal")

RETRY_INTERVAL = 1.0            # seconds between attempts to resume a failed journal

#: upper bounds (seconds) of the sync-time buckets; a last bucket takes the rest (+Inf)
SYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0)


cdef class SyncTimes:
    """How many syncs the writer ran and how long each took, bucketed (one C update per sync, by the
    writer thread; readers on the loop take ``snapshot()``, whose numbers may be one sync apart)."""
    cdef uint64_t counts[16]            # per bucket (not cumulative); [15]: over the last bound
    cdef uint64_t bounds[15]            # bucket upper bounds in ns
    cdef readonly uint64_t count
    cdef readonly uint64_t total_ns

    def __cinit__(self):
        cdef int i
        for i in range(15):
            self.bounds[i] = <uint64_t>(SYNC_BUCKETS[i] * 1e9 + 0.5)
            self.counts[i] = 0
        self.counts[15] = 0

    cpdef observe(self, uint64_t ns):
        cdef int i = 0
        while i < 15 and ns > self.bounds[i]:
            i += 1
        self.counts[i] += 1
        self.count += 1
        self.total_ns += ns

    def snapshot(self):
        """(count, total seconds, [(upper bound seconds, cumulative count)] ending with +Inf)."""
        cdef int i
        cdef uint64_t run = 0
        out = []
        for i in range(16):
            run += self.counts[i]
            out.append((SYNC_BUCKETS[i] if i < 15 else float("inf"), run))
        return run, self.total_ns / 1e9, out


class JournalWriter:
    """One thread that writes and syncs the journals of a broker (see the module docstring).
    Use loop.call_soon_threadsafe in a callback to get back to an event loop."""

    def __init__(self, name="journal-writer"):
        self._cond = threading.Condition()
        self._pending = {}                      # journal -> [callbacks]
        self._retry = []                        # heap of (when, serial, journal): failed journals
        self._retrying = set()
        self._serial = 0
        self._closing = False
        self._busy = False
        self.sync_times = SyncTimes()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def flush(self, journal, callback=None):
        with self._cond:
            if self._closing:
                from cypid.pyx.journal_format import JournalError
                raise JournalError(_ESHUTDOWN, "journal writer is closed")
            cbs = self._pending.get(journal)
            if cbs is None:
                cbs = self._pending[journal] = []
            if callback is not None:
                cbs.append(callback)
            self._cond.notify()

    def _run(self):
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    timeout = None
                    if self._retry:
                        timeout = self._retry[0][0] - time.monotonic()
                        if timeout <= 0:
                            break
                    self._cond.wait(timeout)
                if not self._pending and self._closing:
                    return
                batch = self._pending
                self._pending = {}
                now = time.monotonic()
                while self._retry and self._retry[0][0] <= now:
                    journal = heapq.heappop(self._retry)[2]
                    self._retrying.discard(journal)
                    batch.setdefault(journal, [])
                self._busy = True
            times = self.sync_times
            for journal, cbs in batch.items():
                err = None
                seq = 0
                started = time.perf_counter_ns()
                try:
                    report = getattr(journal, "_sync_report", None)
                    if report is None:
                        seq = journal.sync()
                    else:
                        seq, err = report()
                except Exception as e:  # handed to every waiter, who decides what to do
                    err = e
                times.observe(time.perf_counter_ns() - started)
                for cb in cbs:
                    try:
                        cb(seq, err)
                    except Exception:
                        log.exception("journal sync callback failed")
                if getattr(journal, "failed", 0) and getattr(journal, "is_open", False):
                    self._schedule_retry(journal)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _schedule_retry(self, journal):
        with self._cond:
            if journal in self._retrying:
                return
            self._retrying.add(journal)
            self._serial += 1
            heapq.heappush(self._retry, (time.monotonic() + RETRY_INTERVAL, self._serial, journal))

    def drain(self, timeout=None):
        """Wait until every request made so far has been served (for tests and shutdown); retries
        of failed journals are not waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout=None):
        """Serve what is pending, then stop the thread."""
        with self._cond:
            self._closing = True
            self._retry = []
            self._cond.notify_all()
        self._thread.join(timeout)


import errno as _errno_mod
_ESHUTDOWN = _errno_mod.ESHUTDOWN


# ---------------------------------------------------------------------------------------------
# the sync-copy failpoint

class _SyncCopy:
    def __init__(self, target, every, most):
        self.target = target
        self.every = max(1, every)
        self.most = most
        self.count = 0
        self.made = 0
        self.lock = threading.Lock()

    def __call__(self, journal):
        with self.lock:
            self.count += 1
            if self.made >= self.most or self.count % self.every:
                return
            self.made += 1
            n = self.made
        t = time.monotonic()
        root = journal.directory
        for up in (1, 2, 3):
            cand = os.path.dirname(root) if up == 1 else os.path.dirname(cand)
            if os.path.exists(os.path.join(cand, "config.sqlite")):
                root = cand
                break
        dest = os.path.join(self.target, "%06d" % n)
        shutil.copytree(root, os.path.join(dest, os.path.basename(root)),
                        ignore=shutil.ignore_patterns("lock", "ftd"))
        w, off = journal.durable_position
        with open(os.path.join(dest, "failpoint.json"), "w") as f:
            json.dump(dict(monotonic=t, queue=str(journal.name), journal=journal.directory,
                           synced_seq=journal.synced_seq, file=w, offset=off,
                           root=os.path.basename(root)), f)


def _failpoint():
    target = os.environ.get("CYPID_FAILPOINT_SYNC_COPY")
    if not target:
        return None
    os.makedirs(target, exist_ok=True)
    return _SyncCopy(target, int(os.environ.get("CYPID_FAILPOINT_SYNC_COPY_EVERY", "1")),
                     int(os.environ.get("CYPID_FAILPOINT_SYNC_COPY_MAX", "200")))


failpoint_sync_copy = _failpoint()
