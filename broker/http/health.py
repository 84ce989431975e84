"""/healthz and /readyz: what a load balancer or an orchestrator asks.

* alive (``/healthz``, 200): the broker's loop answers. It says nothing of clients.
* ready (``/readyz``, 200, else 503 with the reason): the broker has started (store recovered,
  listening) and serves clients. The hook for the rest is ``Broker.not_ready``: None, or a function
  returning a reason (str) while the broker should get no clients, else None. Without one, a broker
  in an HA cluster (``broker.ha``, ha/habroker.py) is ready when it is the primary (recovering or
  active, the statuses in which it admits clients) and not ready as a backup (joining, catch-up,
  ready: alive, but it redirects clients to the primary).
"""


def readiness(broker):
    """(ready, reason): reason is "ready" or why not."""
    if not getattr(broker, "started", False):
        return False, "not started"
    check = getattr(broker, "not_ready", None)
    ha = getattr(broker, "ha", None)
    if check is None and ha is not None:
        check = lambda: _ha_backup(ha)     # noqa: E731
    if check is not None:
        try:
            reason = check()
        except Exception as e:      # a broken hook is reported, never a crash of the listener
            return False, "readiness check failed: %s" % e
        if reason:
            return False, str(reason)
    return True, "ready"


def _ha_backup(ha):
    if not ha.cluster or ha.is_primary():
        return None
    return "HA backup (%s): clients go to the primary" % ha.status


def _ha_values(ha):
    values = dict(ha.qmf_values())
    values["role"] = "primary" if ha.is_primary() else "backup" if ha.cluster else "standalone"
    return values


def ha_status(broker):
    """The HA page's dict: what ``Broker.ha_status()`` gives, else the HA module's QMF values
    (status, brokers URL, members) with a ``role``, else this broker standing alone."""
    status = getattr(broker, "ha_status", None)
    ha = getattr(broker, "ha", None)
    if status is None and ha is not None:
        status = lambda: _ha_values(ha)     # noqa: E731
    if status is None:
        return {"enabled": False, "role": "standalone"}
    try:
        out = dict(status())
    except Exception as e:
        return {"enabled": True, "error": str(e)}
    out.setdefault("enabled", True)
    return out


__all__ = ["ha_status", "readiness"]
