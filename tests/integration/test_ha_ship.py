"""Catch-up of durable queues by shipping journal files (ha/ship.py), on real brokers: the backup's
copy is the primary's queue, in order, with the changes made while the files were shipped, and it
survives the primary's death."""
import asyncio
import threading

from proton import Message
from proton.utils import BlockingConnection

from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HA_ARGS, HaCluster, HaConsole, digest, fill, queue_depths, wait_status

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


# -- the fall-back to message by message (ha/ship.py: ship_job's conditions, and a file released while
#    it is shipped) --------------------------------------------------------------------------------

def test_a_transient_message_on_a_durable_queue_means_message_by_message(brokers):
    """ship_job refuses a queue holding a message that is not a durable record of its journal: the
    queue is copied message by message, identical."""
    cluster = HaCluster(brokers, 1)
    primary = cluster[0]
    create(primary, "queue", "deep", durable=True, **{"qpid.file_size": 1})
    send(primary, "deep", [body(i) for i in range(1500)])
    conn = BlockingConnection(primary.url, timeout=60)
    conn.create_sender("deep").send(Message(body=body(1500), durable=False))
    conn.close()
    backup = brokers(*HA_ARGS)
    with HaConsole(backup.url) as c:
        c.set_brokers_url(cluster.url)
    wait_status(backup, "ready")
    assert not backup.log_lines("journal copied") and not primary.log_lines(r"journal\(s\) shipped")
    assert browse(backup, "deep") == [body(i) for i in range(1501)] == browse(primary, "deep")


class HoldingProxy:
    """A TCP relay in front of the primary for one backup: it stops passing the primary's bytes to
    the backup once ``limit`` bytes have gone through (the backup then acknowledges nothing more, and
    the primary's shipper waits at its window), until ``release()``."""

    def __init__(self, target_port, limit):
        self.target_port, self.limit = target_port, limit
        self.passed = 0
        self.loop = asyncio.new_event_loop()
        self.released = None
        self.port = None
        self.writers = []
        started = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(30)

    def _main(self, started):
        asyncio.set_event_loop(self.loop)
        self.released = asyncio.Event()

        async def serve():
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            async with server:
                await server.serve_forever()
        try:
            self.loop.run_until_complete(serve())
        except (Exception, asyncio.CancelledError):
            pass
        finally:
            self.loop.close()

    async def _client(self, reader, writer):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_w]

        async def pump(src, dst, held):
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if held:
                        if self.passed >= self.limit:
                            await self.released.wait()
                        self.passed += len(data)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pump(reader, up_w, False), pump(up_r, writer, True))

    def release(self):
        self.loop.call_soon_threadsafe(self.released.set)

    def close(self):
        def stop():
            for w in self.writers:
                w.close()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(30)


def test_a_file_released_while_shipped_falls_back_to_message_by_message(brokers):
    """The backup's link stops passing the primary's bytes after 1 MiB (the shipper then waits at its
    window of 32 chunks, at most ~50 of the queue's ~330 files shipped); meanwhile a consumer takes
    the first 6000 messages (~100 files) and a producer sends 3000 more: the journal's head files are
    released as its write position crosses into new files, files not shipped yet among them. When the link passes bytes again, the shipper
    finds the next file released: jabort, and the ship point's messages still queued go message by
    message. The backup's copy is the primary's queue."""
    cluster = HaCluster(brokers, 1, args=("--ha-flow-messages", "0"))    # the producer is not held
    primary = cluster[0]
    create(primary, "queue", "deep", durable=True, **{"qpid.file_size": 1, "qpid.max_count": 0,
                                                      "qpid.max_size": 0})
    total = 20000
    fill(primary, "deep", total, 1024)
    proxy = HoldingProxy(primary.port, 1 << 20)
    try:
        # a long heartbeat: the held link must not be given up while the consumer works
        backup = brokers(*HA_ARGS, "--link-heartbeat-interval", "120")
        with HaConsole(backup.url) as c:
            c.set_brokers_url("127.0.0.1:%d,%s" % (proxy.port, backup.url))
        wait_until(lambda: primary.log_lines(r"HA: backup .* connected: .* 1 queue\(s\) by journal"), 60,
                   interval=0.05)
        wait_until(lambda: proxy.passed >= proxy.limit, 60, interval=0.05)
        taken, more = 6000, 3000
        left = total - taken + more
        conn = BlockingConnection(primary.url, timeout=60)
        rcv = conn.create_receiver("deep", credit=1000)
        for _ in range(taken):
            rcv.receive(timeout=60)
            rcv.accept()
        conn.close()
        fill(primary, "deep", more, 1024)
        wait_until(lambda: queue_depths(primary)["deep"] == left, 60, interval=0.05)
        proxy.release()
        wait_status(backup, "ready", timeout=120)
    finally:
        proxy.release()
    assert len(backup.log_lines(r"HA: connected to primary")) == 1        # one link, held, not a new one
    assert primary.log_lines(r"queue 'deep': a journal file was released while it was shipped")
    assert not backup.log_lines("journal copied")
    assert queue_depths(backup)["deep"] == left
    assert digest(backup, "deep", left, 1024) == digest(primary, "deep", left, 1024)
    proxy.close()
