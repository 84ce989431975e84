"""qpid-config on canned QMF answers (FakeQpidd): requests sent, output layouts, bad input."""
import pytest

from cypid.tools import config
import test_tools_fakeagent
from test_tools_fakeagent import PKG, FakeQpidd, oname

use_fake = test_tools_fakeagent.use_fake  # the fixture


@pytest.fixture
def fake():
    f = FakeQpidd()
    return f


def run(capsys, *argv):
    rc = config.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def creates(fake):
    return [args for name, method, args in fake.calls if method == "create"]


def deletes(fake):
    return [args for name, method, args in fake.calls if method == "delete"]


# -- listings ------------------------------------------------------------------------------------------

def seed_queues(fake):
    for n in ("pub_start", "pub_done", "sub_ready", "sub_done"):
        fake.add_queue(n)
    fake.add_queue("perftest0", durable=True)
    fake.add_queue("reply-dhcp-100-18-254.bos.redhat.com.20713", auto_delete=True, exclusive=True)
    fake.add_queue("topic-dhcp-100-18-254.bos.redhat.com.20713", auto_delete=True, exclusive=True)


def test_summary_layout(use_fake, capsys):
    seed_queues(use_fake)
    rc, out, _ = run(capsys)
    assert rc == 0
    assert out == ("Total Exchanges: 8\n"
                   "         direct: 3\n"
                   "         fanout: 1\n"
                   "        headers: 1\n"
                   "          topic: 3\n"
                   "   Total Queues: 7\n"
                   "        durable: 1\n"
                   "    non-durable: 6\n")


def test_queues_layout_is_the_seeds(use_fake, capsys):
    seed_queues(use_fake)
    rc, out, _ = run(capsys, "queues")
    assert rc == 0
    assert out == (
        "Queue Name                                  Attributes\n"
        "=================================================================\n"
        "pub_start\n"
        "pub_done\n"
        "sub_ready\n"
        "sub_done\n"
        "perftest0                                   --durable\n"
        "reply-dhcp-100-18-254.bos.redhat.com.20713  auto-del excl\n"
        "topic-dhcp-100-18-254.bos.redhat.com.20713  auto-del excl\n")


def test_queue_attributes_show_every_option(use_fake, capsys):
    use_fake.add_queue("q", durable=True, alt="amq.fanout", arguments={
        "qpid.file_size": 48, "qpid.file_count": 4, "qpid.max_size": 1000, "qpid.max_count": 10,
        "qpid.policy_type": "ring_strict", "qpid.last_value_queue_key": "k", "qpid.flow_stop_size": 900,
        "qpid.flow_resume_size": 800, "qpid.flow_stop_count": 9, "qpid.flow_resume_count": 8,
        "qpid.group_header_key": "g", "qpid.shared_msg_group": 1, "qpid.queue_event_generation": 2,
        "x-other": "v"})
    rc, out, _ = run(capsys, "queues", "q")
    line = out.splitlines()[2]
    assert line == ("q           --durable --file-size=48 --file-count=4 --max-queue-size=1000 --max-queue-count=10"
                    " --limit-policy=ring-strict --lvq-key=k --alternate-exchange=amq.fanout"
                    " --flow-stop-size=900 --flow-resume-size=800 --flow-stop-count=9 --flow-resume-count=8"
                    " --group-header=g --shared-groups --generate-queue-events=2 --argument x-other=v")


def test_queue_filter_no_match_prints_nothing_and_fails(use_fake, capsys):
    seed_queues(use_fake)
    rc, out, _ = run(capsys, "queues", "nomatch")
    assert (rc, out) == (1, "")
    rc, out, _ = run(capsys, "queues", "perf")
    assert rc == 0 and out.splitlines()[2].startswith("perftest0")


def test_exchanges_layout(use_fake, capsys):
    use_fake.add_exchange("seq", "topic", durable=True, arguments={"qpid.msg_sequence": 1, "qpid.ive": 1},
                          alt="amq.fanout")
    rc, out, _ = run(capsys, "exchanges")
    lines = out.splitlines()
    assert lines[0] == "Type      Exchange Name       Attributes"
    assert lines[1] == "=" * 50
    assert lines[2] == "direct"
    assert lines[3] == "direct    amq.direct"
    assert lines[-1] == "topic     seq                 --durable --sequence --ive --alternate-exchange=amq.fanout"


def test_ignore_default(use_fake, capsys):
    rc, out, _ = run(capsys, "exchanges", "--ignore-default")
    assert "direct    amq.direct" in out.splitlines()[2]


def seed_bindings(fake):
    for n in ("pub_start", "perftest0"):
        fake.add_queue(n)
    fake.add_binding("amq.direct", "perftest0", "perftest0")
    fake.add_binding("qpid.management", "pub_start", "mgmt.#")
    fake.add_binding("amq.match", "perftest0", "", {"x-match": "all", "k": "v"})


def test_exchange_bindings_listing_old_form(use_fake, capsys):
    """The seed's `qpid-config -a ADDR -b exchanges` (and plain `-b exchanges`)."""
    seed_bindings(use_fake)
    expected = ("Exchange '' (direct)\n"
                "    bind pub_start => pub_start\n"
                "    bind perftest0 => perftest0\n"
                "Exchange 'amq.direct' (direct)\n"
                "    bind perftest0 => perftest0\n"
                "Exchange 'amq.topic' (topic)\n"
                "Exchange 'amq.fanout' (fanout)\n"
                "Exchange 'amq.match' (headers)\n"
                "    bind  => perftest0 {'x-match': 'all', 'k': 'v'}\n"
                "Exchange 'qmf.default.direct' (direct)\n"
                "Exchange 'qmf.default.topic' (topic)\n"
                "Exchange 'qpid.management' (topic)\n"
                "    bind mgmt.# => pub_start\n")
    for argv in (("-b", "exchanges"), ("-a", "h:1", "-b", "exchanges"), ("-r", "exchanges"),
                 ("--bindings", "exchanges"), ("-b", "h:1", "-r", "exchanges"), ("exchanges", "-b")):
        rc, out, _ = run(capsys, *argv)
        assert (rc, out) == (0, expected), argv
    assert use_fake.connects[1][0] == "h:1"
    assert use_fake.connects[4][0] == "h:1"
    assert use_fake.connects[0][0] == "localhost"


def test_queue_bindings_listing(use_fake, capsys):
    seed_bindings(use_fake)
    rc, out, _ = run(capsys, "-r", "queues", "perftest0")
    assert out == ("Queue 'perftest0'\n"
                   "    bind perftest0 => ''\n"
                   "    bind perftest0 => amq.direct\n"
                   "    bind  => amq.match {'x-match': 'all', 'k': 'v'}\n")
    rc, out, _ = run(capsys, "-r", "--ignore-default", "queues", "perftest0")
    assert "=> ''" not in out


def test_list_objects(use_fake, capsys):
    use_fake.add_queue("q1", durable=True)
    rc, out, _ = run(capsys, "list", "queue")
    assert out.splitlines() == ["Objects of type 'queue'", "  name  durable  autoDelete",
                                "  ===========================", "  q1    True     False"]
    rc, out, _ = run(capsys, "list", "queue", "--show-property", "name", "--show-property", "msgDepth")
    assert out.splitlines()[1] == "  name  msgDepth"


def test_broker_address_forms(use_fake, capsys):
    run(capsys, "-b", "guest/guest@h:2")
    run(capsys, "--broker-addr", "h:3", "queues")
    run(capsys, "-a", "h:4")
    run(capsys, "--broker=h:5")
    assert [c[0] for c in use_fake.connects] == ["guest/guest@h:2", "h:3", "h:4", "h:5"]


# -- add / del ------------------------------------------------------------------------------------------

def test_add_queue_sends_every_option(use_fake, capsys):
    rc, out, err = run(capsys, "add", "queue", "q", "--durable", "--file-count", "4", "--file-size", "48",
                       "--max-queue-size", "1000", "--max-queue-count", "10", "--limit-policy", "ring",
                       "--lvq-key", "k", "--generate-queue-events", "1", "--flow-stop-size", "900",
                       "--flow-resume-size", "800", "--flow-stop-count", "9", "--flow-resume-count", "8",
                       "--group-header", "g", "--shared-groups", "--argument", "x-a=5", "--argument", "x-b=text",
                       "--argument", "x-c", "--alternate-exchange", "amq.fanout", "--replicate", "all",
                       "--efp-partition-num", "1", "--efp-pool-file-size", "2048")
    assert (rc, out, err) == (0, "", "")
    (args,) = creates(use_fake)
    assert args["type"] == "queue" and args["name"] == "q" and args["strict"] is True
    assert args["properties"] == {
        "durable": True, "qpid.file_count": 4, "qpid.file_size": 48, "qpid.max_size": 1000,
        "qpid.max_count": 10, "qpid.policy_type": "ring", "qpid.last_value_queue_key": "k",
        "qpid.queue_event_generation": 1, "qpid.flow_stop_size": 900, "qpid.flow_resume_size": 800,
        "qpid.flow_stop_count": 9, "qpid.flow_resume_count": 8, "qpid.group_header_key": "g",
        "qpid.shared_msg_group": 1, "x-a": 5, "x-b": "text", "x-c": None, "alternate-exchange": "amq.fanout",
        "qpid.replicate": "all", "qpid.efp_partition_num": 1, "qpid.efp_pool_file_size": 2048}


@pytest.mark.parametrize("policy,sent", [("reject", "reject"), ("ring", "ring"), ("ring-strict", "ring_strict"),
                                         ("flow-to-disk", "flow_to_disk"), ("none", None)])
def test_limit_policies(use_fake, capsys, policy, sent):
    rc, _, _ = run(capsys, "add", "queue", "q", "--limit-policy", policy, "--max-queue-count", "5")
    assert rc == 0
    assert creates(use_fake)[0]["properties"].get("qpid.policy_type") == sent


@pytest.mark.parametrize("order,key", [("lvq", "qpid.last_value_queue"),
                                       ("lvq-no-browse", "qpid.last_value_queue_no_browse")])
def test_order(use_fake, capsys, order, key):
    run(capsys, "add", "queue", "q", "--order", order)
    assert creates(use_fake)[0]["properties"] == {key: 1}


def test_journal_geometry_only_with_durable(use_fake, capsys):
    run(capsys, "add", "queue", "q", "--file-count", "4", "--file-size", "48")
    assert creates(use_fake)[0]["properties"] == {}


def test_options_may_come_before_the_command(use_fake, capsys):
    rc, _, _ = run(capsys, "--durable", "add", "queue", "q")
    assert rc == 0 and creates(use_fake)[0]["properties"] == {"durable": True}


def test_add_exchange(use_fake, capsys):
    rc, _, _ = run(capsys, "add", "exchange", "topic", "ex", "--durable", "--sequence", "--ive",
                   "--alternate-exchange", "amq.fanout", "--argument", "x=1")
    assert rc == 0
    (args,) = creates(use_fake)
    assert args == {"type": "exchange", "name": "ex", "strict": True, "properties": {
        "exchange-type": "topic", "durable": True, "qpid.msg_sequence": 1, "qpid.ive": 1,
        "alternate-exchange": "amq.fanout", "x": 1}}


def test_del_queue_options(use_fake, capsys):
    for argv, options in ((("del", "queue", "q"), {"if_empty": True, "if_unused": True}),
                          (("del", "queue", "q", "--force"), {"if_empty": False, "if_unused": False}),
                          (("del", "queue", "q", "--force-if-not-empty"), {"if_empty": False, "if_unused": True}),
                          (("del", "queue", "q", "--force-if-used"), {"if_empty": True, "if_unused": False})):
        use_fake.add_queue("q")
        rc, _, err = run(capsys, *argv)
        assert rc == 0, err
        assert deletes(use_fake)[-1] == {"type": "queue", "name": "q", "options": options}


def test_del_exchange_and_generic_objects(use_fake, capsys):
    use_fake.add_exchange("ex", "direct")
    assert run(capsys, "del", "exchange", "ex")[0] == 0
    assert deletes(use_fake)[-1] == {"type": "exchange", "name": "ex"}
    rc, _, err = run(capsys, "add", "link", "l1", "--argument", "host=h", "--argument", "port=5672")
    assert rc == 1 and "unknown object type: link" in err
    assert creates(use_fake)[-1] == {"type": "link", "name": "l1", "strict": False,
                                     "properties": {"host": "h", "port": 5672}}


# -- bindings -------------------------------------------------------------------------------------------

def test_bind_and_unbind(use_fake, capsys):
    use_fake.add_queue("q")
    assert run(capsys, "bind", "amq.direct", "q", "key1")[0] == 0
    assert creates(use_fake)[-1] == {"type": "binding", "name": "amq.direct/q/key1", "properties": {},
                                     "strict": True}
    assert run(capsys, "bind", "amq.topic", "q")[0] == 0
    assert creates(use_fake)[-1]["name"] == "amq.topic/q/"
    assert run(capsys, "unbind", "amq.direct", "q", "key1")[0] == 0
    assert deletes(use_fake)[-1] == {"type": "binding", "name": "amq.direct/q/key1", "options": {}}


@pytest.mark.parametrize("argv,name,props", [
    (("all", "key=value"), "amq.match/q/", {"key": "value", "x-match": "all"}),
    (("any", "a=1,", "b=2"), "amq.match/q/", {"a": "1", "b": "2", "x-match": "any"}),
    (("any", "a=1", ",", "b=2"), "amq.match/q/", {"a": "1", "b": "2", "x-match": "any"}),
    (("k1", "all", "a=1"), "amq.match/q/k1", {"a": "1", "x-match": "all"}),
])
def test_bind_headers(use_fake, capsys, argv, name, props):
    use_fake.add_queue("q")
    rc, _, err = run(capsys, "bind", "amq.match", "q", *argv)
    assert rc == 0, err
    assert creates(use_fake)[-1] == {"type": "binding", "name": name, "properties": props, "strict": True}


@pytest.mark.parametrize("argv,message", [
    ((), "need 'any'/'all' plus conditions"),
    (("k", "some", "a=1"), "need 'any' or 'all', not 'some'"),
    (("all", "novalue"), "expected key=value"),
    (("all",), "need 'any'/'all' plus conditions"),
])
def test_bind_headers_bad_input_changes_nothing(use_fake, capsys, argv, message):
    use_fake.add_queue("q")
    rc, _, err = run(capsys, "bind", "amq.match", "q", *argv)
    assert rc == 1 and message in err
    assert creates(use_fake) == []


def test_bind_xml_reads_the_query_file(use_fake, capsys, tmp_path):
    use_fake.add_exchange("xml", "xml")
    use_fake.add_queue("q")
    path = tmp_path / "q.xq"
    path.write_text("./weather")
    assert run(capsys, "bind", "xml", "q", "k", "-f", str(path))[0] == 0
    assert creates(use_fake)[-1]["properties"] == {"xquery": "./weather"}
    rc, _, err = run(capsys, "bind", "xml", "q", "k", "-f", str(tmp_path / "missing"))
    assert rc == 1 and "Unable to read XQuery file" in err


# -- broker-wide -----------------------------------------------------------------------------------------

def test_log(use_fake, capsys):
    assert run(capsys, "log")[1] == "Log level: notice+\n"
    assert run(capsys, "log", "debug+")[0] == 0
    assert use_fake.log_level == "debug+"


def test_reload_acl_without_acl_module(use_fake, capsys):
    rc, out, _ = run(capsys, "reload-acl")
    assert (rc, out) == (1, "Failed: ACL Module Not Loaded in Broker\n")


# -- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (("--bogus",), "unrecognized arguments: --bogus"),
    (("add", "queue", "q", "--limit-policy", "sometimes"), "invalid choice: 'sometimes'"),
    (("add", "queue", "q", "--max-queue-count", "ten"), "invalid integer value: 'ten'"),
    (("add", "queue", "q", "--max-queue-count", "-1"), "must not be negative"),
    (("add", "queue", "q", "--replicate", "some"), "Invalid replication level 'some'"),
    (("add", "queue"), "add queue needs <name>"),
    (("add", "exchange", "topic"), "add exchange needs <type> <name>"),
    (("del", "queue"), "del queue needs <name>"),
    (("bind", "amq.direct"), "bind needs"),
    (("frobnicate",), "unknown command 'frobnicate'"),
    (("--ssl-key", "k"), "missing '--ssl-certificate'"),
])
def test_usage_errors_exit_1_without_connecting(use_fake, capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 1
    assert out == ""
    assert err.startswith("Usage:  qpid-config [OPTIONS]")
    assert message in err
    assert use_fake.connects == [] and use_fake.calls == []


def test_existing_queue_readded(use_fake, capsys):
    use_fake.add_queue("q")
    rc, out, err = run(capsys, "add", "queue", "q", "--max-queue-count", "7")
    assert rc == 1
    assert err == ("Failed: Exception: Exception from Agent: {'error_code': 7, "
                   "'error_text': 'object already exists: q'}\n")


def test_delete_missing_queue_and_exchange(use_fake, capsys):
    rc, _, err = run(capsys, "del", "queue", "nope")
    assert rc == 1 and "No such queue: nope" in err
    rc, _, err = run(capsys, "del", "exchange", "nope")
    assert rc == 1 and "No such exchange: nope" in err


def test_delete_non_empty_queue_needs_force(use_fake, capsys):
    use_fake.add_queue("full", depth=3)
    rc, _, err = run(capsys, "del", "queue", "full")
    assert rc == 1 and "Cannot delete queue full; queue not empty" in err
    assert oname("queue", "full") in use_fake.objects
    assert run(capsys, "del", "queue", "full", "--force")[0] == 0
    assert oname("queue", "full") not in use_fake.objects


def test_unreachable_broker(capsys):
    rc, out, err = run(capsys, "-b", "127.0.0.1:1", "queues")
    assert rc == 1
    assert err.startswith("Failed: ConnectError: cannot connect to 127.0.0.1:1")


def test_bad_broker_address(capsys):
    rc, _, err = run(capsys, "-b", "a:b:c")
    assert rc == 1 and "invalid broker address" in err


def test_help(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for option in ("--durable", "--file-count N (8)", "--limit-policy [none | reject | flow-to-disk | ring | ring-strict]",
                   "--force-if-not-empty", "--sequence", "--ive", "-a [ --broker-addr ] Address (localhost)",
                   "-b [ --bindings ]", "--generate-queue-events", "--shared-groups", "--argument <NAME=VALUE>"):
        assert option in out


def test_timeout_option_reaches_the_console(use_fake, capsys):
    run(capsys, "-t", "3", "queues")
    run(capsys, "--timeout", "0", "queues")
    assert [c[1] for c in use_fake.connects] == [3, None]


def test_pkg_constant():
    assert PKG == "org.apache.qpid.broker"
