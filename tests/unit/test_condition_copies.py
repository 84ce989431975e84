"""The AMQP error conditions are spelled once, in the engine's cypid.pyx.amqp: no module of the
broker, the client or HA keeps a string copy of one (issue 10, "duplicates shows no engine copies")."""
import ast
import pathlib

from cypid.pyx import amqp
from cypid.broker import errors

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_no_module_spells_a_condition():
    conditions = set(amqp.CONDITIONS.values())
    found = []
    for folder in ("broker", "client", "ha"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in conditions:
                    found.append("%s:%d %s" % (path.relative_to(ROOT), node.lineno, node.value))
    assert found == []


def test_the_broker_conditions_are_the_engine_ones():
    for name, value in amqp.CONDITIONS.items():
        assert getattr(errors, name) is getattr(amqp, name) == value
    assert errors.CONDITIONS == frozenset(amqp.CONDITIONS.values())
