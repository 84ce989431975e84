"""kill -9 of a broker taking durable messages: every message whose ``accepted`` reached its
producer is there after the restart, none lost, in order per producer (tests/faults/crash_rounds.py:
three producers, one accepting consumer, a small wrapping journal, a flow-to-disk queue).

The suite runs a few rounds (CYPID_CRASH_ROUNDS, default 5); ``python -m tests.faults.crash_rounds
--rounds 100`` runs the full test. CYPID_CRASH_SEED reproduces a run.
"""
import pytest

from tests.faults.crash_rounds import run
from tests.faults.rounds import suite_rounds


@pytest.mark.timeout(300)
def test_sigkill_loses_no_acknowledged_message(tmp_path):
    totals = suite_rounds(run, tmp_path, "CYPID_CRASH_ROUNDS", 5, "CYPID_CRASH_SEED")
    assert totals["acked"] > 0
