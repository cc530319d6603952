# Stopped containers for `scopedns explain` (docs/operations.md): the name table holds running
# containers only, so "why does the stopped first holder not answer?" needs the engine. One
# listing of the containers that are not running and are attached to the client's networks
# (newest first, at most STOPPED_LIMIT inspected: the listing carries no aliases), each reduced
# to the names it would register per network.
from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiodocker

from resolver.explain import StoppedContainer
from watchers.engine_api import REQUEST_TIMEOUT, close_quietly

STOPPED_STATES = ("created", "exited", "dead")
STOPPED_LIMIT = 100


def stopped_from_inspect(data: Mapping[str, Any]) -> StoppedContainer | None:
    """An inspected container that is not running, as the names it would hold."""
    state = data.get("State") or {}
    if not isinstance(state, Mapping) or state.get("Running"):
        return None
    cid, name = str(data.get("Id") or ""), str(data.get("Name") or "").lstrip("/")
    if not cid or not name:
        return None
    hostname = str((data.get("Config") or {}).get("Hostname") or "")
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    held = []
    for network, settings in sorted(networks.items()):
        aliases = [str(a) for a in (settings or {}).get("Aliases") or []]
        names = dict.fromkeys([name, *aliases, cid[:12], *([hostname] if hostname else [])])
        held.append((str(network), tuple(names)))
    return StoppedContainer(cid, name, tuple(held), str(state.get("Status") or "exited"))


async def stopped_containers(url: str | None, networks: Sequence[str]) -> list[StoppedContainer]:
    """Containers that are not running and are attached to any of `networks` (ids)."""
    if not networks:
        return []
    docker: Any = aiodocker.Docker(url=url, timeout=REQUEST_TIMEOUT)
    try:
        filters = json.dumps({"status": list(STOPPED_STATES), "network": list(networks)})
        listed = await docker.containers.list(all=True, filters=filters)
        shown = await asyncio.gather(*(c.show() for c in listed[:STOPPED_LIMIT]),
                                     return_exceptions=True)
    finally:
        await close_quietly(docker)
    found = (stopped_from_inspect(data) for data in shown if isinstance(data, Mapping))
    return [s for s in found if s is not None]
