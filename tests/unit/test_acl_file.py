"""broker/acl.py in process: the ACL file parser (lines, groups, continuations, errors with their
line), the evaluator (first match wins, wildcards, topic routing keys, limits, default deny), a
hypothesis property test against a straightforward reference model, and fuzzing of the parser."""
import string
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cypid.broker import acl as aclmod
from cypid.broker.acl import Acl, AclError

from tests.support.recording_log import Log

FILE = """\
# groups may hold groups; a trailing backslash continues a line
group admins admin@QPID \\
    root@QPID
group staff alice@QPID admins
acl deny-log alice@QPID create queue durable=true
acl allow staff create queue name=tmp.*
acl allow all publish exchange name=amq.topic routingkey=news.#
acl allow bob@QPID create queue queuemaxsizeupperlimit=1000
acl allow all access method name=Lookup* schemapackage=org.apache.qpid.acl
quota connections 3 staff
quota queues 5 all
acl deny all all
acl allow bob@QPID all all
"""


def decide(acl, user, action, obj, **props):
    return acl.decide(user, action, obj, props)[0]


def test_parse_and_decide():
    acl = Acl.parse(FILE, "f.acl")
    assert acl.groups["staff"] == {"alice@QPID", "admin@QPID", "root@QPID"}
    assert acl.ignored == 1                                  # the rule after 'acl deny all all'
    assert decide(acl, "alice@QPID", "create", "queue", name="tmp.x", durable=True) == "deny-log"
    assert decide(acl, "alice@QPID", "create", "queue", name="tmp.x", durable=False) == "allow"
    assert decide(acl, "root@QPID", "create", "queue", name="tmp.x", durable=True) == "allow"
    assert decide(acl, "root@QPID", "create", "queue", name="other") == "deny"
    assert decide(acl, "carol@QPID", "publish", "exchange", name="amq.topic", routingkey="news") == "allow"
    assert decide(acl, "carol@QPID", "publish", "exchange", name="amq.topic", routingkey="news.a.b") == "allow"
    assert decide(acl, "carol@QPID", "publish", "exchange", name="amq.topic", routingkey="sport") == "deny"
    assert decide(acl, "bob@QPID", "create", "queue", name="q", maxqueuesize=1000) == "allow"
    assert decide(acl, "bob@QPID", "create", "queue", name="q", maxqueuesize=1001) == "deny"
    assert decide(acl, "bob@QPID", "create", "queue", name="q") == "deny"     # no size: the limit fails
    assert decide(acl, "x@QPID", "access", "method", name="LookupPublish",
                  schemapackage="org.apache.qpid.acl") == "allow"
    assert acl.quota("connections", "root@QPID") == 3 and acl.quota("connections", "bob@QPID") is None
    assert acl.quota("queues", "bob@QPID") == 5
    assert acl.transfer


def test_no_rule_matching_denies_and_allow_all_allows():
    assert decide(Acl.parse("acl allow alice@QPID consume queue\n"), "bob@QPID", "consume", "queue") == "deny"
    acl = Acl.parse("acl deny bob@QPID all all\nacl allow all all\n")
    assert decide(acl, "bob@QPID", "consume", "queue", name="q") == "deny"
    assert decide(acl, "eve@QPID", "delete", "exchange", name="x") == "allow"
    assert not acl.transfer


def test_host_ranges():
    acl = Acl.parse("acl deny all create connection host=10.0.0.1,10.0.0.9\nacl allow all all\n")
    assert decide(acl, "a", "create", "connection", host="10.0.0.5") == "deny"
    assert decide(acl, "a", "create", "connection", host="10.0.0.10") == "allow"


@pytest.mark.parametrize("text,line,message", [
    ("acl allow alice@QPID\n", 1, "expected 'acl PERMISSION"),
    ("\n\nacl permit all all\n", 3, "unknown permission 'permit'"),
    ("acl allow all fly\n", 1, "unknown action 'fly'"),
    ("acl allow all create barn\n", 1, "unknown object 'barn'"),
    ("acl allow all create queue colour=red\n", 1, "unknown property 'colour'"),
    ("acl allow all create queue name\n", 1, "expected PROPERTY=VALUE"),
    ("acl allow all create queue name=a name=b\n", 1, "property name given twice"),
    ("acl allow all create queue queuemaxsizeupperlimit=big\n", 1, "needs a number"),
    ("# c\ngroup g1 a \\\n\\\n b\n", 3, "empty continuation line"),
    ("group g1 a \\\n", 1, "ends inside a continued line"),
    ("group g1 a\ngroup g1 b\n", 2, "group g1 defined twice"),
    ("group bad! a\n", 1, "bad group name"),
    ("allow all all\n", 1, "expected 'group', 'acl' or 'quota'"),
    ("quota connections many all\n", 1, "quota needs a number"),
    ("quota sessions 3 all\n", 1, "expected 'quota connections|queues"),
])
def test_errors_name_the_line(text, line, message):
    with pytest.raises(AclError) as info:
        Acl.parse(text, "bad.acl")
    assert str(info.value).startswith("bad.acl:%d: " % line)
    assert message in str(info.value)


def test_group_cycle_names_the_line():
    with pytest.raises(AclError, match=r"^f:1: group ga contains itself \(ga -> gb -> ga\)"):
        Acl.parse("group ga gb\ngroup gb ga\n", "f")
    assert Acl.parse("group g1 u@Q\ngroup g2 g1\n").groups["g2"] == {"u@Q"}


def test_authorizer_logs_log_rules_and_reloads(tmp_path):
    path = tmp_path / "a.acl"
    path.write_text("acl deny-log bob@QPID consume queue name=secret\nacl allow-log all consume queue\n")
    log = Log()
    auth = aclmod.Authorizer(SimpleNamespace(acl_file=str(path), data_path=None), log)
    with pytest.raises(aclmod.errors.UnauthorizedAccess) as info:
        auth.check("bob@QPID", "consume", "queue", "secret")
    assert str(info.value.description) == "ACL denied queue consume request for secret from bob@QPID"
    auth.check("bob@QPID", "consume", "queue", "public")
    lines = [t for lv, t in log.records if lv in (25, 30)]
    assert "ACL denied: bob@QPID consume queue secret (%s:1)" % path in lines
    assert "ACL allowed: bob@QPID consume queue public (%s:2)" % path in lines
    assert auth.deny_count == 1
    path.write_text("acl allow all all\nacl allow bob@QPID bogus\n")
    with pytest.raises(AclError, match=":2: unknown action 'bogus'"):
        auth.reload()
    with pytest.raises(aclmod.errors.UnauthorizedAccess):    # the rules in force stay
        auth.check("bob@QPID", "consume", "queue", "secret")


def test_relative_acl_file_is_in_the_data_dir(tmp_path):
    (tmp_path / "policy.acl").write_text("acl allow all all\n")
    auth = aclmod.Authorizer(SimpleNamespace(acl_file="policy.acl", data_path=str(tmp_path)), Log())
    assert auth.path == str(tmp_path / "policy.acl") and auth.enabled


def test_no_acl_file_allows_everything():
    auth = aclmod.Authorizer(SimpleNamespace(acl_file=None, data_path=None), Log())
    assert not auth.enabled and not auth.transfer
    auth.check("anyone", "delete", "queue", "q")


def test_quota_limits_follow_qpidd(tmp_path):
    """qpidd 1.40's rule (checked on the stock broker): a user's own quota line, a group's, 'all''s;
    else the option; once a file has quota lines of a kind, 0 there means none at all."""
    path = tmp_path / "q.acl"
    path.write_text("group staff root@QPID\nquota connections 3 staff\nquota queues 0 bob@QPID\n"
                    "acl allow all all\n")
    options = SimpleNamespace(acl_file=str(path), data_path=None, max_queues_per_user=2)
    auth = aclmod.Authorizer(options, Log())
    assert auth.quota_limit("connections", "root@QPID", 0) == 3
    assert auth.quota_limit("connections", "eve@QPID", 0) == 0         # named nowhere: none
    assert auth.quota_limit("queues", "bob@QPID", 2) == 0
    assert auth.quota_limit("queues", "eve@QPID", 2) == 2
    auth.check("eve@QPID", "create", "queue", "q1")
    auth.queues.created(SimpleNamespace(name="q1"))
    auth.check("eve@QPID", "create", "queue", "q2")
    auth.queues.created(SimpleNamespace(name="q2"))
    with pytest.raises(aclmod.errors.ResourceLimitExceeded,
                       match="queue create request for q3 from eve@QPID: queue quota 2 reached"):
        auth.check("eve@QPID", "create", "queue", "q3")
    auth.queues.deleted(SimpleNamespace(name="q1"))
    auth.check("eve@QPID", "create", "queue", "q3")
    assert auth.queues.counts == {"eve@QPID": 1} and auth.queues.deny_count == 1
    none = aclmod.Authorizer(SimpleNamespace(acl_file=None, data_path=None), Log())
    assert none.quota_limit("connections", "eve", 0) is None and none.quota_limit("connections", "eve", 4) == 4


# -- the property test: the evaluator agrees with a reference model -------------------------------
USERS = ["alice@QPID", "bob@QPID", "carol@QPID", "dave@QPID"]
GROUPS = ["g0", "g1", "g2"]
ACTIONS = ["consume", "publish", "create", "access", "bind", "delete"]
OBJECTS = ["queue", "exchange", "method"]
RULE_PROPS = {"name": ["q1", "q*", "x", "*"], "routingkey": ["a.b", "a.*", "#", "a.#", "*.b"],
              "durable": ["true", "false"]}
REQ_PROPS = {"name": ["q1", "q2", "x", "y"], "routingkey": ["a.b", "a", "a.b.c", "c.b", ""],
             "durable": [True, False]}


@st.composite
def acl_files(draw):
    groups = {}
    for i, g in enumerate(GROUPS):
        members = draw(st.lists(st.sampled_from(USERS + GROUPS[:i]), max_size=3, unique=True))
        if members:
            groups[g] = members
    rules = []
    for _ in range(draw(st.integers(0, 8))):
        perm = draw(st.sampled_from(aclmod.PERMISSIONS))
        subject = draw(st.sampled_from(USERS + list(groups) + ["all"]))
        action = draw(st.sampled_from(ACTIONS + ["all"]))
        obj = draw(st.sampled_from(OBJECTS + ["all", None]))
        props = {}
        if obj is not None:
            for key in draw(st.lists(st.sampled_from(sorted(RULE_PROPS)), max_size=2, unique=True)):
                props[key] = draw(st.sampled_from(RULE_PROPS[key]))
        rules.append((perm, subject, action, obj or "all", props, obj is None))
    return groups, rules


def render(groups, rules):
    lines = ["group %s %s" % (g, " ".join(m)) for g, m in groups.items()]
    for perm, subject, action, obj, props, bare in rules:
        words = ["acl", perm, subject, action] + ([] if bare else [obj])
        lines.append(" ".join(words + ["%s=%s" % kv for kv in props.items()]))
    return "\n".join(lines) + "\n"


def topic(pattern, key):
    def match(p, k):
        if not p:
            return not k
        if p[0] == "#":
            return match(p[1:], k) or (bool(k) and match(p, k[1:]))
        return bool(k) and (p[0] in ("*", k[0])) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


def reference(groups, rules, user, action, obj, props):
    """Straight from the prose: first rule whose user, action, object and properties all fit."""
    def member(subject):
        if subject == "all" or subject == user:
            return True
        return subject in groups and any(member(m) for m in groups[subject])

    for perm, subject, r_action, r_obj, r_props, _ in rules:
        if not member(subject) or r_action not in ("all", action) or r_obj not in ("all", obj):
            continue
        ok = True
        for key, want in r_props.items():
            if key not in props:
                ok = False
            elif key == "routingkey":
                ok = ok and topic(want, props[key])
            elif key == "durable":
                ok = ok and want == ("true" if props[key] else "false")
            else:
                ok = ok and (props[key].startswith(want[:-1]) if want.endswith("*") else props[key] == want)
        if ok:
            return perm
    return "deny"


requests = st.tuples(st.sampled_from(USERS), st.sampled_from(ACTIONS), st.sampled_from(OBJECTS),
                     st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in REQ_PROPS.items()}))


@settings(max_examples=400, deadline=None)
@given(acl_files(), st.lists(requests, min_size=1, max_size=10))
def test_evaluator_agrees_with_reference_model(spec, asks):
    groups, rules = spec
    acl = Acl.parse(render(groups, rules), "random.acl")
    for user, action, obj, props in asks:
        assert acl.decide(user, action, obj, dict(props))[0] == reference(groups, rules, user, action, obj, props)


# -- fuzzing the parser: an Acl or an AclError naming the line, nothing else ---------------------------
WORDS = ["acl", "group", "quota", "allow", "deny-log", "all", "alice@QPID", "g1", "create", "queue",
         "name=x*", "routingkey=#", "queuemaxsizeupperlimit=5", "=", "\\", "#", "connections", "3", "é", ""]


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.lists(st.lists(st.sampled_from(WORDS), max_size=7).map(" ".join), max_size=8).map("\n".join),
    st.text(alphabet=string.printable, max_size=200),
))
def test_parser_fuzz(text):
    try:
        acl = Acl.parse(text, "fuzz.acl")
    except AclError as e:
        assert str(e).startswith("fuzz.acl:")
        return
    for rule in acl.rules:
        assert rule.permission in aclmod.PERMISSIONS
        acl.decide("alice@QPID", "create", "queue", {"name": "x"})

