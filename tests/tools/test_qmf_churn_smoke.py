"""perf/qmf_churn.py (10,000 queue creates and deletes through QMF) still runs: a small count here."""
from __future__ import annotations

import re

from cypid.perf import qmf_churn


def test_churn_smoke(cypid, capsys):
    assert qmf_churn.main(["--count", "50", "-b", cypid.url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^create\s+50 queues in .* /s", out, re.M)
    assert re.search(r"^delete\s+50 queues in .* /s", out, re.M)
