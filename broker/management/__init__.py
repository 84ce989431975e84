"""cypid's QMF v2 management agent (qpidd's, over AMQP 1.0): see agent.py.

``ManagementAgent(broker)``: ``start()`` / ``stop()``, ``events`` (the observer the engine calls).
``BrokerEvents`` / ``NO_EVENTS``: the observer interface and its no-op (management disabled).
"""
from .agent import ManagementAgent
from .events import NO_EVENTS, AgentEvents, BrokerEvents

__all__ = ["ManagementAgent", "BrokerEvents", "AgentEvents", "NO_EVENTS"]
