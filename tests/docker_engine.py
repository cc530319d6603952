# What the tests that use the real Docker engine share: the docker CLI (run without blocking
# the loop, remembering what it made so that it can be removed), polling for a condition, a
# look into the name table by names, and a cuttable unix-socket relay standing in for an engine
# that goes away. Fixtures built on these live in tests/conftest.py.
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from resolver.model import NetworkInfo
from resolver.table import NameTable

DOCKER = os.environ.get("DOCKER") or "/usr/bin/docker"
IMAGE = "scopedns-busybox:test"
SOCKET = "/var/run/docker.sock"
URL = f"unix://{SOCKET}"
WAIT = 5.0  # seconds a change may take to reach the table


def require_engine() -> None:
    """Skip (fail on CI) when no engine or no test image answers."""
    try:
        subprocess.run([DOCKER, "version", "--format", "{{.Server.Version}}"], check=True,
                       capture_output=True, timeout=15)
        subprocess.run([DOCKER, "image", "inspect", IMAGE], check=True, capture_output=True,
                       timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Docker engine or no {IMAGE} image on CI: {exc}")
        pytest.skip(f"no Docker engine or no {IMAGE} image: {exc}")


class Engine:
    """Runs the docker CLI without blocking the loop; remembers what it made, to remove it."""

    def __init__(self) -> None:
        self.prefix = f"sdt{secrets.token_hex(3)}"
        self.containers: list[str] = []
        self.networks: list[str] = []

    async def docker(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            DOCKER, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {err.decode().strip()}")
        return out.decode().strip()

    async def network(self, name: str, *args: str) -> str:
        full = f"{self.prefix}-{name}"
        self.networks.append(full)
        return await self.docker("network", "create", *args, full)

    async def run(self, name: str, *args: str) -> str:
        full = f"{self.prefix}-{name}"
        self.containers.append(full)
        return await self.docker("run", "-d", "--name", full, "--dns", "127.0.0.1", *args,
                                 IMAGE, "sleep", "600")

    async def ip(self, container: str, network: str) -> IPv4Address:
        text = await self.docker("inspect", "-f",
                                 f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
                                 container)
        return IPv4Address(text)

    async def cleanup(self) -> None:
        for container in self.containers:
            with contextlib.suppress(AssertionError):
                await self.docker("rm", "-f", "-v", container)
        for network in self.networks:
            await self._remove_network(network)

    async def _remove_network(self, network: str) -> None:
        """`--rm` containers may still be leaving the network (active endpoints): retry for
        a few seconds rather than leave the network behind."""
        for _ in range(20):
            try:
                await self.docker("network", "rm", network)
                return
            except AssertionError as error:
                if "not found" in str(error):
                    return
                await asyncio.sleep(0.25)


async def eventually(check: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


def network_named(table: NameTable, name: str) -> NetworkInfo | None:
    return next((n for n in table.networks if n.name == name), None)


def holders(table: NameTable, network: str, name: str) -> list[tuple[str, IPv4Address | None]]:
    """(container name, IPv4) of each holder of `name` on the network called `network`."""
    info = network_named(table, network)
    records = table.records(info.id) if info else None
    found = records.holders.get(name.lower(), ()) if records else ()
    return [(h.primary_name, h.ipv4) for h in found]


class SocketProxy:
    """A unix-socket relay to the engine that can be cut and restored, like an engine restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def up(self) -> None:
        self._server = await asyncio.start_unix_server(self._relay, path=str(self.path))

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        self.path.unlink(missing_ok=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(SOCKET)
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer),
                             return_exceptions=True)
        self._writers -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
