"""Authentication (--auth yes, --realm, --sasl-config) against real broker processes, with
python-qpid-proton clients and, for SCRAM (proton's built-in SASL has no SCRAM), a raw client doing
the exchange with scramp.

Users are made with cypid-saslpasswd, and for migration with Debian's saslpasswd2 (a Cyrus sasldb2
Berkeley DB file, read through db_dump): `make test` installs sasl2-bin and db-util when missing.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from proton import ConnectionException
from proton.utils import BlockingConnection
from scramp import ScramClient

from tests.integration.test_qmf_agent import Console
from tests.support.broker import BrokerProcess, BrokerStartError, wait_until
from tests.support.sasl import sasl_config, saslpasswd
from tests.support.rawclient import (
    AMQP_HEADER, SASL_CHALLENGE, SASL_FRAME, SASL_HEADER, SASL_INIT, SASL_MECHANISMS, SASL_OUTCOME,
    SASL_RESPONSE, RawClient, symbol,
)

TIMEOUT = 30
BIN = Path(sys.executable).parent
FAILED = r"SASL: Authentication failed for %s from 127\.0\.0\.1:%d-127\.0\.0\.1:\d+ \(mechanism %s\)"


def connect(broker, user=None, password=None, **kw):
    if user is not None:
        kw.update(user=user, password=password)
    return BlockingConnection(broker.url, timeout=TIMEOUT, **kw)


def refused(broker, user, password):
    with pytest.raises(ConnectionException) as info:
        connect(broker, user, password).close()
    assert "amqp:unauthorized-access" in str(info.value)


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    path = tmp_path_factory.mktemp("users") / "qpidd.sasldb"
    saslpasswd(path, "alice", "secret")
    saslpasswd(path, "carol", "c4r0l", "OTHER")
    return path


@pytest.fixture(scope="module")
def secure(tmp_path_factory, users):
    base = tmp_path_factory.mktemp("auth")
    conf = sasl_config(base / "sasl", sasldb_path=str(users))
    broker = BrokerProcess(base, ["--auth", "yes", "--sasl-config", str(conf)])
    broker.start()
    yield broker
    broker.stop()


# -- PLAIN through proton -----------------------------------------------------------------------
def test_wrong_password_is_refused(secure):
    """Before real authentication, --auth yes took any password."""
    refused(secure, "alice", "not-her-password")
    secure.wait_for_log(FAILED % ("alice", secure.port, "PLAIN") + ": password verification failed")


def test_unknown_user_is_refused(secure):
    refused(secure, "mallory", "secret")
    secure.wait_for_log(FAILED % ("mallory", secure.port, "PLAIN") + ": user not found")


def test_one_log_line_per_failure(secure):
    before = len(secure.log_lines("Authentication failed for dave "))
    for _ in range(3):
        refused(secure, "dave", "x")
    wait_until(lambda: len(secure.log_lines("Authentication failed for dave ")) == before + 3, timeout=TIMEOUT)


def test_right_password_accepted_and_qmf_shows_alice_at_qpid(secure):
    conn = connect(secure, "alice", "secret")
    try:
        console = Console("alice:secret@%s" % secure.url)
        try:
            conns = [o["_values"] for o in console.query("connection")]
        finally:
            console.close()
    finally:
        conn.close()
    idents = [c["authIdentity"] for c in conns]
    assert idents.count("alice@QPID") == 2, idents      # the client and the console
    assert {c["saslMechanism"] for c in conns} == {"PLAIN"}


def test_login_with_explicit_realm(secure):
    connect(secure, "alice@QPID", "secret").close()
    connect(secure, "carol@OTHER", "c4r0l").close()
    refused(secure, "carol", "c4r0l")                 # carol@QPID does not exist


def test_anonymous_refused_unless_listed(secure, tmp_path, users):
    with RawClient.connect(secure) as c:
        c.send(SASL_HEADER)
        assert c.read_header() == SASL_HEADER
        offered = [str(m) for m in c.expect(SASL_MECHANISMS).field(0)]
        assert "ANONYMOUS" not in offered
        assert offered == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        assert c.sasl_init("ANONYMOUS", b"") == 1
        c.expect_eof()
    refused(secure, None, None)
    conf = sasl_config(tmp_path / "sasl", mech_list="ANONYMOUS PLAIN", sasldb_path=str(users))
    with BrokerProcess(tmp_path, ["--auth", "yes", "--sasl-config", str(conf)]) as broker:
        conn = connect(broker)
        conn.close()
        connect(broker, "alice", "secret").close()
        refused(broker, "alice", "wrong")


def test_amqp_header_without_sasl_is_refused(secure):
    with RawClient.connect(secure) as c:
        c.send(AMQP_HEADER)
        assert c.read_header() == SASL_HEADER
        c.expect_eof()


# -- SCRAM over a raw connection ---------------------------------------------------------------
def scram_login(broker, mech, user, password):
    """The SCRAM exchange; returns the outcome code (0 ok). On success the server's proof is checked
    (scramp raises if it is wrong) and the connection opens."""
    client = ScramClient([mech], user, password)
    with RawClient.connect(broker) as c:
        c.send(SASL_HEADER)
        assert c.read_header() == SASL_HEADER
        assert mech in [str(m) for m in c.expect(SASL_MECHANISMS).field(0)]
        c.send_frame(0, SASL_INIT, [symbol(mech), client.get_client_first().encode()], frame_type=SASL_FRAME)
        frame = c.read_frame()
        if frame.code == SASL_OUTCOME:
            return frame.field(0)
        assert frame.code == SASL_CHALLENGE
        client.set_server_first(bytes(frame.field(0)).decode())
        c.send_frame(0, SASL_RESPONSE, [client.get_client_final().encode()], frame_type=SASL_FRAME)
        outcome = c.expect(SASL_OUTCOME)
        if outcome.field(0) == 0:
            client.set_server_final(bytes(outcome.field(1)).decode())
            assert c.amqp_header() == AMQP_HEADER
            c.open()
        return outcome.field(0)


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram(secure, mech):
    assert scram_login(secure, mech, "alice", "secret") == 0
    assert scram_login(secure, mech, "alice", "wrong") == 1
    assert scram_login(secure, mech, "nobody", "secret") == 1
    secure.wait_for_log(FAILED % ("nobody", secure.port, mech) + ": user not found")


# -- the users database --------------------------------------------------------------------------
def test_users_database_keeps_no_password(users):
    text = users.read_text()
    assert "secret" not in text and "c4r0l" not in text
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    listed = subprocess.run([str(BIN / "cypid-sasldblistusers"), "-f", str(users)], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    assert listed.splitlines() == ["alice@QPID: SCRAM-SHA-256 SCRAM-SHA-1",
                                   "carol@OTHER: SCRAM-SHA-256 SCRAM-SHA-1"]


def test_user_added_and_deleted_while_running(tmp_path):
    db = tmp_path / "users.sasldb"
    saslpasswd(db, "alice", "one")
    conf = sasl_config(tmp_path / "sasl", sasldb_path=str(db))
    with BrokerProcess(tmp_path, ["--auth", "yes", "--sasl-config", str(conf)]) as broker:
        refused(broker, "bob", "two")
        saslpasswd(db, "bob", "two")
        connect(broker, "bob", "two").close()
        subprocess.run([str(BIN / "cypid-saslpasswd"), "-d", "-f", str(db), "bob"], check=True, timeout=60)
        refused(broker, "bob", "two")
        connect(broker, "alice", "one").close()


def test_default_users_database_is_in_the_data_dir(tmp_path):
    broker = BrokerProcess(tmp_path, ["--auth", "yes"])
    broker.data_dir.mkdir(parents=True)
    saslpasswd(broker.data_dir / "qpidd.sasldb", "alice", "pw")
    with broker:
        connect(broker, "alice", "pw").close()
        refused(broker, "alice", "wrong")


needs_cyrus = pytest.mark.skipif(not (shutil.which("saslpasswd2") and shutil.which("db_dump")),
                                 reason="saslpasswd2 (sasl2-bin) and db_dump (db-util) are not installed")


@needs_cyrus
def test_cyrus_sasldb2_made_by_saslpasswd2_authenticates(tmp_path):
    db = tmp_path / "qpidd.sasldb"
    for user, pw in (("alice", "from-cyrus"), ("bob", "also")):
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", str(db), "-u", "QPID", user], input=pw + "\n",
                       text=True, check=True, timeout=60)
    conf = sasl_config(tmp_path / "sasl", mech_list="PLAIN SCRAM-SHA-256", sasldb_path=str(db),
                       pwcheck_method="auxprop")
    with BrokerProcess(tmp_path, ["--auth", "yes", "--sasl-config", str(conf)]) as broker:
        connect(broker, "alice", "from-cyrus").close()
        refused(broker, "alice", "wrong")
        assert scram_login(broker, "SCRAM-SHA-256", "bob", "also") == 0
        assert len(broker.log_lines("ignoring pwcheck_method")) == 1
    listed = subprocess.run([str(BIN / "cypid-sasldblistusers"), "-f", str(db)], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    assert listed.splitlines() == ["alice@QPID: userPassword", "bob@QPID: userPassword"]


# -- configuration errors -------------------------------------------------------------------------
def test_bad_sasl_config_stops_the_broker(tmp_path):
    with pytest.raises(BrokerStartError, match="cannot read SASL configuration"):
        BrokerProcess(tmp_path, ["--auth", "yes", "--sasl-config", str(tmp_path / "nowhere")],
                      start_timeout=TIMEOUT).start()
    conf = sasl_config(tmp_path / "sasl", mech_list="DIGEST-MD5 GSSAPI")
    with pytest.raises(BrokerStartError, match="names no mechanism cypid supports"):
        BrokerProcess(tmp_path, ["--auth", "yes", "--sasl-config", str(conf)], start_timeout=TIMEOUT).start()
    (tmp_path / "junk.sasldb").write_bytes(b"this is not a database at all\n")
    conf = sasl_config(tmp_path / "sasl2", sasldb_path=str(tmp_path / "junk.sasldb"))
    with pytest.raises(BrokerStartError, match="is not a users database"):
        BrokerProcess(tmp_path, ["--auth", "yes", "--sasl-config", str(conf)], start_timeout=TIMEOUT).start()


def test_auth_no_trusts_clients(tmp_path):
    with BrokerProcess(tmp_path) as broker:
        connect(broker).close()
        connect(broker, "anyone", "anything").close()



# -- cypid.client: the qpid tools' user/password@host:port and a chosen mechanism -------------------
@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_cypid_client_logs_in_with_tools_url(secure, mech):
    from cypid.client import BlockingConnection as Client
    from cypid.client import ConnectionClosed
    with Client("alice/secret@127.0.0.1:%d" % secure.port, timeout=TIMEOUT, mechanism=mech) as conn:
        assert conn.is_open
        console = Console("alice:secret@%s" % secure.url)
        try:
            conns = [o["_values"] for o in console.query("connection")]
        finally:
            console.close()
    assert {"alice@QPID"} == {c["authIdentity"] for c in conns if c["saslMechanism"] == mech}
    with pytest.raises(ConnectionClosed) as info:
        Client("alice/wrong@127.0.0.1:%d" % secure.port, timeout=TIMEOUT, mechanism=mech).close()
    assert "authentication failed" in str(info.value).lower()
