# `serve --attach all|labeled` (docs/deployment.md, "The sidecar attaches itself"): the
# sidecar finds its own container, joins every network the policy (attach_policy.py) accepts,
# then every such network created later, logging its address on each. It has its own engine
# client and event subscription (network create events only) and reconnects with backoff; the
# name table learns the new endpoints from the watcher's own events, like any container's.
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.exceptions import DockerError
from aiodocker.networks import DockerNetwork

from resolver.sources import StateSource
from watchers.attach_policy import (
    AttachMode,
    addresses_on,
    decide,
    endpoint_config,
    joined_networks,
    network_names,
    own_id_from_cgroup,
    own_id_from_mountinfo,
)
from watchers.engine_api import (
    ENGINE_ERRORS,
    REQUEST_TIMEOUT,
    close_quietly,
    describe,
    inspect_one,
    show_network,
)

log = logging.getLogger("watchers.attach")

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
_CREATE_EVENTS = {"type": ["network"], "event": ["create"]}


class NotAContainer(RuntimeError):
    """--attach outside a container, or one the engine does not know."""


def read_own_traces() -> tuple[str, str, str]:
    """What this process can see of its container: mountinfo, cgroup, hostname."""
    texts = []
    for path in (Path("/proc/self/mountinfo"), Path("/proc/self/cgroup")):
        try:
            texts.append(path.read_text())
        except OSError:
            texts.append("")
    return texts[0], texts[1], socket.gethostname()


async def find_own_container(docker: Any, mountinfo: str, cgroup: str,
                             hostname: str) -> Mapping[str, Any]:
    """Our own container's inspect: the ID from mountinfo, else cgroup, else the hostname."""
    from_proc = [found for found in (own_id_from_mountinfo(mountinfo), own_id_from_cgroup(cgroup))
                 if found]
    for candidate in [*from_proc, hostname]:  # Docker's default hostname is the short ID
        try:
            data = await docker.containers.container(candidate).show()
        except DockerError as exc:
            if exc.status == 404:
                continue
            raise
        if not isinstance(data, Mapping):
            continue
        # The hostname could be another container's name: only a container whose own hostname
        # is ours counts then (an ID from /proc is ours by construction).
        config = data.get("Config")
        if candidate in from_proc or (isinstance(config, Mapping)
                                      and config.get("Hostname") == hostname):
            return data
    raise NotAContainer("--attach: this process is not in a container the engine at hand "
                        "knows (looked in /proc/self/mountinfo, /proc/self/cgroup, hostname)")


class Attacher:
    """Keeps the sidecar on every network `mode` selects."""

    def __init__(self, docker_url: str | None, mode: AttachMode) -> None:
        self._url = docker_url
        self._mode = mode
        self._refused: set[str] = set()  # networks already logged as not joinable

    async def run(self) -> None:
        delay = BACKOFF_INITIAL
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self._cycle()
            except NotAContainer as exc:
                log.error("%s; not attaching to any network", exc)
                return
            except ENGINE_ERRORS as exc:
                log.warning("attach: engine unreachable (%s); retrying in %.1f s",
                            describe(exc), delay)
            if asyncio.get_running_loop().time() - started > BACKOFF_MAX:
                delay = BACKOFF_INITIAL  # it ran well for a while: a fresh failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _cycle(self) -> None:
        docker: Any = aiodocker.Docker(url=self._url, timeout=REQUEST_TIMEOUT)
        try:
            me = await find_own_container(docker, *read_own_traces())
            own_id = str(me["Id"])
            subscriber = docker.events.subscribe(filters=_CREATE_EVENTS)  # before the listing
            for name in network_names(me):
                log.info("attach: on network %s at %s", name,
                         ", ".join(addresses_on(me, name)) or "no address")
            for network in await docker.networks.list() or ():
                if isinstance(network, Mapping):
                    await self._consider(docker, own_id, network, joined_networks(me))
            while True:
                event = await subscriber.get()
                if event is None:
                    raise ConnectionError("event stream ended")
                network_id = str((event.get("Actor") or {}).get("ID") or "")
                if not network_id:
                    continue
                data = await inspect_one(show_network(docker, network_id),
                                         f"network {network_id}")
                if isinstance(data, Mapping):  # else gone already, or logged
                    await self._consider(docker, own_id, data, set())
        finally:
            await close_quietly(docker)

    async def _consider(self, docker: Any, own_id: str, network: Mapping[str, Any],
                        joined: set[str]) -> None:
        name, network_id = str(network.get("Name")), str(network.get("Id"))
        if name in joined or network_id in joined:
            return
        decision = decide(network, self._mode)
        if not decision.join:
            return
        if decision.problem:
            log.warning("attach: network %s: %s", name, decision.problem)
        try:
            network_api: Any = DockerNetwork  # untyped in aiodocker
            await network_api(docker, network_id).connect(
                {"Container": own_id, "EndpointConfig": endpoint_config(decision.address)})
        except DockerError as exc:
            if "already exists" in str(exc):
                return
            if network_id not in self._refused:
                at = f" at {decision.address}" if decision.address else ""
                log.error("attach: cannot join network %s%s: %s", name, at, describe(exc))
                self._refused.add(network_id)
            return
        me = await inspect_one(docker.containers.container(own_id).show(), "own container")
        addresses = addresses_on(me, name) if isinstance(me, Mapping) else []
        log.info("attach: joined network %s at %s", name, ", ".join(addresses) or "no address")


class Attaching:
    """A state source (resolver/sources.py) with the attacher running beside it: `run` runs
    both, reload and close go to the source."""

    def __init__(self, source: StateSource, docker_url: str | None, mode: str) -> None:
        self._source = source
        self._attacher = Attacher(docker_url, AttachMode(mode))

    async def run(self) -> None:
        attaching = asyncio.create_task(self._attacher.run(), name="attach")
        try:
            await self._source.run()
        finally:
            attaching.cancel()
            await asyncio.gather(attaching, return_exceptions=True)

    def reload(self) -> None:
        self._source.reload()

    async def close(self) -> None:
        await self._source.close()
