"""Helpers for test_deploy.py: clients that ask only their own resolver, and the parsing of
what busybox `nslookup NAME` and glibc `getent hosts NAME` print.

Clients are busybox (`scopedns-busybox:test`, for nslookup) or the scopedns image itself with
`sleep` as entrypoint (Debian's glibc, for getent). Every object is named `dpl-<base>-<run id>`
and labelled like the rest of the integration tests; `Engine.cleanup()` removes them.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .harness import IMAGE, LABEL, CommandError, Engine, container_ip, docker

ZONE = "dpl.test"
SCOPEDNS_IMAGE = os.environ.get("SCOPEDNS_IMAGE", "scopedns:latest")
LOOKUP_TIMEOUT = 10.0  # scopedns learns from events: an answer may lag a command by a moment
_ANSWER_ADDRESS = re.compile(r"^Address:\s+(\S+)\s*$")
_PTR = re.compile(r"\sname = (\S+?)\.?$")


@dataclass(frozen=True)
class Lookup:
    """What a client's own resolver gave: addresses, PTR names, the first name line."""

    addresses: frozenset[str]
    names: frozenset[str] = frozenset()
    asked_as: str = ""  # nslookup's `Name:` (shows a search-list expansion); getent's name
    text: str = field(default="", compare=False)

    @property
    def found(self) -> bool:
        return bool(self.addresses or self.names)

    def __str__(self) -> str:
        return f"{sorted(self.addresses | self.names)} as {self.asked_as!r}"


def parse_nslookup(text: str) -> Lookup:
    """busybox 1.35: a `Server:`/`Address: ip:53` block, a blank line, then per query (A and
    AAAA unless -type) `Name:`/`Address:` pairs, `x.in-addr.arpa name = y` for PTR, or
    `** server can't find ...`; an empty answer (NODATA) prints nothing."""
    _, _, answers = text.partition("\n\n")
    addresses, names, asked_as = set(), set(), ""
    for line in answers.splitlines():
        if line.startswith("Name:") and not asked_as:
            asked_as = line.split(None, 1)[1].strip()
        elif (found := _ANSWER_ADDRESS.match(line)) is not None:
            addresses.add(found.group(1))
        elif (ptr := _PTR.search(line)) is not None:
            names.add(ptr.group(1))
    return Lookup(frozenset(addresses), frozenset(names), asked_as, text)


def parse_getent(text: str) -> Lookup:
    """`getent hosts`: `ADDRESS NAME [ALIAS...]` per line; nothing (exit 2) when not found."""
    addresses, names, asked_as = set(), set(), ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            addresses.add(fields[0])
            names.add(fields[1])
            asked_as = asked_as or fields[1]
    return Lookup(frozenset(addresses), frozenset(names), asked_as, text)


def nslookup(box: str, name: str, qtype: str | None = None) -> Lookup:
    argv = ["exec", box, "nslookup", *([f"-type={qtype}"] if qtype else []), name]
    return parse_nslookup(docker(*argv, check=False, timeout=30))


def getent(box: str, name: str) -> Lookup:
    return parse_getent(docker("exec", box, "getent", "hosts", name, check=False, timeout=30))


def eventually(ask: Callable[[], Lookup], until: Callable[[Lookup], bool],
               timeout: float = LOOKUP_TIMEOUT) -> Lookup:
    """Ask until `until(answer)` or time runs out; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask()
        if until(answer) or time.monotonic() >= deadline:
            return answer
        time.sleep(0.2)


def gives(addresses: Sequence[str]) -> Callable[[Lookup], bool]:
    wanted = frozenset(addresses)
    return lambda answer: answer.addresses == wanted


def not_found(answer: Lookup) -> bool:
    return not answer.found


@dataclass
class Clients:
    """Starts containers for test_deploy.py on top of the harness's Engine."""

    engine: Engine
    logs: Path
    fallback_dns: str  # a fake upstream: Docker's resolver never forwards off the host

    def start(self, base: str, network: str, *options: str, glibc: bool = False,
              dns: str | None = None, resolv_conf: Path | None = None,
              also: Sequence[str] = ()) -> str:
        """A sleeping client (busybox, or the glibc scopedns image) on `network`, then on the
        networks in `also`; `dns` is its --dns, `resolv_conf` bind-mounted as its resolver."""
        name = self.engine.unique(base)
        argv = ["run", "-d", "--name", name, "--network", network,
                "--label", f"{LABEL}={self.engine.run_id}"]
        argv += ["--dns", dns or self.fallback_dns]
        argv += ["-v", f"{resolv_conf}:/etc/resolv.conf:ro"] if resolv_conf else []
        image = ["--entrypoint", "sleep", SCOPEDNS_IMAGE] if glibc else [IMAGE, "sleep"]
        self.engine.containers.append(name)
        docker(*argv, *options, *image, "3600")
        for other in also:
            docker("network", "connect", other, name)
        return name

    def resolv_conf(self, label: str, nameserver: str, *extra: str) -> Path:
        """The file `scopedns resolv-conf` prints (run from the image), kept in the logs."""
        text = docker("run", "--rm", "--network", "none", SCOPEDNS_IMAGE, "resolv-conf",
                      "--nameserver", nameserver, *extra)
        if f"nameserver {nameserver}" not in text:
            raise CommandError(f"resolv-conf printed: {text!r}")
        path = self.logs / f"{label}-resolv.conf"
        path.write_text(text + "\n")
        return path


def ip(box: str, network: str) -> str:
    return container_ip(box, network)
