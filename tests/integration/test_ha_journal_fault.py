"""A backup whose journal fails (the store's failpoint ``CYPID_JOURNAL_FAULT_FILE``, broker/store.py
FaultyJournal: while the file exists a sync fails with EIO and appends are refused) on real brokers.

The backup must not acknowledge a stream message it did not sync, so the primary drops it (and
settles its producers with the backups still ready: here none); the backup logs one line naming its
journal, and it must not stay ``ready`` (promotable) while it lacks messages the primary accepted. When
the disk works again (or the backup is restarted) it catches up, and a failover to it loses nothing.
"""
import re
import threading

import pytest
from proton.reactor import Container

from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HA_ARGS, HaConsole, QmfError, status_of, wait_status

from tests.faults import test_store_journal_failure as store_faults
from tests.integration.test_ha_replication import browse, create, receive, send

QUEUE = "dq"


class Producer(store_faults.Producer):
    """tests/faults' producer (every message in flight as the credit allows, ``outcomes`` {body:
    accepted|rejected|released}), sending to this test's QUEUE."""

    def on_start(self, event):
        event.container.create_sender(event.container.connect(self.url, reconnect=False), QUEUE)


def durable_outcomes(broker, bodies):
    producer = Producer(broker.url, [(body, True) for body in bodies])
    threading.Thread(target=Container(producer).run, daemon=True).start()
    assert producer.done.wait(120), "producer did not finish"
    return producer.outcomes


def pair(brokers, fault):
    """A primary and one ready backup whose journal fails while ``fault`` exists."""
    primary = brokers(*HA_ARGS)
    backup = brokers(*HA_ARGS, env={"CYPID_JOURNAL_FAULT_FILE": str(fault)})
    url = primary.url + "," + backup.url
    for b in (primary, backup):
        with HaConsole(b.url) as c:
            c.set_brokers_url(url)
    with HaConsole(primary.url) as c:
        c.promote()
    wait_status(primary, "active")
    wait_status(backup, "ready")
    create(primary, "queue", QUEUE, durable=True)
    first = ["a%d" % i for i in range(20)]
    send(primary, QUEUE, first, durable=True)
    wait_until(lambda: browse(backup, QUEUE) == first, 60, interval=0.05)
    return primary, backup, first


def journal_errors(backup, offset):
    return [line for line in backup.log_text_from(offset).splitlines()
            if re.search(r"\berror\b", line, re.I) and "journal" in line.lower()]


def fail_over_and_drain(primary, backup, expected):
    """kill -9 of the primary, promotion of the backup: every accepted message is on it, in order."""
    primary.kill()
    with HaConsole(backup.url) as c:
        c.promote()
    wait_status(backup, "active")
    assert receive(backup, QUEUE, len(expected)) == expected


def test_backup_journal_fault_drops_it_until_the_disk_works(brokers, tmp_path):
    fault = tmp_path / "backup-disk-broken"
    primary, backup, first = pair(brokers, fault)
    offset, primary_offset = backup.log_size(), primary.log_size()
    fault.write_text("")
    during = ["b%d" % i for i in range(200)]
    outcomes = durable_outcomes(primary, during)
    # the primary's own journal works: its producers are settled once it has dropped the backup
    assert set(outcomes.values()) == {"accepted"}, sorted(set(outcomes.values()))
    # the backup lacks what was accepted meanwhile: it is no longer a candidate for promotion
    wait_status(backup, "catchup")
    with HaConsole(backup.url) as c, pytest.raises(QmfError, match="Still catching up"):
        c.promote()
    # ... for as long as the disk fails: it keeps trying (less often), one log line for the episode
    wait_until(lambda: primary.log_text_from(primary_offset).count("%s connected" % backup.url) >= 4, 60,
               interval=0.1)
    assert status_of(backup) == "catchup"
    lines = [line for line in backup.log_text_from(offset).splitlines() if "[HA]" in line and "journal" in line]
    assert len(lines) == 1 and " error " in lines[0], "\n".join(lines[:20])
    assert str(backup.data_dir) in lines[0] and "/jrnl/" in lines[0], lines[0]     # names the journal
    assert len(journal_errors(backup, offset)) <= 2, "\n".join(journal_errors(backup, offset)[:20])
    fault.unlink()
    wait_status(backup, "ready")
    assert browse(backup, QUEUE) == first + during
    fail_over_and_drain(primary, backup, first + during)


def test_backup_restarted_after_its_journal_failed_catches_up(brokers, tmp_path):
    fault = tmp_path / "backup-disk-broken"
    primary, backup, first = pair(brokers, fault)
    fault.write_text("")
    during = ["b%d" % i for i in range(200)]
    assert set(durable_outcomes(primary, during).values()) == {"accepted"}
    wait_status(backup, "catchup")
    backup.kill()
    fault.unlink()
    after = ["c%d" % i for i in range(50)]
    send(primary, QUEUE, after, durable=True)
    backup.start()
    with HaConsole(backup.url) as c:        # the URL was set over QMF (the ports are known late)
        c.set_brokers_url(primary.url + "," + backup.url)
    wait_status(backup, "ready")
    assert browse(backup, QUEUE) == first + during + after
    fail_over_and_drain(primary, backup, first + during + after)
