"""Authentication: the SASL mechanisms the broker offers, the users database, and one connection's
SASL exchange.

Options (qpidd's): ``--auth yes|no``, ``--realm`` (QPID), ``--sasl-config DIR``. DIR/qpidd.conf is
read in Cyrus SASL's ``key: value`` form; ``mech_list`` (the mechanisms offered, space separated) and
``sasldb_path`` (the users database) are honoured, any other key is named in one notice and ignored.
Without ``--sasl-config`` the users database is ``<data-dir>/qpidd.sasldb`` and the mechanisms are
SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN. ANONYMOUS is offered only when ``mech_list`` names it.

A login ``alice`` is the user ``alice`` of the broker's realm, and its identity is ``alice@QPID``;
``alice@OTHER`` names realm OTHER explicitly.

The users database is either cypid's own file (``cypid-saslpasswd`` makes it; a text file holding,
per user, the SCRAM stored form -- salt, iteration count, StoredKey, ServerKey -- for SHA-256 and
SHA-1, never the password) or a Cyrus sasldb2 file made by ``saslpasswd2``: a Berkeley DB file read
through ``db_dump`` (Debian package db-util), which holds clear-text passwords that are turned into
the same stored form as they are read. The file is read again when it changes, so users added with
either tool can log in without a restart.

With ``--auth no`` the broker trusts its clients: ANONYMOUS and PLAIN are offered, PLAIN's user name
is taken as given and its password is not checked.

SASL outcome codes sent: 0 ok, 1 auth (wrong password, unknown user, mechanism not offered, a
malformed response), 3 sys-perm (a frame out of order; the connection's framing error). Each failed
login is one warning naming the user (as given), the mechanism and the peer.
"""
from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess

from scramp import ScramException, ScramMechanism

from .tls import peer_auth

OK, AUTH, SYS, SYS_PERM = 0, 1, 2, 3        # the SASL outcome codes (the engine writes the frames)

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
SUPPORTED = SCRAM_MECHANISMS + ("PLAIN", "ANONYMOUS", "EXTERNAL")
DEFAULT_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
ITERATIONS = 4096
FILE_MAGIC = "# cypid-sasldb 1"
DB_FILE = "qpidd.sasldb"
MAX_RESPONSE = 4096            # larger SASL responses are refused (no mechanism needs more)
_BDB_MAGICS = (0x00061561, 0x00053162)   # Berkeley DB hash and btree files


class SaslConfigError(ValueError):
    """A bad --sasl-config directory or users database; the text names the file."""


# --------------------------------------------------------------------------- the users database

def split_login(login: str, realm: str) -> tuple[str, str]:
    """(user, realm) of a login name: ``alice`` -> (alice, realm); ``alice@R`` -> (alice, R)."""
    user, sep, given = login.rpartition("@")
    if sep and user:
        return user, given
    return login, realm


def make_credentials(password: str, iterations: int = ITERATIONS) -> dict[str, tuple]:
    """{mechanism: (salt, StoredKey, ServerKey, iterations)} for each SCRAM mechanism."""
    return {mech: ScramMechanism(mech).make_auth_info(password, iteration_count=iterations)
            for mech in SCRAM_MECHANISMS}


def check_password(credentials: dict[str, tuple], password: str) -> bool:
    """Whether ``password`` gives the StoredKey kept for SCRAM-SHA-256 (else SHA-1)."""
    for mech in SCRAM_MECHANISMS:
        info = credentials.get(mech)
        if info is not None:
            salt, stored, _, iterations = info
            try:
                mine = ScramMechanism(mech).make_auth_info(password, iteration_count=iterations, salt=salt)
            except Exception:      # a password SASLprep refuses (e.g. control characters)
                return False
            return hmac.compare_digest(mine[1], stored)
    return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def format_users(users: dict[tuple[str, str], dict[str, tuple]]) -> str:
    """cypid's users file: a magic line, then ``user@realm MECH:iterations:salt:storedkey:serverkey ...``
    per user (base64 fields)."""
    lines = [FILE_MAGIC]
    for (user, realm), creds in sorted(users.items()):
        entries = ["%s:%d:%s:%s:%s" % (mech, info[3], _b64(info[0]), _b64(info[1]), _b64(info[2]))
                   for mech, info in sorted(creds.items())]
        lines.append("%s@%s %s" % (user, realm, " ".join(entries)))
    return "\n".join(lines) + "\n"


def parse_users(text: str, path: str) -> dict[tuple[str, str], dict[str, tuple]]:
    users = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        user, sep, realm = words[0].rpartition("@")
        if not sep or not user:
            raise SaslConfigError("%s:%d: expected user@realm, got %r" % (path, lineno, words[0]))
        creds = {}
        for entry in words[1:]:
            parts = entry.split(":")
            try:
                if len(parts) != 5 or parts[0] not in SCRAM_MECHANISMS:
                    raise ValueError(entry)
                creds[parts[0]] = (base64.b64decode(parts[2], validate=True),
                                   base64.b64decode(parts[3], validate=True),
                                   base64.b64decode(parts[4], validate=True), int(parts[1]))
            except ValueError:
                raise SaslConfigError("%s:%d: malformed credentials %r" % (path, lineno, entry)) from None
        users[(user, realm)] = creds
    return users


def _unescape_db_dump(line: str) -> bytes:
    """A ``db_dump -p`` data line (leading space, ``\\xx`` hex escapes, ``\\\\``) -> bytes."""
    out = bytearray()
    i, n = 1 if line.startswith(" ") else 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            if line[i + 1:i + 2] == "\\":
                out.append(0x5C)
                i += 2
                continue
            out.append(int(line[i + 1:i + 3], 16))
            i += 3
        else:
            out += c.encode("latin-1")
            i += 1
    return bytes(out)


def read_cyrus_sasldb(path: str) -> dict[tuple[str, str], str]:
    """{(user, realm): password} from a Cyrus sasldb2 (Berkeley DB) file, via ``db_dump -p``."""
    tool = shutil.which("db_dump") or shutil.which("db5.3_dump")
    if tool is None:
        raise SaslConfigError("%s is a Berkeley DB (Cyrus sasldb2) file: reading it needs db_dump "
                              "(Debian package db-util)" % path)
    try:
        done = subprocess.run([tool, "-p", path], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SaslConfigError("%s: db_dump failed: %s" % (path, e)) from None
    if done.returncode != 0:
        raise SaslConfigError("%s: db_dump failed: %s" % (
            path, done.stderr.decode("utf-8", "replace").strip() or "exit %d" % done.returncode))
    lines = done.stdout.decode("latin-1").splitlines()
    try:
        data = lines[lines.index("HEADER=END") + 1:]
    except ValueError:
        raise SaslConfigError("%s: db_dump printed no data" % path) from None
    if "DATA=END" in data:
        data = data[:data.index("DATA=END")]
    out = {}
    for key_line, value_line in zip(data[0::2], data[1::2]):
        parts = _unescape_db_dump(key_line).split(b"\x00")
        if len(parts) == 3 and parts[2] == b"userPassword":
            user, realm = parts[0].decode("utf-8", "replace"), parts[1].decode("utf-8", "replace")
            out[(user, realm)] = _unescape_db_dump(value_line).decode("utf-8", "replace")
    return out


def file_kind(path: str) -> str | None:
    """'cypid', 'berkeley-db', or None for a missing file; SaslConfigError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SaslConfigError("cannot read users database %s: %s" % (path, e.strerror)) from None
    if head.startswith(FILE_MAGIC.encode()):
        return "cypid"
    if len(head) >= 16:
        magic = (int.from_bytes(head[12:16], "little"), int.from_bytes(head[12:16], "big"))
        if any(m in _BDB_MAGICS for m in magic):
            return "berkeley-db"
    raise SaslConfigError("%s is not a users database (neither cypid-saslpasswd's nor a Cyrus sasldb2)"
                          % path)


def load_users(path: str) -> dict[tuple[str, str], dict[str, tuple]]:
    """{(user, realm): credentials} from either kind of users database; {} if there is no file."""
    kind = file_kind(path)
    if kind is None:
        return {}
    if kind == "cypid":
        with open(path, encoding="utf-8") as f:
            return parse_users(f.read(), path)
    return {key: make_credentials(pw) for key, pw in read_cyrus_sasldb(path).items()}


def save_users(path: str, users: dict[tuple[str, str], dict[str, tuple]]) -> None:
    """Write cypid's users file atomically (mode 0600: it is a secret)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(format_users(users))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class UsersDatabase:
    """The users database file, read again whenever its size or mtime changes."""

    def __init__(self, path: str, log):
        self.path = path
        self.log = log
        self.users: dict = {}
        self._stamp = None
        self.refresh(initial=True)

    def refresh(self, initial: bool = False) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self._stamp and not initial:
            return
        self._stamp = stamp
        if stamp is None:
            self.users = {}
            self.log.warning("SASL: users database %s does not exist: every login will fail until it "
                             "does (cypid-saslpasswd makes it)", self.path)
            return
        try:
            self.users = load_users(self.path)
        except SaslConfigError as e:
            if initial:
                raise
            self.log.error("SASL: users database not reloaded, the previous one stays: %s", e)
            return
        self.log.info("SASL: %d users read from %s", len(self.users), self.path)

    def get(self, user: str, realm: str):
        self.refresh()
        return self.users.get((user, realm))


# --------------------------------------------------------------------------- configuration

def read_sasl_config(directory: str, log) -> dict[str, str]:
    """DIR/qpidd.conf in Cyrus SASL's ``key: value`` form -> {key: value}."""
    path = os.path.join(directory, "qpidd.conf")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SaslConfigError("cannot read SASL configuration %s: %s" % (path, e.strerror)) from None
    out = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise SaslConfigError("%s:%d: expected 'key: value', got %r" % (path, lineno, line))
        out[key.strip()] = value.strip()
    ignored = sorted(k for k in out if k not in ("mech_list", "sasldb_path"))
    if ignored:
        log.log(25, "SASL: %s: ignoring %s (cypid reads only mech_list and sasldb_path)",
                path, ", ".join(ignored))
    return out


class Authenticator:
    """One broker's authentication settings: the mechanisms offered and the users database."""

    def __init__(self, options, log):
        self.log = log.getChild("Security") if hasattr(log, "getChild") else log
        self.required = bool(getattr(options, "auth", False))
        self.realm = getattr(options, "realm", "QPID") or "QPID"
        self.users = None
        self.require_encryption = bool(getattr(options, "require_encryption", False))
        self.no_dict = bool(getattr(options, "ssl_sasl_no_dict", False))
        self.external = True        # EXTERNAL offered to a peer with a verified client certificate
        if not self.required:
            self.mechanisms = ("ANONYMOUS", "PLAIN")
            return
        config = {}
        sasl_dir = getattr(options, "sasl_config", None)
        if sasl_dir:
            config = read_sasl_config(sasl_dir, self.log)
        mechs = DEFAULT_MECHANISMS
        if "mech_list" in config:
            listed = [m.upper() for m in config["mech_list"].replace(",", " ").split()]
            unsupported = [m for m in listed if m not in SUPPORTED]
            if unsupported:
                self.log.log(25, "SASL: mech_list names %s, which cypid does not support: not offered",
                             " ".join(unsupported))
            mechs = tuple(m for m in listed if m in SUPPORTED and m != "EXTERNAL")
            self.external = "EXTERNAL" in listed
            if not mechs and not self.external:
                raise SaslConfigError("mech_list in %s names no mechanism cypid supports (%s)"
                                      % (os.path.join(sasl_dir, "qpidd.conf"), " ".join(SUPPORTED)))
        self.mechanisms = mechs
        path = config.get("sasldb_path")
        if not path:
            data_dir = getattr(options, "data_path", None) or "."
            path = os.path.join(data_dir, DB_FILE)
        self.users = UsersDatabase(path, self.log)
        self.log.info("SASL: authentication required; mechanisms %s; users database %s",
                      " ".join(self.mechanisms), path)
        self._dummy = {}

    def identity(self, user: str, realm: str) -> str:
        return "%s@%s" % (user, realm)

    def credentials(self, login: str):
        """(identity, credentials or None) for a login name."""
        user, realm = split_login(login, self.realm)
        return self.identity(user, realm), self.users.get(user, realm)

    def dummy_credentials(self, mech: str):
        """Credentials no password matches, so an unknown user's SCRAM exchange runs as a known
        user's does and fails only at the proof."""
        info = self._dummy.get(mech)
        if info is None:
            info = self._dummy[mech] = ScramMechanism(mech).make_auth_info(
                base64.b64encode(os.urandom(24)).decode(), iteration_count=ITERATIONS)
        return info

    def offered(self, external_id, ssf) -> tuple:
        """The mechanisms offered on one connection: EXTERNAL first when its verified client
        certificate names someone (and mech_list, if any, lists it); on TLS with --ssl-sasl-no-dict
        only EXTERNAL (the others yield to a passive dictionary attack); on a plain connection under
        --require-encryption with --auth yes none (as qpidd's Cyrus SASL with a minimum SSF: no
        mechanism cypid has brings encryption)."""
        if self.require_encryption and not ssf and self.required:
            return ()       # (with --auth no the connection is refused after open: broker/tls.py)
        mechs = self.mechanisms
        if ssf and self.no_dict:
            mechs = ()
        if external_id and self.external:
            mechs = ("EXTERNAL",) + mechs
        return mechs

    def negotiation(self, peer: str, transport=None) -> "Negotiation":
        return Negotiation(self, peer, transport)


# --------------------------------------------------------------------------- one connection's SASL

class Negotiation:
    """The SASL exchange of one connection, for the engine's handler (docs/ENGINE.md): ``init(mech,
    response)`` and ``respond(response)`` return what the engine sends -- an outcome code, (code,
    additional-data), or bytes (a challenge); on OK ``identity`` and ``mechanism`` are set."""

    def __init__(self, auth: Authenticator, peer: str, transport=None):
        self.auth = auth
        self.peer = peer
        self.identity = None
        self.mechanism = None
        self.login = None
        self._scram = None
        self.external_id, self.ssf = peer_auth(transport)   # from a verified TLS client certificate
        self.offered = auth.offered(self.external_id, self.ssf)

    def init(self, mech, response):
        self.mechanism = str(mech) if mech is not None else ""
        return self._init(self.mechanism, response)

    def respond(self, response):
        if self._scram is None:
            return self._fail(SYS_PERM, "amqp:connection:framing-error: unexpected SASL response")
        return self._scram_final(response)

    # -- outcomes ------------------------------------------------------------------------------
    def _ok(self, identity: str, additional: bytes | None = None):
        self.identity = identity
        return OK if additional is None else (OK, additional)

    def _fail(self, code: int, reason: str):
        self.auth.log.warning("SASL: Authentication failed for %s from %s (mechanism %s): %s",
                              self.login if self.login is not None else "<no user>", self.peer,
                              self.mechanism or "none", reason)
        return code

    # -- mechanisms ----------------------------------------------------------------------------
    def _init(self, mech: str, response):
        if mech not in self.offered:
            if not self.offered and self.auth.require_encryption:
                return self._fail(AUTH, "encryption required (--require-encryption): connect with TLS")
            return self._fail(AUTH, "mechanism %r not offered" % mech)
        response = bytes(response) if isinstance(response, (bytes, bytearray, memoryview)) else b""
        if len(response) > MAX_RESPONSE:
            return self._fail(AUTH, "response of %d bytes" % len(response))
        if mech == "ANONYMOUS":
            self.login = "anonymous"
            return self._ok("anonymous" if not self.auth.required else
                            self.auth.identity("anonymous", self.auth.realm))
        if mech == "PLAIN":
            return self._plain(response)
        if mech == "EXTERNAL":
            return self._external(response)
        return self._scram_first(mech, response)

    def _external(self, response: bytes):
        """The identity is the TLS client certificate's; a non-empty response is an authorization id,
        allowed only when it names that same identity."""
        self.login = self.external_id
        identity = self.external_id if "@" in self.external_id else \
            self.auth.identity(self.external_id, self.auth.realm)
        try:
            authzid = response.decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(AUTH, "EXTERNAL response is not UTF-8")
        if authzid and authzid not in (self.external_id, identity):
            return self._fail(AUTH, "certificate of %s may not act as %r" % (identity, authzid))
        return self._ok(identity)

    def _plain(self, response: bytes):
        parts = response.split(b"\x00")
        if len(parts) != 3 or not parts[1]:
            return self._fail(AUTH, "malformed PLAIN response")
        try:
            authzid, login, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            return self._fail(AUTH, "PLAIN response is not UTF-8")
        self.login = login
        if not self.auth.required:
            return self._ok(login)
        identity, creds = self.auth.credentials(login)
        if creds is None:
            return self._fail(AUTH, "user not found")
        if not check_password(creds, password):
            return self._fail(AUTH, "password verification failed")
        if authzid and authzid not in (login, identity):
            return self._fail(AUTH, "may not act as %r" % authzid)
        return self._ok(identity)

    def _scram_first(self, mech: str, response: bytes):
        found = {}

        def lookup(username):
            self.login = username
            identity, creds = self.auth.credentials(username)
            found["identity"], found["known"] = identity, creds is not None
            info = creds.get(mech) if creds is not None else None
            return info if info is not None else self.auth.dummy_credentials(mech)

        server = ScramMechanism(mech).make_server(lookup)
        try:
            server.set_client_first(response.decode("utf-8"))
            challenge = server.get_server_first().encode("utf-8")
        except (ScramException, UnicodeDecodeError, ValueError, KeyError, IndexError) as e:
            return self._fail(AUTH, "bad SCRAM client-first message: %s" % e)
        self._scram = (server, found)
        return challenge

    def _scram_final(self, response):
        server, found = self._scram
        self._scram = None
        data = bytes(response) if isinstance(response, (bytes, bytearray, memoryview)) else b""
        if len(data) > MAX_RESPONSE:
            return self._fail(AUTH, "response of %d bytes" % len(data))
        try:
            server.set_client_final(data.decode("utf-8"))
            final = server.get_server_final().encode("utf-8")
        except (ScramException, UnicodeDecodeError, ValueError, KeyError, IndexError) as e:
            reason = "user not found" if not found.get("known") else "password verification failed"
            if not isinstance(e, ScramException) or "proof" not in str(e).lower():
                reason = "bad SCRAM client-final message: %s" % e if found.get("known") else reason
            return self._fail(AUTH, reason)
        if not found.get("known"):
            return self._fail(AUTH, "user not found")
        return self._ok(found["identity"], final)


__all__ = ["Authenticator", "Negotiation", "SaslConfigError", "UsersDatabase", "load_users", "save_users",
           "make_credentials", "check_password", "split_login", "read_cyrus_sasldb", "file_kind"]
