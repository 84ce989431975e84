"""The Pacemaker (OCF) resource agent installed with cypid, and ``cypid-ocf-agent`` to find it.

``cypid-ocf-agent`` prints the agent's path; ``cypid-ocf-agent --install [OCF_ROOT]`` links it as
``<OCF_ROOT>/resource.d/cypid/cypid`` (OCF_ROOT: /usr/lib/ocf), so Pacemaker knows it as
``ocf:cypid:cypid``. The agent itself is the shell script ``cypid`` beside this file.
"""
from __future__ import annotations

import os
import stat
import sys

AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cypid")
DEFAULT_OCF_ROOT = "/usr/lib/ocf"
PROVIDER = "cypid"


def agent_path() -> str:
    """The installed agent (made executable if the installer dropped the mode bits)."""
    mode = os.stat(AGENT).st_mode
    wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
    if mode != wanted:
        os.chmod(AGENT, wanted)
    return AGENT


def install(ocf_root: str = DEFAULT_OCF_ROOT) -> str:
    """Link the agent into ``ocf_root`` as provider ``cypid``, agent ``cypid``; returns the link."""
    directory = os.path.join(ocf_root, "resource.d", PROVIDER)
    os.makedirs(directory, exist_ok=True)
    link = os.path.join(directory, "cypid")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(agent_path(), link)
    return link


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(agent_path())
        return 0
    if args[0] == "--install" and len(args) <= 2:
        try:
            print(install(args[1] if len(args) == 2 else DEFAULT_OCF_ROOT))
        except OSError as e:
            print("cypid-ocf-agent: cannot install the agent: %s" % e, file=sys.stderr)
            return 1
        return 0
    print("usage: cypid-ocf-agent [--install [OCF_ROOT]]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
