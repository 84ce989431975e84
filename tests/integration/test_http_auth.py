"""--auth yes over HTTP: the console and /metrics ask for a user of the broker's users database (HTTP
Basic) and refuse without one; the health checks stay open; the console's actions run as that user,
so the ACL file decides them as it decides the same QMF method from qpid-config."""
import re

import pytest
from proton.utils import BlockingConnection

from tests.integration.test_qmf_agent import BROKER_ID, Console, QmfError, unique
from tests.support.http import basic, get_json, http_broker, post_json, request, sample, scrape
from tests.support.sasl import auth_args

ACL = """\
acl allow alice@QPID all all
acl deny-log bob@QPID create queue name=acl-*
acl allow all all
"""


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    base = tmp_path_factory.mktemp("http-auth")
    acl = base / "policy.acl"
    acl.write_text(ACL)
    args = auth_args(base / "auth", {"alice": "secret", "bob": "b0b"})
    with http_broker(base, args + ["--acl-file", str(acl)]) as broker:
        yield broker


@pytest.fixture(scope="module")
def url(secure):
    return secure.http_url


ALICE, BOB = basic("alice", "secret"), basic("bob", "b0b")


class UserConsole(Console):
    """test_qmf_agent's console, logged in as a user of the broker."""

    def __init__(self, url, user, password):
        self.conn = BlockingConnection(url, timeout=30, user=user, password=password)
        self.receiver = self.conn.create_receiver(None, dynamic=True, credit=50)
        self.reply_to = self.receiver.remote_source.address
        self.sender = self.conn.create_sender("qmf.default.direct")


@pytest.mark.parametrize("path", ["/", "/metrics", "/api/overview", "/static/console.js"])
def test_refused_without_credentials(url, path):
    status, headers, _ = request(url + path)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="cypid"')


def test_health_checks_ask_for_nothing(url):
    assert request(url + "/healthz")[0] == 200
    assert request(url + "/readyz")[0] == 200


def test_a_broker_user_gets_in(url):
    assert sample(scrape(url, ALICE), "cypid_ready") == 1
    status, o = get_json(url + "/api/overview", ALICE)
    assert status == 200 and o["auth"] is True and o["acl"] is True
    assert request(url + "/", headers={"Authorization": "Basic " + "YWxpY2U6c2VjcmV0"})[0] == 200
    assert request(url + "/", headers={"Authorization": "alice@QPID:secret"})[0] == 401   # not Basic


def test_wrong_password_and_unknown_user_refused_and_logged_once(secure, url):
    for _ in range(3):
        assert request(url + "/metrics", headers={"Authorization": basic("alice", "nope")})[0] == 401
        assert request(url + "/metrics", headers={"Authorization": basic("mallory", "x")})[0] == 401
    log = secure.log_text()
    assert len(re.findall(r"HTTP: Authentication failed for alice from 127\.0\.0\.1:\d+: password "
                          r"verification failed", log)) == 1
    assert len(re.findall(r"HTTP: Authentication failed for mallory from 127\.0\.0\.1:\d+: user not found",
                          log)) == 1
    assert "nope" not in log


def test_actions_run_as_the_http_user_under_the_acl(secure, url):
    name = unique("acl")
    status, err = post_json(url + "/api/queue/create", {"name": name}, BOB)
    assert status == 403
    assert err == {"error": "unauthorized-access: ACL denied queue create request for %s from bob@QPID" % name,
                   "status": 6, "status_text": "Forbidden"}
    # the same denial a QMF console gets, over AMQP, for the same user
    console = UserConsole(secure.url, "bob", "b0b")
    try:
        with pytest.raises(QmfError) as qmf:
            console.method(BROKER_ID, "create", {"type": "queue", "name": name, "properties": {}})
    finally:
        console.close()
    assert (qmf.value.code, qmf.value.text) == (6, err["error"])
    assert post_json(url + "/api/queue/create", {"name": name}, ALICE) == (200, {"ok": True})
    assert re.search(r"HTTP action queue/create by alice@QPID: name=%s" % name, secure.log_text())
    assert post_json(url + "/api/queue/purge", {"name": name}, BOB) == (200, {"ok": True})
    assert post_json(url + "/api/queue/delete", {"name": name}, ALICE) == (200, {"ok": True})
