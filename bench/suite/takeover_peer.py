# scopedns --takeover as a peer (docs/takeover.md): a lab like Docker's (bench.suite.docker_peer:
# the same names as network aliases, the same busybox containers) whose containers carry a
# label of this run, and `scopedns serve --takeover --takeover-only LABEL` pinned to the server
# CPU, so only this lab is taken over and Docker's own lab (labelled scopedns.takeover=false)
# keeps Docker's resolver. dnsperf asks 127.0.0.11 inside the containers' namespaces, as for
# Docker; the CPU counted is scopedns's. Ready once every container's namespace holds our
# nftables table and a 127.0.0.11 listener of our process (not some other scopedns's). The
# cleanup stack stops scopedns with SIGTERM first (it hands 127.0.0.11 back to Docker), then
# removes the containers and the network.
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable

from bench.suite import docker_peer
from bench.suite.peers import READY_SECONDS, SCOPEDNS, Running, World
from bench.suite.procs import Cleanup, pinned, process_tree, start
from testkit.ports import free_port

LABEL_KEY = "scopedns-bench"
TABLE = "scopedns_takeover"  # the table scopedns adds in each namespace (docs/takeover.md)
_SS_PID = re.compile(r"pid=(\d+),")


def listener_pids(ss_output: str) -> set[int]:
    """The processes owning the sockets `ss -Hulpn` lists (its `users:((...,pid=N,fd=M))`)."""
    return {int(pid) for pid in _SS_PID.findall(ss_output)}


def held_by(table_listed: bool, ss_output: str, ours: Iterable[int]) -> bool:
    """A namespace is ours when our table is in it and one of our processes listens on
    127.0.0.11 there (another scopedns's table would have the same name)."""
    return table_listed and bool(listener_pids(ss_output) & set(ours))


def namespace_held(pid: int, ours: list[int]) -> bool:
    prefix = docker_peer.in_netns(pid)
    table = subprocess.run([*prefix, "nft", "list", "table", "ip", TABLE], capture_output=True,
                           text=True, timeout=10, check=False)
    sockets = subprocess.run([*prefix, "ss", "-Hulpn", "src", "127.0.0.11"],
                             capture_output=True, text=True, timeout=10, check=False)
    return held_by(table.returncode == 0, sockets.stdout, ours)


def wait_held(lab: docker_peer.Lab, process: subprocess.Popen[bytes]) -> float:
    """Seconds until every container of the lab is taken over by `process`."""
    began = time.monotonic()
    waiting = list(lab.pids)
    while waiting:
        if process.poll() is not None:
            raise RuntimeError(f"scopedns --takeover exited with status {process.returncode}")
        if time.monotonic() - began > READY_SECONDS:
            raise RuntimeError(f"{len(waiting)} of {len(lab.pids)} containers of {lab.network} "
                               f"not taken over in {READY_SECONDS:.0f} s")
        ours = process_tree(process.pid)
        waiting = [pid for pid in waiting if not namespace_held(pid, ours)]
        if waiting:
            time.sleep(0.2)
    return time.monotonic() - began


def takeover_argv(label: str, port: int, upstream_port: int | None) -> list[str]:
    """Takeover forwards go to Docker's resolver in each namespace; --upstream is for the host
    listener, which nothing asks here."""
    upstream = ["--upstream", f"127.0.0.1:{upstream_port}"] if upstream_port \
        else ["--no-upstream"]
    return [*SCOPEDNS.split(), "serve", "--takeover", "--takeover-only", label,
            "--listen", f"127.0.0.1:{port}", *upstream, "--log-level", "warning"]


def start_takeover(world: World, cleanup: Cleanup) -> Running:
    """The caller holds the Docker lock (docker_peer.hold_lock) while this peer runs."""
    run_id = f"{os.getpid()}-tk"
    label = f"{LABEL_KEY}={run_id}"
    upstream = [sys.executable, "-m", "bench.suite.fake_upstream"]
    lab = docker_peer.build_lab(world.names, run_id, upstream, world.workdir, cleanup,
                                labels=(label,))
    argv = takeover_argv(label, free_port(), world.upstream_port)
    process = start(pinned(argv, world.server_cpu), cleanup,
                    world.workdir / "scopedns-takeover.log")
    loaded = wait_held(lab, process)
    docker_peer.wait_answering(lab, world.names, "scopedns --takeover")
    notes = [f"scopedns --takeover --takeover-only {label}: {len(lab.pids)} containers like "
             "Docker's, each taken over (our table and listener checked in its namespace); "
             "CPU counts scopedns's processes only, pinned to the server CPU (dockerd is not "
             "pinned); SIGTERM hands 127.0.0.11 back at the end"]
    return Running(docker_peer.netns_target(lab, None), lambda: process_tree(process.pid),
                   loaded, notes)
