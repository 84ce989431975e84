"""Connection limits under a flood: --connection-limit-per-user, --connection-limit-per-ip,
--max-connections and the ACL's ``quota connections``. Each refused connection is closed after open
with amqp:resource-limit-exceeded; the limit holds; a bystander opened before the flood keeps its
round trip under 0.5 s and another user still connects; one log line per episode; after the flood the
broker's open file descriptors come back and its RSS has not grown much."""
import os
import time

import pytest

from tests.support.broker import BrokerProcess, wait_until
from tests.support.faults import Bystander
from tests.support.rawclient import AMQP_HEADER, RawClient
from tests.support.sasl import auth_args

TIMEOUT = 30
FLOOD = 60
LIMITED = "amqp:resource-limit-exceeded"


def open_raw(broker, user=None):
    """A raw connection through SASL and open; returns it and the broker's close frame (None if the
    connection stays open)."""
    c = RawClient.connect(broker, timeout=TIMEOUT)
    if user is None:
        assert c.sasl("ANONYMOUS", b"") == 0
    else:
        assert c.sasl("PLAIN", b"\x00%s\x00pw-%s" % (user.encode(), user.encode())) == 0
    assert c.amqp_header() == AMQP_HEADER
    c.send_open()
    c.expect(0x10)      # the broker's open
    try:
        frame = c.read_frame(timeout=0.3)
    except TimeoutError:
        frame = None
    return c, frame


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed_round_trip(bystander):
    start = time.monotonic()
    bystander.check()
    return time.monotonic() - start


def flood(broker, bystander, user, allowed):
    """Open ``allowed`` connections that must stay, then FLOOD more that must be refused, checking the
    bystander between batches. Returns the connections kept open."""
    kept = []
    for _ in range(allowed):
        c, frame = open_raw(broker, user)
        assert frame is None, "refused below the limit: %r" % (frame,)
        kept.append(c)
    for i in range(FLOOD):
        c, frame = open_raw(broker, user)
        try:
            assert frame is not None and frame.code == 0x18, frame     # close
            assert frame.error.condition == LIMITED
            assert "User connection denied by configured limit" in frame.error.description
        finally:
            c.close()
        if i % 10 == 0:
            assert timed_round_trip(bystander) < 0.5
    return kept


def users_db(tmp_path, *users):
    return auth_args(tmp_path, {user: "pw-%s" % user for user in users})


def after_flood(broker, kept, fds_before, rss_before):
    for c in kept:
        c.close()
    wait_until(lambda: fds(broker.pid) <= fds_before, timeout=TIMEOUT,
               message=lambda: "fds back to %d (now %d)" % (fds_before, fds(broker.pid)))
    assert rss_kib(broker.pid) - rss_before < 20 * 1024


@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
@pytest.mark.parametrize("how", ["option", "acl quota"])
def test_per_user_limit(tmp_path, how):
    args = users_db(tmp_path, "mallory", "alice")
    if how == "option":
        args += ["--connection-limit-per-user", "3"]
    else:
        # qpidd's rule: users no quota line names get --connection-limit-per-user (0: none), so 'all'
        (tmp_path / "q.acl").write_text("quota connections 3 mallory@QPID\nquota connections 20 all\n"
                                        "acl allow all all\n")
        args += ["--acl-file", str(tmp_path / "q.acl")]
    with BrokerProcess(tmp_path, args) as broker:
        bystander = Bystander(broker, user="alice", password="pw-alice")
        fds_before, rss_before = fds(broker.pid), rss_kib(broker.pid)
        kept = flood(broker, bystander, "mallory", 3)
        others = [open_raw(broker, "alice") for _ in range(2)]      # another user: her own count
        assert all(frame is None for _, frame in others)
        for c, _ in others:
            c.close()
        assert len(broker.log_lines("Connection limit: .* of mallory@QPID")) == 1      # one episode
        after_flood(broker, kept, fds_before, rss_before)
        c, frame = open_raw(broker, "mallory")          # below the limit again
        assert frame is None
        c.close()
        assert timed_round_trip(bystander) < 0.5
        bystander.close()


@pytest.mark.parametrize("option,log", [("--connection-limit-per-ip", r"from 127\.0\.0\.1"),
                                        ("--max-connections", r"--max-connections 4")])
@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
def test_host_and_broker_limits(tmp_path, option, log):
    with BrokerProcess(tmp_path, [option, "4"]) as broker:
        bystander = Bystander(broker)           # one of the four
        fds_before, rss_before = fds(broker.pid), rss_kib(broker.pid)
        kept = flood(broker, bystander, None, 3)
        assert len(broker.log_lines("Connection limit: .*" + log)) == 1
        after_flood(broker, kept, fds_before, rss_before)
        assert timed_round_trip(bystander) < 0.5
        bystander.close()
