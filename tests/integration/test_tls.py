"""TLS (broker/tls.py) and SASL EXTERNAL against real broker processes, with python-qpid-proton's
SSLDomain and certificates made in the test (tests/support/certs.py, the openssl command).

What qpidd does and these check: --ssl-port equal to --port serves TLS and plain connections on one
port; a verified client certificate gives the EXTERNAL identity CN[@dc.dc] (the realm added to a name
without '@'); --ssl-require-client-authentication fails a handshake without a good certificate;
--require-encryption leaves plain connections nothing to log in with; --ssl-sasl-no-dict offers only
EXTERNAL over TLS; qpidd's NSS options are accepted with a notice naming what to use instead.
"""
import socket
import time

import pytest
from proton import ConnectionException, Message, SSLDomain
from proton.utils import BlockingConnection

from tests.integration.test_qmf_agent import Console
from tests.support.broker import BrokerProcess, BrokerStartError, wait_until
from tests.support.certs import CA, broker_tls_args
from tests.support.rawclient import SASL_HEADER, SASL_MECHANISMS, RawClient
from tests.support.sasl import auth_args

TIMEOUT = 20


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA with a broker certificate for 127.0.0.1 and client certificates; another CA's client."""
    base = tmp_path_factory.mktemp("pki")
    ca = CA(base / "ca")
    other = CA(base / "other", "Other CA")
    return {
        "ca": ca,
        "server": ca.issue("server", "/O=cypid/CN=127.0.0.1", "IP:127.0.0.1"),
        "alice": ca.issue("alice", "/DC=com/DC=example/CN=alice"),     # alice@example.com
        "bob": ca.issue("bob", "/O=cypid/CN=bob"),                      # bob@QPID
        "nocn": ca.issue("nocn", "/O=cypid/OU=nobody"),
        "stranger": other.issue("stranger", "/CN=alice"),
        "other_ca": other,
    }


def domain(pki, client=None, verify=True):
    d = SSLDomain(SSLDomain.MODE_CLIENT)
    if verify:
        d.set_trusted_ca_db(str(pki["ca"].cert))
        d.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, str(pki["ca"].cert))
    else:
        d.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
    if client is not None:
        cert, key = pki[client]
        d.set_credentials(str(cert), str(key), None)
    return d


def tls_connect(broker, pki, client=None, port=None, **kw):
    return BlockingConnection("amqps://127.0.0.1:%d" % (port or broker.port), timeout=TIMEOUT,
                              ssl_domain=domain(pki, client), **kw)


def identities(broker, credentials=""):
    """{authIdentity: saslMechanism} of the broker's connections, through a QMF console."""
    console = Console(credentials + broker.url)
    try:
        return {c["_values"]["authIdentity"]: c["_values"]["saslMechanism"] for c in console.query("connection")}
    finally:
        console.close()


def round_trip(conn):
    """Send one message to a dynamic queue and receive it; the seconds it took."""
    receiver = conn.create_receiver(None, dynamic=True)
    sender = conn.create_sender(receiver.link.remote_source.address)
    t = time.monotonic()
    sender.send(Message(body="hello"))
    msg = receiver.receive(timeout=TIMEOUT)
    receiver.accept()
    took = time.monotonic() - t
    assert msg.body == "hello"
    sender.close()
    receiver.close()
    return took


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- listening -------------------------------------------------------------------------------------
def test_ssl_port_equal_to_port_takes_tls_and_plain(broker_factory, pki):
    """qpidd's mux: --ssl-port 0 with --port 0 (both the same) is one port for both kinds."""
    broker = broker_factory("--ssl-port", "0", *broker_tls_args(pki["ca"], *pki["server"]))
    broker.wait_for_log(r"Listening for SSL connections on TCP port %d" % broker.port)
    conn = tls_connect(broker, pki)
    try:
        round_trip(conn)
    finally:
        conn.close()
    plain = BlockingConnection(broker.url, timeout=TIMEOUT)
    try:
        round_trip(plain)
    finally:
        plain.close()


def test_separate_ssl_port(broker_factory, pki):
    port = free_port()
    broker = broker_factory("--ssl-port", str(port), *broker_tls_args(pki["ca"], *pki["server"]))
    broker.wait_for_log(r"Listening for SSL connections on TCP port %d\b" % port)
    conn = tls_connect(broker, pki, "bob", port=port, allowed_mechs="EXTERNAL")
    conn.close()
    BlockingConnection(broker.url, timeout=TIMEOUT).close()          # plain on --port
    with pytest.raises(ConnectionException):                          # not TLS on --port
        tls_connect(broker, pki).close()


# -- SASL EXTERNAL -----------------------------------------------------------------------------------
@pytest.fixture
def secure_tls(broker_factory, pki, tmp_path):
    """--auth yes (PLAIN users alice/secret), TLS on the same port, client certificates asked for."""
    return broker_factory("--ssl-port", "0", *broker_tls_args(pki["ca"], *pki["server"]),
                          *auth_args(tmp_path / "auth", {"admin": "adm1n"}, mech_list="PLAIN EXTERNAL"))


def test_external_identity_is_the_certificates(secure_tls, pki):
    """CN plus the domain components (alice@example.com); a CN alone gets the realm (bob@QPID)."""
    alice = tls_connect(secure_tls, pki, "alice", allowed_mechs="EXTERNAL")
    bob = tls_connect(secure_tls, pki, "bob", allowed_mechs="EXTERNAL")
    try:
        found = identities(secure_tls, "admin:adm1n@")
    finally:
        alice.close()
        bob.close()
    assert found.get("alice@example.com") == "EXTERNAL", found
    assert found.get("bob@QPID") == "EXTERNAL", found


def test_external_refused_without_a_certificate(secure_tls, pki):
    with pytest.raises(ConnectionException) as info:
        tls_connect(secure_tls, pki, None, allowed_mechs="EXTERNAL").close()
    assert "unauthorized-access" in str(info.value) or "mechanism" in str(info.value).lower()
    with pytest.raises(ConnectionException):       # a certificate without a common name names no one
        tls_connect(secure_tls, pki, "nocn", allowed_mechs="EXTERNAL").close()
    with pytest.raises(ConnectionException):       # and over plain TCP there is no certificate at all
        BlockingConnection(secure_tls.url, timeout=TIMEOUT, allowed_mechs="EXTERNAL").close()


def test_certificate_of_another_ca_fails_the_handshake(secure_tls, pki):
    with pytest.raises(ConnectionException):
        tls_connect(secure_tls, pki, "stranger", allowed_mechs="EXTERNAL").close()
    secure_tls.wait_for_log(r"SSL handshake with 127\.0\.0\.1:\d+ failed: .*")


def test_password_login_still_works_over_tls(secure_tls, pki):
    conn = tls_connect(secure_tls, pki, None, user="admin", password="adm1n", allowed_mechs="PLAIN")
    conn.close()


# -- the qpidd options ---------------------------------------------------------------------------------
def test_require_client_authentication(broker_factory, pki):
    broker = broker_factory("--ssl-port", "0", "--ssl-require-client-authentication",
                            *broker_tls_args(pki["ca"], *pki["server"]))
    with pytest.raises(ConnectionException):
        tls_connect(broker, pki).close()
    broker.wait_for_log(r"SSL handshake with 127\.0\.0\.1:\d+ failed: .*")
    tls_connect(broker, pki, "bob").close()        # ANONYMOUS (--auth no) once the certificate is good
    BlockingConnection(broker.url, timeout=TIMEOUT).close()   # plain connections are not TLS's business


def test_require_encryption(broker_factory, pki, tmp_path):
    """--auth no: a plain connection is closed after open naming the option; --auth yes: it is
    offered no mechanism, so no password crosses in clear."""
    broker = broker_factory("--ssl-port", "0", "--require-encryption", *broker_tls_args(pki["ca"], *pki["server"]))
    with pytest.raises(ConnectionException) as info:
        conn = BlockingConnection(broker.url, timeout=TIMEOUT)
        conn.create_sender("q")
    assert "encryption required" in str(info.value)
    tls_connect(broker, pki).close()
    secure = broker_factory("--ssl-port", "0", "--require-encryption", *broker_tls_args(pki["ca"], *pki["server"]),
                            *auth_args(tmp_path / "auth", {"admin": "adm1n"}))
    with pytest.raises(ConnectionException):
        BlockingConnection(secure.url, timeout=TIMEOUT, user="admin", password="adm1n",
                           allow_insecure_mechs=True).close()
    with RawClient.connect(secure) as c:        # what a plain connection is offered: nothing
        c.send(SASL_HEADER)
        assert c.read_header() == SASL_HEADER
        assert list(c.expect(SASL_MECHANISMS).field(0) or []) == []
    tls_connect(secure, pki, None, user="admin", password="adm1n").close()


def test_ssl_sasl_no_dict_offers_only_external_over_tls(broker_factory, pki, tmp_path):
    broker = broker_factory("--ssl-port", "0", "--ssl-sasl-no-dict", *broker_tls_args(pki["ca"], *pki["server"]),
                            *auth_args(tmp_path / "auth", {"admin": "adm1n"}, mech_list="PLAIN EXTERNAL"))
    with pytest.raises(ConnectionException):
        tls_connect(broker, pki, None, user="admin", password="adm1n", allowed_mechs="PLAIN").close()
    tls_connect(broker, pki, "bob", allowed_mechs="EXTERNAL").close()
    BlockingConnection(broker.url, timeout=TIMEOUT, user="admin", password="adm1n",
                       allow_insecure_mechs=True).close()          # plain TCP keeps its mechanisms


def test_nss_options_are_named_in_a_notice(broker_factory, tmp_path):
    broker = broker_factory("--ssl-cert-db", str(tmp_path), "--ssl-cert-name", "localhost",
                            "--ssl-use-export-policy")
    for option in ("ssl-cert-db", "ssl-cert-name", "ssl-use-export-policy"):
        broker.wait_for_log(r"SSL: --%s is qpidd's NSS option and is ignored: use " % option)
    assert "Listening for SSL" not in broker.log_text()


@pytest.mark.parametrize("args, named", [
    (["--ssl-cert-file", "/nonexistent/cert.pem"], r"--ssl-cert-file /nonexistent/cert\.pem"),
    (["--ssl-require-client-authentication", "--ssl-cert-file", "SERVER"], r"needs --ssl-ca-file"),
    (["--require-encryption"], r"--require-encryption: .* needs --ssl-cert-file"),
])
def test_unusable_tls_options_stop_the_broker(tmp_path, pki, args, named):
    args = [str(pki["server"][0]) if a == "SERVER" else a for a in args]
    broker = BrokerProcess(tmp_path, ["--ssl-port", "0", "--ssl-key-file", str(pki["server"][1]), *args])
    with pytest.raises(BrokerStartError) as info:
        broker.start()
    assert broker.returncode == 1
    import re
    assert re.search(named, str(info.value)), str(info.value)


def test_encrypted_key_with_password_file(broker_factory, pki, tmp_path):
    cert, key = pki["ca"].issue("locked", "/CN=127.0.0.1", "IP:127.0.0.1", password="s3cret")
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    broker = broker_factory("--ssl-port", "0", "--ssl-cert-file", str(cert), "--ssl-key-file", str(key),
                            "--ssl-cert-password-file", str(pw))
    tls_connect(broker, pki).close()


# -- hostile clients -------------------------------------------------------------------------------------
@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
def test_silent_and_garbage_sockets_do_not_hurt_others(broker_factory, pki):
    """Sockets that connect to the TLS port and say nothing, or send a broken handshake: each is closed
    (after --max-negotiate-time at most), a bystander's round trips stay quick, no descriptor is kept."""
    broker = broker_factory("--ssl-port", "0", "--max-negotiate-time", "1000",
                            *broker_tls_args(pki["ca"], *pki["server"]))
    silent = [socket.create_connection(("127.0.0.1", broker.port)) for _ in range(30)]
    broken = []
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", broker.port))
        s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64)
        broken.append(s)
    conn = tls_connect(broker, pki)
    try:
        worst = max(round_trip(conn) for _ in range(10))
        assert worst < 0.5, worst
        tls_connect(broker, pki).close()          # and new TLS connections are still taken
    finally:
        conn.close()

    def all_closed():
        for s in silent + broken:
            s.settimeout(0.01)
            try:
                if s.recv(1) != b"":
                    return False
            except socket.timeout:
                return False
            except OSError:
                pass
        return True
    wait_until(all_closed, timeout=TIMEOUT, message="the broker closing the silent and broken sockets")
    for s in silent + broken:
        s.close()
    broker.wait_for_log(r"nothing received within the negotiation time")
    broker.wait_for_log(r"SSL handshake with 127\.0\.0\.1:\d+ failed")


# -- the tools and cypid.client ---------------------------------------------------------------------------
def _tool(*args):
    import subprocess
    import sys
    from pathlib import Path
    return subprocess.run([str(Path(sys.executable).parent / "qpid-stat"), *args], capture_output=True,
                          text=True, timeout=60)


def test_tools_over_tls_with_a_certificate_and_with_a_password(secure_tls, pki):
    """qpid-stat -c: amqps with --ssl-certificate/--ssl-key (EXTERNAL), and user/password@host:port
    with --sasl-mechanism over plain TCP; each sees itself connected under its identity."""
    cert, key = pki["alice"]
    done = _tool("-c", "-b", "amqps://127.0.0.1:%d" % secure_tls.port, "--ssl-certificate", str(cert),
                 "--ssl-key", str(key), "--sasl-mechanism", "EXTERNAL")
    assert done.returncode == 0, done.stderr
    assert "EXTERNAL  alice@example.com" in done.stdout, done.stdout
    done = _tool("-c", "-b", "admin/adm1n@127.0.0.1:%d" % secure_tls.port, "--sasl-mechanism", "PLAIN")
    assert done.returncode == 0, done.stderr
    assert "PLAIN  admin@QPID" in done.stdout, done.stdout
    done = _tool("-c", "-b", "admin/wrong@127.0.0.1:%d" % secure_tls.port, "--sasl-mechanism", "PLAIN")
    assert done.returncode == 1 and "unauthorized-access" in done.stderr + done.stdout


def test_cypid_client_external_over_tls(secure_tls, pki):
    import ssl

    from cypid.client import BlockingConnection as Client
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert))
    ctx.load_cert_chain(*(str(p) for p in pki["bob"]))
    with Client("amqps://127.0.0.1:%d" % secure_tls.port, timeout=TIMEOUT, ssl=ctx, mechanism="EXTERNAL") as conn:
        assert conn.is_open
        found = identities(secure_tls, "admin:adm1n@")
    assert found.get("bob@QPID") == "EXTERNAL", found
