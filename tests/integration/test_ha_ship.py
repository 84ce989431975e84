"""Catch-up of durable queues by shipping journal files (ha/ship.py), on real brokers: the backup's
copy is the primary's queue, in order, with the changes made while the files were shipped, and it
survives the primary's death."""
import threading

from proton import Message
from proton.utils import BlockingConnection

from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HA_ARGS, HaCluster, HaConsole, queue_depths, wait_status

from tests.integration.test_ha_replication import browse, create, receive


def send(broker, address, bodies):
    conn = BlockingConnection(broker.url, timeout=60)
    snd = conn.create_sender(address)
    for body in bodies:
        snd.send(Message(body=body, durable=True))
    conn.close()


def body(i):
    return "m%06d-" % i + "x" * 400


def test_durable_queue_shipped_with_the_changes_made_meanwhile(brokers):
    cluster = HaCluster(brokers, 1)
    primary = cluster[0]
    # small files (64 KiB): the queue's journal is a chain of many files
    create(primary, "queue", "deep", durable=True, **{"qpid.file_size": 1, "qpid.max_count": 0,
                                                      "qpid.max_size": 0})
    create(primary, "queue", "light")           # transient queue: message by message
    send(primary, "deep", [body(i) for i in range(3000)])
    send(primary, "light", ["l1", "l2"])
    assert receive(primary, "deep", 200) == [body(i) for i in range(200)]     # the head file mid-way
    backup = brokers(*HA_ARGS)
    # while the backup joins: more messages, and some consumed from the head
    extra = [body(i) for i in range(3000, 3300)]
    sender = threading.Thread(target=send, args=(primary, "deep", extra))
    with HaConsole(backup.url) as c:
        c.set_brokers_url(cluster.url)
    sender.start()
    taken = receive(primary, "deep", 100)
    sender.join()
    wait_status(backup, "ready")
    assert taken == [body(i) for i in range(200, 300)]
    assert backup.log_lines(r"queue 'deep': journal copied from the primary")
    assert primary.log_lines(r"1 journal\(s\) shipped")
    wait_until(lambda: queue_depths(backup).get("deep") == 3000, 60, interval=0.05)
    expected = [body(i) for i in range(300, 3300)]
    assert browse(backup, "deep") == expected == browse(primary, "deep")
    assert browse(backup, "light") == ["l1", "l2"]
    # the backup's copy is what the new primary serves
    cluster.kill(0)
    with HaConsole(backup.url) as c:
        c.promote()
    wait_status(backup, "active")
    send(backup, "deep", [body(3300)])
    assert receive(backup, "deep", 3001) == expected + [body(3300)]


def test_message_path_when_asked(brokers):
    """CYPID_HA_SHIP_JOURNALS=0 on the backup (what perf/ha_catchup.py compares with) copies the same
    queue message by message, with the same contents."""
    cluster = HaCluster(brokers, 1)
    primary = cluster[0]
    create(primary, "queue", "deep", durable=True, **{"qpid.file_size": 1})
    send(primary, "deep", [body(i) for i in range(1500)])
    backup = brokers(*HA_ARGS, env={"CYPID_HA_SHIP_JOURNALS": "0"})
    with HaConsole(backup.url) as c:
        c.set_brokers_url(cluster.url)
    wait_status(backup, "ready")
    assert not backup.log_lines("journal copied")
    assert browse(backup, "deep") == [body(i) for i in range(1500)]
