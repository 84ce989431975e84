"""CYPID_LOOP chooses the broker's event loop (cypid's own variable; qpidd has no such thing):
uvloop by default, the standard library's with ``asyncio``; anything else stops it with a message.
``make test`` runs the broker-process tests once more under CYPID_LOOP=asyncio."""
import os

import pytest

from cypid.broker import audit
from tests.support.broker import BrokerStartError


@pytest.mark.parametrize("name,module", [("uvloop", "uvloop"), ("asyncio", "asyncio"), ("", "uvloop")])
def test_the_loop_is_the_one_asked_for(broker_factory, name, module):
    broker = broker_factory(env={"CYPID_LOOP": name})
    broker.stop()
    reports = audit.parse(broker.log_text())
    assert [r["loop"] for r in reports] == [module, module]


def test_an_unknown_loop_is_refused_by_name(broker_factory):
    refusal = "CYPID_LOOP='tokio': the event loop must be one of uvloop, asyncio"
    with pytest.raises(BrokerStartError, match=refusal):
        broker_factory(env={"CYPID_LOOP": "tokio"})


def test_the_suite_loop_is_passed_on(broker):
    # the fixtures' brokers run on the loop the suite was started with
    broker.stop()
    expected = "asyncio" if os.environ.get("CYPID_LOOP", "").strip().lower() == "asyncio" else "uvloop"
    assert audit.parse(broker.log_text())[-1]["loop"] == expected
