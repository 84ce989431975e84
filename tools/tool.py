"""qpid-tool: an interactive view of a broker's management objects (qpidd's tool in Python 3).

Objects are read with QMF v2 queries (cypid.tools.qmf) each time a command needs them; each object
gets a display ID (from 101, stable for the session). Commands may come from a terminal or from
standard input (``echo list | qpid-tool host:port``), in which case each is echoed after the prompt
so that the output reads like a session.
"""
from __future__ import annotations

import ast
import cmd
import sys
import time
from typing import Callable

from . import qmf, schema
from .common import QuietParser, UsageError, add_connection_options, connection_kwargs, error_text
from .display import Display

USAGE = "Usage: qpid-tool [OPTIONS] [[<username>/<password>@]<target-host>[:<tcp-port>]]\n"

HELP_TEXT = """\
Management Tool for QPID
Commands:
    list                            - Print summary of existing objects by class
    list <className>                - Print list of objects of the specified class
    list <className> all            - Print contents of all objects of specified class
    list <className> active         - Print contents of all non-deleted objects of specified class
    list <list-of-IDs>              - Print contents of one or more objects (infer className)
    list <className> <list-of-IDs>  - Print contents of one or more objects
        list is space-separated, ranges may be specified (i.e. 1004-1010)
    show <list-of-IDs>              - Same as list <list-of-IDs>
    agents                          - Print a list of the known Agents
    id [<ID>]                       - Print translation of display IDs to object names
    call <ID> <methodName> <args> - Invoke a method on an object
    schema                          - Print summary of object classes seen on the target
                                      (those of the broker's own package, and of the ACL and
                                      HA modules only when the broker has them)
    schema <className>              - Print details of an object class
    set time-format short           - Select short timestamp format (default)
    set time-format long            - Select long timestamp format
    quit or ^D                      - Exit the program"""

FIRST_ID = 101


class Tracked:
    """What the tool knows of one object: its last values and when it was seen to go."""

    def __init__(self, obj: qmf.QmfObject, display_id: int):
        self.id = display_id
        self.obj = obj
        self.deleted_ts = obj.delete_ts or 0

    @property
    def key(self) -> str:
        return "%s:%s" % (self.obj.package or schema.BROKER, self.obj.class_name)


class ObjectStore:
    """Display IDs and the objects last seen, refreshed by class queries."""

    def __init__(self, agent: qmf.BrokerAgent):
        self.agent = agent
        self.ids: dict[str, int] = {}
        self.objects: dict[int, Tracked] = {}
        self.next_id = FIRST_ID
        self.refreshed: set[str] = set()
        self._present: list[schema.SchemaClass] | None = None

    def id_for(self, object_name: str) -> int:
        if object_name not in self.ids:
            self.ids[object_name] = self.next_id
            self.next_id += 1
        return self.ids[object_name]

    def refresh(self, cls: schema.SchemaClass) -> list[Tracked]:
        """Query every object of ``cls``; objects no longer there are marked deleted."""
        found = self.agent.query(class_name=cls.name, package=cls.package)
        seen = set()
        now = time.time_ns()
        out = []
        for obj in found:
            if not obj.class_name:
                obj.class_name, obj.package = cls.name, cls.package
            oid = self.id_for(obj.object_name)
            seen.add(oid)
            tracked = self.objects.get(oid)
            if tracked is None:
                tracked = self.objects[oid] = Tracked(obj, oid)
            else:
                tracked.obj = obj
                tracked.deleted_ts = obj.delete_ts or 0
            out.append(tracked)
        for t in self.objects.values():
            if t.key == cls.key and t.id not in seen and not t.deleted_ts:
                t.deleted_ts = now
        self.refreshed.add(cls.key)
        return out

    def present(self) -> list[schema.SchemaClass]:
        """The table classes this broker has: its own package's always, another package's (the
        ACL and HA modules) only if the broker has an object of one of its classes. qpidd answers
        no schema queries in QMF v2, so the objects tell which modules are loaded."""
        if self._present is None:
            modules = {}
            for cls in schema.table_classes():
                if cls.package != schema.BROKER and cls.package not in modules:
                    modules[cls.package] = bool(self.agent.query(class_name=cls.name, package=cls.package))
            self._present = [c for c in schema.table_classes()
                             if c.package == schema.BROKER or modules.get(c.package)]
        return self._present

    def of_class(self, cls: schema.SchemaClass) -> list[Tracked]:
        return sorted((t for t in self.objects.values() if t.key == cls.key), key=lambda t: t.id)

    def refresh_ids(self, ids: list[int]) -> None:
        """Re-query the objects behind ``ids`` (by name)."""
        names = {v: k for k, v in self.ids.items()}
        for i in ids:
            name = names.get(i)
            if name is None:
                continue
            found = self.agent.query(object_name=name)
            if found:
                obj = found[0]
                if i in self.objects:
                    self.objects[i].obj = obj
                else:
                    self.objects[i] = Tracked(obj, i)
            elif i in self.objects and not self.objects[i].deleted_ts:
                self.objects[i].deleted_ts = time.time_ns()


def parse_ids(tokens: list[str]) -> list[int] | None:
    """``101 103-105`` -> [101, 103, 104, 105]; None if a token is not an ID or a range."""
    out: list[int] = []
    for tok in tokens:
        if "-" in tok:
            lo, _, hi = tok.partition("-")
            if not (lo.isdigit() and hi.isdigit()):
                return None
            out.extend(range(int(lo), int(hi) + 1))
        elif tok.isdigit():
            out.append(int(tok))
        else:
            return None
    return out


def parse_call_arg(text: str):
    """An argument of ``call``: numbers, True/False, {...}, [...], quoted text are evaluated;
    anything else is a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text in ("true", "false"):
        return text == "true"
    return text


class QpidTool(cmd.Cmd):
    prompt = "qpid: "

    def __init__(self, agent: qmf.BrokerAgent, stdin=None, stdout=None, echo: bool = False,
                 reconnect: Callable[[], qmf.BrokerAgent] | None = None, broker_name: str = ""):
        super().__init__(stdin=stdin, stdout=stdout)
        self.reconnect = reconnect
        self.broker_name = broker_name
        if stdin is not None:
            self.use_rawinput = False
        self.agent = agent
        self.store = ObjectStore(agent)
        self.time_format = "short"
        self.echo = echo

    # -- plumbing --------------------------------------------------------------------------------
    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def display(self) -> Display:
        return Display(prefix="    ", out=self.out)

    def fmt_time(self, ns: int) -> str:
        if not ns:
            return "-"
        t = time.localtime(ns / 1e9)
        return time.strftime("%c" if self.time_format == "long" else "%X", t)

    def precmd(self, line: str) -> str:
        if self.echo and line != "EOF":
            self.stdout.write(line.rstrip("\n") + "\n")
        return line

    def onecmd(self, line: str):
        try:
            return super().onecmd(line)
        except qmf.ConnectError as e:
            self.out("Broker disconnected: %s" % e)
            if self.reconnect is not None and self._reconnect():
                try:
                    return super().onecmd(line)
                except (qmf.ConnectError, qmf.QmfTimeout, qmf.QmfError) as again:
                    name, text = error_text(again)
                    self.out("Failed: %s - %s" % (name, text))
            return False
        except qmf.QmfTimeout as e:
            name, text = error_text(e)
            self.out("Failed: %s - %s" % (name, text))
            return False
        except qmf.QmfError as e:
            self.out("Exception in command: %s" % e)
            return False

    def _reconnect(self) -> bool:
        try:
            agent = self.reconnect()
        except Exception as e:
            self.out("Failed to connect:  %s" % e)
            return False
        try:
            self.agent.close()
        except Exception:
            pass
        self.agent = self.store.agent = agent
        self.out("Broker connected: %s" % self.broker_name)
        return True

    def emptyline(self):
        return False

    def default(self, line: str):
        self.out("Unknown command: %s (type 'help' for the commands)" % line.split()[0])

    # -- help / quit -----------------------------------------------------------------------------
    def do_help(self, arg):
        self.out(HELP_TEXT)

    def do_quit(self, arg):
        return True

    def do_EOF(self, arg):
        self.out("quit")
        return True

    # -- set -------------------------------------------------------------------------------------
    def do_set(self, arg):
        tokens = arg.split()
        if len(tokens) == 2 and tokens[0] == "time-format" and tokens[1] in ("short", "long"):
            self.time_format = tokens[1]
        else:
            self.out("Usage: set time-format short|long")

    # -- list ------------------------------------------------------------------------------------
    def do_list(self, arg):
        tokens = arg.split()
        if not tokens:
            return self.list_summary()
        ids = parse_ids(tokens)
        if ids is not None:
            return self.show_ids(ids)
        cls = schema.find(tokens[0])
        if cls is None or cls.kind != "table":
            self.out("Unknown class: %s" % tokens[0])
            return
        rest = tokens[1:]
        if not rest:
            return self.list_class(cls)
        if rest == ["all"] or rest == ["active"]:
            tracked = self.store.refresh(cls)
            if rest == ["all"]:
                tracked = self.store.of_class(cls)
            return self.show_objects(cls, tracked)
        ids = parse_ids(rest)
        if ids is None:
            self.out("Invalid ID list: %s" % " ".join(rest))
            return
        self.store.refresh(cls)
        tracked = [self.store.objects[i] for i in ids if i in self.store.objects
                   and self.store.objects[i].key == cls.key]
        return self.show_objects(cls, tracked)

    def do_show(self, arg):
        ids = parse_ids(arg.split())
        if not ids:
            self.out("Usage: show <list-of-IDs>")
            return
        return self.show_ids(ids)

    def list_summary(self):
        rows = []
        for cls in self.store.present():
            self.store.refresh(cls)
            tracked = self.store.of_class(cls)
            if not tracked:
                continue
            active = sum(1 for t in tracked if not t.deleted_ts)
            rows.append([cls.key, active, len(tracked) - active])
        rows.sort()
        self.out("Management Object Types:")
        self.display().table(None, ["ObjectType", "Active", "Deleted"], rows)

    def index_text(self, cls: schema.SchemaClass, obj: qmf.QmfObject) -> str:
        parts = []
        for name in cls.index_names:
            if name not in obj.values:
                continue
            value = obj.raw(name)
            ref = qmf.ref_name(value)
            parts.append(str(self.store.id_for(ref)) if ref is not None else str(value))
        return ".".join(parts) if parts else obj.key

    def list_class(self, cls: schema.SchemaClass):
        self.store.refresh(cls)
        rows = []
        for t in self.store.of_class(cls):
            rows.append([str(t.id), self.fmt_time(t.obj.create_ts),
                         self.fmt_time(t.deleted_ts) if t.deleted_ts else "-", self.index_text(cls, t.obj)])
        self.out("Objects of type %s" % cls.key)
        self.display().table(None, ["ID", "Created", "Destroyed", "Index"], rows)

    def show_ids(self, ids: list[int]):
        known = set(self.store.ids.values())
        if any(i not in known for i in ids):
            for cls in self.store.present():  # ids not handed out yet: learn every object first
                self.store.refresh(cls)
        self.store.refresh_ids(ids)
        unknown = [i for i in ids if i not in self.store.objects]
        for i in unknown:
            self.out("No object found with ID %d" % i)
        groups: dict[str, list[Tracked]] = {}
        for i in ids:
            t = self.store.objects.get(i)
            if t is not None:
                groups.setdefault(t.key, []).append(t)
        for key, tracked in groups.items():
            cls = schema.find(key) or schema.SchemaClass(tracked[0].obj.package, tracked[0].obj.class_name, [])
            self.show_objects(cls, tracked)

    def value_text(self, element: schema.Element | None, value) -> str:
        if value is None:
            return "NULL" if element is not None and element.type == "objId" else ""
        ref = qmf.ref_name(value)
        if ref is not None:
            return str(self.store.id_for(ref)) if ref else "NULL"
        if element is not None and element.type == "absTime":
            return self.fmt_time(int(value))
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, float):
            return "%f" % value
        if isinstance(value, (dict, list)):
            return repr(value)
        return str(value)

    def show_objects(self, cls: schema.SchemaClass, tracked: list[Tracked]):
        if not tracked:
            return
        elements = cls.elements()
        known = {e.name for e in elements}
        extra_names = []
        for t in tracked:
            for k in t.obj.values:
                if k not in known and k not in extra_names and not self._alias_of_known(k, known):
                    extra_names.append(k)
        rows = []
        last_unit = None
        for e in elements + [schema.Element(n, "", stat=True) for n in extra_names]:
            values = [self._value(t.obj, e.name) for t in tracked]
            if all(v is _MISSING for v in values):
                continue
            cells = [self.value_text(e, None if v is _MISSING else v) for v in values]
            if e.unit and not e.is_time:
                if e.unit != last_unit:
                    cells = [c + " " + _plural(e.unit, v) if v is not _MISSING and c else c
                             for c, v in zip(cells, values)]
                last_unit = e.unit
            else:
                last_unit = None
            rows.append(["inst" if e.stat else "config", e.name] + cells)
        sample = max((t.obj.update_ts for t in tracked), default=0)
        self.out("Object of type %s: (last sample time: %s)" % (cls.key, self.fmt_time(sample)))
        self.display().table(None, ["Type", "Element"] + [str(t.id) for t in tracked], rows)

    @staticmethod
    def _alias_of_known(name: str, known: set) -> bool:
        for schema_suffix, value_suffix in schema.VALUE_ALIASES.items():
            if name.endswith(value_suffix) and name[: -len(value_suffix)] + schema_suffix in known:
                return True
        return False

    @staticmethod
    def _value(obj: qmf.QmfObject, name: str):
        if name in obj.values:
            return obj.raw(name)
        for schema_suffix, value_suffix in schema.VALUE_ALIASES.items():
            if name.endswith(schema_suffix):
                alt = name[: -len(schema_suffix)] + value_suffix
                if alt in obj.values:
                    return obj.raw(alt)
        return _MISSING

    # -- agents and ids ----------------------------------------------------------------------------
    def do_agents(self, arg):
        info = self.agent.locate()
        rows = [[info.get("_name", ""), "%s %s" % (info.get("_vendor", ""), info.get("_product", "")),
                 str(info.get("_epoch", "")), "2"]]
        self.out("QMF Agents:")
        self.display().table(None, ["Agent Name", "Label", "Epoch", "QMF Version"], rows)

    def do_id(self, arg):
        tokens = arg.split()
        ids = parse_ids(tokens) if tokens else sorted(self.store.objects)
        if ids is None:
            self.out("Invalid ID list: %s" % arg)
            return
        names = {v: k for k, v in self.store.ids.items()}
        rows = []
        for i in ids:
            tracked = self.store.objects.get(i)
            name = tracked.obj.object_name if tracked is not None else names.get(i)
            if name is None:
                continue
            epoch = tracked.obj.epoch if tracked is not None else 0
            rows.append([str(i), str(epoch) if epoch else "<durable>", "Broker", name])
        self.out("Translation of Display IDs:")
        self.display().table(None, ["DisplayID", "Epoch", "Agent", "ObjectName"], rows)

    # -- schema ----------------------------------------------------------------------------------
    def do_schema(self, arg):
        tokens = arg.split()
        if not tokens:
            rows = [[c.package, c.name, c.kind] for c in self.store.present()]
            self.out("QMF Classes:")
            self.display().table(None, ["Package", "Name", "Kind"], rows)
            return
        cls = schema.find(tokens[0])
        if cls is None:
            self.out("Unknown class: %s" % tokens[0])
            return
        rows = [[e.name, e.type_name, e.unit, e.access_name, e.notes, e.desc] for e in cls.elements()]
        self.out("Schema for class '%s':" % cls.key)
        self.display().table(None, ["Element", "Type", "Unit", "Access", "Notes", "Description"], rows)
        for m in cls.methods:
            self.out("Method '%s' %s" % (m.name, m.desc) if m.desc else "Method '%s'" % m.name)
            if m.args:
                self.display().table(None, ["Argument", "Type", "Direction", "Unit", "Description"],
                                     [[a.name, a.type_name, a.dir_name, a.unit, a.desc] for a in m.args])

    # -- call ------------------------------------------------------------------------------------
    def do_call(self, arg):
        tokens = _split_args(arg)
        if len(tokens) < 2 or not tokens[0].isdigit():
            self.out("Usage: call <ID> <methodName> [<args>]")
            return
        oid, method_name, raw_args = int(tokens[0]), tokens[1], tokens[2:]
        if oid not in self.store.objects:
            self.store.refresh_ids([oid])
        tracked = self.store.objects.get(oid)
        if tracked is None:
            self.out("No object found with ID %d" % oid)
            return
        cls = schema.find(tracked.key)
        method = cls.method(method_name) if cls is not None else None
        arguments = {}
        positional = []
        for text in raw_args:
            name, eq, value = text.partition("=")
            if eq and method is not None and name in {a.name for a in method.in_args}:
                arguments[name] = parse_call_arg(value)
            else:
                positional.append(parse_call_arg(text))
        if positional:
            if method is None:
                self.out("Method '%s' is not in the schema of %s: give its arguments as name=value"
                         % (method_name, tracked.key))
                return
            free = [a for a in method.in_args if a.name not in arguments]
            if len(positional) > len(free):
                self.out("Too many arguments: %s takes %s" % (method_name, ", ".join(a.name for a in method.in_args)))
                return
            for a, v in zip(free, positional):
                arguments[a.name] = v
        try:
            result = self.agent.call(tracked.obj.object_name, method_name, arguments)
        except qmf.QmfError as e:
            self.out("%s (%s) - {}" % (e.error_text, e.error_code))
            return
        self.out("OK (0) - %r" % (result,))


_MISSING = object()


def _plural(unit: str, value) -> str:
    try:
        one = int(value) == 1
    except (TypeError, ValueError):
        one = False
    return unit if one or unit.endswith("s") else unit + "s"


def _split_args(text: str) -> list[str]:
    """Split ``call`` arguments on blanks, keeping quoted text and {...}/[...] together."""
    out, buf, depth, quote = [], "", 0, None
    for ch in text:
        if quote:
            buf += ch
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
            buf += ch
        elif ch in "{[(":
            depth += 1
            buf += ch
        elif ch in "}])":
            depth -= 1
            buf += ch
        elif ch.isspace() and depth <= 0:
            if buf:
                out.append(buf)
            buf = ""
        else:
            buf += ch
    if buf:
        out.append(buf)
    return out


def main(argv: list[str] | None = None, stdin=None, stdout=None,
         connect: Callable[..., qmf.BrokerAgent] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    qmf.PROGRAM = "qpid-tool"
    p = QuietParser(prog="qpid-tool", add_help=False, allow_abbrev=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-b", "--broker")
    p.add_argument("-t", "--timeout", type=int, default=10)
    add_connection_options(p)
    p.add_argument("target", nargs="*")
    out = stdout or sys.stdout
    try:
        opts = p.parse_intermixed_args(argv)
        if opts.help:
            out.write(USAGE + "\n" + HELP_TEXT + "\n")
            return 0
        if len(opts.target) > 2:
            raise UsageError("too many arguments")
        if len(opts.target) == 2 and not opts.ssl_certificate:
            opts.ssl_certificate = opts.target[1]  # qpidd's legacy 2nd positional: the SSL cert file
        conn_opts = connection_kwargs(opts)
    except UsageError as e:
        sys.stderr.write(USAGE)
        print("qpid-tool: error: %s" % e, file=sys.stderr)
        return 1
    broker = opts.broker or (opts.target[0] if opts.target else "localhost")
    def open_agent() -> qmf.BrokerAgent:
        return (connect or qmf.connect)(broker, timeout=opts.timeout or None, **conn_opts)

    try:
        agent = open_agent()
    except Exception as e:
        name, text = error_text(e)
        print("Failed: %s - %s" % (name, text), file=sys.stderr)
        return 1
    stdin_stream = stdin or sys.stdin
    interactive = stdin is None and sys.stdin.isatty()
    tool = QpidTool(agent, stdin=None if interactive else stdin_stream, stdout=out, echo=not interactive,
                    reconnect=open_agent, broker_name=broker)
    try:
        out.write("Management Tool for QPID\n")
        tool.cmdloop()
    except KeyboardInterrupt:
        out.write("\n")
    finally:
        out.write("Exiting...\n")
        out.flush()
        tool.agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
