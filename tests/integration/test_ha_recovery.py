"""A newly promoted primary (recovering) and qpidd's queue-kind cases: exclusive, temporary and
auto-delete queues (../shared/reference/ha.md section 8: RecoveryTests, ReplicationTests 9 and 11)."""
import asyncio
import signal

from proton.utils import BlockingConnection

from cypid.client import connect, encode_message
from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HaCluster, HaConsole, queue_depths, status_of, wait_status

BROKER_ID = "org.apache.qpid.broker:broker:amqp-broker"


def create_queue(broker, name, **properties):
    with HaConsole(broker.url) as c:
        c.call("create", {"type": "queue", "name": name, "strict": True, "properties": properties},
               object_name=BROKER_ID)


async def send_and_check_held(broker, queue):
    """Send one message; return how many deliveries are unsettled once it is queued, and the sender."""
    conn = await connect(broker.url, timeout=30)
    snd = await conn.sender(queue)
    await snd.send(encode_message(b"m"))
    await asyncio.to_thread(wait_until, lambda: queue_depths(broker).get(queue) == 1, 60)
    await conn.sender(queue)            # a round trip: a settlement sent before it has arrived
    return conn, snd, snd.outstanding


def test_recovering_primary_holds_messages_until_the_expected_backup_is_ready(brokers):
    cluster = HaCluster(brokers, 3)
    create_queue(cluster[0], "q")
    wait_until(lambda: "q" in queue_depths(cluster[2]), 60, interval=0.05)
    cluster[2].signal(signal.SIGSTOP)
    cluster.kill(0)
    with HaConsole(cluster[1].url) as c:
        c.promote()
        assert c.status() == "recovering"       # b2 was ready under b0: it is expected

    async def run():
        conn, snd, held = await send_and_check_held(cluster[1], "q")
        cluster[2].signal(signal.SIGCONT)
        await snd.wait_settled(timeout=60)
        await conn.close()
        return held
    try:
        assert asyncio.run(run()) == 1
    finally:
        cluster[2].signal(signal.SIGCONT)
    assert status_of(cluster[1]) == "active"
    wait_status(cluster[2], "ready")
    assert queue_depths(cluster[2])["q"] == 1


def test_backup_timeout_releases_a_recovering_primary(brokers):
    cluster = HaCluster(brokers, 3, args=("--ha-backup-timeout", "1"))
    create_queue(cluster[0], "q")
    wait_until(lambda: "q" in queue_depths(cluster[2]), 60, interval=0.05)
    cluster.kill(0)             # first: a live primary would tell b1 that b2 left
    cluster.kill(2)
    with HaConsole(cluster[1].url) as c:
        c.promote()

    async def run():
        conn = await connect(cluster[1].url, timeout=30)
        snd = await conn.sender("q")
        await snd.send(encode_message(b"m"))
        await snd.wait_settled(timeout=60)
        await conn.close()
    asyncio.run(run())
    assert status_of(cluster[1]) == "active"
    cluster[1].wait_for_log("recovering backup timed out")


def test_exclusive_queues_replicate_temporary_ones_do_not(brokers):
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    create_queue(primary, "excl", exclusive=True)
    conn = BlockingConnection(primary.url, timeout=60)
    conn.create_receiver("amq.topic")       # its subscription queue: exclusive and auto-delete
    temp_names = [n for n, q in HaConsole(primary.url).queues().items()
                  if q["exclusive"] and q["autoDelete"] and not n.startswith("qpid.ha-backup.")]
    create_queue(primary, "marker")
    wait_until(lambda: "marker" in queue_depths(backup), 60, interval=0.05)
    with HaConsole(backup.url) as c:
        queues = c.queues()
    assert queues["excl"]["exclusive"] is True
    assert len(temp_names) == 1 and temp_names[0] not in queues
    conn.close()


def test_auto_delete_queue_deleted_on_the_backup_with_the_primary(brokers):
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    create_queue(primary, "auto", **{"auto-delete": True})
    wait_until(lambda: "auto" in queue_depths(backup), 60, interval=0.05)
    conn = BlockingConnection(primary.url, timeout=60)
    rcv = conn.create_receiver("auto")
    rcv.close()                 # the last consumer goes: the primary deletes the queue
    conn.close()
    wait_until(lambda: "auto" not in queue_depths(primary), 60, interval=0.05)
    wait_until(lambda: "auto" not in queue_depths(backup), 60, interval=0.05)
