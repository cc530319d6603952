# Command line (SPEC §8): `scopedns serve` and `python -m resolver serve`. Flags, each also read
# from SCOPEDNS_<FLAG>, become one frozen Config; a bad flag or an address that cannot be bound
# exits non-zero with a one-line reason. No logic beyond that lives here.
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any, NoReturn

from resolver.config import (
    DEFAULT_DOCKER,
    DEFAULT_LISTEN,
    DEFAULT_MAX_FORWARDS,
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
    add = serve.add_argument
    add("--listen", action="append", metavar="ADDR:PORT",
        help="UDP and TCP listen address, repeatable (default {}:{})".format(*DEFAULT_LISTEN))
    add("--docker", default=_env("docker", os.environ.get("DOCKER_HOST", DEFAULT_DOCKER)),
        help="engine URL (default DOCKER_HOST or %(default)s)")
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
    add("--log-level", default=_env("log_level", "info"),
        choices=["debug", "info", "warning", "error"], help="(default %(default)s)")
    return parser


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
        if (upstream.host, upstream.port) in listen:
            raise ValueError(f"upstream {upstream} is this server itself: a forwarding loop")
    cidrs = args.host_view_from or _env("host_view_from", None) or list(DEFAULT_HOST_VIEW_FROM)
    numbers = (float(args.upstream_timeout), int(args.max_forwards), int(args.ttl))
    if numbers[0] <= 0 or numbers[1] < 1 or numbers[2] < 0:
        raise ValueError("--upstream-timeout and --max-forwards must be positive, --ttl >= 0")
    domain = args.domain.strip(".").lower() if args.domain else None
    return Config(listen=listen, docker=args.docker, upstreams=upstreams,
                  upstream_timeout=numbers[0], max_forwards=numbers[1], ttl=numbers[2],
                  alias_order=AliasOrder(args.alias_order), domain=domain or None,
                  host_view_from=tuple(ip_network(c, strict=False) for c in cidrs),
                  log_level=args.log_level)


async def _serve(config: Config) -> None:
    from watchers.docker import DockerWatcher

    async def follow_engine(table: NameTable) -> None:
        watcher = DockerWatcher(table, config.docker)
        try:
            await watcher.run()
        finally:
            await watcher.close()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_until_stopped(Server(config), follow_engine, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("resolver").info("upstreams: %s", ", ".join(map(str, config.upstreams))
                                       or "none (misses get NXDOMAIN)")
    try:
        import uvloop
        uvloop.run(_serve(config))
    except ListenError as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
