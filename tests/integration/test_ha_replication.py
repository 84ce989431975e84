"""Replication of configuration and messages from a primary to its backups, on real brokers
(qpidd's ReplicationTests, ../shared/reference/ha.md section 8, as far as cypid has them)."""
from proton import Message
from proton.utils import BlockingConnection

from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HA_ARGS, HaCluster, HaConsole, fill, queue_depths, wait_status

BROKER_ID = "org.apache.qpid.broker:broker:amqp-broker"


def create(broker, kind, name, **properties):
    with HaConsole(broker.url) as c:
        c.call("create", {"type": kind, "name": name, "properties": properties, "strict": True},
               object_name=BROKER_ID)


def delete(broker, kind, name):
    with HaConsole(broker.url) as c:
        c.call("delete", {"type": kind, "name": name, "options": {}}, object_name=BROKER_ID)


def objects(broker):
    with HaConsole(broker.url) as c:
        queues = {q["name"]: q for q in c.query("queue")}
        exchanges = {e["name"]: e for e in c.query("exchange")}
        bindings = {(b["exchangeRef"]["_object_name"].split(":", 2)[2],
                     b["queueRef"]["_object_name"].split(":", 2)[2], b["bindingKey"])
                    for b in c.query("binding")}
    return queues, exchanges, bindings


def send(broker, address, bodies, durable=False):
    conn = BlockingConnection(broker.url, timeout=60)
    snd = conn.create_sender(address)
    for body in bodies:
        snd.send(Message(body=body, durable=durable))
    conn.close()


def receive(broker, address, count):
    conn = BlockingConnection(broker.url, timeout=60)
    rcv = conn.create_receiver(address, credit=max(count, 1))
    out = []
    for _ in range(count):
        out.append(rcv.receive(timeout=60).body)
        rcv.accept()
    conn.close()
    return out


def browse(broker, queue):
    """The bodies on ``queue`` of a broker (a backup too: an admin connection), not consuming them."""
    from proton import symbol
    from proton.reactor import Copy
    conn = BlockingConnection(broker.url, timeout=60, properties={symbol("qpid.ha-admin"): 1})
    depth = {q["name"]: q for q in HaConsole(broker.url).query("queue")}[queue]["msgDepth"]
    rcv = conn.create_receiver(queue, options=Copy(), credit=max(depth, 1))
    out = [rcv.receive(timeout=60).body for _ in range(depth)]
    conn.close()
    return out


def wait_depth(broker, queue, depth, timeout=60):
    return wait_until(lambda: queue_depths(broker).get(queue) == depth, timeout, interval=0.05,
                      message=lambda: f"{queue} depth {depth} on {broker}: {queue_depths(broker).get(queue)}")


def test_configuration_replicated_before_and_after_a_backup_connects(brokers):
    cluster = HaCluster(brokers, 1)
    primary = cluster[0]
    create(primary, "queue", "before")
    create(primary, "exchange", "ex-before", **{"exchange-type": "topic"})
    create(primary, "binding", "ex-before/before/a.#")
    create(primary, "queue", "private", **{"qpid.replicate": "none"})
    create(primary, "queue", "config-only", **{"qpid.replicate": "configuration"})
    send(primary, "before", ["b1", "b2"])
    send(primary, "config-only", ["c1"])
    backup = brokers(*HA_ARGS)
    with HaConsole(backup.url) as c:
        c.set_brokers_url(cluster.url + "," + backup.url)
    wait_status(backup, "ready")
    create(primary, "queue", "after", durable=True)
    create(primary, "exchange", "ex-after", **{"exchange-type": "fanout", "alternate-exchange": "ex-before"})
    create(primary, "binding", "ex-after/after/x")
    create(primary, "binding", "amq.topic/after/k")        # built-in exchange: not replicated
    send(primary, "after", ["a1"], durable=True)

    def replicated():
        queues, exchanges, bindings = objects(backup)
        return "after" in queues and ("ex-after", "after", "x") in bindings and \
            queues["after"]["msgDepth"] == 1 and (queues, exchanges, bindings)
    queues, exchanges, bindings = wait_until(replicated, 60)
    assert {"before", "after", "config-only"} <= set(queues) and "private" not in queues
    assert queues["after"]["durable"] is True
    assert exchanges["ex-before"]["type"] == "topic" and exchanges["ex-after"]["type"] == "fanout"
    assert ("ex-before", "before", "a.#") in bindings
    assert not any(b[0] == "amq.topic" for b in bindings)
    assert queues["before"]["msgDepth"] == 2
    assert queues["config-only"]["msgDepth"] == 0
    assert browse(backup, "before") == ["b1", "b2"]
    # consumed on the primary: gone on the backup
    assert receive(primary, "before", 1) == ["b1"]
    wait_depth(backup, "before", 1)
    assert browse(backup, "before") == ["b2"]
    # deletions
    delete(primary, "queue", "after")
    delete(primary, "exchange", "ex-after")
    wait_until(lambda: "after" not in objects(backup)[0] and "ex-after" not in objects(backup)[1], 60,
               interval=0.05)


def test_messages_routed_through_exchanges_and_queue_types(brokers):
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    create(primary, "queue", "lvq", **{"qpid.last_value_queue_key": "k"})
    create(primary, "queue", "ring", **{"qpid.max_count": 3, "qpid.policy_type": "ring"})
    create(primary, "queue", "prio", **{"qpid.priorities": 10})
    create(primary, "exchange", "fan", **{"exchange-type": "fanout"})
    create(primary, "binding", "fan/ring")
    conn = BlockingConnection(primary.url, timeout=60)
    lvq = conn.create_sender("lvq")
    for i, key in enumerate(["a", "b", "a", "a", "b"]):
        lvq.send(Message(body="%s%d" % (key, i), properties={"k": key}))
    fan = conn.create_sender("fan")
    for i in range(5):
        fan.send(Message(body="r%d" % i))
    prio = conn.create_sender("prio")
    for i, p in enumerate([1, 9, 5]):
        prio.send(Message(body="p%d" % p, priority=p))
    conn.close()
    wait_depth(backup, "ring", 3)
    wait_depth(backup, "lvq", 2)
    wait_depth(backup, "prio", 3)
    assert browse(backup, "ring") == ["r2", "r3", "r4"]
    assert sorted(browse(backup, "lvq")) == ["a3", "b4"]
    assert browse(backup, "prio") == browse(primary, "prio")
    assert receive(primary, "prio", 3) == ["p9", "p5", "p1"]
    wait_depth(backup, "prio", 0)


def test_acquired_unaccepted_messages_stay_on_the_backup(brokers):
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    create(primary, "queue", "q")
    send(primary, "q", ["m1", "m2"])
    conn = BlockingConnection(primary.url, timeout=60)
    rcv = conn.create_receiver("q", credit=2)
    got = [rcv.receive(timeout=60).body for _ in range(2)]      # acquired, not accepted
    assert got == ["m1", "m2"]
    assert browse(backup, "q") == ["m1", "m2"]
    rcv.accept()
    conn.close()


def test_backup_down_learns_deletions_and_recreations(brokers):
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    create(primary, "queue", "gone")
    create(primary, "queue", "recreated", **{"qpid.max_count": 5})
    create(primary, "exchange", "xgone", **{"exchange-type": "direct"})
    send(primary, "recreated", ["old"])
    wait_depth(backup, "recreated", 1)
    assert "gone" in queue_depths(backup)
    backup.kill()
    delete(primary, "queue", "gone")
    delete(primary, "exchange", "xgone")
    delete(primary, "queue", "recreated")
    create(primary, "queue", "recreated", **{"qpid.max_count": 7})
    send(primary, "recreated", ["new"])
    create(primary, "queue", "fresh")
    backup.restart(port=backup.port)
    with HaConsole(backup.url) as c:
        c.set_brokers_url(cluster.url)
    wait_status(backup, "ready")
    queues, exchanges, _ = objects(backup)
    assert "gone" not in queues and "xgone" not in exchanges and "fresh" in queues
    assert queues["recreated"]["arguments"].get("qpid.max_count") == 7
    assert browse(backup, "recreated") == ["new"]


def test_kill_primary_then_promote_loses_no_accepted_message(brokers):
    cluster = HaCluster(brokers, 3)
    fill(cluster[0], "durable-q", 2000, size=256, durable=True)
    fill(cluster[0], "transient-q", 2000, size=256, durable=False)
    cluster.kill(0)
    cluster.promote(1)
    new = cluster[1]
    depths = queue_depths(new)
    assert depths["durable-q"] == 2000 and depths["transient-q"] == 2000
    wait_status(cluster[2], "ready")
    assert len(receive(new, "durable-q", 2000)) == 2000


def test_restarted_backup_discards_its_stale_store_and_catches_up(brokers):
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    create(primary, "queue", "dq", durable=True)
    send(primary, "dq", ["d1", "d2", "d3"], durable=True)
    wait_depth(backup, "dq", 3)
    backup.kill()
    assert receive(primary, "dq", 2) == ["d1", "d2"]
    send(primary, "dq", ["d4"], durable=True)
    backup.restart(port=backup.port)
    assert queue_depths(backup)["dq"] == 3          # its own store's stale copy, until it rejoins
    with HaConsole(backup.url) as c:
        c.set_brokers_url(cluster.url)
    wait_status(backup, "ready")
    assert browse(backup, "dq") == ["d3", "d4"]
    # and after a failover the promoted backup serves exactly that
    cluster.kill(0)
    cluster.promote(1)
    assert receive(backup, "dq", 2) == ["d3", "d4"]


def test_replication_with_authentication(brokers, tmp_path):
    from tests.support.sasl import auth_args
    args = auth_args(tmp_path / "sasl", {"ha": "ha-secret", "admin": "admin-secret"})
    args += ["--ha-username", "ha", "--ha-password", "ha-secret", "--ha-mechanism", "PLAIN"]
    cluster = HaCluster(brokers, 2, args=args, credentials="admin:admin-secret@")
    primary, backup = (cluster.admin_url(b) for b in cluster.brokers)
    with HaConsole(primary) as c:
        c.call("create", {"type": "queue", "name": "authq", "properties": {}, "strict": True},
               object_name=BROKER_ID)
    conn = BlockingConnection(primary, timeout=60)
    conn.create_sender("authq").send(Message(body="secret"))
    conn.close()
    wait_until(lambda: queue_depths(backup).get("authq") == 1, 60, interval=0.05)
