"""Property test: cypid.pyx.selector against a straightforward Python reference.

Hypothesis builds random expression trees and random messages; each tree is rendered as selector text
(fully parenthesised), parsed by ``Selector`` and evaluated on the encoded message, and evaluated by
the reference below on the message's plain fields. They must agree on the value (TRUE / FALSE /
UNKNOWN, or the number or string) for every pair.

The reference states the rules of cypid.pyx.selector's docstring as plainly as it can: values are
None (unknown), bool, str, int (64-bit) and float; LIKE is matched by a small recursive matcher,
not a regex.
"""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proton import Message as ProtonMessage

from cypid.pyx.message import Message
from cypid.pyx.selector import Selector

INT64_MAX = 2 ** 63 - 1
INT64_MIN = -2 ** 63
NAMES = ["a", "b", "c", "s"]
FIELDS = ["JMSPriority", "JMSType", "JMSDeliveryMode", "JMSCorrelationID", "amqp.durable",
          "amqp.delivery_count"]


# -- the reference -----------------------------------------------------------------------------------
def num(v):
    return type(v) in (int, float)


def compare(op, x, y):
    if x is None or y is None:
        return None
    if num(x) and num(y):
        pass
    elif type(x) is str and type(y) is str:
        pass
    elif type(x) is bool and type(y) is bool:
        if op not in ("=", "<>"):
            return None
    else:
        return None
    return {"=": x == y, "<>": x != y, "<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]


def arith(op, x, y):
    if not (num(x) and num(y)):
        return None
    if type(x) is int and type(y) is int:
        if op == "/":
            if y == 0:
                return None
            q = abs(x) // abs(y)
            r = q if (x < 0) == (y < 0) else -q
        else:
            r = {"+": x + y, "-": x - y, "*": x * y}[op]
        return r if INT64_MIN <= r <= INT64_MAX else None
    x, y = float(x), float(y)
    if op == "/":
        return None if y == 0.0 else x / y
    return {"+": x + y, "-": x - y, "*": x * y}[op]


def truth(v):
    return v if type(v) is bool else None


def and3(a, b):
    if a is False or b is False:
        return False
    return True if a is True and b is True else None


def or3(a, b):
    if a is True or b is True:
        return True
    return False if a is False and b is False else None


def not3(a):
    return None if a is None else not a


def like(text, pattern, escape):
    """Whether text matches the LIKE pattern (a plain recursive matcher)."""
    tokens = []            # ("any",) ("one",) ("char", c)
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape and i + 1 < len(pattern):
            tokens.append(("char", pattern[i + 1]))
            i += 2
            continue
        tokens.append(("any",) if c == "%" else ("one",) if c == "_" else ("char", c))
        i += 1
    memo = {}

    def m(ti, si):
        key = (ti, si)
        if key not in memo:
            if ti == len(tokens):
                memo[key] = si == len(text)
            elif tokens[ti][0] == "any":
                memo[key] = any(m(ti + 1, k) for k in range(si, len(text) + 1))
            elif si < len(text) and (tokens[ti][0] == "one" or tokens[ti][1] == text[si]):
                memo[key] = m(ti + 1, si + 1)
            else:
                memo[key] = False
        return memo[key]
    return m(0, 0)


def field(name, msg):
    return {
        "JMSPriority": msg["priority"],
        "JMSType": msg["subject"] or None,
        "JMSDeliveryMode": "PERSISTENT" if msg["durable"] else "NON_PERSISTENT",
        "JMSCorrelationID": msg["correlation_id"],
        "amqp.durable": msg["durable"],
        "amqp.delivery_count": 0,
    }[name]


def evaluate(node, msg):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "prop":
        return msg["properties"].get(node[1])
    if kind == "field":
        return field(node[1], msg)
    if kind == "neg":
        v = evaluate(node[1], msg)
        if type(v) is int:
            return -v if v != INT64_MIN else None
        return -v if type(v) is float else None
    if kind == "arith":
        x, y = evaluate(node[2], msg), evaluate(node[3], msg)
        return None if x is None or y is None else arith(node[1], x, y)
    if kind == "cmp":
        return compare(node[1], evaluate(node[2], msg), evaluate(node[3], msg))
    if kind == "and":
        return and3(truth(evaluate(node[1], msg)), truth(evaluate(node[2], msg)))
    if kind == "or":
        return or3(truth(evaluate(node[1], msg)), truth(evaluate(node[2], msg)))
    if kind == "not":
        return not3(truth(evaluate(node[1], msg)))
    if kind == "isnull":
        return (evaluate(node[1], msg) is None) != node[2]
    if kind == "like":
        v = evaluate(node[1], msg)
        if type(v) is not str:
            return None
        return like(v, node[2], node[3]) != node[4]
    if kind == "between":
        x, lo, hi = (evaluate(n, msg) for n in node[1:4])
        r = and3(compare(">=", x, lo), compare("<=", x, hi))
        return not3(r) if node[4] else r
    if kind == "in":
        x = evaluate(node[1], msg)
        if x is None:
            return None
        r = False
        for item in node[2]:
            r = or3(r, compare("=", x, evaluate(item, msg)))
        return not3(r) if node[3] else r
    raise AssertionError(kind)


# -- rendering ---------------------------------------------------------------------------------------
def quote(s):
    return "'" + s.replace("'", "''") + "'"


def render(node):
    kind = node[0]
    if kind == "lit":
        v = node[1]
        if type(v) is bool:
            return "TRUE" if v else "FALSE"
        if type(v) is str:
            return quote(v)
        if v < 0:
            return "(-%s)" % render(("lit", -v))
        return repr(v)
    if kind in ("prop", "field"):
        return '"%s"' % node[1] if node[1] == "s" else node[1]
    if kind == "neg":
        return "(-%s)" % render(node[1])
    if kind == "arith":
        return "(%s %s %s)" % (render(node[2]), node[1], render(node[3]))
    if kind == "cmp":
        return "(%s %s %s)" % (render(node[2]), node[1], render(node[3]))
    if kind in ("and", "or"):
        return "(%s %s %s)" % (render(node[1]), kind.upper(), render(node[2]))
    if kind == "not":
        return "(NOT %s)" % render(node[1])
    if kind == "isnull":
        return "(%s IS %sNULL)" % (render(node[1]), "NOT " if node[2] else "")
    if kind == "like":
        esc = " ESCAPE %s" % quote(node[3]) if node[3] is not None else ""
        return "(%s %sLIKE %s%s)" % (render(node[1]), "NOT " if node[4] else "", quote(node[2]), esc)
    if kind == "between":
        return "(%s %sBETWEEN %s AND %s)" % (render(node[1]), "NOT " if node[4] else "",
                                              render(node[2]), render(node[3]))
    if kind == "in":
        return "(%s %sIN (%s))" % (render(node[1]), "NOT " if node[3] else "",
                                   ", ".join(render(i) for i in node[2]))
    raise AssertionError(kind)


# -- strategies --------------------------------------------------------------------------------------
texts = st.text(alphabet="ab%_!'x", max_size=5)
ints = st.one_of(st.integers(-5, 5), st.integers(-2 ** 62, 2 ** 62), st.sampled_from([INT64_MAX, 2 ** 62 + 1]))
floats = st.one_of(st.sampled_from([0.0, 0.5, -1.5, 2.0, 1e300]),
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
literals = st.one_of(ints, floats, texts, st.booleans()).map(lambda v: ("lit", v))
leaves = st.one_of(literals, st.sampled_from(NAMES).map(lambda n: ("prop", n)),
                   st.sampled_from(FIELDS).map(lambda n: ("field", n)))


def extend_values(children):
    return st.one_of(
        children.map(lambda c: ("neg", c)),
        st.tuples(st.just("arith"), st.sampled_from("+-*/"), children, children),
    )


values = st.recursive(leaves, extend_values, max_leaves=4)


def extend_bools(children):
    return st.one_of(
        st.tuples(st.just("and"), children, children),
        st.tuples(st.just("or"), children, children),
        children.map(lambda c: ("not", c)),
    )


bool_leaves = st.one_of(
    st.tuples(st.just("cmp"), st.sampled_from(["=", "<>", "<", ">", "<=", ">="]), values, values),
    st.tuples(st.just("isnull"), values, st.booleans()),
    st.tuples(st.just("like"), values, texts, st.sampled_from([None, "!"]), st.booleans()),
    st.tuples(st.just("between"), values, values, values, st.booleans()),
    st.tuples(st.just("in"), values, st.lists(values, min_size=1, max_size=3), st.booleans()),
    values,
)
expressions = st.recursive(bool_leaves, extend_bools, max_leaves=6)

property_values = st.one_of(st.none(), ints, floats, texts, st.booleans())
messages = st.fixed_dictionaries({
    "properties": st.dictionaries(st.sampled_from(NAMES), property_values.filter(lambda v: v is not None)),
    "priority": st.integers(0, 9),
    "durable": st.booleans(),
    "subject": st.one_of(st.none(), texts),
    "correlation_id": st.one_of(st.none(), texts.filter(bool)),
})


def encoded(msg):
    pm = ProtonMessage(body="x", properties=msg["properties"] or None, priority=msg["priority"],
                       durable=msg["durable"], subject=msg["subject"], correlation_id=msg["correlation_id"])
    return Message(pm.encode())


def same(a, b):
    if type(a) is float and type(b) is float and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, messages)
def test_selector_agrees_with_the_reference(tree, msg):
    text = render(tree)
    selector = Selector(text)
    want = evaluate(tree, msg)
    got = selector.evaluate(encoded(msg))
    assert same(got, want), (text, msg, got, want)
    assert selector.matches(encoded(msg)) is (want is True)
