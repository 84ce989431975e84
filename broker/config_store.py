"""The durable configuration store: durable queues, exchanges and bindings, in SQLite.

qpidd keeps this in Berkeley DB (``queues.db``, ``exchanges.db``, ``bindings.db``; see
../shared/reference/store.md section 7); cypid uses SQLite from the standard library in WAL mode
with ``synchronous=FULL``: every change is one transaction, durable when the call returns, so a
declare is confirmed to the client only after it is on disk.

Rows keep what the node was declared with, so that recovery declares it again the same way:
the node properties as given (an AMQP-encoded map: types such as symbols and unsigned integers
survive), and for a queue the directory of its journal (relative to the store directory).

Tables (version 1)::

    meta(key TEXT PRIMARY KEY, value)                      -- 'version' = 1
    exchanges(id INTEGER PRIMARY KEY, name TEXT UNIQUE, type TEXT, properties BLOB)
    queues(id INTEGER PRIMARY KEY, name TEXT UNIQUE, properties BLOB, journal TEXT)
    bindings(exchange TEXT, queue TEXT, key TEXT, arguments BLOB, PRIMARY KEY (exchange, queue, key))
    federation(id INTEGER PRIMARY KEY, kind TEXT, name TEXT, properties BLOB)  -- durable links, bridges
    lifetimes(kind TEXT, name TEXT, policy TEXT, PRIMARY KEY (kind, name))   -- see below

A durable node made by a link's attach with a ``lifetime-policy`` (broker/lifetime.py) has a
``lifetimes`` row (kind 'queue' or 'exchange', its policy's name), so that the policy still governs
it after a restart; declaring the node anew or deleting it removes the row. (An older store has no
such table: it is created, empty, when the store is opened; an older broker ignores it.)

Ids only grow (AUTOINCREMENT), so a queue declared again after a delete gets a new journal
directory and can never meet the old one's files.

Blocking I/O (a commit is an fsync): the broker calls it on declares, deletes and binds, which are
rare next to messages.
"""
import os
import re
import sqlite3

from cypid.pyx.codec import decode, encode

VERSION = 1
FILENAME = "config.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, type TEXT NOT NULL,
    properties BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS queues (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, properties BLOB NOT NULL,
    journal TEXT);
CREATE TABLE IF NOT EXISTS bindings (
    exchange TEXT NOT NULL, queue TEXT NOT NULL, key TEXT NOT NULL, arguments BLOB,
    PRIMARY KEY (exchange, queue, key));
CREATE TABLE IF NOT EXISTS federation (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, name TEXT NOT NULL,
    properties BLOB NOT NULL, UNIQUE (kind, name));
CREATE TABLE IF NOT EXISTS lifetimes (
    kind TEXT NOT NULL, name TEXT NOT NULL, policy TEXT NOT NULL, PRIMARY KEY (kind, name));
"""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ConfigStoreError(Exception):
    """The configuration store cannot be opened or used (unreadable, newer version)."""


def _encode_map(props):
    return encode(dict(props or {}))


def _decode_map(blob):
    if blob is None:
        return {}
    value = decode(bytes(blob))
    return value if isinstance(value, dict) else {}


def journal_dirname(qid, name):
    """The journal directory of queue ``qid``: the id (unique for ever) and a readable, safe part
    of the name (the journal's file headers hold the full name)."""
    safe = _UNSAFE.sub("_", name)[:48].strip("._") or "q"
    return "%06d-%s" % (qid, safe)


class ConfigStore:
    """``ConfigStore(directory)``: opens (creating) ``directory/config.sqlite``."""

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, FILENAME)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if row is None:
                with self._txn():
                    self.db.execute("INSERT INTO meta(key, value) VALUES ('version', ?)", (VERSION,))
            elif int(row[0]) > VERSION:
                raise ConfigStoreError("%s: version %s is newer than this broker's (%d)"
                                       % (self.path, row[0], VERSION))
        except sqlite3.Error as e:
            raise ConfigStoreError("%s: %s" % (self.path, e)) from None

    def _txn(self):
        return _Txn(self.db)

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    # -- exchanges ----------------------------------------------------------------------------
    def add_exchange(self, name, type_, properties):
        with self._txn():
            self.db.execute("INSERT OR REPLACE INTO exchanges(name, type, properties) VALUES (?, ?, ?)",
                            (name, type_, _encode_map(properties)))
            self.db.execute("DELETE FROM lifetimes WHERE kind='exchange' AND name=?", (name,))

    def remove_exchange(self, name):
        """The exchange and every binding to it."""
        with self._txn():
            self.db.execute("DELETE FROM exchanges WHERE name=?", (name,))
            self.db.execute("DELETE FROM bindings WHERE exchange=?", (name,))
            self.db.execute("DELETE FROM lifetimes WHERE kind='exchange' AND name=?", (name,))

    def exchanges(self):
        """[(name, type, properties)] in the order they were declared."""
        rows = self.db.execute("SELECT name, type, properties FROM exchanges ORDER BY id").fetchall()
        return [(name, type_, _decode_map(blob)) for name, type_, blob in rows]

    # -- queues -------------------------------------------------------------------------------
    def add_queue(self, name, properties):
        """Record a durable queue; returns its journal directory name (relative to the store)."""
        with self._txn():
            self.db.execute("DELETE FROM queues WHERE name=?", (name,))
            self.db.execute("DELETE FROM lifetimes WHERE kind='queue' AND name=?", (name,))
            cur = self.db.execute("INSERT INTO queues(name, properties) VALUES (?, ?)",
                                  (name, _encode_map(properties)))
            jdir = journal_dirname(cur.lastrowid, name)
            self.db.execute("UPDATE queues SET journal=? WHERE id=?", (jdir, cur.lastrowid))
        return jdir

    def remove_queue(self, name):
        """The queue and every binding of it."""
        with self._txn():
            self.db.execute("DELETE FROM queues WHERE name=?", (name,))
            self.db.execute("DELETE FROM bindings WHERE queue=?", (name,))
            self.db.execute("DELETE FROM lifetimes WHERE kind='queue' AND name=?", (name,))

    def queue_journal(self, name):
        """The journal directory name of queue ``name``'s row, or None."""
        row = self.db.execute("SELECT journal FROM queues WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def queues(self):
        """[(name, properties, journal dir name)] in the order they were declared."""
        rows = self.db.execute("SELECT name, properties, journal FROM queues ORDER BY id").fetchall()
        return [(name, _decode_map(blob), jdir) for name, blob, jdir in rows]

    # -- lifetime policies (kind 'queue' or 'exchange') ------------------------------------------
    def set_lifetime(self, kind, name, policy):
        """The lifetime policy of durable node ``name`` (recorded after its row)."""
        with self._txn():
            self.db.execute("INSERT OR REPLACE INTO lifetimes(kind, name, policy) VALUES (?, ?, ?)",
                            (kind, name, policy))

    def lifetimes(self):
        """[(kind, name, policy)]."""
        return self.db.execute("SELECT kind, name, policy FROM lifetimes ORDER BY rowid").fetchall()

    # -- bindings -----------------------------------------------------------------------------
    def add_binding(self, exchange, queue, key, arguments=None):
        with self._txn():
            self.db.execute("INSERT OR REPLACE INTO bindings(exchange, queue, key, arguments) "
                            "VALUES (?, ?, ?, ?)",
                            (exchange, queue, key, _encode_map(arguments) if arguments else None))

    def remove_binding(self, exchange, queue, key):
        with self._txn():
            self.db.execute("DELETE FROM bindings WHERE exchange=? AND queue=? AND key=?",
                            (exchange, queue, key))

    def bindings(self):
        """[(exchange, queue, key, arguments or None)] in the order they were made."""
        rows = self.db.execute("SELECT exchange, queue, key, arguments FROM bindings ORDER BY rowid"
                               ).fetchall()
        return [(ex, q, key, _decode_map(blob) if blob is not None else None) for ex, q, key, blob in rows]

    # -- federation links and bridges (kind 'link' or 'bridge') -------------------------------------
    def add_federation(self, kind, name, properties):
        with self._txn():
            self.db.execute("INSERT OR REPLACE INTO federation(kind, name, properties) VALUES (?, ?, ?)",
                            (kind, name, _encode_map(properties)))

    def remove_federation(self, kind, name):
        with self._txn():
            self.db.execute("DELETE FROM federation WHERE kind=? AND name=?", (kind, name))

    def federation(self):
        """[(kind, name, properties)] in the order they were made."""
        rows = self.db.execute("SELECT kind, name, properties FROM federation ORDER BY id").fetchall()
        return [(kind, name, _decode_map(blob)) for kind, name, blob in rows]


class _Txn:
    """One IMMEDIATE transaction: committed (and synced) on success, rolled back on error."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
        return False
