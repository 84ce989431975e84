# cython: language_level=3
"""cypid.pyx.ha_stream: the HA live stream's per-message path (ha/primary.py and ha/backup.py are the
rest; ha/README.md, "The stream" and "At least once").

On the primary: ``ReplicatedQueue`` (a replicated queue's ids and hooks), ``PrimaryCore`` (this loop
turn's enqueues packed into one record blob for every backup, the holds on producers' settlements),
``Blob`` (the holds of one blob's copies for the ready backups) and ``Segment`` (one queue's copies
in a blob). On a backup: ``apply_records``
(a blob's messages into their queues and journals) and ``AllOf`` (the syncs a stream message's
acceptance waits for).
"""
from libc.stdint cimport uint64_t


cdef class Blob:
    cdef public list segs               # its Segments, one per queue (or more)
    cdef public int left                # ready backups that have not acknowledged it
    cdef public bint done               # released (every ready backup it went to has it)
    cdef int finish(self) except -1


cdef class Segment:
    cdef public ReplicatedQueue rq
    cdef public Blob blob
    cdef public uint64_t first          # the replication id of slots[0] (the ids are consecutive)
    cdef public list slots              # per copy: None (no producer yet), False (nothing held), its Pending
    cdef public Py_ssize_t claimed      # slots hold() has looked at
    cdef int release(self, Py_ssize_t k) except -1


cdef class ReplicatedQueue:
    cdef public PrimaryCore primary
    cdef public object queue
    cdef public dict ids                # message -> replication id
    cdef public list segs               # Segments of blobs not released yet, in id order
    cdef Segment open_seg               # this turn's blob's segment of this queue
    cdef public uint64_t next_id
    cdef public object previous_hook    # the store's dequeue_hook, for a durable queue
    # flow control on the stream (ha/flow.py): this turn's live enqueues not yet sent, the least room
    # any backup has left under --ha-flow-messages/--ha-flow-bytes, and whether a backup is over
    cdef public Py_ssize_t open_count, open_bytes, room_count, room_bytes
    cdef public bint flow_stopped
    cdef public bint on_demand          # replicated only for a replica of this queue (ha/replicate.py)
    cdef int held_left(self, uint64_t i) except -1


cdef class PrimaryCore:
    cdef public object loop
    cdef public int senders             # backups the live stream goes to (snapshot sent)
    cdef public int ready               # of them, ready ones (their holds count)
    cdef public bint recovering         # status recovering: every replicated message held
    cdef public list routed             # Segments (None: recovering; a ReplicatedQueue: flow-stopped) since hold()
    cdef public list recovering_holds   # settlements held until the status is active
    cdef public bint flow_bounded       # --ha-flow-messages or --ha-flow-bytes (ha/flow.py)
    cdef public dict flow_holds         # ReplicatedQueue -> [Pending] held until no backup is over
    cdef list flowed                    # this turn's ReplicatedQueues with open counts
    cdef dict deqs                      # ReplicatedQueue -> [ids] not yet sent
    cdef list qnames                    # this turn's blob: queue names, index by queue
    cdef dict qindex
    cdef Blob blob                      # this turn's holds, or None
    cdef char* buf                      # this turn's records
    cdef Py_ssize_t length, capacity, count
    cdef bint scheduled
    cdef int add(self, ReplicatedQueue rq, object msg, uint64_t i) except -1
    cdef Segment new_segment(self, ReplicatedQueue rq, uint64_t i)
    cdef int removed(self, ReplicatedQueue rq, uint64_t i) except -1
    cdef int put(self, const char* data, Py_ssize_t n) except -1
    cdef int schedule(self) except -1
    cpdef hold(self, outcome)
    cpdef acknowledged(self, Blob blob)


cdef class AllOf:
    cdef public int left
    cdef public object outcome          # a failed sync's outcome (Pending.attach may set it)
    cdef object done
    cdef bint started
    cdef int check(self) except -1
