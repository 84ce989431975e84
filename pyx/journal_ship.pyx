# cython: language_level=3
"""cypid.pyx.journal_ship: read-only access to a journal's files for HA catch-up (ha/ship.py).

A primary ships a durable queue's journal to a new backup as the raw data areas of the files in use
(docs/JOURNAL-FORMAT.md): ``ship_point`` says, at one instant on the loop, which files form the
chain and where the write position is; ``read_data`` copies a range of one of those files' data
area (bytes not yet written come from the write buffer, as every journal read does), provided the
file is still in use with the number it had then -- once a file is released it may be reused, and
its bytes are then no longer the ones of the ship point. The backup writes each file back with
``header_page`` (and file 0's checkpoint naming the chain's first file), so that the ordinary
recovery scan reads exactly the records up to the ship point. Nothing here changes a journal.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from cypid.pyx.journal_base cimport JournalBase
from cypid.pyx.journal_format cimport (
    JRNL_HDR_PAGE, JRNL_CKPT_OFF0, JRNL_CKPT_OFF1, JRNL_MAX_NAME, build_ckpt, build_file_header,
)

HEADER_PAGE = JRNL_HDR_PAGE


def ship_point(JournalBase j):
    """The journal as of now: a dict with ``files`` (the chain in use, oldest first: a list of
    (index, number, fro, first_seq)), ``write`` (index, offset) of the next record byte,
    ``data_size`` (bytes of a data area), ``file_count``, ``file_size`` and ``name``."""
    if j.closed:
        raise ValueError("journal %s is closed" % j.name)
    files = []
    for i in j.used:
        files.append((i, j.fnum[i], j.fro[i], j.fseq[i]))
    return {"files": files, "write": (j.w, j.woff), "data_size": j.dsz,
            "file_count": j.file_count, "file_size": j.file_size, "name": j.name}


def read_data(JournalBase j, int index, uint64_t number, uint64_t pos, uint64_t n):
    """``n`` bytes at offset ``pos`` of file ``index``'s data area, or None when that file is no
    longer in use under file ``number`` (released since the ship point: its bytes may be another
    lap's). Raises JournalError naming the file if it cannot be read."""
    if j.closed or index < 0 or index >= j.nfiles or not j.inuse[index] or j.fnum[index] != number:
        return None
    if pos + n > j.dsz:
        raise ValueError("read past the data area (%d + %d > %d)" % (pos, n, j.dsz))
    b = PyBytes_FromStringAndSize(NULL, n)
    j._copy_out(index, pos, 0, PyBytes_AS_STRING(b), n)
    return b


def header_page(int index, int count, int pages, name, uint64_t number, uint64_t first_seq,
                uint64_t fro, uint64_t head=0):
    """A file's 4 KiB header page as the journal writes it; with ``head`` (file 0), a checkpoint
    (generation 1) naming file number ``head`` as the oldest file recovery reads."""
    cdef bytes bname = name.encode("utf-8")[:JRNL_MAX_NAME]
    b = PyBytes_FromStringAndSize(NULL, JRNL_HDR_PAGE)
    cdef char* p = PyBytes_AS_STRING(b)
    memset(p, 0, JRNL_HDR_PAGE)
    build_file_header(p, <uint16_t>index, <uint16_t>count, <uint32_t>pages, bname, len(bname),
                      number, first_seq, fro)
    if head:
        build_ckpt(p + JRNL_CKPT_OFF1, 1, head)
    return b
