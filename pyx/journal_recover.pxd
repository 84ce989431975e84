# cython: language_level=3
"""cypid.pyx.journal_recover: making a new journal and recovering an existing one
(docs/JOURNAL-FORMAT.md, "Recovery")."""
from cypid.pyx.journal_base cimport JournalBase


from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t


# The scan's live set while no record is transactional (journal_recover.pyx).
cdef struct RRec:
    uint64_t rid
    uint64_t seq            # original seq (queue order)
    uint64_t rseq           # seq of the record itself
    uint64_t off
    uint64_t alen
    uint64_t dlen
    uint32_t fidx
    uint32_t dcount
    uint32_t doff
    uint16_t uflags
    uint8_t dead


cdef struct RecSet:
    RRec* recs
    size_t n, cap
    uint64_t* keys          # rid table: keys[i] -> vals[i] (index in recs), vals -1 = empty slot
    int64_t* vals
    size_t tcap             # power of two
    bint by_rid             # every record's rid is above the one before: no table, binary search


cdef struct SeqIdx:
    uint64_t seq
    size_t idx



cdef class JournalRecovery(JournalBase):
    cdef _recover_in(self, dict headers, dict sizes, list damage, bint load_data, RecSet* rs)
    cdef list _materialize(self, RecSet* rs)
    cdef uint32_t _crc_window(self, int idx, uint64_t pos, uint64_t n, uint32_t crc,
                              uint64_t* took) except? 0xFFFFFFFF
