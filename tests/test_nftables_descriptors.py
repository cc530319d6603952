# libnftables contexts kept one per taken-over container (docs/takeover.md, "Descriptors"):
# libnftables 1.0 waits with select(), which aborts the process on a descriptor of 1024 or more,
# so scopedns parks each context's socket high and lends it a low descriptor per command. Run in
# a child process inside a new, empty network namespace (`unshare -n`): an abort there cannot
# take pytest with it, and nothing touches the host's rules.
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

CHILD = r"""
import resource, sys
from resolver.nftables import FD_SETSIZE, NftContext, reserve_low_descriptors
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
held = reserve_low_descriptors()
contexts = [NftContext() for _ in range(int(sys.argv[1]))]
fds = [c.socket_descriptor() for c in contexts]
high = sum(1 for fd in fds if fd is not None and fd >= FD_SETSIZE)
last = contexts[-1]
last.run("add table ip scopedns_fd_check\n")
listed = last.run("list tables\n")
for context in contexts[:: 97]:
    context.run("list tables\n")
print(held, high, "scopedns_fd_check" in listed)
"""


def nft_available() -> bool:
    try:
        from resolver.nftables import NftContext
        NftContext().close()
    except Exception:
        return False
    return os.geteuid() == 0 and shutil.which("unshare") is not None


@pytest.mark.skipif(not nft_available(), reason="needs root, libnftables and unshare")
def test_more_contexts_than_descriptors_below_1024_still_run_commands() -> None:
    count = 1100
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", CHILD, str(count)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    held, high, listed = done.stdout.split()
    assert int(held) > 900  # the low descriptors are reserved for select()
    assert int(high) >= count - int(held)  # so most sockets sit above 1024 ...
    assert listed == "True"  # ... and a command on one of them still works
