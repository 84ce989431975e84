"""A deep durable queue with default options (issue 9, item 10 / Must show 4, short version).

perf/deep_queue.py sends durable 1 KiB messages into one queue of a broker started with default
options, kills it with SIGKILL, restarts it and receives the first message. Here with 20,000
messages (the script's default is a million): every one must be accepted — the journal grows past
its initial 8 x 1.5 MiB instead of refusing after about 8,600 — and the first comes back after the
restart. No timing is asserted (the figures are printed).
"""
from cypid.perf import deep_queue


def test_journal_deep_queue_all_accepted(tmp_path, capsys):
    status = deep_queue.main(["--count", "20000", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    print(out)
    assert "accepted 20000" in out and "all accepted: yes" in out, out
    assert "first message received" in out
    assert status == 0
