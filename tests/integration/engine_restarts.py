"""Restarting the real dockerd, for the tests marked engine_restart (the run puts them last).

dockerd is stopped with SIGTERM and started again by tests/setup/start-docker.sh, as CI starts
it; extra flags (--live-restore) go through DOCKERD_FLAGS. The script runs in a session of its
own, so dockerd does not die with the test run's process group. SCOPEDNS_DOCKERD_LOCK, when
set, names a lock file held exclusively for each restart (on a machine where other test runs
hold it shared while they use the engine); nothing else here depends on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .harness import REPO_ROOT, CommandError, docker

PIDFILE = Path("/var/run/docker.pid")
START = REPO_ROOT / "tests" / "setup" / "start-docker.sh"
STOP_TIMEOUT = 90.0  # dockerd stops every container first (10 s each by default, in parallel)


def restart_problem() -> str | None:
    """Why dockerd cannot be restarted here, or None."""
    if os.geteuid() != 0:
        return "restarting dockerd needs root"
    if not PIDFILE.exists():
        return f"no {PIDFILE}: dockerd was not started in a way this test can restart"
    return None


def live_restore() -> bool:
    return docker("info", "-f", "{{.LiveRestoreEnabled}}", check=False) == "true"


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    path = os.environ.get("SCOPEDNS_DOCKERD_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as lock:  # close-on-exec: dockerd never inherits it
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def restart_dockerd(flags: str = "") -> float:
    """SIGTERM dockerd, wait until it is gone, start it with `flags` and wait until it answers;
    seconds from the signal to `docker info` answering again."""
    with _exclusive():
        pid = int(PIDFILE.read_text().strip())
        began = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        while Path(f"/proc/{pid}").exists():
            if time.monotonic() - began > STOP_TIMEOUT:
                raise CommandError(f"dockerd {pid} still running {STOP_TIMEOUT:.0f}s after SIGTERM")
            time.sleep(0.1)
        started = subprocess.run(["bash", os.fspath(START)], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=120, check=False,
                                 start_new_session=True, env={**os.environ, "DOCKERD_FLAGS": flags})
        if started.returncode != 0:
            raise CommandError(f"dockerd did not come back: {started.stdout}{started.stderr}")
        return time.monotonic() - began
