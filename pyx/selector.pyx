# cython: language_level=3, wraparound=True
"""JMS message selectors, as qpidd accepts them in ``apache.org:selector-filter:string``.

``Selector(text)`` parses the expression once; ``matches(msg)`` evaluates it against a message
(a cypid.pyx.message.Message, or any object with its attributes and ``application_properties()``).
A message matches when the expression is TRUE; FALSE and UNKNOWN (SQL's third value) do not.

The language (keywords are case-insensitive, identifiers are not):

  expression  := [or]                                  (empty: every message matches)
  or          := and (OR and)*
  and         := not (AND not)*
  not         := NOT not | comparison
  comparison  := sum [ ( = | <> | < | > | <= | >= ) sum
                     | IS [NOT] NULL
                     | [NOT] LIKE 'pattern' [ESCAPE 'c']
                     | [NOT] BETWEEN sum AND sum
                     | [NOT] IN ( sum {, sum} ) ]
  sum         := product ((+ | -) product)*
  product     := unary ((* | /) unary)*
  unary       := (+ | -) unary | ( or ) | identifier | literal
  literal     := 'string' ('' is a quote) | integer (decimal, 0x hex, 0b binary, 0 octal; _ between
                 digits; L suffix) | approximate (1.5, .5, 1e3, 2.5E-3; f/d suffix) | TRUE | FALSE
  identifier  := [A-Za-z_$][A-Za-z0-9_$.]* that is not a keyword, or "quoted" ("" is a quote)

Values are NULL (unknown), booleans, strings, exact integers (64-bit) and approximate numbers
(doubles). An identifier is an application property, except for these message fields (qpidd's
names; ``amqp.<name>`` or the JMS alias):

  amqp.delivery_mode         JMSDeliveryMode    'PERSISTENT' if header durable, else 'NON_PERSISTENT'
  amqp.durable                                  header durable (boolean)
  amqp.priority              JMSPriority        header priority (4 when absent)
  amqp.delivery_count                           header delivery-count
  amqp.redelivered           JMSRedelivered     delivery-count > 0
  amqp.subject               JMSType            properties subject (NULL when absent or empty)
  amqp.message_id            JMSMessageID       properties message-id, as text
  amqp.correlation_id        JMSCorrelationID   properties correlation-id, as text
  amqp.to                    JMSDestination     properties to
  amqp.reply_to              JMSReplyTo         properties reply-to
  amqp.absolute_expiry_time  JMSExpiration      ms since the epoch; 0 when the message never expires
  amqp.creation_time         JMSTimestamp       properties creation-time in ms (0 when absent)
  amqp.jms_type                                 message-annotation x-opt-jms-type (or jms-type)

Any other ``amqp.`` or ``JMS`` name is NULL (as in qpidd). An application property is a boolean,
a string (string or symbol), an integer (any AMQP integer type; a ulong above 2^63-1 becomes
approximate) or approximate (float, double); any other type (binary, uuid, timestamp, list, ...) is
NULL. Only the properties the selector names are decoded; the rest of the map is skipped.

Operators, with SQL's three-valued logic: NULL anywhere in a comparison or arithmetic makes it
UNKNOWN/NULL; AND, OR and NOT follow the SQL truth tables. Numbers compare with numbers (exact
against approximate by value), strings with strings (all six comparisons, by code point), booleans
with booleans (= and <> only); any other pairing is UNKNOWN. Arithmetic takes numbers only; exact
with exact stays exact (division truncates toward zero), anything with an approximate number is
approximate; a result outside 64 bits and a division by zero are NULL. ``x BETWEEN a AND b`` is
``x >= a AND x <= b``; ``x IN (a, b)`` is ``x = a OR x = b``; the NOT forms negate them. LIKE takes
a string (else UNKNOWN) and matches the whole of it: ``%`` any run of characters, ``_`` one, the
ESCAPE character makes the next one literal. A bare value in a boolean place is UNKNOWN unless it
is a boolean.

Errors: ``SelectorError`` with ``reason`` and ``position`` (0-based character offset of the
offending token); ``str()`` gives "<reason> at position <n>".
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport memcmp

from cypid.pyx.frb cimport FRBuffer, frb_init, frb_take
from cypid.pyx.values cimport decode_value, skip_value, read_u8, read_vlen, need, open_compound
from cypid.pyx.message cimport Message
from cypid.pyx.sections cimport scan_message

import re
import time
import uuid

from cypid.pyx.values import DecodeError, char, symbol, timestamp

cdef object _DecodeError = DecodeError
cdef object _char_t = char
cdef object _timestamp_t = timestamp
cdef object _UUID = uuid.UUID

cdef object INT64_MAX = 2 ** 63 - 1
cdef object INT64_MIN = -2 ** 63
# Nesting the parser accepts (parentheses, NOT, unary signs): a selector is bounded like any request.
cdef int MAX_DEPTH = 100
# Longest selector text accepted.
cdef Py_ssize_t MAX_LENGTH = 65536


class SelectorError(ValueError):
    """A selector that does not parse: ``reason`` and ``position`` (0-based character offset)."""

    def __init__(self, reason, position):
        super().__init__("%s at position %d" % (reason, position))
        self.reason = reason
        self.position = position


# -- tokens ----------------------------------------------------------------------------------------

cdef enum Tok:
    T_EOS, T_ID, T_STR, T_INT, T_FLOAT, T_OP, T_KW

_KEYWORDS = frozenset(("AND", "OR", "NOT", "BETWEEN", "LIKE", "ESCAPE", "IN", "IS", "NULL", "TRUE",
                       "FALSE"))

_TOKEN = re.compile(r"""
  (?P<ws>\s+)
| (?P<float>(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][+-]?[0-9]+)?
           | \.[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?
           | [0-9][0-9_]*[eE][+-]?[0-9]+)[fFdD]?
           | [0-9][0-9_]*[fFdD])
| (?P<int>0[xX][0-9a-fA-F][0-9a-fA-F_]*[lL]? | 0[bB][01][01_]*[lL]? | [0-9][0-9_]*[lL]?)
| (?P<id>[A-Za-z_$][A-Za-z0-9_$.]*)
| (?P<str>'(?:[^']|'')*')
| (?P<qid>"(?:[^"]|"")*")
| (?P<op><>|<=|>=|[()=<>,+*/-])
""", re.VERBOSE)


cdef list _tokenize(str text):
    """[(kind, value, position)], ending with (T_EOS, None, len)."""
    cdef list out = []
    cdef Py_ssize_t pos = 0, n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            c = text[pos]
            if c == "'":
                raise SelectorError("unterminated string", pos)
            if c == '"':
                raise SelectorError("unterminated quoted identifier", pos)
            raise SelectorError("illegal character %r" % c, pos)
        kind = m.lastgroup
        s = m.group()
        if kind == "ws":
            pass
        elif kind == "id":
            if s.upper() in _KEYWORDS:
                out.append((T_KW, s.upper(), pos))
            else:
                out.append((T_ID, s, pos))
        elif kind == "qid":
            out.append((T_ID, s[1:-1].replace('""', '"'), pos))
        elif kind == "str":
            out.append((T_STR, s[1:-1].replace("''", "'"), pos))
        elif kind == "int":
            out.append((T_INT, _exact(s, pos), pos))
        elif kind == "float":
            out.append((T_FLOAT, _approx(s, pos), pos))
        else:
            out.append((T_OP, s, pos))
        pos = m.end()
    out.append((T_EOS, None, n))
    return out


cdef object _exact(str s, Py_ssize_t pos):
    """An exact literal's magnitude (a Python int; the sign is applied by the parser)."""
    s = s.replace("_", "")
    if s[-1] in "lL":
        s = s[:-1]
    if s[:2] in ("0x", "0X"):
        v = int(s[2:], 16)
    elif s[:2] in ("0b", "0B"):
        v = int(s[2:], 2)
    elif len(s) > 1 and s[0] == "0":
        if any(c in "89" for c in s):
            raise SelectorError("invalid octal literal", pos)
        v = int(s, 8)
    else:
        v = int(s)
    if v > INT64_MAX + 1:        # INT64_MAX + 1 only as the operand of a minus sign
        raise SelectorError("integer literal too big", pos)
    return v


cdef object _approx(str s, Py_ssize_t pos):
    s = s.replace("_", "")
    if s[-1] in "fFdD":
        s = s[:-1]
    v = float(s)
    if v in (float("inf"), float("-inf")):
        raise SelectorError("approximate literal out of range", pos)
    return v


# -- values ----------------------------------------------------------------------------------------

cdef inline bint _is_num(object v):
    return type(v) is int or type(v) is float


cdef object _norm(object v):
    """An AMQP value as a selector value (None for types selectors do not compare)."""
    cdef type t = type(v)
    if t is str or t is bool or t is int or t is float:
        return v
    if v is None or t is _char_t or t is _timestamp_t:
        return None
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        v = int(v)
        return float(v) if v > INT64_MAX else v
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    return None


cdef object _as_text(object v):
    """A message-id or correlation-id as text (qpidd's MessageId::str), or None."""
    if v is None:
        return None
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, _UUID):
        return str(v)
    if isinstance(v, int):
        return str(int(v))
    return None


cdef enum Op:
    OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_ADD, OP_SUB, OP_MUL, OP_DIV

_CMP_OPS = {"=": OP_EQ, "<>": OP_NE, "<": OP_LT, ">": OP_GT, "<=": OP_LE, ">=": OP_GE}
_ARITH_OPS = {"+": OP_ADD, "-": OP_SUB, "*": OP_MUL, "/": OP_DIV}


cdef object _compare(int op, object x, object y):
    """True, False, or None (unknown) for x op y; x and y are not None."""
    cdef type tx = type(x), ty = type(y)
    if not ((tx is ty and (tx is str or tx is bool)) or (_is_num(x) and _is_num(y))):
        return None
    if tx is bool and op != OP_EQ and op != OP_NE:
        return None
    if op == OP_EQ:
        return x == y
    if op == OP_NE:
        return x != y
    if op == OP_LT:
        return x < y
    if op == OP_GT:
        return x > y
    if op == OP_LE:
        return x <= y
    return x >= y


cdef object _arith(int op, object x, object y):
    if not (_is_num(x) and _is_num(y)):
        return None
    if type(x) is int and type(y) is int:
        if op == OP_ADD:
            r = x + y
        elif op == OP_SUB:
            r = x - y
        elif op == OP_MUL:
            r = x * y
        else:
            if y == 0:
                return None
            r = abs(x) // abs(y)
            if (x < 0) != (y < 0):
                r = -r
        if r > INT64_MAX or r < INT64_MIN:
            return None
        return r
    fx = float(x)
    fy = float(y)
    if op == OP_ADD:
        return fx + fy
    if op == OP_SUB:
        return fx - fy
    if op == OP_MUL:
        return fx * fy
    if fy == 0.0:
        return None
    return fx / fy


cdef inline object _truth(object v):
    return v if type(v) is bool else None


cdef object _and3(object a, object b):
    if a is False or b is False:
        return False
    if a is True and b is True:
        return True
    return None


cdef object _not3(object a):
    if a is None:
        return None
    return not a


# -- the message side ------------------------------------------------------------------------------

cdef enum Field:
    F_NONE, F_DELIVERY_MODE, F_DURABLE, F_PRIORITY, F_DELIVERY_COUNT, F_REDELIVERED, F_SUBJECT,
    F_MESSAGE_ID, F_CORRELATION_ID, F_TO, F_REPLY_TO, F_EXPIRY, F_CREATION, F_JMS_TYPE

_FIELDS = {
    "delivery_mode": F_DELIVERY_MODE, "durable": F_DURABLE, "priority": F_PRIORITY,
    "delivery_count": F_DELIVERY_COUNT, "redelivered": F_REDELIVERED, "subject": F_SUBJECT,
    "message_id": F_MESSAGE_ID, "correlation_id": F_CORRELATION_ID, "to": F_TO,
    "reply_to": F_REPLY_TO, "absolute_expiry_time": F_EXPIRY, "creation_time": F_CREATION,
    "jms_type": F_JMS_TYPE,
}
_JMS = {
    "JMSDeliveryMode": "delivery_mode", "JMSPriority": "priority", "JMSRedelivered": "redelivered",
    "JMSType": "subject", "JMSMessageID": "message_id", "JMSCorrelationID": "correlation_id",
    "JMSDestination": "to", "JMSReplyTo": "reply_to", "JMSExpiration": "absolute_expiry_time",
    "JMSTimestamp": "creation_time",
}


def field_of(str name):
    """The message field an identifier names (its ``amqp.`` name), "" for one that is always
    NULL, or None for an application property."""
    if name.startswith("amqp."):
        return name[5:] if name[5:] in _FIELDS else ""
    if name.startswith("JMS"):
        return _JMS.get(name, "")
    return None


@cython.final
@cython.freelist(8)
cdef class Env:
    cdef int read_props(self) except -1:
        """Walk the application-properties once, decoding only the values of the named keys."""
        cdef Selector sel = self.sel
        cdef Py_ssize_t n = len(sel.keys), found = 0, j, klen
        cdef list props = [None] * n
        cdef FRBuffer b
        cdef uint8_t c
        cdef uint32_t count, i
        cdef const char* kp
        cdef bytes body, key
        cdef Message m
        self.props = props
        self.props_read = True
        msg = self.msg
        if type(msg) is not Message:
            ap = msg.application_properties() or {}
            for j in range(n):
                props[j] = _norm(ap.get(sel.names[j]))
            return 0
        m = <Message>msg
        if m._ap_offset < 0 or m.body is None:
            return 0
        body = m.body
        frb_init(&b, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
        if m._ap_offset > b.len:
            return 0
        frb_take(&b, m._ap_offset)
        try:
            c = read_u8(&b, "application-properties")
            if c != 0xc1 and c != 0xd1:
                return 0            # null: no properties
            open_compound(&b, c == 0xd1, &count, "application-properties", 0, 1)
            for i in range(count // 2):
                c = read_u8(&b, "application-properties key")
                if c == 0xa1 or c == 0xa3 or c == 0xb1 or c == 0xb3:
                    klen = read_vlen(&b, c >= 0xb0, "application-properties key")
                    kp = need(&b, klen, "application-properties key")
                    for j in range(n):
                        key = <bytes>sel.keys[j]
                        if PyBytes_GET_SIZE(key) == klen and memcmp(PyBytes_AS_STRING(key), kp, klen) == 0:
                            break
                    else:
                        j = -1
                    if j >= 0 and props[j] is None:
                        props[j] = _norm(decode_value(&b, 1))
                        found += 1
                        if found == n:
                            return 0
                        continue
                else:
                    b.buf -= 1          # not a string key: step back and skip it whole
                    b.len += 1
                    skip_value(&b, 1)
                skip_value(&b, 1)
        except _DecodeError:
            pass                        # what could not be read stays NULL
        return 0

    cdef object scan(self):
        if self.info is None:
            msg = self.msg
            body = msg.body if type(msg) is Message else getattr(msg, "body", None)
            if body is None:
                return None
            try:
                self.info = scan_message(body)
            except _DecodeError:
                return None
        return self.info

    cdef object special(self, int kind):
        cdef Message m
        msg = self.msg
        if kind == F_DELIVERY_MODE:
            return "PERSISTENT" if msg.durable else "NON_PERSISTENT"
        if kind == F_DURABLE:
            return bool(msg.durable)
        if kind == F_PRIORITY:
            return int(msg.priority)
        if kind == F_DELIVERY_COUNT:
            return int(msg.delivery_count)
        if kind == F_REDELIVERED:
            return msg.delivery_count > 0
        if kind == F_SUBJECT:
            return msg.subject or None
        if kind == F_TO:
            return msg.to or None
        if kind == F_NONE:
            return None
        info = self.scan()
        if info is None:
            return None
        if kind == F_REPLY_TO:
            return info.reply_to or None
        if kind == F_CREATION:
            return int(info.creation_time)
        if kind == F_EXPIRY:
            if info.absolute_expiry_time:
                return int(info.absolute_expiry_time)
            if msg.expires:
                return int((time.time() + (msg.expires - time.monotonic())) * 1000)
            return 0
        if kind == F_MESSAGE_ID or kind == F_CORRELATION_ID:
            props = info.properties()
            i = 0 if kind == F_MESSAGE_ID else 5
            return _as_text(props[i]) if len(props) > i else None
        if kind == F_JMS_TYPE:
            if self.annotations is None:
                self.annotations = info.message_annotations()
            ma = self.annotations
            v = ma.get("x-opt-jms-type", ma.get("jms-type"))
            return str(v) if isinstance(v, str) and v else None
        return None


# -- the expression tree ---------------------------------------------------------------------------

cdef class Node:
    cdef object eval(self, Env env):
        raise NotImplementedError


@cython.final
cdef class Literal(Node):
    cdef object value

    cdef object eval(self, Env env):
        return self.value


@cython.final
cdef class Property(Node):
    cdef Py_ssize_t slot

    cdef object eval(self, Env env):
        if not env.props_read:
            env.read_props()
        return env.props[self.slot]


@cython.final
cdef class Special(Node):
    cdef int kind

    cdef object eval(self, Env env):
        return env.special(self.kind)


@cython.final
cdef class Negate(Node):
    cdef Node e

    cdef object eval(self, Env env):
        v = self.e.eval(env)
        if type(v) is int:
            return -v if v != INT64_MIN else None
        if type(v) is float:
            return -v
        return None


@cython.final
cdef class Plus(Node):
    cdef Node e

    cdef object eval(self, Env env):
        v = self.e.eval(env)
        return v if _is_num(v) else None


@cython.final
cdef class Binary(Node):
    """A comparison (OP_EQ..OP_GE: TRUE, FALSE or UNKNOWN) or arithmetic (OP_ADD..OP_DIV)."""
    cdef int op
    cdef Node a, b

    cdef object eval(self, Env env):
        x = self.a.eval(env)
        if x is None:
            return None
        y = self.b.eval(env)
        if y is None:
            return None
        return _compare(self.op, x, y) if self.op <= OP_GE else _arith(self.op, x, y)


@cython.final
cdef class Logic(Node):
    """AND (``any_true`` False) or OR (True), with SQL's truth tables; the right side is evaluated
    only when the left does not decide."""
    cdef Node a, b
    cdef bint any_true

    cdef object eval(self, Env env):
        cdef object decisive = self.any_true        # OR: TRUE decides; AND: FALSE does
        x = _truth(self.a.eval(env))
        if x is decisive:
            return decisive
        y = _truth(self.b.eval(env))
        if y is decisive:
            return decisive
        return (not decisive) if x is not None and y is not None else None


@cython.final
cdef class Not(Node):
    cdef Node e

    cdef object eval(self, Env env):
        return _not3(_truth(self.e.eval(env)))


@cython.final
cdef class SubjectTest(Node):
    """A consumer's subject filter: test(subject) on the message's subject ("" when it has none)."""
    cdef object test

    cdef object eval(self, Env env):
        return bool(self.test(env.msg.subject or ""))


@cython.final
cdef class IsNull(Node):
    cdef Node e
    cdef bint negated

    cdef object eval(self, Env env):
        return (self.e.eval(env) is None) != self.negated


@cython.final
cdef class Like(Node):
    cdef Node e
    cdef object match           # a compiled regex's fullmatch
    cdef bint negated

    cdef object eval(self, Env env):
        v = self.e.eval(env)
        if type(v) is not str:
            return None
        return (self.match(v) is not None) != self.negated


@cython.final
cdef class Between(Node):
    cdef Node e, lo, hi
    cdef bint negated

    cdef object eval(self, Env env):
        x = self.e.eval(env)
        lo = self.lo.eval(env)
        hi = self.hi.eval(env)
        r = _and3(None if x is None or lo is None else _compare(OP_GE, x, lo),
                  None if x is None or hi is None else _compare(OP_LE, x, hi))
        return _not3(r) if self.negated else r


@cython.final
cdef class In(Node):
    cdef Node e
    cdef list items
    cdef bint negated

    cdef object eval(self, Env env):
        cdef Node item
        x = self.e.eval(env)
        if x is None:
            return None
        r = False
        for item in self.items:
            y = item.eval(env)
            c = None if y is None else _compare(OP_EQ, x, y)
            if c is True:
                r = True
                break
            if c is None:
                r = None
        return _not3(r) if self.negated else r


cdef object _like_regex(str pattern, object escape):
    cdef list out = []
    cdef Py_ssize_t i = 0, n = len(pattern)
    while i < n:
        c = pattern[i]
        if escape is not None and c == escape and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL).fullmatch


# -- the parser ------------------------------------------------------------------------------------

@cython.final
cdef class _Parser:
    cdef list toks
    cdef Py_ssize_t i
    cdef int depth
    cdef dict slots                 # application property name -> slot
    cdef list names

    cdef tuple peek(self):
        return <tuple>self.toks[self.i]

    cdef tuple take(self):
        t = <tuple>self.toks[self.i]
        if t[0] != T_EOS:
            self.i += 1
        return t

    cdef bint at_kw(self, str word):
        t = <tuple>self.toks[self.i]
        return t[0] == T_KW and t[1] == word

    cdef bint at_op(self, str op):
        t = <tuple>self.toks[self.i]
        return t[0] == T_OP and t[1] == op

    cdef fail(self, str what):
        t = self.peek()
        raise SelectorError("expected %s, found %s" % (what, _describe(t)), t[2])

    cdef enter(self, Py_ssize_t pos):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SelectorError("expression nested deeper than %d" % MAX_DEPTH, pos)

    cdef Node top(self):
        if self.peek()[0] == T_EOS:
            return _literal(True)
        e = self.or_()
        t = self.peek()
        if t[0] != T_EOS:
            raise SelectorError("unexpected %s after the expression" % _describe(t), t[2])
        return e

    cdef Node or_(self):
        cdef Logic o
        e = self.and_()
        while self.at_kw("OR"):
            self.take()
            o = Logic.__new__(Logic)
            o.any_true = True
            o.a = e
            o.b = self.and_()
            e = o
        return e

    cdef Node and_(self):
        cdef Logic a
        e = self.not_()
        while self.at_kw("AND"):
            self.take()
            a = Logic.__new__(Logic)
            a.a = e
            a.b = self.not_()
            e = a
        return e

    cdef Node not_(self):
        cdef Not n
        if self.at_kw("NOT"):
            self.enter(self.take()[2])
            n = Not.__new__(Not)
            n.e = self.not_()
            self.depth -= 1
            return n
        return self.comparison()

    cdef Node comparison(self):
        cdef Binary c
        cdef IsNull isn
        e = self.sum()
        t = self.peek()
        if t[0] == T_OP and t[1] in _CMP_OPS:
            self.take()
            c = Binary.__new__(Binary)
            c.op = _CMP_OPS[t[1]]
            c.a = e
            c.b = self.sum()
            return c
        if t[0] != T_KW:
            return e
        if t[1] == "IS":
            self.take()
            isn = IsNull.__new__(IsNull)
            isn.e = e
            if self.at_kw("NOT"):
                self.take()
                isn.negated = True
            if not self.at_kw("NULL"):
                self.fail("NULL" if isn.negated else "NULL or NOT NULL after IS")
            self.take()
            return isn
        negated = False
        if t[1] == "NOT":
            self.take()
            negated = True
            t = self.peek()
            if not (t[0] == T_KW and t[1] in ("LIKE", "BETWEEN", "IN")):
                self.fail("LIKE, BETWEEN or IN after NOT")
        if t[1] == "LIKE":
            return self.like(e, negated)
        if t[1] == "BETWEEN":
            return self.between(e, negated)
        if t[1] == "IN":
            return self.in_(e, negated)
        return e

    cdef Node like(self, Node e, bint negated):
        cdef Like lk
        self.take()
        t = self.peek()
        if t[0] != T_STR:
            self.fail("a string after LIKE")
        self.take()
        escape = None
        if self.at_kw("ESCAPE"):
            self.take()
            et = self.peek()
            if et[0] != T_STR:
                self.fail("a string after ESCAPE")
            if len(et[1]) != 1:
                raise SelectorError("ESCAPE needs a single character", et[2])
            self.take()
            escape = et[1]
        lk = Like.__new__(Like)
        lk.e = e
        lk.match = _like_regex(t[1], escape)
        lk.negated = negated
        return lk

    cdef Node between(self, Node e, bint negated):
        cdef Between bt
        self.take()
        bt = Between.__new__(Between)
        bt.e = e
        bt.lo = self.sum()
        if not self.at_kw("AND"):
            self.fail("AND in BETWEEN")
        self.take()
        bt.hi = self.sum()
        bt.negated = negated
        return bt

    cdef Node in_(self, Node e, bint negated):
        cdef In node
        self.take()
        if not self.at_op("("):
            self.fail("'(' after IN")
        self.take()
        node = In.__new__(In)
        node.e = e
        node.items = [self.sum()]
        while self.at_op(","):
            self.take()
            node.items.append(self.sum())
        if not self.at_op(")"):
            self.fail("',' or ')' in the IN list")
        self.take()
        node.negated = negated
        return node

    cdef Node sum(self):
        return self.chain(True)

    cdef Node product(self):
        return self.chain(False)

    cdef Node chain(self, bint additive):
        """Left-associative + and - (additive) or * and / over the next tighter level."""
        cdef Binary a
        e = self.product() if additive else self.unary()
        while True:
            t = self.peek()
            if t[0] != T_OP or t[1] not in (("+", "-") if additive else ("*", "/")):
                return e
            self.take()
            a = Binary.__new__(Binary)
            a.op = _ARITH_OPS[t[1]]
            a.a = e
            a.b = self.product() if additive else self.unary()
            e = a

    cdef Node unary(self):
        cdef Negate neg
        cdef Plus plus
        t = self.peek()
        if t[0] == T_OP and t[1] == "-":
            self.take()
            nt = self.peek()
            if nt[0] == T_INT:          # a negative literal: INT64_MIN is one
                self.take()
                return _literal(-nt[1])
            self.enter(t[2])
            neg = Negate.__new__(Negate)
            neg.e = self.unary()
            self.depth -= 1
            return neg
        if t[0] == T_OP and t[1] == "+":
            self.take()
            self.enter(t[2])
            plus = Plus.__new__(Plus)
            plus.e = self.unary()
            self.depth -= 1
            return plus
        if t[0] == T_OP and t[1] == "(":
            self.take()
            self.enter(t[2])
            e = self.or_()
            self.depth -= 1
            if not self.at_op(")"):
                self.fail("')'")
            self.take()
            return e
        return self.primary()

    cdef Node primary(self):
        cdef Property p
        cdef Special s
        t = self.peek()
        kind = t[0]
        if kind == T_ID:
            self.take()
            name = t[1]
            field = field_of(name)
            if field is None:
                p = Property.__new__(Property)
                slot = self.slots.get(name)
                if slot is None:
                    slot = self.slots[name] = len(self.names)
                    self.names.append(name)
                p.slot = slot
                return p
            s = Special.__new__(Special)
            s.kind = _FIELDS.get(field, F_NONE)
            return s
        if kind == T_STR or kind == T_FLOAT:
            self.take()
            return _literal(t[1])
        if kind == T_INT:
            if t[1] > INT64_MAX:
                raise SelectorError("integer literal too big", t[2])
            self.take()
            return _literal(t[1])
        if kind == T_KW and t[1] in ("TRUE", "FALSE"):
            self.take()
            return _literal(t[1] == "TRUE")
        self.fail("an identifier or a literal")


cdef str _describe(tuple t):
    if t[0] == T_EOS:
        return "the end"
    if t[0] == T_STR:
        return "string %r" % (t[1],)
    if t[0] == T_KW:
        return t[1]
    if t[0] == T_ID:
        return "identifier %s" % (t[1],)
    if t[0] == T_OP:
        return "'%s'" % (t[1],)
    return "number %r" % (t[1],)


cdef Literal _literal(object v):
    cdef Literal lit = Literal.__new__(Literal)
    lit.value = v
    return lit


@cython.final
cdef class Selector:
    """A parsed selector. ``names``: the application properties it reads."""

    def __init__(self, text, subject_test=None):
        """``subject_test``: also require subject_test(subject) (a queue consumer's subject filter)."""
        cdef _Parser p
        cdef SubjectTest st
        cdef Logic both
        if not isinstance(text, str):
            raise SelectorError("a selector is a string, not %s" % type(text).__name__, 0)
        text = str(text)
        if len(text) > MAX_LENGTH:
            raise SelectorError("selector longer than %d characters" % MAX_LENGTH, MAX_LENGTH)
        self.text = text
        p = _Parser.__new__(_Parser)
        p.toks = _tokenize(text)
        p.i = 0
        p.depth = 0
        p.slots = {}
        p.names = []
        self.root = p.top()
        if subject_test is not None:
            st = SubjectTest.__new__(SubjectTest)
            st.test = subject_test
            if text.strip():
                both = Logic.__new__(Logic)
                both.a = st
                both.b = self.root
                self.root = both
            else:
                self.root = st
        self.names = tuple(p.names)
        self.keys = [n.encode("utf-8") for n in p.names]
        self.scan_mark = 0
        self.scan_epoch = -1

    cpdef bint matches(self, object msg) except -1:
        """Whether msg is selected (the expression is TRUE for it, and this consumer did not give it
        back as undeliverable here)."""
        cdef Env env
        if self.refused is not None and msg.seq in self.refused:
            return False
        if self.loader is not None and type(msg) is Message and (<Message>msg).body is None:
            return self._matches_on_disk(<Message>msg)
        env = Env.__new__(Env)
        env.msg = msg
        env.sel = self
        return self.root.eval(env) is True

    cdef bint _matches_on_disk(self, Message msg) except -1:
        """A message whose body is on disk only: read back for this look (the fields it carries are
        learnt for good, the bytes dropped again: the delivery reads them when it happens)."""
        cdef Env env = Env.__new__(Env)
        env.msg = msg
        env.sel = self
        self.loader(msg)
        try:
            return self.root.eval(env) is True
        finally:
            msg.body = None

    def refuse(self, seq):
        """Never select the message at queue position ``seq`` again (modified, undeliverable-here)."""
        if self.refused is None:
            self.refused = set()
        self.refused.add(seq)

    def forget(self, keep):
        """Drop the refused positions ``keep(seq)`` says are gone from the queue."""
        if self.refused:
            self.refused = {seq for seq in self.refused if keep(seq)}

    def evaluate(self, msg):
        """The expression's value for msg: True, False, None (unknown), or a number or string."""
        cdef Env env = Env.__new__(Env)
        env.msg = msg
        env.sel = self
        return self.root.eval(env)

    def __repr__(self):
        return "Selector(%r)" % (self.text,)
