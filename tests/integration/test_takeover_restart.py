"""`serve --takeover` across restarts of the Docker engine itself (docs/takeover.md). Issue 10:
after an engine restart every take failed with "Docker has no 127.0.0.11 diversion" although
`nft` showed Docker's rules (libnftables printed them through libxtables on several threads at
once). One scopedns runs throughout, limited to this run's containers; dockerd is restarted as
CI starts it, then with live-restore (containers keep running; Docker's resolver comes back on
new ports). After each restart: containers that survived or came back (`--restart always`) are
answered by scopedns through their own 127.0.0.11, a container started after the restart is
taken over, and no namespace holds our table twice.

Clients ask only their own resolver: busybox `nslookup NAME` with no server (scopedns gives the
first holder of a shared alias, Docker every holder), and dig at 127.0.0.11 inside their
namespace (TTL: scopedns 0, Docker 600). Marked engine_restart: the run puts it last, and it
leaves dockerd as CI started it (no live-restore). Every wait is a bounded poll.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from functools import partial
from itertools import count
from pathlib import Path

import pytest

from .conftest import unavailable
from .engine_restarts import live_restore, restart_dockerd, restart_problem
from .harness import CommandError, Container, Engine, Processes, docker, ensure_image, run
from .takeover_lab import (
    TABLE,
    TakeoverLab,
    latency_summary,
    nslookup_addresses,
    scrape,
    takeover_problem,
)

pytestmark = [pytest.mark.docker, pytest.mark.engine_restart]

# Engine back -> scopedns answers: its reconnect (backoff 0.5 s doubling while the engine is
# away), a listing, the takes; a loaded machine's dockerd may take a while to restart containers.
RECOVERY = 120.0
NETNS_DIR = Path("/var/run/docker/netns")
ALIAS = "svc"
FAST_STOP = ("--stop-timeout", "1")


@pytest.fixture(scope="module")
def tk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TakeoverLab]:
    problem = takeover_problem() or restart_problem()
    if problem:
        unavailable(problem)  # a skip, or a failure when CI=true
    ensure_image()
    logs = tmp_path_factory.mktemp("tkrestart")
    lab = TakeoverLab(Engine(secrets.token_hex(3), "tkr-"), Processes(logs), logs)
    try:
        lab.setup()
        lab.start_server()
        yield lab
    finally:
        lab.procs.stop()
        try:
            lab.engine.cleanup()
        finally:
            if live_restore():
                restart_dockerd()  # the engine as CI starts it


def until(check: Callable[[], bool], timeout: float, what: str, tk: TakeoverLab) -> float:
    """Poll `check` (a container may be between engines: CommandError counts as not yet)
    until it holds; seconds it took. AssertionError with scopedns's log after `timeout`."""
    began = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - began
        except CommandError:
            pass
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not after {timeout:.0f}s\n{tk.tail(40)}")
        time.sleep(0.2)


def answered_by_scopedns(tk: TakeoverLab, box: Container) -> bool:
    """Its own 127.0.0.11 answers as scopedns does: TTL 0 for its own name, and one holder of
    the shared alias to a plain nslookup (Docker would give every holder)."""
    if tk.answerer(box, box.name) != "scopedns":
        return False
    code, out = tk.nslookup(box, ALIAS)
    return code == 0 and len(nslookup_addresses(out)) == 1


def tables_per_namespace() -> dict[str, int]:
    """How many tables of ours each Docker namespace holds now (every namespace, anyone's)."""
    counts = {}
    for path in sorted(NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []:
        listed = run(["nsenter", f"--net={path}", "nft", "list", "tables"], check=False)
        counts[path.name] = listed.count(f"table ip {TABLE}")
    return counts


def assert_one_table_each(tk: TakeoverLab, boxes: list[Container]) -> None:
    for box in boxes:
        assert tk.our_tables(box).count(f"table ip {TABLE}") == 1, (box, tk.our_tables(box))
    twice = {name: n for name, n in tables_per_namespace().items() if n > 1}
    assert not twice, twice


def running(name: str) -> bool:
    return docker("inspect", "-f", "{{.State.Running}}", name, check=False) == "true"


def assert_no_untranslated_listing(tk: TakeoverLab) -> None:
    assert tk.server_log is not None
    log = tk.server_log.read_text(errors="replace")
    assert "xt target" not in log, tk.tail(60)  # issue 10's listing, never again
    assert tk.procs.alive("scopedns"), tk.tail(40)


def test_after_an_engine_restart_containers_that_came_back_and_new_ones_are_taken_over(
        tk: TakeoverLab) -> None:
    back = tk.box("back", *FAST_STOP, "--restart", "always", "--network-alias", ALIAS)
    twin = tk.box("twin", *FAST_STOP, "--restart", "always", "--network-alias", ALIAS)
    gone = tk.box("gone", *FAST_STOP)
    for box in (back, twin, gone):
        until(partial(answered_by_scopedns, tk, box), 30, f"{box.name} before", tk)

    took = restart_dockerd()
    came_back = max(until(partial(answered_by_scopedns, tk, box), RECOVERY,
                          f"{box.name} came back", tk) for box in (back, twin))
    assert not running(gone.name)  # no restart policy, no live-restore: it stopped with dockerd
    late = tk.box("late", *FAST_STOP)
    started = until(lambda: answered_by_scopedns(tk, late), 30, "started after the restart", tk)
    assert_one_table_each(tk, [back, twin, late])
    assert_no_untranslated_listing(tk)
    print(f"\nengine restart {took:.1f}s; came back answered by scopedns {came_back:.1f}s after; "
          f"a new container {started:.1f}s after its run; takeover latency: "
          f"{latency_summary(scrape(tk.http_port))}")


def test_with_live_restore_survivors_stay_answered_and_forwarding_follows_docker(
        tk: TakeoverLab) -> None:
    restart_dockerd("--live-restore")  # from now on containers outlive dockerd's restarts
    assert live_restore()
    stay = tk.box("stay", *FAST_STOP)
    until(lambda: answered_by_scopedns(tk, stay), RECOVERY, "before", tk)
    pid = docker("inspect", "-f", "{{.State.Pid}}", stay.name)

    took = restart_dockerd("--live-restore")
    assert docker("inspect", "-f", "{{.State.Pid}}", stay.name) == pid  # it never stopped
    assert answered_by_scopedns(tk, stay)  # our table and listeners never left its namespace
    # Docker's resolver there came back on new ports: names that are not local reach it (and
    # the gateway's fake upstream, 192.0.2.53) once scopedns has followed it.
    fresh = count()  # a new name each try: nothing cached stands in for the answer

    def forwarded() -> bool:
        miss = f"after-{next(fresh)}-{tk.engine.run_id}.invalid"
        return "192.0.2.53" in nslookup_addresses(tk.nslookup(stay, miss)[1])

    followed = until(forwarded, RECOVERY, "forwarding through Docker's moved resolver", tk)
    late = tk.box("late-lr", *FAST_STOP)
    until(lambda: answered_by_scopedns(tk, late), 30, "started after the restart", tk)
    assert_one_table_each(tk, [stay, late])
    assert_no_untranslated_listing(tk)
    print(f"\nlive-restore restart {took:.1f}s; forwarding followed Docker's resolver "
          f"{followed:.1f}s after; takeover latency: {latency_summary(scrape(tk.http_port))}")
