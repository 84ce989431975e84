"""The broker's HTTP listener (--http-port, broker/http) against real broker processes: /metrics
after known traffic, read with prometheus_client's own parser and checked against the QMF agent's
answers for the same objects; /healthz and /readyz; the console's JSON and its actions (through the
QMF methods: the same errors); the static files shipped in the package.

Authentication and ACL decisions over HTTP are in test_http_auth.py; the readiness hook HA sets is in
test_http_ready.py; the console in a real browser in tests/browser.
"""
import hashlib
import re
from pathlib import Path

import pytest
from cypid.broker.http.server import STATIC_DIR
from proton import Message
from proton.utils import BlockingConnection

from tests.integration.test_qmf_agent import Console, QmfError, send_messages, unique
from tests.support.broker import BrokerProcess, BrokerStartError, wait_until
from tests.support.http import base_url, get_json, module_http_broker, post_json, request, sample, scrape

TIMEOUT = 30


web = module_http_broker("http")


@pytest.fixture(scope="module")
def url(web):
    return web.http_url


@pytest.fixture
def console(web):
    c = Console(web.url)
    yield c
    c.close()


def test_no_http_listener_unless_asked(broker):
    assert "Listening on TCP port" in broker.log_text()
    assert "HTTP listening" not in broker.log_text()


def test_metrics_after_known_traffic(web, url, console):
    name = unique("metrics")
    durable = unique("metrics-durable")
    console.create("queue", name)
    console.create("queue", durable, {"durable": True})
    console.create("binding", "amq.direct/%s/%s" % (name, name))
    conn = BlockingConnection(web.url, timeout=TIMEOUT)
    try:
        send_messages(conn, name, 7, size=100)
        send_messages(conn, "amq.direct", 2, size=10, subject=name)
        sender = conn.create_sender(durable)
        for i in range(5):
            sender.send(Message(body=b"d" * 50, durable=True))
        receiver = conn.create_receiver(name, credit=3)
        for _ in range(3):
            receiver.receive(timeout=TIMEOUT)
            receiver.accept()
        receiver.close()
        qmf = console.values("queue", name)
        qmf_durable = console.values("queue", durable)
        qmf_direct = console.values("exchange", "amq.direct")
        qmf_conns = {c["_values"]["address"]: c["_values"]["framesFromClient"] for c in console.query("connection")}
        m = scrape(url)
    finally:
        conn.close()
    # the queue: counts we made, and the same numbers the QMF agent reports
    assert sample(m, "cypid_queue_enqueued", queue=name) == 9 == qmf["msgTotalEnqueues"]
    assert sample(m, "cypid_queue_dequeued", queue=name) == 3 == qmf["msgTotalDequeues"]
    assert sample(m, "cypid_queue_depth_messages", queue=name) == 6 == qmf["msgDepth"]
    assert sample(m, "cypid_queue_depth_bytes", queue=name) == qmf["byteDepth"] > 4 * 100 + 2 * 10
    assert sample(m, "cypid_queue_enqueued_bytes", queue=name) == qmf["byteTotalEnqueues"]
    assert sample(m, "cypid_queue_dequeued_bytes", queue=name) == qmf["byteTotalDequeues"] > 3 * 100
    assert sample(m, "cypid_queue_consumers", queue=name) == 0
    assert sample(m, "cypid_queue_acquired", queue=name) == 3
    assert sample(m, "cypid_queue_discarded", queue=name, reason="purge") == 0
    assert sample(m, "cypid_queue_depth_messages", queue=durable) == 5 == qmf_durable["msgDepth"]
    # the exchange the two routed messages went through
    assert sample(m, "cypid_exchange_received", exchange="amq.direct") == qmf_direct["msgReceives"] >= 2
    assert sample(m, "cypid_exchange_routed", exchange="amq.direct") == qmf_direct["msgRoutes"] >= 2
    assert sample(m, "cypid_exchange_bindings", exchange="amq.direct") >= 1
    # broker-wide: the console's connection is open while we scrape; the closed one is gone
    assert sample(m, "cypid_connections") >= 1
    assert sample(m, "cypid_sessions") >= 1
    assert sample(m, "cypid_links") >= 2            # the console's sender and receiver
    assert sample(m, "cypid_queues") >= 2
    conns = [s for s in m["cypid_connection_received_bytes"].samples]
    assert conns and all(s.value > 0 and s.labels["connection"] for s in conns)
    # frames read per connection, as QMF's framesFromClient (read just before the scrape)
    frames = {"qpid." + s.labels["connection"]: s.value for s in m["cypid_connection_received_frames"].samples}
    both = set(frames) & set(qmf_conns)
    assert both and all(frames[c] >= qmf_conns[c] > 0 for c in both), (frames, qmf_conns)
    # the journal: the durable queue's journal exists and synced the five messages
    assert sample(m, "cypid_journals") >= 1
    assert sample(m, "cypid_journal_files") >= 8       # --num-jfiles 8 by default
    assert sample(m, "cypid_journal_bytes") >= 8 * 24 * 65536
    syncs = sample(m, "cypid_journal_syncs")
    assert syncs >= 1
    hist = m["cypid_journal_sync_seconds"]
    buckets = [(s.labels["le"], s.value) for s in hist.samples if s.name.endswith("_bucket")]
    assert buckets[-1] == ("+Inf", syncs)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert sample(m, "cypid_journal_sync_seconds", "cypid_journal_sync_seconds_count") == syncs
    assert sample(m, "cypid_journal_sync_seconds", "cypid_journal_sync_seconds_sum") > 0
    # process and readiness
    assert sample(m, "process_resident_memory_bytes") > 10 * 2**20
    assert sample(m, "process_open_fds") > 0
    assert sample(m, "cypid_ready") == 1
    assert m["cypid_build_info"].samples[0].labels["version"]


def test_metrics_counters_only_grow_between_scrapes(web, url, console):
    name = unique("grow")
    console.create("queue", name)
    before = scrape(url)
    conn = BlockingConnection(web.url, timeout=TIMEOUT)
    try:
        send_messages(conn, name, 4)
    finally:
        conn.close()
    after = scrape(url)
    assert sample(after, "cypid_queue_enqueued", queue=name) - sample(before, "cypid_queue_enqueued",
                                                                       queue=name) == 4
    assert sample(after, "process_cpu_seconds") >= sample(before, "process_cpu_seconds")


def test_label_values_are_escaped(url, console):
    name = unique('odd"name\\with')
    console.create("queue", name)
    m = scrape(url)
    assert sample(m, "cypid_queue_depth_messages", queue=name) == 0


def test_health_endpoints(url):
    assert request(url + "/healthz")[0::2] == (200, b"ok\n")
    assert request(url + "/readyz")[0::2] == (200, b"ready\n")


def test_console_json(web, url, console):
    name = unique("api")
    console.create("queue", name)
    conn = BlockingConnection(web.url, timeout=TIMEOUT)
    try:
        send_messages(conn, name, 3)
        status, o = get_json(url + "/api/overview")
        assert status == 200
        assert o["ready"] is True and o["counts"]["queues"] >= 1 and o["counts"]["connections"] >= 1
        assert o["totals"]["msgTotalEnqueues"] >= 3 and o["ha"]["role"] == "standalone"
        status, q = get_json(url + "/api/queues?filter=" + name)
        assert status == 200 and q["total"] == 1
        assert q["queues"][0]["name"] == name and q["queues"][0]["msgDepth"] == 3
        status, x = get_json(url + "/api/exchanges")
        assert {"amq.direct", "amq.topic", "amq.fanout", "amq.match"} <= {e["name"] for e in x["exchanges"]}
        status, c = get_json(url + "/api/connections")
        assert status == 200 and len(c["connections"]) >= 2
        assert c["sessions"] and {link["direction"] for link in c["links"]} == {"incoming", "outgoing"}
    finally:
        conn.close()


def test_console_actions_go_through_qmf(web, url, console):
    name = unique("act")
    assert post_json(url + "/api/queue/create", {"name": name}) == (200, {"ok": True})
    assert console.values("queue", name) is not None
    # the QMF method's own error, for the same mistake made with qpid-config
    with pytest.raises(QmfError) as qmf:
        console.create("queue", name)
    status, err = post_json(url + "/api/queue/create", {"name": name})
    assert status == 400 and err["error"] == qmf.value.text == "object already exists: %s" % name
    assert err["status"] == 7 and err["status_text"] == "Exception"
    conn = BlockingConnection(web.url, timeout=TIMEOUT)
    try:
        send_messages(conn, name, 5)
    finally:
        conn.close()
    assert post_json(url + "/api/queue/purge", {"name": name}) == (200, {"ok": True})
    assert console.values("queue", name)["msgDepth"] == 0
    assert console.values("queue", name)["discardsPurge"] == 5
    assert post_json(url + "/api/bind", {"exchange": "amq.topic", "queue": name, "key": "a.#"})[0] == 200
    _, x = get_json(url + "/api/exchanges")
    assert {"exchange": "amq.topic", "queue": name, "key": "a.#", "arguments": {}} in x["bindings"]
    assert post_json(url + "/api/unbind", {"exchange": "amq.topic", "queue": name, "key": "a.#"})[0] == 200
    _, x = get_json(url + "/api/exchanges")
    assert not [b for b in x["bindings"] if b["queue"] == name and b["exchange"] == "amq.topic"]
    status, err = post_json(url + "/api/bind", {"exchange": "no-such", "queue": name, "key": ""})
    assert status == 400 and err["error"] == "not-found: Bind failed. No such exchange: no-such"
    assert post_json(url + "/api/queue/delete", {"name": name}) == (200, {"ok": True})
    assert console.values("queue", name) is None
    status, err = post_json(url + "/api/queue/delete", {"name": name})
    assert status == 400 and err["error"] == "not-found: Delete failed. No such queue: %s" % name
    status, err = post_json(url + "/api/queue/purge", {"name": name})
    assert status == 404 and err["status_text"] == "UnknownObject"
    status, err = post_json(url + "/api/queue/create", {"name": ""})
    assert status == 400 and err["status"] == 4
    assert post_json(url + "/api/nothing", {})[0] == 404
    assert "act" in web.log_text() and re.search(r"HTTP action queue/create by anonymous: name=%s" % name,
                                                 web.log_text())


def test_actions_refuse_what_a_foreign_page_could_send(url):
    name = unique("csrf")
    status, _, _ = request(url + "/api/queue/create", "POST", b"name=" + name.encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    status, err = post_json(url + "/api/queue/create", {"name": name},
                            headers={"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in err["error"]
    status, _, _ = request(url + "/api/queue/create", "POST", b"{not json",
                           {"Content-Type": "application/json"})
    assert status == 400
    status, q = get_json(url + "/api/queues?filter=" + name)
    assert q["total"] == 0


def test_static_console_is_shipped(url):
    status, _, body = request(url + "/")
    assert status == 200 and b"<title>cypid console</title>" in body
    for path in ("/static/console.js", "/static/console.css", "/static/vendor/uPlot.min.css"):
        assert request(url + path)[0] == 200, path
    # the vendored chart library is the npm release named in its note, byte for byte
    note = (Path(STATIC_DIR) / "vendor" / "README.txt").read_text()
    want = re.search(r"sha256 (\w+)  uPlot.iife.min.js", note).group(1)
    status, _, js = request(url + "/static/vendor/uPlot.iife.min.js")
    assert status == 200 and hashlib.sha256(js).hexdigest() == want
    assert request(url + "/static/../server.py")[0] in (403, 404)


def test_management_disabled_keeps_metrics(broker_factory):
    b = broker_factory("--http-port", "0", "--mgmt-enable", "no")
    url = base_url(b)
    status, err = get_json(url + "/api/overview")
    assert status == 503 and "--mgmt-enable no" in err["error"]
    assert post_json(url + "/api/queue/create", {"name": "x"})[0] == 503
    assert sample(scrape(url), "cypid_queues") == 0


def test_http_port_in_use_stops_the_start(broker_factory, tmp_path):
    first = broker_factory("--http-port", "0")
    port = int(base_url(first).rsplit(":", 1)[1])
    second = BrokerProcess(tmp_path / "second", ["--http-port", str(port)], start_timeout=20)
    with pytest.raises(BrokerStartError):
        second.start()
    wait_until(lambda: second.returncode is not None, 10)
    assert second.returncode == 1
    assert re.search(r"Cannot listen for HTTP on 127\.0\.0\.1 port %d" % port, second.log_text())
