"""qpid-perf-compare: the same qpid-perftest run against several brokers, side by side.

    qpid-perf-compare -b cypid=127.0.0.1:5672 -b qpidd=127.0.0.1:5673 --count 100000 --rounds 3

Every ``-b [LABEL=]HOST:PORT`` names one broker; every other option is qpid-perftest's and is the same
for all of them. The brokers are measured in turns (A B A B ... for ``--rounds``), so that a change of
load on the machine touches them alike; the table gives each broker's mean pubs/sec, subs/sec,
transfers/sec and Mbytes/sec over its rounds, the best transfers/sec, and the ratio of its mean
transfers/sec to the first broker's.
"""
import sys

from . import perftest
from .options import g


def split_argv(argv):
    """(brokers as [(label, address)], rounds, the remaining perftest arguments)."""
    brokers, rest, rounds = [], [], 1
    it = iter(argv)
    for arg in it:
        value = None
        if arg in ("-b", "--broker"):
            value = next(it, None)
            if value is None:
                raise SystemExit("qpid-perf-compare: %s needs a value" % arg)
        elif arg.startswith("--broker="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-b") and len(arg) > 2:
            value = arg[2:]
        elif arg == "--rounds":
            rounds = int(next(it, "1"))
            continue
        elif arg.startswith("--rounds="):
            rounds = int(arg.split("=", 1)[1])
            continue
        if value is None:
            rest.append(arg)
            continue
        label, sep, address = value.partition("=")
        if not sep:
            label, address = value, value
        brokers.append((label, address))
    return brokers, max(1, rounds), rest


def compare(brokers, rounds, perftest_argv, out=sys.stdout, progress=sys.stderr):
    """Run perftest for each broker ``rounds`` times (interleaved); print and return the table rows:
    (label, address, pubs/sec, subs/sec, transfers/sec, Mbytes/sec, best transfers/sec, ratio)."""
    runs = {label: [] for label, _ in brokers}
    for r in range(rounds):
        for label, address in brokers:
            args = perftest.parse_args(perftest_argv + ["-b", address, "--summary"], out=progress,
                                       err=progress)
            if args.setup or args.control or args.publish or args.subscribe:
                raise SystemExit("qpid-perf-compare: role options (--setup ...) do not apply")
            print("round %d/%d: %s (%s)" % (r + 1, rounds, label, address), file=progress, flush=True)
            results = perftest.run_test(args, out=progress)
            runs[label].extend(results)
    rows = []
    base = None
    for label, address in brokers:
        res = runs[label]
        means = [sum(x[k] for x in res) / len(res) for k in range(4)]
        best = max(x[2] for x in res)
        if base is None:
            base = means[2]
        ratio = means[2] / base if base else 0.0
        rows.append((label, address, means[0], means[1], means[2], means[3], best, ratio))
    width = max(len("broker"), max(len(r[0]) for r in rows))
    print("%-*s  %12s  %12s  %14s  %11s  %14s  %6s" % (
        width, "broker", "pubs/sec", "subs/sec", "transfers/sec", "Mbytes/sec", "best tx/sec", "ratio"),
        file=out)
    for label, address, pub, sub, tx, mb, best, ratio in rows:
        print("%-*s  %12s  %12s  %14s  %11s  %14s  %6.2f" % (
            width, label, g(pub), g(sub), g(tx), g(mb), g(best), ratio), file=out)
    out.flush()
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        perftest.build_parser("qpid-perf-compare").print_help()
        return 0
    brokers, rounds, rest = split_argv(argv)
    if not brokers:
        print("qpid-perf-compare: give at least one broker with -b [LABEL=]HOST:PORT", file=sys.stderr)
        return 2
    try:
        compare(brokers, rounds, rest)
    except perftest.PerftestError as e:
        print("Controller exception: %s" % e, flush=True)
        return 1
    except Exception as e:
        print("Controller exception: %s" % (e or type(e).__name__), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["compare", "split_argv", "main"]
