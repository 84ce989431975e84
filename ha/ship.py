"""Catch-up of durable queues by shipping journal files (ha/README.md, "Catching up a backup").

Primary: when a backup connects, ``ship_job`` takes, in the loop turn of the snapshot, a durable
``all`` queue's ship point (the chain of journal files in use and the write position: every record
of the queue's live set at that instant lies before it) and the map of the journal's record ids to
replication ids. ``Shipper`` then reads the files' data areas up to that point in chunks and puts
them on the backup's stream, a bounded number unacknowledged at a time; the live events of the
meantime wait (``RemoteBackup.deferred``) and follow the last chunk, so the backup sees the copy and
then every change made since the ship point, in order, none twice. A file released while it is being
shipped (its messages consumed, or moved forward by compaction) may be reused, so its bytes are no
longer those of the ship point: the queue then falls back to message by message (``jabort``, then
the messages of the ship point still queued).

Backup: ``JournalReceiver`` writes each file into a staging directory in the store (header page
rebuilt, data area as shipped, checksummed per file), syncs them, and hands the directory to the
store (``Store.adopt_journal``), whose ordinary recovery scan makes the queue's messages; the
record-id map then gives each its replication id.

Stream operations (ha/stream.py):

| op | fields |
|---|---|
| jseg | q, count, pages, files ([index, number, fro, first seq] oldest first), rids, ids (u64 arrays) |
| jdata | q, file, off, data (bytes at ``off`` of the file's data area) |
| jdone | q, crcs ({file index: crc32 of its data bytes shipped}), bytes |
| jabort | q (the copy is abandoned; the queue's messages follow message by message) |
"""
import array
import asyncio
import os
import shutil
import time
import zlib

from cypid.pyx.journal_format import file_path, fsync_dir
from cypid.pyx.journal_ship import HEADER_PAGE, header_page, read_data, ship_point

#: queues with fewer messages than this are copied message by message
SHIP_MIN_MESSAGES = 1000
#: bytes of journal data in one stream message
CHUNK = 1 << 20
#: the primary keeps at most this many snapshot messages unacknowledged while shipping
WINDOW = 32
STAGING = "ha-incoming"


class ShipJob:
    """One queue's journal as of the snapshot: its ship point and the ids of its messages."""

    __slots__ = ("rq", "journal", "point", "rids", "ids", "last_id", "count")

    def __init__(self, rq, journal, point, rids, ids, last_id):
        self.rq, self.journal, self.point = rq, journal, point
        self.rids, self.ids, self.last_id = rids, ids, last_id
        self.count = len(rids)


def ship_job(store, rq):
    """A ShipJob for replicated queue ``rq`` if its journal can be shipped now (durable queue whose
    every message is a durable record of it, deep enough to be worth it), else None."""
    queue = rq.queue
    if store is None or queue.msgDepth < SHIP_MIN_MESSAGES:
        return None
    qj = store.journals.get(queue)
    if qj is None or not qj.durable or qj.loader is not None:
        return None
    journal = getattr(qj.journal, "_journal", qj.journal)       # under a test failpoint wrapper
    if getattr(journal, "failed", 1) or not journal.is_open:
        return None
    rids = array.array("Q")
    ids = array.array("Q")
    qrids, qids = qj.rids, rq.ids
    for msg in queue.all_messages():
        i = qids.get(msg)
        if i is None:
            continue
        rid = qrids.get(msg)
        if rid is None or not msg.durable:
            return None             # a transient message (or one flowed to disk): not in the journal
        rids.append(rid)
        ids.append(i)
    return ShipJob(rq, journal, ship_point(journal), rids, ids, rq.next_id - 1)


class Shipper:
    """Ships a new backup's journal jobs, then lets its deferred live events go."""

    def __init__(self, primary, rb, jobs):
        self.primary = primary
        self.rb = rb
        self.jobs = jobs
        self.log = primary.log
        self.task = primary.loop.create_task(self.run())

    def cancel(self):
        self.task.cancel()

    async def run(self):
        rb = self.rb
        t0 = time.monotonic()
        shipped = fallback = size = 0
        try:
            for job in self.jobs:
                if job.rq.queue.deleted:
                    continue
                n = await self._ship(job)
                if n is None:
                    fallback += 1
                else:
                    shipped += 1
                    size += n
            rb.snapshot_done()
            rb.undefer()
        except asyncio.CancelledError:
            raise
        except Exception:       # a bug: the backup must not wait for ever; drop it
            self.log.exception("HA: shipping journals to backup %s failed", rb.system_id)
            rb.abandon()
            return
        self.log.log(25, "HA: backup %s:%s: %d journal(s) shipped (%.1f MiB) in %.2f s%s",
                     rb.info.get("host-name"), rb.info.get("port"), shipped, size / 1048576.0,
                     time.monotonic() - t0,
                     ", %d queue(s) copied message by message instead" % fallback if fallback else "")

    async def _ship(self, job):
        """Bytes shipped, or None when the queue fell back to message by message."""
        rb = self.rb
        name = job.rq.queue.name
        point = job.point
        files = point["files"]
        w, woff = point["write"]
        dsz = point["data_size"]
        rb.snap("jseg", q=name, count=point["file_count"], pages=point["file_size"],
                files=[list(f) for f in files], rids=job.rids.tobytes(), ids=job.ids.tobytes())
        crcs = {}
        total = 0
        first = True
        for index, number, fro, _ in files:
            end = woff if index == w else dsz
            pos = fro if first else 0
            first = False
            crc = 0
            while pos < end:
                n = min(CHUNK, end - pos)
                data = read_data(job.journal, index, number, pos, n) if not job.rq.queue.deleted else None
                if data is None:
                    self._fallback(job)
                    return None
                crc = zlib.crc32(data, crc)
                rb.snap("jdata", q=name, file=index, off=pos, data=data)
                pos += n
                total += n
                await rb.window(WINDOW)
            crcs[index] = crc
            if index == w:
                break
        rb.snap("jdone", q=name, crcs=crcs, bytes=total)
        return total

    def _fallback(self, job):
        rq = job.rq
        self.log.log(25, "HA: queue %r: a journal file was released while it was shipped; its messages "
                     "go message by message", rq.queue.name)
        self.rb.snap("jabort", q=rq.queue.name)
        if not rq.queue.deleted:
            self.primary.snapshot_messages(self.rb, rq, job.last_id)


class JournalReceiver:
    """The backup's side: one queue's journal being received."""

    def __init__(self, backup, f):
        self.backup = backup
        self.store = backup.nodes.store
        self.name = str(f["q"])
        self.queue = backup.nodes.queues.get(self.name)
        qj = self.store.journals.get(self.queue) if self.store is not None and self.queue is not None else None
        if qj is None or not qj.durable:
            raise ValueError("HA: journal of queue %r shipped, but it has no durable queue here" % self.name)
        self.t0 = time.monotonic()
        self.count, self.pages = int(f["count"]), int(f["pages"])
        self.dsz = self.pages * 65536
        self.files = [tuple(int(x) for x in entry) for entry in f["files"]]
        self.rids = array.array("Q")
        self.rids.frombytes(bytes(f["rids"]))
        self.ids = array.array("Q")
        self.ids.frombytes(bytes(f["ids"]))
        self.dir = os.path.join(self.store.directory, STAGING, os.path.basename(qj.journal.directory))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.fds = {}
        self.crcs = {}
        self.loop = backup.loop
        self.current = None         # the file being received; the ones before it are being synced
        self.syncs = []
        self.synced = set()         # indexes of the files whose sync was started
        head = self.files[0][1] if self.files else 1
        indexes = {entry[0] for entry in self.files}
        if 0 not in indexes:            # file 0 holds the checkpoint even when it is free
            self._file(0, 0, 0, 0, head)
        for index, number, fro, first_seq in self.files:
            self._file(index, number, fro, first_seq, head if index == 0 else 0)

    def _file(self, index, number, fro, first_seq, head):
        fd = os.open(file_path(self.dir, index), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.fds[index] = fd
        self.crcs[index] = 0
        os.pwrite(fd, header_page(index, self.count, self.pages, self.name, number, first_seq, fro, head), 0)
        os.ftruncate(fd, HEADER_PAGE + self.dsz)

    def data(self, f):
        index, off, data = int(f["file"]), int(f["off"]), f["data"]
        fd = self.fds.get(index)
        if fd is None or off + len(data) > self.dsz:
            raise ValueError("HA: journal data of queue %r for file %d at %d is outside the copy"
                             % (self.name, index, off))
        if index != self.current:           # the previous file is complete: sync it meanwhile
            if self.current is not None:
                self.syncs.append(self.loop.run_in_executor(None, os.fsync, self.fds[self.current]))
                self.synced.add(self.current)
            self.current = index
        os.pwrite(fd, data, HEADER_PAGE + off)
        self.crcs[index] = zlib.crc32(data, self.crcs[index])

    def close(self):
        fds, self.fds = self.fds, {}
        for fd in fds.values():
            os.close(fd)

    def abort(self):
        for sync in self.syncs:
            sync.add_done_callback(_ignore)
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def done(self, f, loop):
        """Check, sync, adopt; returns {replication id: message} of the queue's messages."""
        crcs = {int(k): int(v) for k, v in (f.get("crcs") or {}).items()}
        for index, crc in crcs.items():
            if self.crcs.get(index) != crc:
                self.abort()
                raise ValueError("HA: journal file %d of queue %r arrived damaged (crc %08x, the primary "
                                 "sent %08x)" % (index, self.name, self.crcs.get(index, 0), crc))
        t1 = time.monotonic()
        syncs, self.syncs = self.syncs, []
        await asyncio.gather(*syncs)
        fds = [fd for i, fd in self.fds.items() if i not in self.synced]
        await loop.run_in_executor(None, _sync_all, fds, self.dir)
        self.close()
        t2 = time.monotonic()
        queue = self.queue
        count = self.store.adopt_journal(queue, self.dir)
        await loop.run_in_executor(None, fsync_dir, self.store.journals[queue].journal.directory)
        t3 = time.monotonic()
        by_rid = dict(zip(self.rids, self.ids))
        ids = {}
        strays = []
        for msg, rid in self.store.journals[queue].rids.items():
            i = by_rid.get(rid)
            if i is None:
                strays.append(msg)
            else:
                ids[i] = msg
        for msg in strays:          # a record the primary's queue did not hold: never delivered here
            queue.remove(msg)
        self.backup.log.log(25, "HA: queue %r: journal copied from the primary: %d message(s), %.1f MiB "
                            "in %d file(s), %.2f s (received %.2f, synced %.2f, recovered %.2f)",
                            self.name, count - len(strays), int(f.get("bytes") or 0) / 1048576.0,
                            len(self.files), time.monotonic() - self.t0, t1 - self.t0, t2 - t1, t3 - t2)
        return ids


def _ignore(future):
    if not future.cancelled():
        future.exception()


def _sync_all(fds, directory):
    for fd in fds:
        os.fsync(fd)
    fsync_dir(directory)


__all__ = ["ship_job", "Shipper", "JournalReceiver", "SHIP_MIN_MESSAGES"]
