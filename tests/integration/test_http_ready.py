"""/readyz and readiness: the hook (``Broker.not_ready``) with a Broker in this process (a real
listener on a free port and an HTTP client in the same loop: the hook is a Python attribute, so the
broker must be here to set it; two brokers in one process, one ready and one not, also show that
nothing of the HTTP side is global); and a real HA cluster, whose backup is alive but not ready."""
import asyncio

import aiohttp
import pytest
from cypid.broker.broker import Broker
from cypid.broker.options import parse_options

from tests.support.ha import (
    HaCluster,
    brokers,  # noqa: F401 (the fixture)
)
from tests.support.http import base_url, get_json, request, sample, scrape, text_string_to_metric_families


def _broker(loop):
    options = parse_options(["--port", "0", "--no-data-dir", "--http-port", "0", "--log-enable", "error+"])
    return Broker(options, loop)


async def _get(session, broker, path):
    async with session.get("http://127.0.0.1:%d%s" % (broker.http.port, path)) as r:
        return r.status, await r.text()


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_backup_is_alive_but_not_ready(loop):
    async def run():
        primary, backup = _broker(loop), _broker(loop)
        await primary.start()
        await backup.start()
        try:
            role = {"name": "backup"}
            backup.not_ready = lambda: "HA backup: clients go to the primary" if role["name"] == "backup" else None
            backup.ha_status = lambda: {"role": role["name"], "primary": "127.0.0.1:%d" % primary.port}
            async with aiohttp.ClientSession() as s:
                assert await _get(s, backup, "/healthz") == (200, "ok\n")
                assert await _get(s, backup, "/readyz") == (503, "HA backup: clients go to the primary\n")
                assert await _get(s, primary, "/readyz") == (200, "ready\n")
                status, body = await _get(s, backup, "/metrics")
                ready = {f.name: f for f in text_string_to_metric_families(body)}["cypid_ready"]
                assert status == 200 and ready.samples[0].value == 0
                async with s.get("http://127.0.0.1:%d/api/ha" % backup.http.port) as r:
                    ha = await r.json()
                assert ha == {"role": "backup", "primary": "127.0.0.1:%d" % primary.port, "enabled": True,
                              "ready": False, "reason": "HA backup: clients go to the primary"}
                role["name"] = "primary"        # promoted: ready from the next request on
                assert await _get(s, backup, "/readyz") == (200, "ready\n")
                backup.not_ready = lambda: 1 / 0     # a broken hook says so, and the listener lives
                status, body = await _get(s, backup, "/readyz")
                assert status == 503 and body.startswith("readiness check failed: division by zero")
        finally:
            await backup.stop()
            await primary.stop()
        assert backup.http is None and primary.http is None

    loop.run_until_complete(run())


def test_not_ready_until_started_and_after_stop(loop):
    async def run():
        broker = _broker(loop)
        from cypid.broker.http.health import readiness
        assert readiness(broker) == (False, "not started")
        await broker.start()
        assert readiness(broker) == (True, "ready")
        port = broker.http.port
        await broker.stop()
        assert readiness(broker) == (False, "not started")
        async with aiohttp.ClientSession() as s:        # the listener is closed
            with pytest.raises(aiohttp.ClientConnectionError):
                await s.get("http://127.0.0.1:%d/healthz" % port)

    loop.run_until_complete(run())


def test_ha_cluster_backup_not_ready_until_promoted(brokers):
    """Real HA brokers (tests/support/ha.py): without a hook of its own, /readyz follows the HA status:
    the primary serves clients, a backup (ready to take over, but redirecting clients) does not; once
    the primary is killed and the backup promoted, the backup is ready."""
    cluster = HaCluster(brokers, 2, ["--http-port", "0"])
    primary, backup = (base_url(b) for b in cluster.brokers)
    assert request(primary + "/readyz")[0::2] == (200, b"ready\n")
    assert request(backup + "/readyz")[0::2] == (503, b"HA backup (ready): clients go to the primary\n")
    assert request(backup + "/healthz")[0] == 200
    assert sample(scrape(backup), "cypid_ready") == 0
    status, ha = get_json(backup + "/api/ha")
    assert status == 200 and ha["role"] == "backup" and ha["status"] == "ready" and ha["ready"] is False
    assert get_json(primary + "/api/ha")[1]["role"] == "primary"
    cluster.kill(0)
    cluster.promote(1)
    assert request(backup + "/readyz")[0::2] == (200, b"ready\n")
    assert get_json(backup + "/api/overview")[1]["ha"]["status"] == "active"
