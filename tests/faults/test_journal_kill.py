"""kill -9 of a process writing a journal: every record it reported durable is recovered.

The child appends enqueues and dequeues, hands each batch to a JournalWriter (flush_async) and,
from the writer's callback, prints the batch's operations once they are synced (it also prints
each dequeue it is about to make, since an unreported dequeue may still have reached the file). The parent
SIGKILLs it at a random moment, several times over the same journal, and after each kill opens
the journal: every enqueue printed (and not dequeued by a printed dequeue) must be there with
its bytes, and no printed dequeue may have come back.
"""
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from cypid.pyx.journal import Journal

CHILD = r"""
import os, random, sys
from cypid.pyx.journal import Journal, JournalWriter

def data(rid, size):
    unit = rid.to_bytes(8, "little")
    return (unit * (size // 8 + 1))[:size]

d, rid, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
writer = JournalWriter()
j = Journal(d, 4, 2, writer=writer)
live = [r.rid for r in j.recovered]
os.write(1, b"ready %d\n" % len(live))
while True:
    batch = []
    for _ in range(rnd.randint(1, 30)):
        if live and (len(live) > 100 or rnd.random() < 0.45):
            victim = live.pop(rnd.randrange(len(live)))
            os.write(1, b"W %d\n" % victim)       # intent: it may be gone even if never reported
            j.append_dequeue(victim)
            batch.append("D %d" % victim)
        else:
            size = rnd.randint(0, 2000)
            j.append_enqueue(rid, data(rid, size))
            live.append(rid)
            batch.append("E %d %d" % (rid, size))
            rid += 1
    text = ("\n".join(batch) + "\n").encode()
    j.flush_async(lambda seq, err, text=text: os.write(1, text) if err is None else os._exit(3))
"""


def data(rid, size):
    unit = rid.to_bytes(8, "little")
    return (unit * (size // 8 + 1))[:size]


class Lines:
    """Collect a pipe's lines in a thread; wait for a count with a deadline."""

    def __init__(self, pipe):
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for raw in pipe:
            with self.cond:
                if raw.endswith(b"\n"):             # a line cut by the kill is not a report
                    self.lines.append(raw.decode().strip())
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def wait_for(self, n, timeout=30):
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.lines) >= n or None in self.lines, timeout)
        assert ok, "child printed only %d lines in %ss" % (len(self.lines), timeout)
        assert None not in self.lines[:n], "child exited early: %s" % self.lines[-5:]

    def finish(self, timeout=30):
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return [x for x in self.lines if x is not None]


def test_kill9_loses_no_synced_record(tmp_path):
    d = str(tmp_path / "q")
    rnd = random.Random(int(os.environ.get("CYPID_KILL_SEED", "20260525")))
    expected = {}          # rid -> size: what must be recovered
    gone = set()           # rids whose dequeue was reported durable
    next_rid = 1
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, d, str(next_rid), str(rnd.randrange(1 << 30))],
                                stdout=subprocess.PIPE, env=env)
        lines = Lines(proc.stdout)
        try:
            lines.wait_for(1)
            assert lines.lines[0].startswith("ready")
            lines.wait_for(1 + rnd.randint(5, 600))
            if rnd.random() < 0.5:                 # sometimes kill a moment later, mid-burst
                deadline = time.monotonic() + rnd.uniform(0, 0.02)
                while time.monotonic() < deadline:
                    pass
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        reported = lines.finish()[1:]
        assert proc.returncode == -signal.SIGKILL
        may_be_gone = set()  # dequeues the child started but did not report
        for line in reported:
            parts = line.split()
            rid = int(parts[1])
            if parts[0] == "W":
                may_be_gone.add(rid)
            elif parts[0] == "E":
                expected[rid] = int(parts[2])
                next_rid = max(next_rid, rid + 1)
            else:
                expected.pop(rid, None)
                gone.add(rid)
        with Journal(d) as j:
            got = {r.rid: r.data for r in j.recovered}
            assert j.damage == [] or all("after the stop point" not in x.reason for x in j.damage)
        missing = sorted(set(expected) - set(got) - may_be_gone)
        assert not missing, "round %d: synced records lost: %s" % (round_, missing[:20])
        for rid, size in expected.items():
            if rid in got:
                assert got[rid] == data(rid, size), "round %d: rid %d bytes differ" % (round_, rid)
        back = sorted(set(got) & gone)
        assert not back, "round %d: dequeued records came back: %s" % (round_, back[:20])
        # whatever was recovered is the state from now on (unreported records may be there too)
        expected = {rid: len(b) for rid, b in got.items()}
        next_rid = max([next_rid] + [r + 1 for r in got]) + 1000
    assert next_rid > 1000


@pytest.mark.parametrize("n", [1])
def test_child_script_is_valid_python(n):
    compile(CHILD, "child", "exec")
