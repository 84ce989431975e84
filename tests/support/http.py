"""A broker's HTTP listener (--http-port) from a test: its port (read from the broker's log line),
plain requests with urllib, and /metrics parsed by prometheus_client's own parser."""
from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.broker import BrokerProcess, claim_leaks, wait_until

HTTP_LISTENING_RE = re.compile(r"HTTP listening on (\S+) port (\d+)")


def http_port(broker, timeout=10) -> int:
    """The port the broker's HTTP listener took (it logs it before 'Listening on TCP port')."""
    def found():
        m = HTTP_LISTENING_RE.findall(broker.log_text())
        return int(m[-1][1]) if m else None
    return wait_until(found, timeout, message="the broker's 'HTTP listening' line")


def base_url(broker) -> str:
    return "http://127.0.0.1:%d" % http_port(broker)


@contextmanager
def http_broker(base_dir, args=()):
    """A broker with ``--http-port 0`` (and ``args``) for a module's tests; ``.http_url`` is its
    listener's address. Stopped at the end, and it must have kept nothing (the leak audit)."""
    broker = BrokerProcess(base_dir, ["--http-port", "0", *args])
    broker.start()
    try:
        broker.http_url = base_url(broker)
        yield broker
    finally:
        broker.stop()
    assert not claim_leaks(broker.leaks), broker.leaks


def module_http_broker(name: str, args=()):
    """A module-scoped fixture (assign it to a name in the test module, e.g. ``web``): one
    :func:`http_broker` in a temporary directory called ``name``, shared by the module's tests."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory):
        with http_broker(tmp_path_factory.mktemp(name), args) as broker:
            yield broker
    return fixture


def basic(user, password) -> str:
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def request(url, method="GET", body=None, headers=None, timeout=30):
    """(status, headers, body bytes); HTTP errors are answers too, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url, auth=None):
    status, _, body = request(url, headers={"Authorization": auth} if auth else {})
    return status, json.loads(body)


def post_json(url, payload, auth=None, headers=None):
    h = {"Content-Type": "application/json"}
    if auth:
        h["Authorization"] = auth
    h.update(headers or {})
    status, _, body = request(url, "POST", json.dumps(payload).encode(), h)
    return status, json.loads(body)


def scrape(url, auth=None):
    """/metrics as {metric family name: family} (prometheus_client's parser: counters lose _total)."""
    status, headers, body = request(url + "/metrics", headers={"Authorization": auth} if auth else {})
    assert status == 200, (status, body[:200])
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}


def sample(families, family, name=None, **labels):
    """The value of the sample ``name`` (default: the family's own) with exactly these labels."""
    fam = families[family]
    want = name or (family + "_total" if fam.type == "counter" else family)
    for s in fam.samples:
        if s.name == want and s.labels == labels:
            return s.value
    raise KeyError("%s%s not in /metrics" % (want, labels))
