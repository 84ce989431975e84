"""kill -9 inside durable transactions spanning three journals: all of a transaction or none of it
after the restart, and every commit answered accepted is there (tests/faults/tx_kill_rounds.py; the
suite runs CYPID_TX_KILL_ROUNDS rounds, 4 unless set, and CYPID_TX_KILL_SEED reproduces a run;
``python -m tests.faults.tx_kill_rounds --rounds 50`` runs the full test)."""
import pytest

from tests.faults import tx_kill_rounds
from tests.faults.rounds import suite_rounds

pytestmark = pytest.mark.timeout(300)


def test_sigkill_inside_transactions_is_all_or_nothing(tmp_path):
    totals = suite_rounds(tx_kill_rounds.run, tmp_path, "CYPID_TX_KILL_ROUNDS", 4, "CYPID_TX_KILL_SEED")
    assert totals["transactions"] > 0, totals
