"""Random append / dequeue / update / sync / crash sequences against a model.

A crash closes the journal without syncing (nothing appended since the last sync is in a file)
and then leaves a torn write after the durable end (zeroes or garbage from a random byte on, or
the file truncated there). Recovery must then give the model's state after some prefix of the operations that
contains every operation whose sync completed, with the same bytes and delivery counts.
"""
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypid.pyx.journal import Journal, JournalFull

HDR = 4096
FILES, PAGES = 4, 1
DSZ = PAGES * 65536


def data_for(rid, size):
    unit = rid.to_bytes(8, "little")
    return (unit * (size // 8 + 1))[:size]


sizes = st.one_of(st.integers(0, 3000), st.integers(3000, 20000), st.just(70000))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("enq"), sizes),
        st.tuples(st.just("deq"), st.integers(0, 10 ** 6)),
        st.tuples(st.just("upd"), st.integers(0, 10 ** 6)),
        st.tuples(st.just("sync"), st.none()),
        st.tuples(st.just("crash"), st.floats(0, 1)),
    ),
    max_size=120,
)


def crash(j, d, frac, rnd_truncate):
    """Close without a sync (what was appended since the last sync never reaches a file: the
    writer writes only when it syncs), then leave a torn write after the durable end: garbage
    from a random point on, or the file cut there."""
    w, off = j.durable_position
    j.close(sync=False)
    path = os.path.join(d, "journal-%04d.cjf" % w)
    if not os.path.exists(path):
        return
    start = off + int((DSZ - off) * frac)
    if rnd_truncate:
        os.truncate(path, min(os.path.getsize(path), HDR + start))
    else:
        n = min(DSZ - start, 3000)
        with open(path, "r+b") as f:
            f.seek(HDR + start)
            f.write(os.urandom(n) if int(frac * 1000) % 2 else b"\0" * n)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, truncate=st.booleans())
def test_random_histories_recover_a_synced_prefix(ops, truncate):
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "q")
        j = Journal(d, FILES, PAGES)
        model = {}                   # rid -> [data, delivery count], in enqueue order
        states = [[]]                # model snapshots after each op since the last crash
        seqs = [0]                   # the seq of the op that produced each snapshot
        next_rid = 1
        try:
            for op, arg in ops:
                if op == "enq":
                    rid = next_rid
                    next_rid += 1
                    data = data_for(rid, arg)
                    try:
                        seq = j.append_enqueue(rid, data)
                    except JournalFull:
                        assert rid not in j
                        continue
                    model[rid] = [data, 0]
                elif op in ("deq", "upd"):
                    if not model:
                        continue
                    rid = list(model)[arg % len(model)]
                    if op == "deq":
                        seq = j.append_dequeue(rid)
                        del model[rid]
                    else:
                        model[rid][1] += 1
                        seq = j.append_update(rid, model[rid][1])
                elif op == "sync":
                    j.sync()
                    continue
                else:
                    synced = j.synced_seq
                    must = max(i for i, s in enumerate(seqs) if s <= synced)
                    crash(j, d, arg, truncate)
                    j = Journal(d, FILES, PAGES)
                    got = [(r.rid, r.data, r.delivery_count) for r in j.recovered]
                    candidates = states[must:]
                    assert got in candidates, (
                        "recovered %s is not a state from op %d on" % ([g[0] for g in got], must))
                    model = {rid: [data, dc] for rid, data, dc in got}
                    states, seqs = [got], [0]
                    continue
                states.append([(rid, v[0], v[1]) for rid, v in model.items()])
                seqs.append(seq)
            # a clean close and reopen gives exactly the model
            j.close()
            j = Journal(d, FILES, PAGES)
            assert [(r.rid, r.data, r.delivery_count) for r in j.recovered] == states[-1]
            assert j.damage == []
        finally:
            j.close()
