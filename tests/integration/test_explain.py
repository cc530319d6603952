"""`scopedns explain` on the real engine (docs/operations.md).

A shared alias whose first holder has stopped, and a `--link` alias: the explanation names the
view (the client's container and network), the holder that answers, the stopped one and why it
does not, and the link alias as such; the answer it predicts is the answer the client gets from
scopedns (dig from the client's own network namespace) and from Docker's 127.0.0.11.
scopedns runs in the sidecar's netns with `--http 127.0.0.1:19153`; `scopedns explain` is run
there too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from .conftest import ORACLE_ONLY, Lab
from .harness import DOCKER_DNS, REPO_ROOT, container_ip, container_pid, dig, docker

pytestmark = pytest.mark.docker
HTTP = "127.0.0.1:19153"


def explain(lab: Lab, address: str, name: str, raw: bool = True) -> Any:
    argv = ["nsenter", "-n", "-t", str(lab.sidecar_pid()), sys.executable, "-m", "resolver",
            "explain", address, name, "--http", HTTP, *(["--json"] if raw else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO_ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if raw else proc.stdout


def test_explain_shared_alias_with_a_stopped_first_holder_and_a_link_alias(steps: Lab) -> None:
    if ORACLE_ONLY:
        pytest.skip("needs scopedns")
    lab = steps
    net = lab.add_network("xp")
    first = lab.run("xpfirst", [net], "--network-alias", "shared")
    second = lab.run("xpsecond", [net], "--network-alias", "shared")
    client = lab.run("xpclient", [net], "--link", f"{second.name}:lnk")
    lab.start_server("--http", HTTP)
    first_ip, second_ip = container_ip(first.name, net.name), container_ip(second.name, net.name)
    client_ip = container_ip(client.name, net.name)
    assert lab.expect(client, "shared", rdata=[first_ip], docker_rdata=[first_ip, second_ip])
    docker("stop", "-t", "0", first.name)

    deadline = time.monotonic() + 10
    while True:  # the stop reaches the table through an event
        result = explain(lab, client_ip, "shared")
        holders = result["name"].get("holders") or []
        if [h["container"] for h in holders] == [second.name] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result["view"] == "container" and result["container"]["name"] == client.name
    assert [n["name"] for n in result["networks"]] == [net.name]
    assert result["networks"][0]["link_aliases"] == {"lnk": second.name.lower()}
    name = result["name"]
    assert [(h["container"], h["answers"]) for h in name["holders"]] == [(second.name, True)]
    assert [(s["container"], s["state"]) for s in name["stopped"]] == [(first.name, "exited")]
    assert "holds no name" in name["stopped"][0]["why"]
    predicted = set(name["answer"]["A"]["records"])
    assert predicted == {second_ip}
    assert lab.ask(client, "shared").rdata == predicted
    assert dig(container_pid(client.name), DOCKER_DNS, "shared").rdata == predicted

    link = explain(lab, client_ip, "lnk")["name"]
    assert link["found"] == f"link alias lnk -> {second.name.lower()} on network {net.name}"
    assert set(link["answer"]["A"]["records"]) == {second_ip}
    assert lab.ask(client, "lnk").rdata == {second_ip}
    assert dig(container_pid(client.name), DOCKER_DNS, "lnk").rdata == {second_ip}

    text = explain(lab, client_ip, "shared", raw=False)
    assert f"1. {second.name} {second_ip}: answers" in text and "exited" in text
    lab.verify()


def test_explain_without_a_server_says_so_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "resolver", "explain", "10.0.0.1", "--http",
                           "127.0.0.1:9"], capture_output=True, text=True, timeout=30,
                          cwd=REPO_ROOT, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "no scopedns --http answers" in proc.stderr
