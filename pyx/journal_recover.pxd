# cython: language_level=3
"""cypid.pyx.journal_recover: making a new journal and recovering an existing one
(docs/JOURNAL-FORMAT.md, "Recovery")."""
from cypid.pyx.journal_base cimport JournalBase


from libc.stdint cimport uint32_t, uint64_t


cdef class JournalRecovery(JournalBase):
    cdef uint32_t _crc_window(self, int idx, uint64_t pos, uint64_t n, uint32_t crc,
                              uint64_t* took) except? 0xFFFFFFFF
