"""examples/compose/docker-compose.yml brought up with Debian's docker-compose 1.29 (its own
module: the sidecar of test_deploy.py, also in `--attach labeled`, would join this project's
network too, since both follow the same label; docs/deployment.md says to run one per engine).

The sidecar joins the project's network itself at the labelled address; `web` (forwarded
zone) and `direct` (resolv.conf) get their answers from their own resolvers (busybox
nslookup); then everything is taken down. scopedns forwards to a fake upstream on the gateway
of a network made for it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from .conftest import unavailable
from .deploy_lab import SCOPEDNS_IMAGE, ZONE, Clients, eventually, gives, ip, nslookup
from .harness import (
    DOCKER,
    IMAGE,
    REPO_ROOT,
    Engine,
    Processes,
    docker,
    engine_problem,
    ensure_image,
    fake_upstream_argv,
    forwarded,
    free_subnet,
)

pytestmark = pytest.mark.docker
COMPOSE_EXAMPLE = REPO_ROOT / "examples" / "compose" / "docker-compose.yml"
FAKE = "192.0.2.53"


@pytest.fixture()
def compose_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, Clients]]:
    problem = engine_problem() or (None if shutil.which("docker-compose") else
                                   "docker-compose missing (tests/setup/install-system.sh)")
    if problem is None and not docker("image", "ls", "-q", SCOPEDNS_IMAGE, check=False):
        problem = f"image {SCOPEDNS_IMAGE} missing: run `make image`"
    if problem is not None:
        unavailable(problem)
    ensure_image()
    engine, procs = Engine(secrets.token_hex(3), "dpl-"), Processes(tmp_path)
    try:
        upstream_net = engine.network("compose-upstream")
        upstream_log = tmp_path / "upstream.jsonl"
        procs.start("upstream", fake_upstream_argv(upstream_log, f"{upstream_net.gateway}:5300"))
        subnet = free_subnet()
        address = str(subnet.network_address + 53)
        clients = Clients(engine, tmp_path, upstream_net.gateway)
        env = {**os.environ, "SCOPEDNS_IMAGE": SCOPEDNS_IMAGE, "CLIENT_IMAGE": IMAGE,
               "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
               "UPSTREAM": f"{upstream_net.gateway}:5300", "ZONE": ZONE,
               "SUBNET": str(subnet),
               "IP_RANGE": str(IPv4Network((subnet.network_address + 128, 25))),
               "SCOPEDNS_ADDRESS": address, "PROJECT": f"dpl-compose-{engine.run_id}",
               "RESOLV_CONF": str(clients.resolv_conf("compose", address))}
        yield env, upstream_log, clients
    finally:
        procs.stop()
        engine.cleanup()


def test_compose_example_with_debians_compose(
        compose_env: tuple[dict[str, str], Path, Clients]) -> None:
    env, upstream_log, _ = compose_env
    project, address = env["PROJECT"], env["SCOPEDNS_ADDRESS"]
    compose = ["docker-compose", "--ansi", "never", "-f", str(COMPOSE_EXAMPLE), "-p", project]

    def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], env=env, capture_output=True, text=True,
                              timeout=180, check=False)

    up = run_compose("up", "-d")
    try:
        assert up.returncode == 0, up.stderr
        sidecar, web, direct = (f"{project}_{service}_1" for service in
                                ("scopedns", "web", "direct"))
        network = f"{project}_app"
        web_ip, direct_ip = ip(web, network), ip(direct, network)

        def sidecar_log() -> str:
            return subprocess.run([DOCKER, "logs", sidecar], capture_output=True, text=True,
                                  timeout=30, check=False).stderr

        got = eventually(lambda: nslookup(web, f"direct.{ZONE}"), gives([direct_ip]), 30)
        assert got.addresses == {direct_ip}, (got.text, sidecar_log())
        assert f"joined network {network} at {address}" in sidecar_log()
        assert nslookup(web, "direct").addresses == {direct_ip}  # Docker's own answer
        got = eventually(lambda: nslookup(direct, "web"), gives([web_ip]))
        assert got.addresses == {web_ip}, got.text
        miss = f"compose-miss-{project}.invalid"
        assert nslookup(direct, miss).addresses == {FAKE}
        assert (miss + ".", "udp") in forwarded(upstream_log)
    finally:
        down = run_compose("down", "-v", "--remove-orphans")
        assert down.returncode == 0, down.stderr
    assert not docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
