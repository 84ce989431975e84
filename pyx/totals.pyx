# cython: language_level=3
"""cypid.pyx.totals: see totals.pxd."""

#: the sums (a deleted queue's stay in the totals)
SUMS = (
    "msgTotalEnqueues", "msgTotalDequeues", "byteTotalEnqueues", "byteTotalDequeues",
    "msgPersistEnqueues", "msgPersistDequeues", "bytePersistEnqueues", "bytePersistDequeues",
    "msgTxnEnqueues", "msgTxnDequeues", "byteTxnEnqueues", "byteTxnDequeues", "msgFtdEnqueues",
    "msgFtdDequeues", "byteFtdEnqueues", "byteFtdDequeues", "releases", "acquires", "discardsTtl",
    "discardsRing", "discardsLvq", "discardsOverflow", "discardsSubscriber", "discardsPurge", "reroutes",
)
#: the levels (a deleted queue's leave the totals with it)
LEVELS = ("msgDepth", "byteDepth", "msgFtdDepth", "byteFtdDepth")
#: the names of the msgs/bytes arrays' slots: name -> (is bytes, way, kind)
_FLOWS = {}
for _way, _suffix in ((T_ENQUEUE, "Enqueues"), (T_DEQUEUE, "Dequeues")):
    for _kind, _middle in ((T_TOTAL, "Total"), (T_PERSIST, "Persist"), (T_FTD, "Ftd")):
        _FLOWS["msg" + _middle + _suffix] = (False, _way, _kind)
        _FLOWS["byte" + _middle + _suffix] = (True, _way, _kind)


cdef class Totals:
    def get(self, name):
        """One figure by its QMF name."""
        flow = _FLOWS.get(name)
        if flow is None:
            return getattr(self, name)
        is_bytes, way, kind = flow
        return self.bytes[way][kind] if is_bytes else self.msgs[way][kind]

    def add(self, name, int64_t n):
        """Add ``n`` to one figure."""
        flow = _FLOWS.get(name)
        if flow is None:
            setattr(self, name, getattr(self, name) + n)
            return
        is_bytes, way, kind = flow
        if is_bytes:
            self.bytes[<int>way][<int>kind] += n
        else:
            self.msgs[<int>way][<int>kind] += n

    def attach(self, queue):
        """From now on ``queue`` counts into these totals; what it counted before is added."""
        if queue.totals is self:
            return
        for name in SUMS + LEVELS:
            self.add(name, getattr(queue, name))
        queue.totals = self

    def detach(self, queue):
        """``queue`` is gone: its levels leave the totals and it counts on its own from now on."""
        if queue.totals is not self:
            return
        for name in LEVELS:
            self.add(name, -getattr(queue, name))
        queue.totals = Totals()

    def values(self):
        """Every figure, as a dict (the broker object's statistics)."""
        return {name: self.get(name) for name in SUMS + LEVELS}

    def __repr__(self):
        return "<cypid Totals enqueues=%d msgDepth=%d>" % (self.msgs[T_ENQUEUE][T_TOTAL], self.msgDepth)
