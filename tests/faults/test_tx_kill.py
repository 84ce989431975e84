"""kill -9 inside durable transactions spanning three journals: all of a transaction or none of it
after the restart, and every commit answered accepted is there (tests/faults/tx_kill_rounds.py).

The suite runs a few rounds (CYPID_TX_KILL_ROUNDS, default 4); ``python -m tests.faults.tx_kill_rounds
--rounds 50`` runs the full test. CYPID_TX_KILL_SEED reproduces a run.
"""
import os
import random

import pytest

from tests.faults.tx_kill_rounds import run

ROUNDS = int(os.environ.get("CYPID_TX_KILL_ROUNDS", "4"))


@pytest.mark.timeout(300)
def test_sigkill_inside_transactions_is_all_or_nothing(tmp_path):
    seed = int(os.environ.get("CYPID_TX_KILL_SEED", "0")) or random.randrange(1 << 32)
    totals = run(ROUNDS, seed, tmp_path)
    assert totals["rounds"] == ROUNDS and totals["transactions"] > 0
