"""The journal side of transactions the broker relies on (broker/transactions.py): a transaction
open at recovery and committed then (its decision is in the transaction log) hands its enqueues to
the store's recovery and takes away what its dequeues removed; one aborted leaves all as it was."""
import pytest

from cypid.pyx.journal import Journal


@pytest.fixture
def jdir(tmp_path):
    return tmp_path / "q"


def _open_with_in_doubt(jdir):
    with Journal(jdir, 4, 8) as j:
        j.append_enqueue(1, b"one")
        j.append_enqueue(2, b"two")
        j.append_enqueue(3, b"three")
        j.append_dequeue(1, xid=b"T")
        j.append_enqueue(10, b"ten", xid=b"T")
        j.append_enqueue(11, b"eleven", xid=b"T")
    return Journal(jdir, 4, 8, load_data=False)


def test_in_doubt_committed_at_recovery_is_what_take_recovered_hands_over(jdir):
    j = _open_with_in_doubt(jdir)
    try:
        assert set(j.in_doubt) == {b"T"}
        j.append_commit(b"T")
        assert [e.rid for e in j.take_recovered()] == [2, 3, 10, 11]
    finally:
        j.close()
    with Journal(jdir, 4, 8) as j:
        assert [r.rid for r in j.recovered] == [2, 3, 10, 11]
        assert j.in_doubt == {}


def test_in_doubt_aborted_at_recovery_leaves_the_rest(jdir):
    j = _open_with_in_doubt(jdir)
    try:
        j.append_abort(b"T")
        assert [e.rid for e in j.take_recovered()] == [1, 2, 3]
    finally:
        j.close()
    with Journal(jdir, 4, 8) as j:
        assert [r.rid for r in j.recovered] == [1, 2, 3]
