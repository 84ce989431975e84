"""/healthz and /readyz: what a load balancer or an orchestrator asks.

* alive (``/healthz``, 200): the broker's loop answers. It says nothing of clients.
* ready (``/readyz``, 200, else 503 with the reason): the broker has started (store recovered,
  listening) and serves clients. The hook for the rest is ``Broker.not_ready``: None, or a function
  returning a reason (str) while the broker should get no clients, else None. HA sets it: a backup
  is alive but not ready (``lambda: "HA backup: clients go to the primary" if backup else None``).
"""


def readiness(broker):
    """(ready, reason): reason is "ready" or why not."""
    if not getattr(broker, "started", False):
        return False, "not started"
    check = getattr(broker, "not_ready", None)
    if check is not None:
        try:
            reason = check()
        except Exception as e:      # a broken hook is reported, never a crash of the listener
            return False, "readiness check failed: %s" % e
        if reason:
            return False, str(reason)
    return True, "ready"


def ha_status(broker):
    """The HA page's dict: what ``Broker.ha_status()`` gives, else this broker standing alone."""
    status = getattr(broker, "ha_status", None)
    if status is None:
        return {"enabled": False, "role": "standalone"}
    try:
        out = dict(status())
    except Exception as e:
        return {"enabled": True, "error": str(e)}
    out.setdefault("enabled", True)
    return out


__all__ = ["ha_status", "readiness"]
