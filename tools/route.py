"""qpid-route: federation links and routes between brokers, with qpidd's commands, output and exit
codes (the seed's section 2.1.2), over QMF v2 and AMQP 1.0, so it drives a stock qpidd's links too.

A route is made on the broker that pulls (the destination) unless ``--src-local`` (push: then on the
source): the tool makes the link with the broker's ``connect`` method, waits until it is no longer
connecting, and adds a bridge with the link's ``bridge`` method.
"""
from __future__ import annotations

import socket
import sys
import time

from . import qmf
from .common import QuietParser, add_connection_options, error_text, failed, parse_command_line

USAGE = """\
Usage:  qpid-route [OPTIONS] dynamic add <dest-broker> <src-broker> <exchange> [tag] [exclude-list] [mechanism]
        qpid-route [OPTIONS] dynamic del <dest-broker> <src-broker> <exchange>

        qpid-route [OPTIONS] route add   <dest-broker> <src-broker> <exchange> <routing-key> [tag] [exclude-list] [mechanism]
        qpid-route [OPTIONS] route del   <dest-broker> <src-broker> <exchange> <routing-key>
        qpid-route [OPTIONS] queue add   <dest-broker> <src-broker> <exchange> <queue> [mechanism]
        qpid-route [OPTIONS] queue del   <dest-broker> <src-broker> <exchange> <queue>
        qpid-route [OPTIONS] route list  [<dest-broker>]
        qpid-route [OPTIONS] route flush [<dest-broker>]
        qpid-route [OPTIONS] route map   [<broker>]

        qpid-route [OPTIONS] link add  <dest-broker> <src-broker> [mechanism]
        qpid-route [OPTIONS] link del  <dest-broker> <src-broker>
        qpid-route [OPTIONS] link list [<dest-broker>]
"""

HELP = USAGE + """
ADDRESS syntax:

      [username/password@] hostname
      ip-address [:<port>]

Options:
  -h, --help            show this help message and exit
  --timeout=<secs>      Maximum time to wait for broker connection (in seconds)
  -v, --verbose         Verbose output
  -q, --quiet           Quiet output, don't print duplicate warnings
  -d, --durable         Added configuration shall be durable
  -e, --del-empty-link  Delete link after deleting last route on the link
  -s, --src-local       Make connection to source broker (push route)
  --ack=<n>             Acknowledge transfers over the bridge in batches of N
  --credit=<msgs>       Maximum number of messages a sender can have outstanding (0=unlimited)
  -t <transport>, --transport=<transport>
                        Transport to use for links, defaults to tcp
  --client-sasl-mechanism=<mech>
                        SASL mechanism for authentication when the tool connects to a broker
  --sasl-service-name=SASL_SERVICE_NAME
                        SASL service name to use
  --ssl-certificate=<cert>
                        Client SSL certificate (PEM Format)
  --ssl-key=<key>       Client SSL private key (PEM Format)
  --ha-admin            Allow connection to a HA backup broker.
"""

UNLIMITED = 0xFFFFFFFF
#: How long ``add`` waits for a new link to leave Waiting/Connecting (qpidd's tool: 3 tries, 1 s apart).
LINK_CHECK_TRIES = 3


class Usage(Exception):
    """Wrong arguments: print the usage and exit with 255, as qpidd's tool (return -1)."""


def build_parser() -> QuietParser:
    p = QuietParser(prog="qpid-route", add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--timeout", type=int, default=10)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-d", "--durable", action="store_true")
    p.add_argument("-e", "--del-empty-link", dest="del_empty_link", action="store_true")
    p.add_argument("-s", "--src-local", dest="src_local", action="store_true")
    p.add_argument("--ack", type=int, default=0)
    p.add_argument("--credit", type=int, default=UNLIMITED)
    p.add_argument("-t", "--transport", default="tcp")
    p.add_argument("--client-sasl-mechanism", dest="sasl_mechanism")
    add_connection_options(p)
    p.add_argument("args", nargs="*")
    return p


def _same_host(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return socket.gethostbyname(a) == socket.gethostbyname(b)
    except OSError:
        return False


class RouteManager:
    """The tool's work against one broker (the one that holds the links)."""

    def __init__(self, opts, broker_url: str, conn_opts: dict):
        self.opts = opts
        self.local = qmf.BrokerURL(broker_url)
        self.conn_opts = conn_opts
        self.agent = qmf.connect(broker_url, timeout=opts.timeout or None, **conn_opts)
        self.remote: qmf.BrokerURL | None = None

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def say(self, *words) -> None:
        if self.opts.verbose:
            print(*words)

    # -- links ------------------------------------------------------------------------------------
    def get_link(self):
        for link in self.agent.get_objects("link"):
            if _same_host(str(link.host), self.remote.host) and int(link.port) == self.remote.port:
                return link
        return None

    def check_link(self, link) -> None:
        tries = LINK_CHECK_TRIES
        if not self.opts.quiet:
            while link is None or (link.state in ("Waiting", "Connecting", "Closing") and tries > 0):
                time.sleep(1)
                link = self.get_link()
                tries -= 1
        if link is None:
            raise Exception("Link failed to create")
        if link.state == "Failed":
            raise Exception("Link failed to create %s" % (link.lastError or ""))
        self.say("Link state is", link.state)

    def add_link(self, remote: str, mechanism: str = "") -> None:
        self.remote = qmf.BrokerURL(remote)
        if _same_host(self.local.host, self.remote.host) and self.local.port == self.remote.port:
            raise Exception("Linking broker to itself is not permitted")
        if self.get_link() is None:
            self.agent.broker_call("connect", {
                "host": self.remote.host, "port": self.remote.port, "durable": bool(self.opts.durable),
                "authMechanism": mechanism, "username": self.remote.user or "",
                "password": self.remote.password or "", "transport": self.opts.transport})

    def del_link(self, remote: str) -> None:
        self.remote = qmf.BrokerURL(remote)
        link = self.get_link()
        if link is None:
            raise Exception("Link not found")
        link.call("close")
        self.say("Close method returned: 0 OK")

    def list_links(self) -> None:
        links = self.agent.get_objects("link")
        if not links:
            print("No Links Found")
            return
        print()
        print("Host            Port    Transport Durable  State             Last Error")
        print("=" * 77)
        for link in links:
            print("%-16s%-8d%-13s%c     %-18s%s" % (link.host, int(link.port), link.transport,
                                                    "Y" if link.durable else "N", link.state,
                                                    link.lastError or ""))

    # -- routes -----------------------------------------------------------------------------------
    def _bridges_on(self, link):
        return [b for b in self.agent.get_objects("bridge") if b.ref("linkRef") == link.object_name]

    def add_route(self, remote, exchange, key, tag, excludes, mechanism="", dynamic=False) -> None:
        if dynamic and self.opts.src_local:
            raise Exception("--src-local is not permitted on dynamic routes")
        self.add_link(remote, mechanism)
        link = self.get_link()
        self.check_link(link)
        link = self.get_link()
        for bridge in self._bridges_on(link):
            if bridge.dest == exchange and bridge.get("key") == key and not bridge.srcIsQueue:
                if not self.opts.quiet:
                    raise Exception("Duplicate Route - ignoring: %s(%s)" % (exchange, key))
                return
        self.say("Creating inter-broker binding...")
        link.call("bridge", self._bridge_args(exchange, exchange, key, tag, excludes, False, dynamic))
        self.say("Bridge method returned: 0 OK")

    def add_queue_route(self, remote, mechanism, exchange, queue) -> None:
        self.add_link(remote, mechanism)
        link = self.get_link()
        self.check_link(link)
        link = self.get_link()
        for bridge in self._bridges_on(link):
            if bridge.dest == exchange and bridge.src == queue and bridge.srcIsQueue:
                if not self.opts.quiet:
                    raise Exception("Duplicate Route - ignoring: %s(%s)" % (exchange, queue))
                return
        self.say("Creating inter-broker binding...")
        link.call("bridge", self._bridge_args(queue, exchange, "", "", "", True, False))
        self.say("Bridge method returned: 0 OK")

    def _bridge_args(self, src, dest, key, tag, excludes, src_is_queue, dynamic) -> dict:
        return {"durable": bool(self.opts.durable), "src": src, "dest": dest, "key": key, "tag": tag,
                "excludes": excludes, "srcIsQueue": src_is_queue, "srcIsLocal": bool(self.opts.src_local),
                "dynamic": dynamic, "sync": self.opts.ack or 0, "credit": self.opts.credit}

    def _no_link(self):
        if not self.opts.quiet:
            raise Exception("No link found from %s to %s" % (self.remote.hostport, self.local.hostport))

    def _close_bridge(self, bridge, bridges_on_link) -> None:
        self.say("Closing bridge...")
        bridge.call("close")
        if len(bridges_on_link) == 1 and self.opts.del_empty_link:
            link = self.get_link()
            if link is not None:
                self.say("Last bridge on link, closing link...")
                link.call("close")

    def del_route(self, remote, exchange, key, dynamic=False) -> None:
        self._del_bridge(remote, lambda b: b.dest == exchange and b.get("key") == key
                         and bool(b.dynamic) == dynamic)

    def del_queue_route(self, remote, exchange, queue) -> None:
        self._del_bridge(remote, lambda b: b.dest == exchange and b.src == queue and b.srcIsQueue)

    def _del_bridge(self, remote, matches) -> None:
        self.remote = qmf.BrokerURL(remote)
        link = self.get_link()
        if link is None:
            return self._no_link()
        bridges = self._bridges_on(link)
        for bridge in bridges:
            if matches(bridge):
                return self._close_bridge(bridge, bridges)
        if not self.opts.quiet:
            raise Exception("Route not found")

    def _links_by_ref(self):
        return {link.object_name: link for link in self.agent.get_objects("link")}

    @staticmethod
    def _link_of(bridge, links):
        return links.get(bridge.ref("linkRef"))

    def list_routes(self) -> None:
        links = self._links_by_ref()
        for bridge in self.agent.get_objects("bridge"):
            link = self._link_of(bridge, links)
            if link is not None:
                key = "<dynamic>" if bridge.dynamic else bridge.get("key")
                print("%s %s:%d %s %s" % (self.local.hostport, link.host, int(link.port), bridge.dest, key))

    def flush_routes(self) -> None:
        links = self._links_by_ref()
        for bridge in self.agent.get_objects("bridge"):
            link = self._link_of(bridge, links)
            if self.opts.verbose and link is not None:
                print("Deleting Bridge: %s:%d %s %s... " % (link.host, int(link.port), bridge.dest, bridge.get("key")),
                      end="")
            try:
                bridge.call("close")
                self.say("Ok")
            except qmf.QmfError as e:
                print("Error: %s" % e)
        if self.opts.del_empty_link:
            for link in self.agent.get_objects("link"):
                if self.opts.verbose:
                    print("Deleting Link: %s:%d... " % (link.host, int(link.port)), end="")
                try:
                    link.call("close")
                    self.say("Ok")
                except qmf.QmfError as e:
                    print("Error: %s" % e)

    def map_routes(self) -> None:
        """Visit every broker reachable over links and print the dynamic and static routes."""
        print()
        print("Finding Linked Brokers:")
        agents = {self.local.hostport: self.agent}
        print("    %s... Ok" % self.local.hostport)
        order = [self.local.hostport]
        try:
            added = True
            while added:
                added = False
                for name in list(order):
                    for link in agents[name].get_objects("link"):
                        url = "%s:%d" % (link.host, int(link.port))
                        if url in agents:
                            continue
                        print("    %s... " % url, end="")
                        try:
                            creds = ""
                            if self.local.user:
                                creds = self.local.user + ("/" + self.local.password if self.local.password
                                                           else "") + "@"
                            agents[url] = qmf.connect(creds + url, timeout=self.opts.timeout or None,
                                                      **self.conn_opts)
                            order.append(url)
                            added = True
                            print("Ok")
                        except Exception as e:
                            agents[url] = None
                            print(error_text(e)[1])
                agents = {k: v for k, v in agents.items() if v is not None}
                order = [k for k in order if k in agents]
            self._print_map(order, agents)
        finally:
            for name, agent in agents.items():
                if agent is not self.agent and agent is not None:
                    agent.close()

    def _print_map(self, order, agents) -> None:
        """Routes in the order they were made (their QMF creation times; qpidd's tool prints them in
        the order the brokers' replies arrive), so the same network always maps the same way."""
        routes = []
        for name in order:
            links = {link.object_name: link for link in agents[name].get_objects("link")}
            for bridge in agents[name].get_objects("bridge"):
                link = self._link_of(bridge, links)
                if link is not None:
                    routes.append((name, "%s:%d" % (link.host, int(link.port)), bridge))
        routes.sort(key=lambda route: route[2].create_ts)
        dynamic = [route for route in routes if route[2].dynamic]
        static = [route for route in routes if not route[2].dynamic]
        print()
        print("Dynamic Routes:")
        exchanges = []
        for _, _, bridge in dynamic:
            if bridge.src not in exchanges:
                exchanges.append(bridge.src)
        if not exchanges:
            print("  none found")
        print()
        for ex in exchanges:
            print("  Exchange %s:" % ex)
            pairs = []        # [from, to, both ways]
            for to_url, from_url, bridge in dynamic:
                if bridge.src != ex:
                    continue
                for pair in pairs:
                    if pair[0] == from_url and pair[1] == to_url:
                        break
                    if pair[1] == from_url and pair[0] == to_url:
                        pair[2] = True
                        break
                else:
                    pairs.append([from_url, to_url, False])
            for from_url, to_url, both in pairs:
                print("    %s %s %s" % (from_url, "<=>" if both else " =>", to_url))
            print()
        print("Static Routes:")
        if not static:
            print("  none found")
        print()
        for to_url, from_url, bridge in static:
            left_type = right_type = "ex"
            if bridge.srcIsLocal:
                arrow, left, right = "=>", bridge.src, bridge.dest
                if bridge.srcIsQueue:
                    left_type = "queue"
            else:
                arrow, left, right = "<=", bridge.dest, bridge.src
                if bridge.srcIsQueue:
                    right_type = "queue"
            text = "  %s(%s=%s) %s %s(%s=%s)" % (to_url, left_type, left, arrow, from_url, right_type, right)
            if not bridge.srcIsQueue:
                text += " key=%s" % bridge.get("key")
            print(text)
        print()


def run(opts, args, conn_opts) -> int:
    n = len(args)
    if n < 2:
        raise Usage()
    group, cmd = args[0], args[1]
    remote = None
    if n == 2:
        local = "localhost"
    elif opts.src_local:
        local = args[3] if n > 3 else args[2]
        remote = args[2]
    else:
        local = args[2]
        remote = args[3] if n > 3 else None
    rm = RouteManager(opts, local, conn_opts)
    try:
        if group == "link":
            if cmd == "add":
                if not 4 <= n <= 5:
                    raise Usage()
                rm.add_link(remote, args[4] if n > 4 else "")
                rm.check_link(rm.get_link())
            elif cmd == "del":
                if n != 4:
                    raise Usage()
                rm.del_link(remote)
            elif cmd == "list":
                rm.list_links()
            else:
                raise Usage()
        elif group == "dynamic":
            if cmd == "add":
                if not 5 <= n <= 8:
                    raise Usage()
                rm.add_route(remote, args[4], "", args[5] if n > 5 else "", args[6] if n > 6 else "",
                             args[7] if n > 7 else "", dynamic=True)
            elif cmd == "del":
                if n != 5:
                    raise Usage()
                rm.del_route(remote, args[4], "", dynamic=True)
            else:
                raise Usage()
        elif group == "route":
            if cmd == "add":
                if not 6 <= n <= 9:
                    raise Usage()
                rm.add_route(remote, args[4], args[5], args[6] if n > 6 else "", args[7] if n > 7 else "",
                             args[8] if n > 8 else "", dynamic=False)
            elif cmd == "del":
                if n != 6:
                    raise Usage()
                rm.del_route(remote, args[4], args[5], dynamic=False)
            elif cmd == "map":
                rm.map_routes()
            elif cmd == "list":
                rm.list_routes()
            elif cmd == "flush":
                rm.flush_routes()
            else:
                raise Usage()
        elif group == "queue":
            if not 6 <= n <= 7:
                raise Usage()
            if cmd == "add":
                rm.add_queue_route(remote, args[6] if n > 6 else "", args[4], args[5])
            elif cmd == "del":
                rm.del_queue_route(remote, args[4], args[5])
            else:
                raise Usage()
        else:
            raise Usage()
    finally:
        rm.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    qmf.PROGRAM = "qpid-route"
    opts, conn_opts, status = parse_command_line(build_parser(), argv, help_text=HELP, usage_text=USAGE,
                                                 usage_status=255, usage_stream=sys.stdout)
    if status is not None:
        return status
    try:
        return run(opts, opts.args, conn_opts)
    except Usage:
        print(USAGE)
        return 255
    except (KeyboardInterrupt, Exception) as e:
        return failed(e)


if __name__ == "__main__":
    sys.exit(main())
