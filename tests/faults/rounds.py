"""What the kill -9 round scripts share (tests/faults/crash_rounds.py, tests/faults/tx_kill_rounds.py):
their command line, and how the suite runs a few of their rounds."""
import argparse
import os
import random
import tempfile


def seed_from(env):
    """The seed in environment variable ``env``, or a new random one."""
    return int(os.environ.get(env, "0")) or random.randrange(1 << 32)


def suite_rounds(run, tmp_path, rounds_env, default, seed_env):
    """``run(rounds, seed, workdir)`` for the suite: ``rounds_env`` rounds (``default`` when unset),
    the seed from ``seed_env`` (set it to reproduce a run). Returns run's totals."""
    rounds = int(os.environ.get(rounds_env, str(default)))
    totals = run(rounds, seed_from(seed_env), tmp_path)
    assert totals["rounds"] == rounds, totals
    return totals


def main(run, argv, prog, doc, rounds, seed_env, prefix):
    """The scripts' command line: ``--rounds`` (default ``rounds``), ``--seed`` (default from
    ``seed_env``, else random), ``--workdir`` (default: a new temporary directory named ``prefix``...,
    removed after a success)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seed", type=int, default=int(os.environ.get(seed_env, "0")))
    parser.add_argument("--workdir", help="where the broker's data dir and the clients' files go "
                        "(default: a new temporary directory, removed after a success)")
    args = parser.parse_args(argv)
    seed = args.seed or random.randrange(1 << 32)
    if args.workdir:
        run(args.rounds, seed, args.workdir)
        return 0
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        run(args.rounds, seed, workdir)
    return 0
