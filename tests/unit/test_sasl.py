"""broker/sasl.py and tools/saslpasswd.py in process: the mechanisms' exchanges, the users database
forms, the Cyrus SASL configuration file, and fuzzed SASL frames (hypothesis)."""
import io
import logging
import subprocess
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scramp import ScramClient

from cypid.broker import sasl
from cypid.pyx.codec import FrameReader, decode_performative, symbol
from cypid.tools import saslpasswd
from tests.support.recording_log import Log


def decode(frame_bytes):
    reader = FrameReader(65536)
    reader.feed(frame_bytes)
    ftype, _, body = reader.next_frame()
    assert ftype == sasl.SASL_FRAME
    code, fields, _ = decode_performative(body)
    return code, fields


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
    out, outcome = neg.on_frame(sasl.SASL_INIT, [symbol("PLAIN"), b"\x00alice\x00secret"])
    assert outcome == sasl.OK and neg.identity == "alice@QPID" and decode(out) == (sasl.SASL_OUTCOME, [0])
    for response, reason in ((b"\x00alice\x00nope", "password verification failed"),
                             (b"\x00bob\x00secret", "user not found"),
                             (b"alice", "malformed PLAIN response"),
                             (b"\x00\xff\x00x", "not UTF-8"),
                             (b"mallory\x00alice\x00secret", "may not act as 'mallory'")):
        neg = auth.negotiation("peer-2")
        out, outcome = neg.on_frame(sasl.SASL_INIT, [symbol("PLAIN"), response])
        assert outcome == sasl.AUTH and decode(out) == (sasl.SASL_OUTCOME, [1])
        assert reason in auth.log.texts(logging.WARNING)[-1]
        assert "peer-2" in auth.log.texts(logging.WARNING)[-1]


@pytest.mark.parametrize("mech", sasl.SCRAM_MECHANISMS)
@pytest.mark.parametrize("user,password,ok", [("alice", "secret", True), ("alice", "bad", False),
                                              ("nobody", "secret", False)])
def test_scram(tmp_path, db, mech, user, password, ok):
    auth = authenticator(tmp_path, db)
    client = ScramClient([mech], user, password)
    neg = auth.negotiation("peer")
    out, outcome = neg.on_frame(sasl.SASL_INIT, [symbol(mech), client.get_client_first().encode()])
    assert outcome is None
    code, fields = decode(out)
    assert code == sasl.SASL_CHALLENGE      # an unknown user gets a challenge too: no enumeration
    client.set_server_first(bytes(fields[0]).decode())
    out, outcome = neg.on_frame(sasl.SASL_RESPONSE, [client.get_client_final().encode()])
    code, fields = decode(out)
    assert code == sasl.SASL_OUTCOME
    if ok:
        assert outcome == 0 and neg.identity == "alice@QPID"
        client.set_server_final(bytes(fields[1]).decode())
    else:
        assert outcome == sasl.AUTH and neg.identity is None
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
    assert neg.on_frame(sasl.SASL_INIT, [symbol("ANONYMOUS"), None])[1] == 0
    assert neg.identity == "anonymous@QPID"
    neg = auth.negotiation("p")
    assert neg.on_frame(sasl.SASL_INIT, [symbol("SCRAM-SHA-256"), b"n,,n=alice,r=abc"])[1] == sasl.AUTH


def test_bad_config_lines(tmp_path, db):
    (tmp_path / "qpidd.conf").write_text("mech_list PLAIN\n")
    with pytest.raises(sasl.SaslConfigError, match=r"qpidd.conf:1: expected 'key: value'"):
        sasl.read_sasl_config(str(tmp_path), Log())


def test_auth_no_trusts_plain():
    auth = sasl.Authenticator(SimpleNamespace(auth=False, realm="QPID"), Log())
    assert auth.mechanisms == ("ANONYMOUS", "PLAIN")
    neg = auth.negotiation("p")
    assert neg.on_frame(sasl.SASL_INIT, [symbol("PLAIN"), b"\x00bob\x00anything"])[1] == 0
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


# -- fuzzing: whatever the frames say, a frame to send and an outcome, never an exception ------------
_values = st.one_of(st.none(), st.binary(max_size=300), st.text(max_size=50), st.integers(-5, 2 ** 40),
                    st.builds(symbol, st.sampled_from(["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "ANONYMOUS",
                                                       "EXTERNAL", "", "plain"])))
_frames = st.lists(st.tuples(st.sampled_from([0x40, 0x41, 0x42, 0x43, 0x44, 0x10, 0x99]),
                             st.lists(_values, max_size=3)), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=_frames, first=st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1", None]),
       initial=st.binary(max_size=200))
def test_fuzzed_sasl_frames(tmp_path, db, frames, first, initial):
    auth = authenticator(tmp_path, db)
    neg = auth.negotiation("fuzz")
    if first is not None:
        frames = [(sasl.SASL_INIT, [symbol(first), initial])] + frames
    for code, fields in frames:
        out, outcome = neg.on_frame(code, fields)
        code_out, fields_out = decode(out)
        assert code_out in (sasl.SASL_CHALLENGE, sasl.SASL_OUTCOME)
        if outcome is not None:
            assert code_out == sasl.SASL_OUTCOME and fields_out[0] == outcome
            assert outcome in (0, sasl.AUTH, sasl.SYS_PERM)
            if outcome:
                assert auth.log.texts(logging.WARNING)        # a failure is logged, with its reason
            break
