# The query profiles, built from the snapshot's names so that every server is asked the same
# questions: (a) local A hits without EDNS from the host; (b) a realistic mix with EDNS (A and
# AAAA pairs where AAAA is NODATA, `name.network`, PTR, mixed case) sent from a container's
# address and from the host at once; (c) names under `.invalid`, forwarded to the local fake
# with TTL 0 (nothing may cache them); (d) the same with TTL 300, so caches answer them;
# (t) Docker's own path: A and AAAA of local names asked of 127.0.0.11 from inside two
# containers' network namespaces at once (Docker's embedded resolver, or scopedns --takeover).
# A profile is a list of streams; each stream is one dnsperf process with its own source
# address (a container's, or the host's), run in turn, or (t) each in its own container's
# namespace, side by side. Pure: returns dnsperf data-file lines.
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.suite.names import Endpoint

FORWARDED_NAMES = 2000  # distinct `.invalid` names, so no cache can answer them all
CACHEABLE_TTL = 300  # profile (d): longer than any run, so every repeat may be a cache hit
DOCKER_PATH = "t"  # the key of the profile asked on Docker's own path
NAMESPACES = 2  # profile (t): containers whose 127.0.0.11 is asked at the same time


@dataclass(frozen=True)
class Stream:
    client: str | None  # the container address dnsperf sends from (-a); None: the host view
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    key: str
    title: str
    edns: bool
    streams: tuple[Stream, ...]
    forwarded: bool = False  # needs a fake upstream; servers that cannot forward skip it
    netns: bool = False  # streams at once, each from its own container namespace (profile t)


def mixed_case(name: str, index: int) -> str:
    """Every third name as is, every third capitalised, every third in capitals."""
    return (name, name.capitalize(), name.upper())[index % 3]


def local_hits(names: Sequence[Endpoint]) -> Profile:
    lines = tuple(f"{e.container} A" for e in names)
    return Profile("a", "local A, no EDNS", edns=False, streams=(Stream(None, lines),))


def realistic_lines(names: Sequence[Endpoint]) -> tuple[str, ...]:
    lines: list[str] = []
    for index, endpoint in enumerate(names):
        name = mixed_case(endpoint.container, index)
        qualified = mixed_case(endpoint.qualified, index + 1)
        lines += [f"{name} A", f"{name} AAAA", f"{qualified} A", f"{qualified} AAAA",
                  f"{endpoint.reverse} PTR"]
    return tuple(lines)


def realistic_mix(views: Sequence[tuple[Endpoint, Sequence[Endpoint]]]) -> Profile:
    """One stream per (client container, the names its view holds), then the host view
    asking the first client's names."""
    streams = [Stream(str(client.address), realistic_lines(names)) for client, names in views]
    streams.append(Stream(None, realistic_lines(views[0][1])))
    return Profile("b", "mix with EDNS: A+AAAA, PTR, mixed case, container+host views",
                   edns=True, streams=tuple(streams))


def forwarded(count: int = FORWARDED_NAMES) -> Profile:
    lines = tuple(f"f{index}.bench.invalid A" for index in range(count))
    return Profile("c", "forwarded *.invalid to a local fake upstream", edns=False,
                   streams=(Stream(None, lines),), forwarded=True)


def cacheable(count: int = FORWARDED_NAMES, ttl: int = CACHEABLE_TTL) -> Profile:
    """Forwarded names whose answers live `ttl` seconds (the fake reads the `ttlN` label):
    after the first pass over the file a cache holding them all answers every query."""
    lines = tuple(f"f{index}.ttl{ttl}.bench.invalid A" for index in range(count))
    return Profile("d", f"forwarded *.invalid, TTL {ttl}: cacheable", edns=False,
                   streams=(Stream(None, lines),), forwarded=True)


def docker_path(names: Sequence[Endpoint], namespaces: int = NAMESPACES) -> Profile:
    """A and AAAA (NODATA: the containers have no IPv6) of every name and `name.network`, as
    a resolver library asks them; the same file from each of `namespaces` containers. Every
    name is local (a network alias of a container on the asker's network): nothing is
    forwarded."""
    lines = tuple(f"{name.lower()} {qtype}" for e in names for name in (e.container, e.qualified)
                  for qtype in ("A", "AAAA"))
    return Profile(DOCKER_PATH, f"Docker's own path: 127.0.0.11 in {namespaces} containers' "
                   "namespaces at once, local A+AAAA", edns=False,
                   streams=tuple(Stream(None, lines) for _ in range(namespaces)), netns=True)


def all_profiles(views: Sequence[tuple[Endpoint, Sequence[Endpoint]]]) -> dict[str, Profile]:
    """`views`: client containers with the names each one's view holds (at least one)."""
    profiles = (local_hits(views[0][1]), realistic_mix(views), forwarded(), cacheable(),
                docker_path(views[0][1]))
    return {p.key: p for p in profiles}
