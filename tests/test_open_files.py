"""``feathergate serve`` lifts its soft open-file limit: every stream holds two sockets.

Each case runs in a child process, as the limit is the process's own.
"""

from __future__ import annotations

import resource
import subprocess
import sys

CHILD = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
soft, hard = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
from feathergate.server import raise_open_files
print("returned", raise_open_files())
print("now", *resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def child(soft: int, hard: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft), str(hard)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = min(hard_limit(), 8192)
    output = child(256, hard)
    assert f"returned {hard}" in output
    assert f"now {hard} {hard}" in output
    assert ("open-file limit" in output) == (hard < 4096)  # no warning once high enough


def test_a_low_hard_limit_is_kept_and_warned_about() -> None:
    output = child(256, 512)
    assert "returned 512" in output
    assert "now 512 512" in output
    assert "the open-file limit is 512 (hard limit 512): about 256 concurrent streams" in output
