"""The sidecar's decisions without Docker: which networks `--attach` joins, at which address,
and how it finds its own container (watchers/attach_policy.py, find_own_container)."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest
from aiodocker.exceptions import DockerError

from watchers.attach import NotAContainer, find_own_container
from watchers.attach_policy import (
    AttachMode,
    decide,
    endpoint_config,
    joined_networks,
    own_id_from_cgroup,
    own_id_from_mountinfo,
)

ID = "3f" * 32


def net(name: str, driver: str = "bridge", **extra: Any) -> dict[str, Any]:
    return {"Name": name, "Id": f"id-{name}", "Driver": driver, "Labels": {}, "Options": {},
            **extra}


@pytest.mark.parametrize("network", [
    net("bridge"),
    net("host", "host"),
    net("none", "null"),
    net("ingress", "overlay", Ingress=True, Attachable=False),
    net("docker_gwbridge"),
    net("renamed-default", Options={"com.docker.network.bridge.default_bridge": "true"}),
    net("swarm-only", "overlay", Attachable=False),
    net("mv", "macvlan"),
])
def test_never_joins_what_serves_no_names_or_cannot_be_joined(network: dict[str, Any]) -> None:
    for mode in AttachMode:
        assert not decide(network, mode).join, network["Name"]


def test_all_joins_user_bridges_and_attachable_overlays() -> None:
    assert decide(net("app"), AttachMode.ALL).join
    assert decide(net("mesh", "overlay", Attachable=True), AttachMode.ALL).join


def test_labeled_joins_only_networks_labelled_true() -> None:
    assert not decide(net("app"), AttachMode.LABELED).join
    assert not decide(net("app", Labels={"scopedns.attach": "no"}), AttachMode.LABELED).join
    assert decide(net("app", Labels={"scopedns.attach": "true"}), AttachMode.LABELED).join
    assert decide(net("app", Labels={"scopedns.attach": "True"}), AttachMode.LABELED).join
    # the label never overrides the networks that are never joined
    assert not decide(net("bridge", Labels={"scopedns.attach": "true"}), AttachMode.LABELED).join


def test_address_label_gives_the_address_and_a_bad_one_a_problem() -> None:
    fixed = decide(net("app", Labels={"scopedns.address": "10.9.0.53"}), AttachMode.ALL)
    assert fixed == decide(net("app", Labels={"scopedns.address": " 10.9.0.53 "}), AttachMode.ALL)
    assert fixed.join and fixed.address == ip_address("10.9.0.53") and fixed.problem is None
    bad = decide(net("app", Labels={"scopedns.address": "ten"}), AttachMode.ALL)
    assert bad.join and bad.address is None and bad.problem is not None and "'ten'" in bad.problem


def test_endpoint_config_per_family() -> None:
    assert endpoint_config(None) == {}
    assert endpoint_config(ip_address("10.9.0.53")) == {"IPAMConfig": {"IPv4Address": "10.9.0.53"}}
    assert endpoint_config(ip_address("fd00::53")) == {"IPAMConfig": {"IPv6Address": "fd00::53"}}


def test_own_id_from_mountinfo_any_data_root() -> None:
    text = (
        "611 600 0:52 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/x\n"
        f"640 611 254:1 /srv/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw - ext4 x\n"
        f"641 611 254:1 /srv/docker/containers/{ID}/hostname /etc/hostname rw - ext4 x\n"
    )
    assert own_id_from_mountinfo(text) == ID
    # another container's directory mounted elsewhere is not us
    other = f"650 611 254:1 /var/lib/docker/containers/{'ab' * 32}/hostname /data rw - ext4 x\n"
    assert own_id_from_mountinfo(other) is None
    assert own_id_from_mountinfo("") is None


def test_own_id_from_cgroup_v1_and_systemd_driver() -> None:
    assert own_id_from_cgroup(f"12:pids:/docker/{ID}\n0::/\n") == ID
    assert own_id_from_cgroup(f"0::/system.slice/docker-{ID}.scope\n") == ID
    assert own_id_from_cgroup("0::/\n") is None  # cgroup v2 with a private namespace


def test_joined_networks_names_and_ids() -> None:
    me = {"NetworkSettings": {"Networks": {"app": {"NetworkID": "n1", "IPAddress": "10.0.0.2"}}}}
    assert joined_networks(me) == {"app", "n1"}
    assert joined_networks({}) == set()


def not_found() -> DockerError:
    """A 404 from aiodocker; its constructor's second argument changed type between the
    versions pyproject.toml allows, and only the status is read."""
    error = DockerError.__new__(DockerError)
    error.status = 404
    return error


class FakeContainers:
    """`docker.containers.container(x).show()` over a dict of inspects; 404 otherwise."""

    def __init__(self, known: dict[str, dict[str, Any]]) -> None:
        self.known = known
        self.asked: list[str] = []

    def container(self, name: str) -> FakeContainers:
        self.asked.append(name)
        return self

    async def show(self) -> dict[str, Any]:
        name = self.asked[-1]
        if name not in self.known:
            raise not_found()
        return self.known[name]


class FakeDocker:
    def __init__(self, known: dict[str, dict[str, Any]]) -> None:
        self.containers = FakeContainers(known)


async def test_own_container_from_proc_first_then_only_a_hostname_that_is_its_own() -> None:
    me = {"Id": ID, "Config": {"Hostname": "3f3f3f3f3f3f"}}
    mountinfo = f"640 611 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw\n"
    docker = FakeDocker({ID: me, "3f3f3f3f3f3f": me})
    assert await find_own_container(docker, mountinfo, "0::/\n", "web") is me
    assert docker.containers.asked == [ID]
    # no trace in /proc (cgroup v2, odd mounts): the default hostname is the short ID
    assert await find_own_container(FakeDocker({"3f3f3f3f3f3f": me}), "", "0::/\n",
                                    "3f3f3f3f3f3f") is me
    # a --hostname that is another container's name must not make us attach that container
    other = {"Id": "ab" * 32, "Config": {"Hostname": "ab" * 6}}
    with pytest.raises(NotAContainer, match="--attach"):
        await find_own_container(FakeDocker({"web": other}), "", "0::/\n", "web")
