"""At least once through failover (ha/README.md): a producer's message is settled only when every
ready backup has it, so kill -9 of the primary under load, then promotion of a backup, loses nothing
the producer was told is accepted."""
import asyncio
import signal
import threading

import pytest

from cypid.client import connect, encode_message
from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HaCluster, HaConsole, queue_depths, wait_status

BROKER_ID = "org.apache.qpid.broker:broker:amqp-broker"
BODY = b"\0" * 16
MESSAGE = {d: encode_message(BODY, durable=d) for d in (False, True)}


def seq_offset(durable):
    return len(MESSAGE[durable]) - len(BODY)


def create_queue(broker, name, durable):
    with HaConsole(broker.url) as c:
        c.call("create", {"type": "queue", "name": name, "strict": True,
                          "properties": {"durable": durable, "qpid.max_size": 0, "qpid.max_count": 0}},
               object_name=BROKER_ID)


class Producer(threading.Thread):
    """Sends numbered messages in batches on its own loop until its connection breaks; ``accepted``
    is how many were settled (accepted: a single queue settles in order)."""

    def __init__(self, url, queue, durable, batch=100):
        super().__init__(daemon=True)
        self.url, self.queue, self.durable, self.batch = url, queue, durable, batch
        self.accepted = 0
        self.error = None

    def run(self):
        asyncio.run(self._run())

    async def _run(self):
        conn = await connect(self.url, timeout=30)
        snd = await conn.sender(self.queue, window=1000)
        n = 0
        try:
            while True:
                await snd.send(MESSAGE[self.durable], count=self.batch, seq_offset=seq_offset(self.durable),
                               seq=n)
                n += self.batch
                while snd.outstanding > 500:
                    snd.check_attached()        # raises once the connection is gone
                    await asyncio.sleep(0.001)  # poll: until the broker settles some (or the connection goes)
                    self.accepted = snd.sent - snd.outstanding
                self.accepted = snd.sent - snd.outstanding
        except Exception as e:
            self.accepted = snd.sent - snd.outstanding
            self.error = e
        finally:
            conn.abort()


async def _drain(url, queue, count):
    conn = await connect(url, timeout=30)
    rcv = await conn.receiver(queue, credit=1000)
    seqs = []
    for _ in range(count):
        data = await rcv.get_raw(timeout=60)
        seqs.append(int.from_bytes(data[-len(BODY):-len(BODY) + 8], "big"))
    await conn.close()
    return seqs


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_kill_primary_under_load_loses_no_accepted_message(brokers, durable):
    cluster = HaCluster(brokers, 3)
    create_queue(cluster[0], "load", durable)
    wait_until(lambda: "load" in queue_depths(cluster[1]) and "load" in queue_depths(cluster[2]), 60,
               interval=0.05)
    producer = Producer(cluster[0].url, "load", durable)
    producer.start()
    wait_until(lambda: producer.accepted >= 3000 or producer.error, 120)
    cluster.kill(0)
    producer.join(60)
    accepted = producer.accepted
    assert accepted >= 3000 and producer.error is not None
    cluster.promote(1)
    depth = queue_depths(cluster[1])["load"]
    seqs = asyncio.run(_drain(cluster[1].url, "load", depth))
    missing = set(range(accepted)) - set(seqs)
    assert not missing, "%d accepted messages lost (of %d), e.g. %s" % (len(missing), accepted,
                                                                         sorted(missing)[:5])
    assert len(seqs) == len(set(seqs))      # no client resend here: no duplicates either
    wait_status(cluster[2], "ready")


def ready_pair_with_queue(brokers):
    """A primary and a ready backup sharing the non-durable queue ``q``."""
    cluster = HaCluster(brokers, 2)
    create_queue(cluster[0], "q", False)
    wait_until(lambda: "q" in queue_depths(cluster[1]), 60, interval=0.05)
    return cluster


def test_a_stalled_ready_backup_holds_the_producer(brokers):
    cluster = ready_pair_with_queue(brokers)

    async def run():
        conn = await connect(cluster[0].url, timeout=30)
        snd = await conn.sender("q")
        cluster[1].signal(signal.SIGSTOP)
        try:
            await snd.send(MESSAGE[False])
            await asyncio.to_thread(wait_until, lambda: queue_depths(cluster[0]).get("q") == 1, 60)
            await conn.sender("q")          # a round trip: any settlement sent before it has arrived
            held = snd.outstanding
        finally:
            cluster[1].signal(signal.SIGCONT)
        await snd.wait_settled(timeout=60)
        await conn.close()
        return held
    assert asyncio.run(run()) == 1


def test_a_message_consumed_before_the_backup_has_it_is_settled(brokers):
    """qpidd's QueueGuard: a copy that leaves the primary's queue (consumed) before a ready backup
    acknowledged it no longer waits for that backup; the producer is settled at once."""
    cluster = ready_pair_with_queue(brokers)

    async def run():
        conn = await connect(cluster[0].url, timeout=30)
        snd = await conn.sender("q")
        rcv = await conn.receiver("q", credit=10)
        cluster[1].signal(signal.SIGSTOP)
        try:
            await snd.send(MESSAGE[False])
            await rcv.get_raw(timeout=60)       # consumed (auto-accepted) on the primary
            await asyncio.to_thread(wait_until, lambda: queue_depths(cluster[0]).get("q") == 0, 60)
            await asyncio.wait_for(snd.wait_settled(), 30)
            held = snd.outstanding
        finally:
            cluster[1].signal(signal.SIGCONT)
        await conn.close()
        return held
    assert asyncio.run(run()) == 0
