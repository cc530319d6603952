# Command line (docs/design.md): `scopedns serve`, `scopedns snapshot`, and `python -m resolver`.
# Every serve flag is one row of SERVE_FLAGS: how to read it, its default, its help. A value
# comes from the flag, else from SCOPEDNS_<FLAG>, else the default, and goes through the same
# check either way, so a bad value is one line naming the flag (and the variable). The result
# is one frozen Config handed to resolver.server.serve; nothing else happens here.
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any, NoReturn

import dns.exception
import dns.name
import dns.resolver

from resolver.answer import AliasOrder
from resolver.config import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_HOST_VIEW_FROM,
    DEFAULT_LISTEN,
    DEFAULT_MAX_FORWARDS,
    DEFAULT_RATE_LIMIT,
    DEFAULT_RESYNC_INTERVAL,
    DEFAULT_TTL,
    DEFAULT_UDP_IO,
    DEFAULT_UPSTREAM_TIMEOUT,
    MAX_UPSTREAMS,
    UDP_IO,
    Config,
    HostPort,
    parse_host_port,
)

ENV_PREFIX = "SCOPEDNS_"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
HTTP_PORT = 9153  # --http without a port: CoreDNS's metrics port
DOCKER_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://", "npipe://")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"scopedns: error: {message}\n")


# ----- value checks: each raises ValueError with what is wrong -----------------------------


def _address(text: str) -> HostPort:
    host, port = parse_host_port(text, 53)
    try:
        ip_address(host.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host, port


def _upstream(text: str) -> HostPort:
    host, port = _address(text)  # a name would need resolving, perhaps through us: refused
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is not a server's port")
    return host, port


def _number(kind: type[int] | type[float], low: float, strict: bool = False
            ) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a{'n integer' if kind is int else ' number'}"
                             ) from None
        if value < low or (strict and value == low):
            raise ValueError(f"{text!r} must be {'above' if strict else 'at least'} {low:g}")
        return value
    return parse


def _one_of(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text.lower()
    return parse


def _alias_order(text: str) -> AliasOrder:
    return AliasOrder(_one_of([o.value for o in AliasOrder])(text))


def _domain(text: str) -> str | None:
    try:
        name = dns.name.from_text(text.strip().strip(".") or ".")
    except dns.exception.DNSException as error:
        raise ValueError(f"{text!r} is not a domain name: {error}") from None
    return name.to_text(omit_final_dot=True).lower() if name != dns.name.root else None


def _cidr(text: str) -> Any:
    try:
        return ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an address or CIDR") from None


def _docker_url(text: str) -> str:
    if not text.startswith(DOCKER_SCHEMES):
        raise ValueError(f"{text!r} is not an engine URL ({', '.join(DOCKER_SCHEMES)})")
    return text


def _label_selector(text: str) -> str:
    key = text.partition("=")[0]
    if not key or any(c.isspace() for c in key):
        raise ValueError(f"{text!r} is not a label selector (LABEL or LABEL=VALUE)")
    return text


def _switch(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a yes/no value ({', '.join(_TRUE)} or "
                     f"{', '.join(f for f in _FALSE if f)})")


# ----- the flags -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str  # without the dashes
    parse: Callable[[str], Any]
    default: Any
    help: str
    repeatable: bool = False
    switch: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


SERVE_FLAGS = (
    Flag("listen", _address, (DEFAULT_LISTEN,), "UDP and TCP listen address, repeatable "
         "(default {}:{})".format(*DEFAULT_LISTEN), repeatable=True, metavar="ADDR:PORT"),
    Flag("docker", _docker_url, None, "engine URL (default DOCKER_HOST or the local socket)"),
    Flag("snapshot", str, None, "serve this snapshot (from `scopedns snapshot`) instead of an "
         "engine; SIGHUP re-reads it", metavar="FILE"),
    Flag("resync-interval", _number(float, 0), DEFAULT_RESYNC_INTERVAL, "seconds between full "
         "reconciles with the engine, 0 = only after reconnects (default %(default)s)"),
    Flag("upstream", _upstream, None, f"upstream server, repeatable, at most {MAX_UPSTREAMS} "
         "(default: resolv.conf)", repeatable=True, metavar="HOST[:PORT]"),
    Flag("no-upstream", _switch, False, "never forward; names that are not local get NXDOMAIN",
         switch=True),
    Flag("upstream-timeout", _number(float, 0, strict=True), DEFAULT_UPSTREAM_TIMEOUT,
         "seconds per upstream try (default %(default)s; 5 s in all)"),
    Flag("max-forwards", _number(int, 1), DEFAULT_MAX_FORWARDS,
         "forwards in flight before REFUSED (default %(default)s)"),
    Flag("ttl", _number(int, 0), DEFAULT_TTL,
         "TTL of local answers (default %(default)s; Docker uses 600)"),
    Flag("alias-order", _alias_order, AliasOrder.FIRST,
         "several holders of a name: first, ordered or shuffle (default first)"),
    Flag("domain", _domain, None, "authoritative zone suffix (optional)"),
    Flag("host-view-from", _cidr, None, "sources that see every network, repeatable (default "
         f"{' '.join(DEFAULT_HOST_VIEW_FROM)})", repeatable=True, metavar="CIDR"),
    Flag("rate-limit", _number(float, 0), DEFAULT_RATE_LIMIT,
         "queries per second per source before REFUSED (default 0: off)", metavar="QPS"),
    Flag("rate-limit-burst", _number(float, 0), 0.0, "queries a source may send at once "
         "before the limit applies (default: QPS)", metavar="N"),
    Flag("cache-size", _number(int, 0), DEFAULT_CACHE_SIZE, "upstream answers kept for their "
         f"TTLs (default {DEFAULT_CACHE_SIZE}; 0: no cache)", metavar="N"),
    Flag("log-level", _one_of(LOG_LEVELS), "info", f"{', '.join(LOG_LEVELS)} (default info)"),
    Flag("attach", _one_of(("all", "labeled")), None, "in a container: join every user-defined "
         "network, or those labelled scopedns.attach=true, also ones created later "
         "(docs/deployment.md)", metavar="all|labeled"),
    # serve --takeover (docs/takeover.md)
    Flag("takeover", _switch, False, "answer every container's own 127.0.0.11 (root, host PID "
         "and network namespace); stopping hands it back to Docker", switch=True),
    Flag("takeover-only", _label_selector, None, "take over only containers carrying this "
         "label (default: every container)", metavar="LABEL[=VALUE]"),
    Flag("ignore-health", _switch, False, "answer starting and unhealthy holders too, as "
         "Docker does (docs/health.md)", switch=True),
    Flag("udp-io", _one_of(UDP_IO), DEFAULT_UDP_IO, "how UDP is read: batch (one thread, "
         "recvmmsg/sendmmsg) or loop (the event loop, per datagram); default %(default)s "
         "(docs/performance.md)", metavar="batch|loop"),
    # Operations (docs/operations.md).
    Flag("http", lambda text: parse_host_port(text, HTTP_PORT), None, "serve /metrics, "
         "/healthz, /readyz and /v1/clients here (default off; port 9153 if none; it reveals "
         "the table: keep it on loopback or a management network)", metavar="ADDR[:PORT]"),
    Flag("log-format", _one_of(LOG_FORMATS), "text", "text or json lines (default text)"),
    Flag("log-queries", _switch, False, "log one line per query (at most 50 a second) with "
         "client, view, name, type, rcode and how it was answered", switch=True),
)


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse's type=: a ValueError becomes 'argument --flag: <reason>'."""
    def check(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return check


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="scopedns", description="Docker-network-scoped DNS server")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    serve = commands.add_parser("serve", help="answer DNS queries from the engine's state")
    for flag in SERVE_FLAGS:
        if flag.switch:
            serve.add_argument(f"--{flag.name}", action="store_true", default=None,
                               help=flag.help)
            continue
        serve.add_argument(f"--{flag.name}", type=_checked(flag.parse), metavar=flag.metavar,
                           action="append" if flag.repeatable else "store", help=flag.help)
    snapshot = commands.add_parser("snapshot", help="write the engine's state to a snapshot file")
    snapshot.add_argument("--docker", type=_checked(_docker_url),
                          help="engine URL (default DOCKER_HOST or the local socket)")
    snapshot.add_argument("--output", "-o", default="-", metavar="FILE|-",
                          help="where to write it (default -: stdout)")
    resolv = commands.add_parser("resolv-conf", help="print a resolv.conf that asks scopedns "
                                 "directly (bind-mount it as a container's /etc/resolv.conf)")
    resolv.add_argument("--nameserver", action="append", default=[], metavar="ADDR",
                        help="scopedns's address as the container reaches it, repeatable")
    resolv.add_argument("--search", action="append", default=[], metavar="DOMAIN")
    resolv.add_argument("--ndots", type=int, default=0, help="(default %(default)s, as Docker)")
    _add_release_command(commands)
    explain = commands.add_parser(
        "explain", help="ask a running server (--http) what ADDRESS sees and NAME resolves to")
    explain.add_argument("address", metavar="ADDRESS", help="a client's IP address")
    explain.add_argument("name", metavar="NAME", nargs="?", help="a name to resolve for it")
    explain.add_argument("--http", metavar="ADDR:PORT",
                         default=os.environ.get("SCOPEDNS_HTTP", f"127.0.0.1:{HTTP_PORT}"),
                         help="the server's --http (default %(default)s)")
    explain.add_argument("--json", action="store_true", help="print the server's JSON")
    return parser


# ----- takeover (docs/takeover.md): `scopedns release`, and what --takeover needs -----------


def _add_release_command(commands: Any) -> None:
    release = commands.add_parser("release", help="hand back every container's 127.0.0.11 "
                                  "after a takeover that could not (no server running)")
    release.add_argument("--netns-dir", default="/var/run/docker/netns",
                         help="Docker's namespace files (default %(default)s)")
    release.add_argument("namespaces", nargs="*", metavar="NETNS",
                         help="only these namespace files (default: every one in --netns-dir)")


def _takeover_problem() -> str | None:
    from resolver.nftables import available

    if os.geteuid() != 0:
        return "--takeover needs root (it enters containers' network namespaces)"
    return available()


def _release_command(args: argparse.Namespace) -> int:
    from watchers.takeover_plan import release_leftovers

    problem = _takeover_problem()
    if problem:
        print(f"scopedns: error: {problem}", file=sys.stderr)
        return 1
    seen, removed, problems = release_leftovers(args.netns_dir, args.namespaces)
    for problem in problems:
        print(f"scopedns: {problem}", file=sys.stderr)
    print(f"scopedns: {seen} namespaces checked, {removed} diversions removed", file=sys.stderr)
    return 1 if problems else 0


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """Each serve flag's value: the command line's, else the environment's, else the default.
    Raises ValueError naming the variable and the flag when the environment's is bad."""
    values: dict[str, Any] = {}
    for flag in SERVE_FLAGS:
        given = getattr(args, flag.dest, None)
        text = os.environ.get(flag.env)
        if given is None and text is not None:
            items = text.replace(",", " ").split() if flag.repeatable else [text]
            try:
                parsed = [flag.parse(item) for item in items]
            except ValueError as error:
                raise ValueError(f"{flag.env} (--{flag.name}): {error}") from None
            given = parsed if flag.repeatable else parsed[0]
        values[flag.dest] = flag.default if given is None or given == [] else given
    return values


def config_from_args(args: argparse.Namespace, resolv_conf: str = "/etc/resolv.conf") -> Config:
    """The Config of `scopedns serve`. Raises ValueError with a one-line reason."""
    values = flag_values(args)
    upstreams: tuple[HostPort, ...] = tuple(values.pop("upstream") or ())
    if values["no_upstream"]:
        upstreams = ()
    elif not upstreams:
        upstreams = resolv_conf_upstreams(resolv_conf)
    if len(upstreams) > MAX_UPSTREAMS:
        raise ValueError(f"--upstream: at most {MAX_UPSTREAMS} upstreams, got {len(upstreams)}")
    host_view = values.pop("host_view_from")
    if host_view is not None:
        values["host_view_from"] = tuple(host_view)
    return Config(upstreams=upstreams, **{**values, "listen": tuple(values["listen"])})


def resolv_conf_upstreams(path: str) -> tuple[HostPort, ...]:
    """The nameservers of a resolv.conf (read by dnspython), minus loopback ones: they may be
    us, a forwarding loop (docs/forwarding.md)."""
    try:
        servers = dns.resolver.Resolver(filename=path, configure=True).nameservers
    except (dns.resolver.NoResolverConfiguration, OSError):
        return ()
    usable: list[HostPort] = []
    for server in servers:
        text = str(server)
        try:
            if ip_address(text.split("%", 1)[0]).is_loopback:
                continue
        except ValueError:
            continue
        usable.append((text, 53))
    return tuple(usable[:MAX_UPSTREAMS])


# ----- commands ------------------------------------------------------------------------------


def _snapshot_command(args: argparse.Namespace) -> int:
    """`scopedns snapshot`: one listing of the engine, written as a snapshot file."""
    from watchers.engine_api import ENGINE_ERRORS
    from watchers.snapshot import take_snapshot, write_snapshot

    url = args.docker or os.environ.get(ENV_PREFIX + "DOCKER")
    try:
        document = asyncio.run(take_snapshot(url))
    except ENGINE_ERRORS as error:
        print(f"scopedns: error: cannot read the engine at {url or 'the default socket'}: "
              f"{error}", file=sys.stderr)
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


def _resolv_conf_command(args: argparse.Namespace) -> int:
    """`scopedns resolv-conf`: the file for the direct way in (docs/deployment.md)."""
    from resolver.direct import render_resolv_conf

    try:
        print(render_resolv_conf(args.nameserver, args.search, args.ndots), end="")
    except ValueError as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 2
    return 0


def _serve_command(args: argparse.Namespace) -> int:
    from resolver.server import StartError, serve

    try:
        config = config_from_args(args)
    except (ValueError, OSError) as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 2
    problem = _takeover_problem() if config.takeover else None
    if problem:
        print(f"scopedns: error: {problem}", file=sys.stderr)
        return 2
    from resolver.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    try:
        import uvloop

        uvloop.run(serve(config))
    except StartError as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "snapshot":
        return _snapshot_command(args)
    if args.command == "resolv-conf":
        return _resolv_conf_command(args)
    if args.command == "release":
        return _release_command(args)
    if args.command == "explain":
        from resolver.explain_client import explain_command

        return explain_command(args.http, args.address, args.name, args.json)
    return _serve_command(args)
