# Which containers `serve --takeover` answers for (docs/takeover.md), pure where it can be: the
# decision from a container's inspect JSON, the early one from a `network connect` event, the
# network's inspect (read before the container's own inspect can be) and the namespace file
# that appears with the join, the descriptor limit, and `scopedns release` (removing leftovers
# with no server and no engine).
from __future__ import annotations

import logging
import os
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from resolver.conntrack import delete_flows
from resolver.divert import DELETE_TABLE, LIST_TABLES, has_our_table
from resolver.model import PREDEFINED_NETWORKS
from resolver.netns import NamespaceError, NamespaceWorker, address_is_local
from resolver.nftables import NftablesError, NftContext

log = logging.getLogger("watchers.takeover")

LABEL = "scopedns.takeover"
DOCKER_NETNS_DIR = "/var/run/docker/netns"


@dataclass(frozen=True, slots=True)
class Target:
    container_id: str
    name: str
    sandbox_key: str
    client: str  # an endpoint address of the container: the identity its queries are asked as
    # Unix time of the engine event this take acts on (None: found by a listing), for
    # scopedns_takeover_latency_seconds (docs/operations.md).
    event_at: float | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


def plan(inspect: Mapping[str, Any], only: str | None = None) -> Target | Skip:
    """Whether a container's 127.0.0.11 is ours to answer, from its inspect JSON. `only`
    (--takeover-only LABEL[=VALUE]) limits takeover to containers carrying that label."""
    config = _map(inspect, "Config")
    host = _map(inspect, "HostConfig")
    settings = _map(inspect, "NetworkSettings")
    labels = _map(config, "Labels")
    mode = str(host.get("NetworkMode") or "")
    if not _map(inspect, "State").get("Running"):
        return Skip("not running")
    if str(labels.get(LABEL, "")).strip().lower() in ("false", "0", "no"):
        return Skip(f"label {LABEL}=false")
    if only is not None and not _has_label(labels, only):
        return Skip(f"no label {only} (--takeover-only)")
    if mode == "host":
        return Skip("host network: the host's own resolver, never entered")
    if mode == "none":
        return Skip("network none: no 127.0.0.11")
    if mode.startswith("container:"):
        return Skip("shares another container's namespace: answered as that container")
    networks = _map(settings, "Networks")
    client = ""
    for net_name in sorted(networks):
        endpoint = _map(networks, net_name)
        if net_name in PREDEFINED_NETWORKS:
            continue
        client = str(endpoint.get("IPAddress") or endpoint.get("GlobalIPv6Address") or "")
        if client:
            break
    if not client:
        return Skip("no user-defined network: Docker gives it no 127.0.0.11")
    sandbox_key = str(settings.get("SandboxKey") or "")
    if not sandbox_key:
        return Skip("no network namespace (SandboxKey) yet")
    name = str(inspect.get("Name") or "").lstrip("/")
    return Target(str(inspect.get("Id") or ""), name, sandbox_key, client)


def labels_allow(labels: Mapping[str, Any], only: str | None) -> bool:
    """The label rules of plan() alone (labels from an event's attributes)."""
    if str(labels.get(LABEL, "")).strip().lower() in ("false", "0", "no"):
        return False
    return only is None or _has_label(labels, only)


def endpoint_address(network: Mapping[str, Any], container_id: str) -> str:
    """A container's address on a network, from the network's inspect, which (unlike the
    container's) can be read while the container is still starting; "" for a predefined
    network or no address."""
    if str(network.get("Name") or "") in PREDEFINED_NETWORKS:
        return ""
    endpoint = _map(_map(network, "Containers"), container_id)
    for key in ("IPv4Address", "IPv6Address"):
        address = str(endpoint.get(key) or "").split("/", 1)[0]
        if address:
            return address
    return ""


def _has_label(labels: Mapping[str, Any], selector: str) -> bool:
    key, equals, value = selector.partition("=")
    return key in labels and (not equals or str(labels[key]) == value)


def _map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def namespace_files() -> list[str]:
    """Docker's namespace files now (the early path looks for a new one)."""
    try:
        return [os.path.join(DOCKER_NETNS_DIR, entry) for entry in os.listdir(DOCKER_NETNS_DIR)]
    except OSError:
        return []


async def new_namespace_with(worker: NamespaceWorker, address: str, others: set[str]
                             ) -> str | None:
    """The namespace file, not in `others`, where `address` is assigned."""
    for path in namespace_files():
        if path in others:
            continue
        try:
            namespace = worker.open(path)
        except NamespaceError:
            continue
        try:
            if await worker.run(namespace, partial(address_is_local, address)):
                return path
        except NamespaceError:
            continue
        finally:
            namespace.close()
    return None


def raise_descriptor_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("takeover: cannot raise the descriptor limit: %s", error)
    return soft


def release_leftovers(netns_dir: str = DOCKER_NETNS_DIR, only: Sequence[str] = ()
                      ) -> tuple[int, int, list[str]]:
    """`scopedns release`: delete our table from every Docker namespace (or those in `only`)
    that still has one and flush its UDP conntrack entries. (namespaces seen, tables
    removed, problems)."""
    worker = NamespaceWorker(threads=1)
    seen, removed, problems = 0, 0, []
    try:
        paths = list(only)
        if not paths and os.path.isdir(netns_dir):
            paths = [os.path.join(netns_dir, entry) for entry in sorted(os.listdir(netns_dir))]
        for path in paths:
            try:
                namespace = worker.open(path)
            except NamespaceError as error:
                problems.append(str(error))
                continue
            seen += 1
            try:
                if worker.call_in(namespace, _remove_our_table):
                    removed += 1
                    worker.call_in(namespace, delete_flows)
            except (NamespaceError, NftablesError, OSError) as error:
                problems.append(f"{path}: {error}")
            finally:
                namespace.close()
    finally:
        worker.close()
    return seen, removed, problems


def _remove_our_table() -> bool:
    nft = NftContext()
    try:
        if not has_our_table(nft.run(LIST_TABLES)):
            return False
        try:
            nft.run(DELETE_TABLE)
        except NftablesError as error:
            raise NftablesError(f"{error} (owned by a running scopedns? stop it: SIGTERM "
                                "hands back)") from None
        return True
    finally:
        nft.close()

