# Command line (SPEC §8): `scopedns serve` and `python -m resolver serve`. Flags, each also read
# from SCOPEDNS_<FLAG>, become one frozen Config; a bad flag or an address that cannot be bound
# exits non-zero with a one-line reason. No logic beyond that lives here.
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from resolver.config import (
    DEFAULT_DOCKER,
    DEFAULT_LISTEN,
    DEFAULT_MAX_FORWARDS,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RESYNC_INTERVAL,
    DEFAULT_TTL,
    DEFAULT_UPSTREAM_TIMEOUT,
    MAX_UPSTREAMS,
    AliasOrder,
    Config,
    Upstream,
    parse_host_port,
    resolv_conf_upstreams,
)
from resolver.server import ListenError, Server, run_until_stopped
from resolver.table import NameTable
from resolver.views import DEFAULT_HOST_VIEW_FROM

if TYPE_CHECKING:
    from watchers.snapshot import SnapshotSource

ENV_PREFIX = "SCOPEDNS_"
REPEATABLE = {"listen", "upstream", "host_view_from"}


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"scopedns: error: {message}\n")


def _env(dest: str, default: Any) -> Any:
    value = os.environ.get(ENV_PREFIX + dest.upper())
    if value is None:
        return default
    if dest in REPEATABLE:
        return [item for item in value.replace(",", " ").split() if item]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="scopedns", description="Docker-network-scoped DNS server")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    serve = commands.add_parser("serve", help="answer DNS queries from the engine's state")
    _add_serve_flags(serve.add_argument)
    _add_snapshot_command(commands)
    return parser


def _add_serve_flags(add: Callable[..., Any]) -> None:
    add("--listen", action="append", metavar="ADDR:PORT",
        help="UDP and TCP listen address, repeatable (default {}:{})".format(*DEFAULT_LISTEN))
    add("--docker", default=_env("docker", os.environ.get("DOCKER_HOST", DEFAULT_DOCKER)),
        help="engine URL (default DOCKER_HOST or %(default)s)")
    add("--resync-interval", type=float,
        default=_env("resync_interval", DEFAULT_RESYNC_INTERVAL),
        help="seconds between full reconciles with the engine, 0 = only after reconnects "
             "(default %(default)s)")
    add("--upstream", action="append", metavar="HOST[:PORT]",
        help=f"upstream server, repeatable, at most {MAX_UPSTREAMS} (default: resolv.conf)")
    add("--no-upstream", action="store_true",
        default=str(_env("no_upstream", "")).lower() in ("1", "true", "yes"),
        help="never forward; names that are not local get NXDOMAIN")
    add("--upstream-timeout", type=float,
        default=_env("upstream_timeout", DEFAULT_UPSTREAM_TIMEOUT),
        help="seconds per upstream try (default %(default)s; 5 s in all)")
    add("--max-forwards", type=int, default=_env("max_forwards", DEFAULT_MAX_FORWARDS),
        help="forwards in flight before REFUSED (default %(default)s)")
    add("--ttl", type=int, default=_env("ttl", DEFAULT_TTL),
        help="TTL of local answers (default %(default)s; Docker uses 600)")
    add("--alias-order", choices=[o.value for o in AliasOrder],
        default=_env("alias_order", AliasOrder.FIRST.value),
        help="several holders of a name: first, ordered or shuffle (default %(default)s)")
    add("--domain", default=_env("domain", None), help="authoritative zone suffix (optional)")
    add("--host-view-from", action="append", metavar="CIDR",
        help=f"sources that see every network (default {' '.join(DEFAULT_HOST_VIEW_FROM)})")
    add("--rate-limit", type=float, metavar="QPS", default=_env("rate_limit", DEFAULT_RATE_LIMIT),
        help="queries per second per source before REFUSED (default 0: off)")
    add("--rate-limit-burst", type=float, metavar="N", default=_env("rate_limit_burst", 0),
        help="queries a source may send at once before the limit applies (default: QPS)")
    add("--log-level", default=_env("log_level", "info"),
        choices=["debug", "info", "warning", "error"], help="(default %(default)s)")
    add("--snapshot", metavar="FILE", default=_env("snapshot", None),
        help="serve this snapshot (from `scopedns snapshot`) instead of an engine; "
             "SIGHUP re-reads it")


def _add_snapshot_command(commands: Any) -> None:
    snapshot = commands.add_parser("snapshot", help="write the engine's state to a snapshot file")
    snapshot.add_argument("--docker", default=os.environ.get("DOCKER_HOST", DEFAULT_DOCKER),
                          help="engine URL (default DOCKER_HOST or %(default)s)")
    snapshot.add_argument("--output", "-o", default="-", metavar="FILE|-",
                          help="where to write it (default -: stdout)")


def config_from_args(args: argparse.Namespace, resolv_conf: str = "/etc/resolv.conf") -> Config:
    """Raises ValueError with a one-line reason."""
    listen_texts = args.listen or _env("listen", None) or []
    listen = tuple(parse_host_port(text, 53) for text in listen_texts) or (DEFAULT_LISTEN,)
    upstream_texts = args.upstream or _env("upstream", None) or []
    upstreams = tuple(Upstream(*parse_host_port(text, 53)) for text in upstream_texts)
    for upstream in upstreams:
        ip_address(upstream.host)  # a name would need resolving, perhaps through us: refuse
    if args.no_upstream:
        upstreams = ()
    elif not upstreams:
        path = Path(resolv_conf)
        upstreams = resolv_conf_upstreams(path.read_text()) if path.exists() else ()
    if len(upstreams) > MAX_UPSTREAMS:
        raise ValueError(f"at most {MAX_UPSTREAMS} upstreams, got {len(upstreams)}")
    for upstream in upstreams:
        if forwards_to_itself(upstream, listen):
            raise ValueError(f"upstream {upstream} is this server itself: a forwarding loop")
    cidrs = args.host_view_from or _env("host_view_from", None) or list(DEFAULT_HOST_VIEW_FROM)
    numbers = (float(args.upstream_timeout), int(args.max_forwards), int(args.ttl))
    if numbers[0] <= 0 or numbers[1] < 1 or numbers[2] < 0:
        raise ValueError("--upstream-timeout and --max-forwards must be positive, --ttl >= 0")
    domain = args.domain.strip(".").lower() if args.domain else None
    if float(args.resync_interval) < 0:
        raise ValueError("--resync-interval must be >= 0")
    rate_limit = _rate_limit(args)
    return Config(listen=listen, docker=args.docker, resync_interval=float(args.resync_interval),
                  upstreams=upstreams,
                  upstream_timeout=numbers[0], max_forwards=numbers[1], ttl=numbers[2],
                  alias_order=AliasOrder(args.alias_order), domain=domain or None,
                  host_view_from=tuple(ip_network(c, strict=False) for c in cidrs),
                  log_level=args.log_level, rate_limit=rate_limit[0],
                  rate_limit_burst=rate_limit[1])


def forwards_to_itself(upstream: Upstream, listen: Sequence[tuple[str, int]]) -> bool:
    """Would queries to `upstream` reach one of our listen addresses? A wildcard listen on
    port P is every local address on P; a `::` UDP socket takes IPv4 too (IPV6_V6ONLY is off
    by default on Linux)."""
    try:
        target = _unmapped(upstream.host)
    except ValueError:
        return (upstream.host, upstream.port) in listen
    for host, port in listen:
        if port != upstream.port:
            continue
        try:
            bound = _unmapped(host)
        except ValueError:
            continue  # a listen name is not an address we could be asked on
        if bound == target or (bound.is_unspecified and bound.version >= target.version
                               and _is_local_address(target)):
            return True
    return False


def _unmapped(host: str) -> IPv4Address | IPv6Address:
    address = ip_address(host)
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_local_address(address: IPv4Address | IPv6Address) -> bool:
    """An address of this host: one a socket can bind, unless the host lets any address be
    bound (net.ipv4.ip_nonlocal_bind): then only loopback and unspecified count."""
    if address.is_loopback or address.is_unspecified:
        return True
    nowhere = ip_address("192.0.2.1" if address.version == 4 else "2001:db8::1")  # TEST-NET
    return _bindable(address) and not _bindable(nowhere)


def _bindable(address: IPv4Address | IPv6Address) -> bool:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def _rate_limit(args: argparse.Namespace) -> tuple[float, float]:
    rate, burst = float(args.rate_limit), float(args.rate_limit_burst)
    if rate < 0 or burst < 0:
        raise ValueError("--rate-limit and --rate-limit-burst must be >= 0")
    return rate, burst


async def _serve(config: Config, snapshot: SnapshotSource | None = None) -> None:
    from watchers.docker import DockerWatcher

    async def follow_engine(table: NameTable) -> None:
        watcher = DockerWatcher(table, config.docker, resync_interval=config.resync_interval)
        try:
            await watcher.run()
        finally:
            await watcher.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    source: Callable[[NameTable], Coroutine[Any, Any, None]] = follow_engine
    if snapshot is not None:
        loop.add_signal_handler(signal.SIGHUP, snapshot.reload)
        source = snapshot
    await run_until_stopped(Server(config), source, stop)


def _snapshot_command(args: argparse.Namespace) -> int:
    """`scopedns snapshot`: one listing of the engine, written as a snapshot file."""
    from watchers.engine_api import ENGINE_ERRORS
    from watchers.snapshot import take_snapshot, write_snapshot

    try:
        document = asyncio.run(take_snapshot(args.docker))
    except ENGINE_ERRORS as error:
        print(f"scopedns: error: cannot read the engine at {args.docker}: {error}",
              file=sys.stderr)
        return 1
    try:
        write_snapshot(document, args.output)
    except OSError as error:
        print(f"scopedns: error: cannot write {args.output}: {error.strerror or error}",
              file=sys.stderr)
        return 1
    print(f"scopedns: snapshot of {len(document['networks'])} networks, "
          f"{len(document['containers'])} running containers written to {args.output}",
          file=sys.stderr)
    return 0


def _load_snapshot(path: str | None) -> SnapshotSource | None:
    """`serve --snapshot FILE`: read and check it now, so a bad file stops the start."""
    from watchers.snapshot import SnapshotSource, load_snapshot

    if not path:
        return None
    return SnapshotSource(Path(path), load_snapshot(Path(path)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "snapshot":
        return _snapshot_command(args)
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from watchers.snapshot import SnapshotError

    try:
        snapshot = _load_snapshot(args.snapshot)
    except SnapshotError as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 2
    logging.getLogger("resolver").info("upstreams: %s", ", ".join(map(str, config.upstreams))
                                       or "none (misses get NXDOMAIN)")
    try:
        import uvloop
        uvloop.run(_serve(config, snapshot))
    except ListenError as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
