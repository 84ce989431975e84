"""The daemon's cyclic-GC settings once it serves (broker/main.py settle_gc)."""
import gc
import weakref

from cypid.broker import main


class _Node:
    pass


def test_settle_gc_freezes_start_up_and_raises_the_young_threshold():
    saved = gc.get_threshold()
    try:
        gc.unfreeze()
        main.settle_gc()
        assert gc.get_freeze_count() > 0        # what start-up made is out of the generations
        assert gc.get_threshold() == (main.GC_YOUNG_THRESHOLD,) + saved[1:]
        assert main.GC_YOUNG_THRESHOLD > 700
        # garbage cycles made afterwards are still collected
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
