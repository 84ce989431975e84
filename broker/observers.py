"""The broker-observer seam (qpid-cpp's BrokerObserver list): ``broker.events`` is one object the
engine calls on configuration changes and connections (never per message); ``BrokerObservers`` passes
each call to every observer registered on it, in registration order (the management agent first, then
HA). The interface is ``management.events.BrokerEvents``; an observer may implement only some methods.
"""
from .management.events import BrokerEvents

_METHODS = [name for name in vars(BrokerEvents) if not name.startswith("_")]


class BrokerObservers(BrokerEvents):
    def __init__(self):
        self._observers = []

    def add(self, observer):
        self._observers.append(observer)

    def remove(self, observer):
        if observer in self._observers:
            self._observers.remove(observer)

    def __len__(self):
        return len(self._observers)


def _fan_out(name):
    def call(self, *args, **kw):
        for observer in self._observers:
            method = getattr(observer, name, None)
            if method is not None:
                method(*args, **kw)
    call.__name__ = name
    call.__doc__ = getattr(BrokerEvents, name).__doc__
    return call


for _name in _METHODS:
    setattr(BrokerObservers, _name, _fan_out(_name))

__all__ = ["BrokerObservers"]
