"""cypid.ha: active-passive replication (ha/README.md)."""
from .habroker import HaBroker, HaError

__all__ = ["HaBroker", "HaError"]
