"""HTTP Basic authentication over the broker's users (broker/sasl.py's users database).

With ``--auth yes`` every page but /healthz and /readyz needs ``Authorization: Basic`` naming a user
of the broker's database and its password; a request without it, or with a wrong one, gets 401 and
``WWW-Authenticate: Basic`` (the browser asks). The identity is the broker's (``alice@QPID``), and is
the user the ACL checks the console's actions for, as for a QMF console's.

A password check is a PBKDF2 of the stored SCRAM salt (milliseconds of CPU): it runs in one
worker thread (hashlib releases the GIL), never on the loop, at most CHECKS_AT_ONCE at a time, and
a good check is remembered for CACHE_SECONDS (keyed by a keyed hash of login and password, never the
password) so a console polling every second costs nothing after the first. A failed login is one
warning per user and client host per FAIL_LOG_SECONDS.

With ``--auth no`` the broker trusts its clients, as on AMQP: a Basic user name is taken as given,
without one the user is ``anonymous``.
"""
import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import time
from concurrent.futures import ThreadPoolExecutor

from ..sasl import check_password

CACHE_SECONDS = 300.0
CACHE_SIZE = 256
CHECKS_AT_ONCE = 2
FAIL_LOG_SECONDS = 60.0
ANONYMOUS = "anonymous"


def parse_basic(header):
    """(login, password) of an ``Authorization: Basic`` value, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    login, sep, password = text.partition(":")
    if not sep or not login:
        return None
    return login, password


class BasicAuth:
    def __init__(self, broker):
        self.authenticator = broker.authenticator
        self.log = broker.log.getChild("Security")
        self.required = bool(self.authenticator.required)
        self._key = os.urandom(32)
        self._good = {}                 # keyed hash -> (identity, the users read then, expiry)
        self._failed_logged = {}        # (login, peer host) -> when it was last logged
        self._executor = None
        self._slots = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def user(self, header, peer):
        """The identity a request acts as, or None (refuse: 401)."""
        given = parse_basic(header)
        if not self.required:
            return given[0] if given else ANONYMOUS
        if given is None:
            return None
        login, password = given
        digest = hmac.new(self._key, ("%s\0%s" % (login, password)).encode("utf-8"), hashlib.sha256).digest()
        users = self.authenticator.users
        users.refresh()                 # a changed database is read again, as for AMQP logins
        stamp = id(users.users)         # a new dict each time it is read: remembered logins lapse
        now = time.monotonic()
        hit = self._good.get(digest)
        if hit is not None and hit[1] == stamp and hit[2] > now:
            return hit[0]
        identity, creds = self.authenticator.credentials(login)
        ok = False
        if creds is not None:
            async with self._slots:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http-auth")
                ok = await asyncio.get_running_loop().run_in_executor(self._executor, check_password,
                                                                      creds, password)
        if not ok:
            self._log_failure(login, peer, "user not found" if creds is None else "password verification failed")
            return None
        if len(self._good) >= CACHE_SIZE:
            self._good.clear()
        self._good[digest] = (identity, stamp, now + CACHE_SECONDS)
        return identity

    def _log_failure(self, login, peer, reason):
        now = time.monotonic()
        key = (login, peer.rsplit(":", 1)[0])     # the host: a browser retries from new ports
        last = self._failed_logged.get(key)
        if last is not None and now - last < FAIL_LOG_SECONDS:
            return
        if len(self._failed_logged) >= CACHE_SIZE:
            self._failed_logged.clear()
        self._failed_logged[key] = now
        self.log.warning("HTTP: Authentication failed for %s from %s: %s", login, peer, reason)

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


__all__ = ["BasicAuth", "parse_basic"]
