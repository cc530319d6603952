# Processes of a benchmark run: start servers (pinned with taskset when the machine has a CPU
# to spare), wait until they answer, read their CPU time and RSS from /proc, and stop every
# one we started, also on Ctrl-C or an error (a cleanup stack run by run.py's `finally` and
# its SIGTERM handler). Nothing here stops a process it did not start.
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import dns.message
import dns.rcode

from bench.suite.stats import cpu_ticks, parent_pid

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
PR_SET_CHILD_SUBREAPER = 36  # prctl(2)


class Cleanup:
    """Undo actions, run newest first, each at most once, never raising."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []

    def push(self, label: str, action: Callable[[], object]) -> None:
        self._actions.append((label, action))

    def run(self) -> None:
        while self._actions:
            label, action = self._actions.pop()
            try:
                action()
            except Exception as error:  # cleanup goes on whatever one step says
                print(f"  cleanup: {label}: {error}", flush=True)


def cpu_sets() -> tuple[str | None, str | None]:
    """(server CPU, client CPU) for taskset, or (None, None) on a single-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None
    return str(cpus[-1]), ",".join(str(c) for c in cpus[:-1])


def pinned(argv: Sequence[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu else list(argv)


def start(argv: Sequence[str], cleanup: Cleanup, log: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A server in its own process group, its output in `log`; stopped by `cleanup`."""
    with log.open("ab") as sink:
        process = subprocess.Popen(list(argv), stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    cleanup.push(f"stop {argv[0]} (pid {process.pid})", lambda: stop(process))
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_GRACE)


def adopt_orphans() -> None:
    """Become the parent of daemons our children fork (aardvark-dns), so they can be reaped."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def stop_pid(pid: int, command: str) -> None:
    """SIGTERM a daemon we started that left our process group, if it is still that command,
    and reap it when it is ours (adopt_orphans)."""
    try:
        if command not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + STOP_GRACE
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)


def _stat(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """`root` and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (line := _stat(int(entry.name))):
            children.setdefault(parent_pid(line), []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending += children.get(pid, [])
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes, in seconds (vanished ones count 0)."""
    ticks = sum(cpu_ticks(line) for pid in pids if (line := _stat(pid)))
    return ticks / CLOCK_TICKS


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def ask(server: str, port: int, qname: str, qtype: str = "A", source: str = "127.0.0.1",
        timeout: float = 0.2) -> int | None:
    """One UDP query; the rcode of the reply, None on silence."""
    query = dns.message.make_query(qname, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(query.to_wire(), (server, port))
        try:
            data = sock.recv(4096)
        except OSError:
            return None
    return dns.message.from_wire(data).rcode()


def wait_answering(port: int, qname: str, deadline: float,
                   process: subprocess.Popen[bytes] | None = None) -> float:
    """Seconds until 127.0.0.1:port answers NOERROR for qname; raises after `deadline` s."""
    began = time.monotonic()
    while time.monotonic() - began < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        if ask("127.0.0.1", port, qname) == dns.rcode.NOERROR:
            return time.monotonic() - began
        time.sleep(0.01)
    raise RuntimeError(f"no NOERROR answer for {qname} on port {port} in {deadline:.0f} s")
