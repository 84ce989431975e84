"""HA states, promotion rules, the habroker QMF object and client admission, on real brokers
(../shared/reference/ha.md sections 2, 6 and 7: what qpid-ha sees)."""
import pytest
from proton import ConnectionException
from proton.utils import BlockingConnection

from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HA_ARGS, HaCluster, HaConsole, QmfError, fill, status_of, wait_status


def test_habroker_object_on_a_joining_broker(brokers):
    b = brokers(*HA_ARGS, "--ha-public-url", "amqp:tcp:10.0.0.1:5672")
    with HaConsole(b.url) as c:
        ha = c.habroker()
        system = c.query("system")[0]
    assert ha["name"] == "ha-broker"
    assert ha["status"] == "joining"
    assert ha["brokersUrl"] == ""
    assert ha["publicUrl"] == "amqp:tcp:10.0.0.1:5672"
    assert ha["replicateDefault"] == "all"
    assert ha["members"] == []
    assert ha["systemId"] == system["systemId"]


def test_no_habroker_object_without_ha_and_standalone_with_queue_replication(brokers):
    plain = brokers()
    with HaConsole(plain.url) as c:
        assert c.habroker() is None
    single = brokers("--ha-queue-replication", "yes")
    with HaConsole(single.url) as c:
        assert c.status() == "standalone"
        assert c.habroker()["replicateDefault"] == "none"


def test_backup_drops_clients_and_admits_admin_tools(brokers):
    """As qpidd's backups: an ordinary client's connection is dropped, without an open (a client's
    reconnect list moves on to its next address)."""
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    with pytest.raises(ConnectionException) as info:
        conn = BlockingConnection(backup.url, timeout=30)
        conn.create_sender("amq.direct")
    text = str(info.value)
    assert "redirect" not in text and "aborted" in text
    with HaConsole(backup.url) as c:          # qpid.ha-admin: admitted
        assert c.status() == "ready"
    conn = BlockingConnection(primary.url, timeout=30)      # the primary takes everyone
    conn.create_sender("amq.direct")
    conn.close()


def test_redirect_info_names_the_primary(brokers):
    """A client that says it follows redirects (cypid.follow-redirect) is told where the primary is."""
    import asyncio

    from cypid.client import ClientError, connect

    cluster = HaCluster(brokers, 2)

    async def attempt():
        try:
            conn = await connect(cluster[1].url, timeout=30, properties={"cypid.follow-redirect": True})
            await conn.session()        # the open is answered, then the connection closed
        except ClientError as e:
            return e
        await conn.close()
        return None

    err = asyncio.run(attempt())
    assert err is not None and err.condition == "amqp:connection:redirect"
    info = {str(k): v for k, v in err.info.items()}
    assert info["port"] == cluster[0].port
    assert info["hostname"] == "127.0.0.1"


def test_promote_rules(brokers):
    cluster = HaCluster(brokers, 2)
    primary, backup = cluster[0], cluster[1]
    with HaConsole(primary.url) as c:
        c.promote()                             # promoting a primary does nothing
        assert c.status() == "active"
        members = c.habroker()["members"]
    assert sorted(m["status"] for m in members) == ["active", "ready"]
    # a third broker that never connected (a long maintenance interval) is joining; an active
    # primary answers in the brokers URL, so it may not be promoted
    late = brokers(*HA_ARGS, "--link-maintenance-interval", "600")
    with HaConsole(late.url) as c:
        assert c.status() == "joining"
        c.set_brokers_url(cluster.url)
        with pytest.raises(QmfError) as info:
            c.promote()
        assert info.value.text == "Joining active cluster, cannot be promoted."
        assert c.status() == "joining"
    assert status_of(backup) == "ready"


def test_lone_joining_broker_may_be_promoted(brokers):
    b = brokers(*HA_ARGS)
    with HaConsole(b.url) as c:
        c.set_brokers_url("amqp:tcp:127.0.0.1:1,tcp:127.0.0.1:%d" % b.port)   # nobody else answers
        c.promote()
        assert c.status() == "active"
    conn = BlockingConnection(b.url, timeout=30)
    conn.create_sender("amq.direct")
    conn.close()


def test_catchup_backup_cannot_be_promoted(brokers):
    cluster = HaCluster(brokers, 1)
    fill(cluster[0], "deep", 100000, durable=False)
    late = brokers(*HA_ARGS)
    with HaConsole(late.url) as c:
        c.set_brokers_url(cluster.url)
        wait_until(lambda: c.status() == "catchup", 60, interval=0.001)
        with pytest.raises(QmfError) as info:
            c.promote()
        assert info.value.text == "Still catching up, cannot be promoted."
    wait_status(late, "ready")


def test_bad_ha_options_stop_the_broker(tmp_path):
    from tests.support.broker import BrokerProcess, BrokerStartError
    for args, text in ((["--ha-replicate", "most"], "--ha-replicate"),
                       (["--ha-brokers-url", "amqp:tcp:host:99999"], "bad port")):
        b = BrokerProcess(tmp_path / args[0].strip("-"), args, start_timeout=20)
        with pytest.raises(BrokerStartError):
            b.start()
        assert text in b.log_text()


def test_status_survives_primary_loss_and_backup_is_promoted(brokers):
    cluster = HaCluster(brokers, 3)
    cluster.kill(0)
    # the backups stay ready (a cluster manager promotes one of them)
    assert status_of(cluster[1]) == "ready"
    cluster.promote(1)
    wait_status(cluster[2], "ready")
    with HaConsole(cluster[1].url) as c:
        statuses = sorted(m["status"] for m in c.habroker()["members"])
    assert statuses == ["active", "ready"]
