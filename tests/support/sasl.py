"""Users databases and Cyrus-style SASL configurations for brokers started with ``--auth yes``.

Users are made with the broker's own ``cypid-saslpasswd`` (installed beside the test's Python), the
way an operator makes them, so the tests go through the same files the broker reads.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def saslpasswd(path, user, password, realm="QPID", *extra):
    """Add (or change) ``user`` in the users database ``path``: ``cypid-saslpasswd -c -p``."""
    subprocess.run([str(BIN / "cypid-saslpasswd"), "-c", "-p", "-f", str(path), "-u", realm, *extra, user],
                   input=password + "\n", text=True, check=True, timeout=60)


def sasl_config(directory: Path, **keys) -> Path:
    """A ``--sasl-config`` directory whose qpidd.conf holds ``key: value`` for each of ``keys``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "qpidd.conf").write_text("".join("%s: %s\n" % kv for kv in keys.items()))
    return directory


def auth_args(directory: Path, users: dict[str, str], mech_list: str = "PLAIN") -> list[str]:
    """Broker arguments for ``--auth yes`` with ``users`` (login -> password) in a database under
    ``directory``, offering ``mech_list``."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "users.sasldb"
    for user, password in users.items():
        saslpasswd(db, user, password)
    conf = sasl_config(directory / "sasl", mech_list=mech_list, sasldb_path=db)
    return ["--auth", "yes", "--sasl-config", str(conf)]
