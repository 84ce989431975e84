"""broker/sasl.py and tools/saslpasswd.py in process: the mechanisms' exchanges (what the engine's
on_sasl_init / on_sasl_response get back: the engine writes the frames), the users database forms, the
Cyrus SASL configuration file, and fuzzed SASL exchanges (hypothesis)."""
import io
import logging
import subprocess
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scramp import ScramClient

from cypid.broker import sasl
from cypid.pyx.codec import symbol
from cypid.tools import saslpasswd
from tests.support.recording_log import Log


def outcome(result):
    """The outcome code of an init() / respond() answer; None for a challenge (bytes)."""
    if isinstance(result, bytes):
        return None
    return result[0] if isinstance(result, tuple) else result


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "users.sasldb"
    sasl.save_users(str(path), {("alice", "QPID"): sasl.make_credentials("secret", 4096)})
    return path


def authenticator(tmp_path, db, **conf):
    conf.setdefault("sasldb_path", str(db))
    (tmp_path / "qpidd.conf").write_text("".join("%s: %s\n" % kv for kv in conf.items()))
    options = SimpleNamespace(auth=True, realm="QPID", sasl_config=str(tmp_path), data_path=None)
    return sasl.Authenticator(options, Log())


def test_split_login():
    assert sasl.split_login("alice", "QPID") == ("alice", "QPID")
    assert sasl.split_login("alice@R", "QPID") == ("alice", "R")
    assert sasl.split_login("a@b@R", "QPID") == ("a@b", "R")
    assert sasl.split_login("@R", "QPID") == ("@R", "QPID")


def test_plain(tmp_path, db):
    auth = authenticator(tmp_path, db)
    neg = auth.negotiation("peer-1")
    assert neg.init(symbol("PLAIN"), b"\x00alice\x00secret") == sasl.OK and neg.identity == "alice@QPID"
    for response, reason in ((b"\x00alice\x00nope", "password verification failed"),
                             (b"\x00bob\x00secret", "user not found"),
                             (b"alice", "malformed PLAIN response"),
                             (b"\x00\xff\x00x", "not UTF-8"),
                             (b"mallory\x00alice\x00secret", "may not act as 'mallory'")):
        neg = auth.negotiation("peer-2")
        assert neg.init(symbol("PLAIN"), response) == sasl.AUTH
        assert reason in auth.log.texts(logging.WARNING)[-1]
        assert "peer-2" in auth.log.texts(logging.WARNING)[-1]


@pytest.mark.parametrize("mech", sasl.SCRAM_MECHANISMS)
@pytest.mark.parametrize("user,password,ok", [("alice", "secret", True), ("alice", "bad", False),
                                              ("nobody", "secret", False)])
def test_scram(tmp_path, db, mech, user, password, ok):
    auth = authenticator(tmp_path, db)
    client = ScramClient([mech], user, password)
    neg = auth.negotiation("peer")
    challenge = neg.init(symbol(mech), client.get_client_first().encode())
    assert isinstance(challenge, bytes)     # an unknown user gets a challenge too: no enumeration
    client.set_server_first(challenge.decode())
    result = neg.respond(client.get_client_final().encode())
    if ok:
        assert outcome(result) == 0 and neg.identity == "alice@QPID"
        client.set_server_final(bytes(result[1]).decode())
    else:
        assert result == sasl.AUTH and neg.identity is None
        assert ("user not found" if user == "nobody" else "password verification failed") \
            in auth.log.texts(logging.WARNING)[-1]


def test_mech_list_and_ignored_keys(tmp_path, db):
    auth = authenticator(tmp_path, db, mech_list="ANONYMOUS PLAIN DIGEST-MD5", pwcheck_method="auxprop",
                         auxprop_plugin="sasldb")
    assert auth.mechanisms == ("ANONYMOUS", "PLAIN")
    notices = auth.log.texts(25)
    assert len(notices) == 2
    assert "ignoring auxprop_plugin, pwcheck_method" in notices[0]
    assert "DIGEST-MD5" in notices[1]
    neg = auth.negotiation("p")
    assert neg.init(symbol("ANONYMOUS"), None) == 0
    assert neg.identity == "anonymous@QPID"
    neg = auth.negotiation("p")
    assert neg.init(symbol("SCRAM-SHA-256"), b"n,,n=alice,r=abc") == sasl.AUTH


def test_bad_config_lines(tmp_path, db):
    (tmp_path / "qpidd.conf").write_text("mech_list PLAIN\n")
    with pytest.raises(sasl.SaslConfigError, match=r"qpidd.conf:1: expected 'key: value'"):
        sasl.read_sasl_config(str(tmp_path), Log())


def test_auth_no_trusts_plain():
    auth = sasl.Authenticator(SimpleNamespace(auth=False, realm="QPID"), Log())
    assert auth.mechanisms == ("ANONYMOUS", "PLAIN")
    neg = auth.negotiation("p")
    assert neg.init(symbol("PLAIN"), b"\x00bob\x00anything") == 0
    assert neg.identity == "bob"


def test_users_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "u"
    users = {("a", "QPID"): sasl.make_credentials("pw1", 4096), ("b", "R"): sasl.make_credentials("pw2", 5000)}
    sasl.save_users(str(path), users)
    assert sasl.load_users(str(path)) == users
    assert "pw1" not in path.read_text()
    assert sasl.check_password(users[("b", "R")], "pw2") and not sasl.check_password(users[("b", "R")], "pw1")
    path.write_text(sasl.FILE_MAGIC + "\nnorealm SCRAM-SHA-1:1:AA==:AA==:AA==\n")
    with pytest.raises(sasl.SaslConfigError, match=r":2: expected user@realm"):
        sasl.load_users(str(path))
    path.write_text(sasl.FILE_MAGIC + "\na@Q SCRAM-SHA-1:x:AA==:AA==:AA==\n")
    with pytest.raises(sasl.SaslConfigError, match=r":2: malformed credentials"):
        sasl.load_users(str(path))
    assert sasl.load_users(str(tmp_path / "missing")) == {}


def test_db_dump_unescape():
    assert sasl._unescape_db_dump(" alice\\00QPID\\00userPassword") == b"alice\x00QPID\x00userPassword"
    assert sasl._unescape_db_dump(" a\\\\b\\7f") == b"a\\b\x7f"


def test_users_database_reloads_on_change(tmp_path):
    path = tmp_path / "u"
    log = Log()
    database = sasl.UsersDatabase(str(path), log)
    assert database.get("a", "QPID") is None and "does not exist" in log.texts(logging.WARNING)[0]
    sasl.save_users(str(path), {("a", "QPID"): sasl.make_credentials("pw", 4096)})
    assert database.get("a", "QPID") is not None
    path.write_text("garbage that is long enough to be looked at\n")
    assert database.get("a", "QPID") is not None           # the previous one stays
    assert "not reloaded" in log.texts(logging.ERROR)[0]


def test_saslpasswd_tool(tmp_path, capsys):
    f = str(tmp_path / "db")
    assert saslpasswd.saslpasswd_main(["-c", "-p", "-f", f, "alice"], stdin=io.StringIO("pw\n")) == 0
    assert saslpasswd.saslpasswd_main(["-c", "-p", "-f", f, "-u", "R", "bob"], stdin=io.StringIO("x\n")) == 0
    assert saslpasswd.sasldblistusers_main(["-f", f]) == 0
    assert capsys.readouterr().out.splitlines() == ["alice@QPID: SCRAM-SHA-256 SCRAM-SHA-1",
                                                    "bob@R: SCRAM-SHA-256 SCRAM-SHA-1"]
    assert saslpasswd.saslpasswd_main(["-c", "-p", "-f", f, "carol"], stdin=io.StringIO("\n")) == 1
    assert "no password given" in capsys.readouterr().err
    assert saslpasswd.saslpasswd_main(["-d", "-f", f, "bob"]) == 1            # bob is bob@R
    assert "user bob@QPID not found" in capsys.readouterr().err
    assert saslpasswd.saslpasswd_main(["-d", "-f", f, "-u", "R", "bob"]) == 0
    assert saslpasswd.sasldblistusers_main(["-f", f]) == 0
    assert capsys.readouterr().out.splitlines() == ["alice@QPID: SCRAM-SHA-256 SCRAM-SHA-1"]
    assert saslpasswd.sasldblistusers_main(["-f", str(tmp_path / "none")]) == 1


def test_saslpasswd_refuses_to_change_a_cyrus_file(tmp_path, capsys):
    if subprocess.run(["which", "saslpasswd2"], capture_output=True).returncode:
        pytest.skip("saslpasswd2 (sasl2-bin) is not installed")
    f = str(tmp_path / "cyrus.db")
    subprocess.run(["saslpasswd2", "-c", "-p", "-f", f, "-u", "QPID", "a"], input="x\n", text=True, check=True)
    assert saslpasswd.saslpasswd_main(["-c", "-p", "-f", f, "b"], stdin=io.StringIO("y\n")) == 1
    assert "change it with saslpasswd2" in capsys.readouterr().err


# -- fuzzing: whatever the peer sends, a challenge or an outcome, never an exception ------------------
# The engine calls init() for the peer's sasl-init and respond() for each sasl-response after it
# (frames out of that order are its framing errors: tests/faults/test_bad_input.py).
_values = st.one_of(st.none(), st.binary(max_size=300), st.text(max_size=50), st.integers(-5, 2 ** 40),
                    st.builds(symbol, st.sampled_from(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "ANONYMOUS",
                                                       "EXTERNAL", "", "plain"])))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mech=st.one_of(st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"]), _values),
       initial=_values, responses=st.lists(_values, max_size=3))
def test_fuzzed_sasl_exchanges(tmp_path, db, mech, initial, responses):
    auth = authenticator(tmp_path, db)
    neg = auth.negotiation("fuzz")
    answers = [neg.init(mech, initial)]
    for response in responses:
        if outcome(answers[-1]) is not None:
            break
        answers.append(neg.respond(response))
    assert all(isinstance(a, bytes) for a in answers[:-1])           # challenges until the outcome
    code = outcome(answers[-1])
    assert code in (None, 0, sasl.AUTH, sasl.SYS_PERM)
    if code:
        assert auth.log.texts(logging.WARNING)        # a failure is logged, with its reason
