"""cypid-saslpasswd and cypid-sasldblistusers: the broker's users database, in the form of Cyrus SASL's
saslpasswd2 and sasldblistusers2.

    cypid-saslpasswd [-c] [-p] [-n] [-f FILE] [-u REALM] USER     set USER's password (stdin with -p)
    cypid-saslpasswd -d [-f FILE] [-u REALM] USER                 delete USER
    cypid-sasldblistusers [-f FILE]                               list user@realm and what is kept

The file holds, per user, SCRAM's stored form (salt, iteration count, StoredKey and ServerKey for
SCRAM-SHA-256 and SCRAM-SHA-1), never the password; it is written atomically with mode 0600. The
broker reads it as ``sasldb_path`` (or DATA-DIR/qpidd.sasldb) and notices changes without a restart.
A Cyrus sasldb2 file (Berkeley DB) can be listed here and used by the broker as it is, but is changed
only with saslpasswd2. Exit status: 0 done, 1 an error (one line on stderr), 2 bad usage.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from cypid.broker import sasl

DEFAULT_FILE = os.path.join("data", sasl.DB_FILE)


def _fail(prog: str, text: str) -> int:
    print("%s: %s" % (prog, text), file=sys.stderr)
    return 1


def _read_password(pipe: bool, stdin) -> str | None:
    if pipe:
        line = stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("Password: ")
    again = getpass.getpass("Again (for verification): ")
    return first if first == again else None


def saslpasswd_main(argv=None, stdin=None) -> int:
    prog = "cypid-saslpasswd"
    parser = argparse.ArgumentParser(prog=prog, description="Set or delete a user's password in the "
                                     "broker's users database (saslpasswd2's options).")
    parser.add_argument("-c", action="store_true", help="create the user (or set a new password)")
    parser.add_argument("-p", action="store_true", help="read the password from stdin, one line, no prompt")
    parser.add_argument("-n", action="store_true",
                        help="keep no plain-text password (always so: only SCRAM's stored form is kept)")
    parser.add_argument("-d", action="store_true", help="delete the user")
    parser.add_argument("-f", metavar="FILE", default=DEFAULT_FILE,
                        help="the users database (default %s, what `make run` reads)" % DEFAULT_FILE)
    parser.add_argument("-u", metavar="REALM", default="QPID", help="the user's realm (default QPID)")
    parser.add_argument("user", metavar="USER")
    args = parser.parse_args(argv)
    if args.d and args.c:
        return _fail(prog, "-c and -d cannot be given together")
    try:
        kind = sasl.file_kind(args.f)
    except sasl.SaslConfigError as e:
        return _fail(prog, str(e))
    if kind == "berkeley-db":
        return _fail(prog, "%s is a Cyrus sasldb2 file: change it with saslpasswd2, or give a new file"
                     % args.f)
    users = sasl.load_users(args.f) if kind else {}
    key = (args.user, args.u)
    if args.d:
        if key not in users:
            return _fail(prog, "user %s@%s not found in %s" % (args.user, args.u, args.f))
        del users[key]
    else:
        password = _read_password(args.p, stdin or sys.stdin)
        if password is None:
            return _fail(prog, "passwords don't match")
        if not password:
            return _fail(prog, "no password given")
        try:
            users[key] = sasl.make_credentials(password)
        except Exception as e:      # a password SASLprep refuses
            return _fail(prog, "password not usable: %s" % e)
    try:
        sasl.save_users(args.f, users)
    except OSError as e:
        return _fail(prog, "cannot write %s: %s" % (args.f, e.strerror))
    return 0


def sasldblistusers_main(argv=None) -> int:
    prog = "cypid-sasldblistusers"
    parser = argparse.ArgumentParser(prog=prog, description="List the users of a users database "
                                     "(cypid's or a Cyrus sasldb2 file).")
    parser.add_argument("-f", metavar="FILE", default=DEFAULT_FILE,
                        help="the users database (default %s)" % DEFAULT_FILE)
    args = parser.parse_args(argv)
    try:
        kind = sasl.file_kind(args.f)
        if kind is None:
            return _fail(prog, "%s: no such file" % args.f)
        if kind == "berkeley-db":
            rows = [("%s@%s" % key, "userPassword") for key in sasl.read_cyrus_sasldb(args.f)]
        else:
            rows = [("%s@%s" % key, " ".join(sorted(creds, reverse=True)))
                    for key, creds in sasl.load_users(args.f).items()]
    except sasl.SaslConfigError as e:
        return _fail(prog, str(e))
    for name, what in sorted(rows):
        print("%s: %s" % (name, what))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(saslpasswd_main())
