"""qpidd's queue quotas (ACL ``quota queues`` lines, --max-queues-per-user) and its rule for users a
quota file does not name, on a real broker with --auth yes (python-qpid-proton and QMF).

What qpidd 1.40 does (checked on the stock broker): a user may have as many queues it created as its
quota (its own line, a group's, ``all``'s), else --max-queues-per-user; once a file has ``quota
queues`` lines a user none names gets the option's value, where 0 means none at all (the same for
``quota connections`` and --connection-limit-per-user); without --acl-file the option does nothing.
A create over the limit is refused with amqp:unauthorized-access "ACL denied queue create request";
cypid answers amqp:resource-limit-exceeded with the same text naming the quota (issue 13: a limit is
answered with resource-limit-exceeded, as the connection limits are);
a queue deleted gives its place back. cypid logs one line per episode, not one per refusal, and
raises qpidd's queueQuotaDeny event (tests/integration/test_acl_qmf.py).
"""
import pytest
from proton.utils import BlockingConnection

from tests.integration.test_qmf_agent import Console, QmfError
from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess, wait_until
from tests.support.sasl import auth_args

TIMEOUT = 30
BROKER_ID = "org.apache.qpid.broker:broker:amqp-broker"
USERS = ("alice", "bob", "carol", "admin", "mallory")


def start(tmp_path, policy, *extra):
    args = auth_args(tmp_path, {u: "pw-%s" % u for u in USERS})
    if policy is not None:
        (tmp_path / "q.acl").write_text(policy)
        args += ["--acl-file", str(tmp_path / "q.acl")]
    return BrokerProcess(tmp_path, args + list(extra))


def connect(broker, user):
    return BlockingConnection(broker.url, timeout=TIMEOUT, user=user, password="pw-%s" % user)


def create(conn, name):
    """'' if the queue was made, else the error text of the refusal."""
    try:
        conn.create_sender(name, options=CreateQueue({"auto-delete": False})).close()
    except Exception as e:      # proton's LinkDetached carries the condition and description
        return str(e)
    return ""


def refused(text, user, name):
    return "amqp:resource-limit-exceeded" in text and \
        "ACL denied queue create request for %s from %s@QPID: queue quota" % (name, user) in text


def test_quota_line_limits_a_user_and_a_deleted_queue_gives_its_place_back(tmp_path):
    policy = "quota queues 3 alice@QPID\nacl allow all all\n"
    with start(tmp_path, policy, "--max-queues-per-user", "3") as broker:
        c = Console("alice:pw-alice@" + broker.url)     # its reply queue is alice's first
        alice = connect(broker, "alice")
        assert create(alice, "a1") == "" and create(alice, "a2") == ""
        for _ in range(3):
            assert refused(create(alice, "a3"), "alice", "a3")
        # bob has no line: --max-queues-per-user's 3
        bob = connect(broker, "bob")
        assert [create(bob, "b%d" % i) for i in range(3)] == ["", "", ""]
        assert refused(create(bob, "b3"), "bob", "b3")
        # one episode, one line, however many refusals
        assert len(broker.log_lines(r"Queue quota: alice@QPID has 3 queues \(limit 3\)")) == 1
        # QMF creates count too, and deleting gives the place back
        try:
            with pytest.raises(QmfError) as info:
                c.method(BROKER_ID, "create", {"type": "queue", "name": "a3", "properties": {}, "strict": True})
            assert "ACL denied queue create request for a3 from alice@QPID" in info.value.text
            c.method(BROKER_ID, "delete", {"type": "queue", "name": "a1", "options": {}})
            c.method(BROKER_ID, "create", {"type": "queue", "name": "a3", "properties": {}, "strict": True})
            assert refused(create(alice, "a4"), "alice", "a4")
            (acl,) = c.query("acl")
            assert acl["_values"]["maxQueuesPerUser"] == 3
            assert acl["_values"]["queueQuotaDenyCount"] == 6
        finally:
            c.close()
        # a new episode after the count went below the limit: a second line
        assert len(broker.log_lines(r"Queue quota: alice@QPID has 3 queues \(limit 3\)")) == 2
        # a dynamic receiver's queue counts while it lives (it goes with its link)
        carol = connect(broker, "carol")
        kept = [carol.create_receiver(None, dynamic=True, name="r%d" % i) for i in range(3)]
        with pytest.raises(Exception, match="ACL denied queue create request for .* from carol@QPID"):
            carol.create_receiver(None, dynamic=True, name="r3")
        kept[0].close()
        carol.create_receiver(None, dynamic=True, name="r4")     # r0's queue went with its link
        alice.close()
        bob.close()
        carol.close()


def test_users_a_quota_file_does_not_name_get_the_option_and_zero_is_none(tmp_path):
    # qpidd's rule: with quota lines and no 'all' line, the others get --max-queues-per-user (0: none)
    policy = "group team bob@QPID carol@QPID\nquota queues 1 team\nquota queues 0 admin@QPID\nacl allow all all\n"
    with start(tmp_path, policy) as broker:
        broker.wait_for_log(r"'quota queues' lines are in force: users they do not name may have none")
        alice = connect(broker, "alice")
        assert refused(create(alice, "x"), "alice", "x")
        admin = connect(broker, "admin")
        assert refused(create(admin, "y"), "admin", "y")
        bob, carol = connect(broker, "bob"), connect(broker, "carol")
        assert create(bob, "b1") == "" and create(carol, "c1") == ""        # the group's 1 each
        assert refused(create(bob, "b2"), "bob", "b2")
        for c in (alice, admin, bob, carol):
            c.close()


def test_quota_connections_follow_the_same_rule(tmp_path):
    policy = "quota connections 1 bob@QPID\nacl allow all all\n"
    with start(tmp_path, policy) as broker:
        bob = connect(broker, "bob")
        with pytest.raises(Exception, match="amqp:resource-limit-exceeded"):
            connect(broker, "bob")
        with pytest.raises(Exception, match="amqp:resource-limit-exceeded"):
            connect(broker, "alice")      # not named, --connection-limit-per-user 0: none
        bob.close()
    with start(tmp_path / "2", policy + "quota connections 5 all\n") as broker:
        connect(broker, "alice").close()     # 'all' names everyone else


def test_max_queues_per_user_without_an_acl_file_does_nothing_and_says_so(tmp_path):
    with start(tmp_path, None, "--max-queues-per-user", "1") as broker:
        broker.wait_for_log(r"--max-queues-per-user 1 has no effect without --acl-file")
        alice = connect(broker, "alice")
        assert create(alice, "q1") == "" and create(alice, "q2") == ""
        alice.close()


def test_attaching_to_an_existing_queue_is_not_a_create(tmp_path):
    policy = "quota queues 1 all\nacl allow all all\n"
    with start(tmp_path, policy) as broker:
        alice = connect(broker, "alice")
        assert create(alice, "mine") == ""
        assert refused(create(alice, "more"), "alice", "more")
        # an existing queue is not a create: attaching to it costs nothing
        alice.create_sender("mine").close()
        bob = connect(broker, "bob")
        bob.create_sender("mine").close()
        assert create(bob, "bobs") == ""
        alice.close()
        bob.close()


@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
def test_a_queue_flood_over_the_quota_leaves_everyone_else_working(tmp_path):
    """Must show 4 for the queue limit: mallory asks for queue after queue over her quota; each is
    refused, the broker logs one line, a bystander's round trip stays under 0.5 s, another user still
    creates queues, and after she leaves the broker's descriptors and RSS come back."""
    from tests.integration.test_auth_limits import fds, rss_kib, timed_round_trip
    from tests.support.faults import Bystander
    policy = "quota queues 5 mallory@QPID\nquota queues 50 all\nacl allow all all\n"
    with start(tmp_path, policy) as broker:
        bystander = Bystander(broker, user="alice", password="pw-alice")
        fds_before, rss_before = fds(broker.pid), rss_kib(broker.pid)
        mallory = connect(broker, "mallory")
        kept = [mallory.create_receiver(None, dynamic=True, name="k%d" % i) for i in range(5)]
        for i in range(150):
            with pytest.raises(Exception, match="ACL denied queue create request for .* from mallory@QPID"):
                mallory.create_receiver(None, dynamic=True, name="f%d" % i)
            if i % 15 == 0:
                assert timed_round_trip(bystander) < 0.5
        assert len(broker.log_lines(r"Queue quota: mallory@QPID has 5 queues \(limit 5\)")) == 1
        bob = connect(broker, "bob")
        assert create(bob, "bobs") == ""
        bob.close()
        for r in kept:
            r.close()
        mallory.close()
        wait_until(lambda: fds(broker.pid) <= fds_before, timeout=TIMEOUT,
                   message=lambda: "fds back to %d (now %d)" % (fds_before, fds(broker.pid)))
        assert rss_kib(broker.pid) - rss_before < 20 * 1024
        assert timed_round_trip(bystander) < 0.5
        bystander.close()
