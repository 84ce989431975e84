"""cypid's HTTP side (``--http-port``): Prometheus /metrics, /healthz and /readyz, and the web console
(static files in static/, JSON in api.py). Imported only when the option is set: aiohttp is not
loaded by a broker without it. ``start_http(broker)`` starts it (server.py)."""


async def start_http(broker):
    from .server import start_http as _start
    return await _start(broker)


__all__ = ["start_http"]
