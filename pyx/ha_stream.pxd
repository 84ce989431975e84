# cython: language_level=3
"""cypid.pyx.ha_stream: the HA live stream's per-message path (ha/primary.py and ha/backup.py are the
rest; ha/README.md, "The stream" and "At least once").

On the primary: ``ReplicatedQueue`` (a replicated queue's ids and hooks), ``PrimaryCore`` (this loop
turn's enqueues packed into one record blob for every backup, the holds on producers' settlements)
and ``Hold`` (one routed message copy's hold for the ready backups). On a backup: ``apply_records``
(a blob's messages into their queues and journals) and ``AllOf`` (the syncs a stream message's
acceptance waits for).
"""
from libc.stdint cimport uint64_t


cdef class Hold:
    cdef object pending                 # the producer's Pending, once hold() claimed it
    cdef ReplicatedQueue rq
    cdef uint64_t id
    cdef int left                       # ready backups that have not acknowledged it
    cdef bint armed                     # sent: ``left`` counts
    cdef bint done                      # released (every ready backup has it, or it left the queue)
    cdef int finish(self) except -1


cdef class ReplicatedQueue:
    cdef public PrimaryCore primary
    cdef public object queue
    cdef public dict ids                # message -> replication id
    cdef public dict guards             # replication id -> Hold not done yet
    cdef public uint64_t next_id
    cdef public object previous_hook    # the store's dequeue_hook, for a durable queue
    # flow control on the stream (ha/flow.py): this turn's live enqueues not yet sent, the least room
    # any backup has left under --ha-flow-messages/--ha-flow-bytes, and whether a backup is over
    cdef public Py_ssize_t open_count, open_bytes, room_count, room_bytes
    cdef public bint flow_stopped
    cdef public bint on_demand          # replicated only for a replica of this queue (ha/replicate.py)


cdef class PrimaryCore:
    cdef public object loop
    cdef public int senders             # backups the live stream goes to (snapshot sent)
    cdef public int ready               # of them, ready ones (their holds count)
    cdef public bint recovering         # status recovering: every replicated message held
    cdef public list routed             # Holds (None: recovering; a ReplicatedQueue: flow-stopped) since hold()
    cdef public list recovering_holds   # settlements held until the status is active
    cdef public bint flow_bounded       # --ha-flow-messages or --ha-flow-bytes (ha/flow.py)
    cdef public dict flow_holds         # ReplicatedQueue -> [Pending] held until no backup is over
    cdef list flowed                    # this turn's ReplicatedQueues with open counts
    cdef dict deqs                      # ReplicatedQueue -> [ids] not yet sent
    cdef list qnames                    # this turn's blob: queue names, index by queue
    cdef dict qindex
    cdef list holds                     # this turn's Holds
    cdef char* buf                      # this turn's records
    cdef Py_ssize_t length, capacity, count
    cdef bint scheduled
    cdef int add(self, ReplicatedQueue rq, object msg, uint64_t i) except -1
    cdef int removed(self, ReplicatedQueue rq, uint64_t i) except -1
    cdef int put(self, const char* data, Py_ssize_t n) except -1
    cdef int schedule(self) except -1
    cpdef hold(self, outcome)
    cpdef acknowledged(self, list holds)


cdef class AllOf:
    cdef public int left
    cdef public object outcome          # a failed sync's outcome (Pending.attach may set it)
    cdef object done
    cdef bint started
    cdef int check(self) except -1
