# A synced server on loopback for load tests: one fixed topology (two networks, a client
# container whose endpoint lives in 127.77.0.0/16 so dnsperf can send from it with -a), the
# dnsperf query files of profiles (a) and (b), and start functions for scopedns and, as the
# reference, dnsmasq serving the same names from a hosts file. Used by bench.profile.
# Serve alone: python -m bench.loopback --port 5390
from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from resolver.config import Config
from resolver.server import Server, run_until_stopped
from resolver.table import NameTable
from testkit.ports import free_port
from testkit.topology import Topology, attach, container, network

APP = network("app", "127.77.0.0/16")
DB = network("db", "127.78.0.0/16", ipv6="fd00:78::/64")
MEMBERS = 50
CLIENT_ADDRESS = "127.77.0.200"  # the client container's endpoint: a container view
HOST_ADDRESS = "127.0.0.1"  # loopback outside every network: the host view


def topology() -> Topology:
    members = [container(f"c{i}", attach(APP, 10 + i, f"svc{i}")) for i in range(MEMBERS)]
    databases = [container(f"db{i}", attach(DB, 10 + i)) for i in range(5)]
    client = container("client", attach(APP, 200, links={"lnk": "c3"}), attach(DB, 200))
    return Topology([APP, DB], [client, *members, *databases])


def _mixed(name: str, i: int) -> str:
    return name.upper() if i % 3 == 0 else name.capitalize() if i % 3 == 1 else name


def _ptr(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def queries(profile: str, container_view: bool) -> list[str]:
    """dnsperf input lines. (a): local A hits, host view. (b): A+AAAA pairs (AAAA NODATA on
    app, answered on db), PTR, mixed case, name.network, link alias from the container view."""
    if profile == "a":
        return [f"c{i} A" for i in range(3)]
    lines: list[str] = []
    for i in range(MEMBERS):
        name = _mixed(f"c{i}" if i % 2 else f"svc{i}", i)
        lines += [f"{name} A", f"{name} AAAA"]
        if i % 5 == 0:
            lines += [f"{_mixed(f'c{i}.app', i)} A", f"{_ptr(f'127.77.0.{10 + i}')} PTR"]
    for i in range(5):
        lines += [f"DB{i} A", f"db{i} AAAA", f"{_ptr(f'127.78.0.{10 + i}')} PTR"]
    if container_view:
        lines += ["lnk A", "LNK AAAA"]
    return lines


def hosts_file() -> str:
    """The same names for dnsmasq: short name, aliases, name.network, both families."""
    lines = []
    for c in topology().containers:
        for ep in c.endpoints:
            net = APP.name if ep.network_id == APP.id else DB.name
            names = [c.name, *ep.aliases, f"{c.name}.{net}"]
            lines += [f"{addr} {' '.join(names)}" for addr in ep.addresses]
    lines.append("127.77.0.13 lnk")
    return "\n".join(lines) + "\n"


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    pids: list[int]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_for_udp(port: int, process: subprocess.Popen[bytes]) -> None:
    query = bytes.fromhex("abcd01000001000000000000") + b"\x02c0\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        for _ in range(100):
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            probe.sendto(query, (HOST_ADDRESS, port))
            try:
                probe.recv(512)
                return
            except TimeoutError:
                time.sleep(0.1)
    raise RuntimeError("server did not answer within 30 s")


def start_scopedns(port: int = 0, tree: Path | None = None, http: bool = False) -> Running:
    """scopedns with the bench topology on 127.0.0.1:port, no upstream. `tree`: another
    checkout to run (its resolver/ with this bench/ copied in), e.g. to compare with HEAD.
    `http`: with --http on (queries counted, /metrics served)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "bench.loopback", "--port", str(port),
            *(["--http", str(free_port())] if http else [])]
    process = subprocess.Popen(argv, cwd=tree or Path(__file__).resolve().parent.parent)
    _wait_for_udp(port, process)
    return Running(process, port, [process.pid])


def start_dnsmasq(hosts: Path, port: int = 0) -> Running:
    """dnsmasq in the foreground answering the bench names from `hosts` (the reference)."""
    port = port or free_port()
    hosts.write_text(hosts_file())
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    process = subprocess.Popen([binary, "-k", "--no-resolv", "--no-hosts",
                                f"--addn-hosts={hosts}", "-p", str(port),
                                f"--listen-address={HOST_ADDRESS}", "--bind-interfaces",
                                "--cache-size=1000", "--log-facility=/dev/null"])
    _wait_for_udp(port, process)
    return Running(process, port, [process.pid])


def build_table() -> NameTable:
    return topology().table()


class FixedTable:
    """The state source (resolver/sources.py) of a table built once: nothing to feed."""

    async def run(self) -> None:
        await asyncio.Event().wait()

    def reload(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def _serve(port: int, http_port: int | None = None) -> None:
    config = Config(listen=((HOST_ADDRESS, port),), upstreams=(),
                    http=(HOST_ADDRESS, http_port) if http_port else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = Server(config, build_table())
    http = None
    if http_port:
        from resolver.http import start_http

        http = await start_http(server, None, "the bench topology")
    try:
        await run_until_stopped(server, FixedTable(), stop)
    finally:
        if http is not None:
            await http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http", type=int, help="also serve --http on this port")
    args = parser.parse_args()
    import uvloop
    uvloop.run(_serve(args.port, args.http))


if __name__ == "__main__":
    main()
