"""Issue 13, Must show 5: the HA brokers' own identity works through an ACL rule, as the seed's
sections 1.12.9 and 1.12.12.2 show. A primary and a backup run with --auth yes, --ha-username ha
(--ha-password, --ha-mechanism PLAIN) and an ACL file that is default-deny but for the seed's rule
``acl allow ha@QPID all all`` (and one for the administrator and one client): the backup becomes
ready and replicates; a client the ACL names nowhere is refused. Without the HA rule the backup is
refused by the primary's ACL, and the primary's log says whom it refused (the seed's 1.12.12.2).
"""
from proton import Message
from proton.utils import BlockingConnection

from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HaCluster, HaConsole, queue_depths
from tests.support.sasl import auth_args

BROKER_ID = "org.apache.qpid.broker:broker:amqp-broker"
USERS = {"ha": "ha-secret", "admin": "admin-secret", "alice": "pw-alice", "mallory": "pw-mallory"}
HA_RULE = "acl allow ha@QPID all all\n"        # the seed's rule, ha-username=ha
POLICY = """\
acl allow admin@QPID all all
acl allow alice@QPID all all
acl deny-log all all
"""


def args(tmp_path, policy):
    out = auth_args(tmp_path / "sasl", USERS)
    (tmp_path / "ha.acl").write_text(policy)
    return out + ["--acl-file", str(tmp_path / "ha.acl"),
                  "--ha-username", "ha", "--ha-password", "ha-secret", "--ha-mechanism", "PLAIN"]


def test_ha_identity_allowed_by_the_seeds_rule(brokers, tmp_path):
    cluster = HaCluster(brokers, 2, args=args(tmp_path, HA_RULE + POLICY), credentials="admin:admin-secret@")
    primary, backup = cluster.brokers
    with HaConsole(cluster.admin_url(primary)) as c:
        c.call("create", {"type": "queue", "name": "aclq", "properties": {"durable": False}, "strict": True},
               object_name=BROKER_ID)
    alice = BlockingConnection(primary.url, timeout=60, user="alice", password="pw-alice")
    sender = alice.create_sender("aclq")
    for i in range(5):
        sender.send(Message(body="m%d" % i))
    alice.close()
    wait_until(lambda: queue_depths(cluster.admin_url(backup)).get("aclq") == 5, 60, interval=0.05)
    # a client the ACL does not name: refused on the primary, whatever it asks
    mallory = BlockingConnection(primary.url, timeout=60, user="mallory", password="pw-mallory")
    try:
        try:
            mallory.create_sender("aclq")
            refused = ""
        except Exception as e:      # proton's LinkDetached with the broker's condition
            refused = str(e)
        assert "amqp:unauthorized-access" in refused, refused
        assert "ACL denied queue access request for aclq from mallory@QPID" in refused
    finally:
        mallory.close()
    assert not primary.log_lines(r"ACL denied: ha@QPID")


def test_without_the_rule_the_backup_is_refused_and_the_log_names_it(brokers, tmp_path):
    cluster = HaCluster(brokers, 2, args=args(tmp_path, POLICY), credentials="admin:admin-secret@",
                        promote=False)
    with HaConsole(cluster.admin_url(cluster.brokers[0])) as c:
        c.promote()
    primary, backup = cluster.brokers
    primary.wait_for_log(r"ACL denied: ha@QPID ", timeout=60)
    with HaConsole(cluster.admin_url(backup)) as c:
        assert c.status() != "ready"
