# Table-driven tests of watchers/translate.py: Docker JSON recorded from a real engine (20.10.24,
# API 1.41; tests/data/docker_*.json, trimmed `docker inspect` output and an /events capture)
# and hand-made broken input, which must never raise.
from __future__ import annotations

import json
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path
from typing import Any

import pytest

from resolver.model import ContainerInfo, EndpointInfo, LinkAlias, NetworkInfo
from watchers.translate import (
    EventAction,
    EventKind,
    classify_event,
    container_from_inspect,
    effective_kind,
    engine_time_nano,
    event_time_nano,
    network_from_inspect,
    since_param,
)

DATA = Path(__file__).parent / "data"

NET_PLAIN = "a135533450daa449fdcf039e8e3f0ca22e2faa6d99c932095e72d81261e5bc86"
NET_INTERNAL = "4eae9c469378fdfb6ad4ff215fab2925f7c73228760ff8961746bb52da47f868"
NET_DUAL = "1a27834dac04c6c52b94ff9d43b53c019db1fe7fbf945c9a94d7189404132c2d"
NET_BRIDGE = "ceb55318843cb0d01ee68606e462c0a58396ff14a810b36b9ba4e1647a1e3773"
NET_HOST = "26cfe40257c646ef55199bdcaef8993f1f6cbacc40132968cb5742f280c60a7f"
EV_CONTAINER = "9ddefa52c62f0be2a499c2d7955cc08670dd2dd1c1b38a2c495aa64b464c1050"


def _load(name: str) -> list[Any]:
    data = json.loads((DATA / f"docker_{name}.json").read_text())
    assert isinstance(data, list)
    return data


def _by_name(items: list[Any], name: str) -> Any:
    return next(item for item in items if item["Name"].lstrip("/") == name)


NETWORKS = _load("networks")
CONTAINERS = _load("containers")
EVENTS = _load("events")


# ----- networks ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "subnets", "internal", "ipv6", "user_defined"),
    [
        pytest.param("rec4963-plain", ["10.231.0.0/24"], False, False, True, id="subnet"),
        pytest.param("rec4963-internal", ["10.232.0.0/24"], True, False, True, id="internal"),
        pytest.param("rec4963-dual", ["10.233.0.0/24", "fd00:dead:beef::/64"], False, True, True,
                     id="dual-stack"),
        pytest.param("bridge", ["172.17.0.0/16"], False, False, False, id="default-bridge"),
        pytest.param("host", [], False, False, False, id="host"),
        pytest.param("none", [], False, False, False, id="none"),
    ],
)
def test_network_from_recorded_inspect(
    name: str, subnets: list[str], internal: bool, ipv6: bool, user_defined: bool
) -> None:
    raw = _by_name(NETWORKS, name)
    assert network_from_inspect(raw) == NetworkInfo(
        id=raw["Id"],
        name=name,
        subnets=tuple(ip_network(s) for s in subnets),
        internal=internal,
        ipv6=ipv6,
        user_defined=user_defined,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="not-an-object"),
        pytest.param([], None, id="a-list"),
        pytest.param({"Name": "x"}, None, id="no-id"),
        pytest.param({"Id": "n1"}, None, id="no-name"),
        pytest.param({"Id": "n1", "Name": "x"}, NetworkInfo("n1", "x"), id="bare"),
        pytest.param({"Id": "n1", "Name": "x", "IPAM": {"Config": None}, "Internal": "yes"},
                     NetworkInfo("n1", "x"), id="null-config-and-string-bool"),
        pytest.param(
            {"Id": "n1", "Name": "x",
             "IPAM": {"Config": [{"Subnet": "bogus"}, "junk", {"Gateway": "10.0.0.1"},
                                 {"Subnet": "10.9.0.1/24"}]}},
            NetworkInfo("n1", "x", (ip_network("10.9.0.0/24"),)),
            id="bad-subnets-skipped-host-bits-tolerated",
        ),
    ],
)
def test_network_from_bad_input(raw: Any, expected: NetworkInfo | None) -> None:
    assert network_from_inspect(raw) == expected


# ----- containers ----------------------------------------------------------------------------

def _endpoint(network_id: str, ipv4: str | None = None, ipv6: str | None = None,
              aliases: tuple[str, ...] = (), links: tuple[LinkAlias, ...] = ()) -> EndpointInfo:
    return EndpointInfo(network_id, IPv4Address(ipv4) if ipv4 else None,
                        IPv6Address(ipv6) if ipv6 else None, aliases, links)


RECORDED_CONTAINERS = [
    pytest.param("rec4963-target", None,
                 (_endpoint(NET_PLAIN, "10.231.0.2", aliases=("fc3cc57cc91f",)),),
                 id="plain"),
    # 20.10 puts the short ID and an explicit --hostname into Aliases itself.
    pytest.param("rec4963-web", "webhost",
                 (_endpoint(NET_PLAIN, "10.231.0.3",
                            aliases=("www", "Web-Alias", "4fa6db014a96", "webhost"),
                            links=(LinkAlias("db", "rec4963-target"),
                                   LinkAlias("rec4963-target", "rec4963-target"))),),
                 id="alias-link-hostname"),
    # Networks is a JSON object the engine sorts by network name: not the order they joined.
    pytest.param("rec4963-two", None,
                 (_endpoint(NET_DUAL, "10.233.0.2", "fd00:dead:beef::2",
                            aliases=("dualalias", "75e3ec8e6e7b")),
                  _endpoint(NET_INTERNAL, "10.232.0.2",
                            aliases=("internal-alias", "75e3ec8e6e7b"))),
                 id="two-networks-dual-stack"),
    pytest.param("rec4963-legacy", None, (_endpoint(NET_BRIDGE, "172.17.0.2"),),
                 id="default-bridge"),
    pytest.param("rec4963-hostnet", "vm", (_endpoint(NET_HOST),), id="host-network"),
    # --network container:X: no endpoints; Config.Hostname is X's short ID, kept (harmless).
    pytest.param("rec4963-shared", "fc3cc57cc91f", (), id="shared-netns"),
]


@pytest.mark.parametrize(("name", "hostname", "endpoints"), RECORDED_CONTAINERS)
def test_container_from_recorded_inspect(
    name: str, hostname: str | None, endpoints: tuple[EndpointInfo, ...]
) -> None:
    raw = _by_name(CONTAINERS, name)
    assert container_from_inspect(raw) == ContainerInfo(
        id=raw["Id"],
        name=name,
        hostname=hostname,
        endpoints=endpoints,
        started_at=raw["State"]["StartedAt"],
        created_at=raw["Created"],
    )


def test_stopped_container_is_none() -> None:
    assert container_from_inspect(_by_name(CONTAINERS, "rec4963-stopped")) is None


RUNNING: dict[str, Any] = {"Id": "c" * 64, "Name": "/app", "State": {"Running": True}}


def _with_networks(networks: Any) -> dict[str, Any]:
    return {**RUNNING, "NetworkSettings": {"Networks": networks}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("junk", None, id="not-an-object"),
        pytest.param({**RUNNING, "State": None}, None, id="no-state"),
        pytest.param({**RUNNING, "State": {"Running": "true"}}, None, id="running-not-a-bool"),
        pytest.param({**RUNNING, "State": {"Running": True, "Restarting": True}}, None,
                     id="restarting-has-released-its-endpoints"),
        pytest.param({**RUNNING, "State": {"Running": True, "Paused": True}},
                     ContainerInfo("c" * 64, "app"), id="paused-keeps-its-names"),
        pytest.param({**RUNNING, "Id": None}, None, id="no-id"),
        pytest.param({**RUNNING, "Name": "/"}, None, id="empty-name"),
        pytest.param(RUNNING, ContainerInfo("c" * 64, "app"), id="no-network-settings"),
        pytest.param({**RUNNING, "Config": {"Hostname": 7}, "Created": 1},
                     ContainerInfo("c" * 64, "app"), id="wrong-types"),
        pytest.param(_with_networks([]), ContainerInfo("c" * 64, "app"), id="networks-a-list"),
        pytest.param(
            _with_networks({"a": None, "b": {"NetworkID": ""}, "c": {"NetworkID": "n3"}}),
            ContainerInfo("c" * 64, "app", endpoints=(EndpointInfo("n3"),)),
            id="endpoints-without-network-id-skipped",
        ),
        pytest.param(
            _with_networks({"a": {"NetworkID": "n1", "IPAddress": "10.0.0.300",
                                  "GlobalIPv6Address": "10.0.0.1", "Aliases": "x",
                                  "Links": [3, ":", "t", "/db:/app/alias"]}}),
            ContainerInfo("c" * 64, "app", endpoints=(EndpointInfo(
                "n1", links=(LinkAlias("t", "t"), LinkAlias("alias", "db"))),)),
            id="bad-addresses-aliases-links",
        ),
        pytest.param(
            _with_networks({"a": {"NetworkID": "n1", "IPAddress": "10.0.0.2",
                                  "Aliases": ["web", None, ""],
                                  "DNSNames": ["app", "WEB", "cccccccccccc"]}}),
            ContainerInfo("c" * 64, "app", endpoints=(EndpointInfo(
                "n1", IPv4Address("10.0.0.2"),
                aliases=("web", "app", "cccccccccccc")),)),
            id="dnsnames-merged-case-insensitively",
        ),
    ],
)
def test_container_from_bad_input(raw: Any, expected: ContainerInfo | None) -> None:
    assert container_from_inspect(raw) == expected


# ----- events --------------------------------------------------------------------------------

K = EventKind
C, GONE, LEAVE = K.REFRESH_CONTAINER, K.REMOVE_CONTAINER, K.LEAVE_NETWORK
N, RM, IGN = K.REFRESH_NETWORK, K.REMOVE_NETWORK, K.IGNORE

# The recorded sequence: network create, run, connect --alias, disconnect, rename, pause,
# unpause, restart, stop, rm, network rm.
RECORDED_EVENTS = [
    ("network", "create", N), ("container", "create", IGN), ("network", "connect", C),
    ("container", "start", C), ("network", "connect", C), ("network", "disconnect", LEAVE),
    ("network", "disconnect", LEAVE),  # the engine reports one `network disconnect` twice
    ("container", "rename", C), ("container", "pause", IGN), ("container", "unpause", IGN),
    # restart: SIGTERM, SIGKILL, die, disconnect, stop, connect, start, then `restart`
    ("container", "kill", C), ("container", "kill", C), ("container", "die", GONE),
    ("network", "disconnect", LEAVE), ("container", "stop", GONE), ("network", "connect", C),
    ("container", "start", C), ("container", "restart", C),
    # stop -t 0, rm, network rm
    ("container", "kill", C), ("container", "kill", C), ("container", "die", GONE),
    ("network", "disconnect", LEAVE), ("container", "stop", GONE),
    ("container", "destroy", GONE), ("network", "destroy", RM),
]


def test_recorded_events_classified() -> None:
    assert len(EVENTS) == len(RECORDED_EVENTS)
    for event, (kind, action, expected) in zip(EVENTS, RECORDED_EVENTS, strict=True):
        assert (event["Type"], event["Action"]) == (kind, action)
        got = classify_event(event)
        assert got.kind is expected, (kind, action)
        assert got.time_nano == event["timeNano"]
        if expected in (C, GONE, LEAVE):
            assert got.container_id == EV_CONTAINER
        if kind == "network":
            assert got.network_id == event["Actor"]["ID"]


def test_network_connect_names_both_ids() -> None:
    event = next(e for e in EVENTS if e["Action"] == "connect")
    assert classify_event(event) == EventAction(
        C, EV_CONTAINER, event["Actor"]["ID"], event["timeNano"])


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(None, EventAction(IGN), id="not-an-object"),
        pytest.param({"Type": "container", "Action": "start"}, EventAction(IGN), id="no-actor"),
        pytest.param({"Type": "container", "Action": "health_status: healthy",
                      "Actor": {"ID": "c1"}}, EventAction(K.REFRESH_CONTAINER, "c1"),
                     id="health-status-reinspects"),
        pytest.param({"Type": "container", "Action": "exec_start: sh", "Actor": {"ID": "c1"}},
                     EventAction(IGN), id="exec"),
        pytest.param({"Type": "image", "Action": "delete", "Actor": {"ID": "i1"}},
                     EventAction(IGN), id="other-type"),
        pytest.param({"Type": "network", "Action": "connect", "Actor": {"ID": "n1"}},
                     EventAction(IGN), id="connect-without-container"),
        pytest.param({"Type": "network", "Action": "disconnect",
                      "Actor": {"ID": "n1", "Attributes": {"container": 5}}},
                     EventAction(IGN), id="disconnect-container-not-a-string"),
        pytest.param({"Type": "network", "Action": "connect",
                      "Actor": {"ID": "n1", "Attributes": {"container": "c1"}}},
                     EventAction(C, "c1", "n1"), id="connect"),
        pytest.param({"Type": "network", "Action": "destroy", "Actor": {"ID": ""}},
                     EventAction(IGN), id="empty-actor-id"),
        pytest.param({"Type": "network", "Action": "prune", "Actor": {"ID": "n1"}},
                     EventAction(IGN), id="network-other"),
        pytest.param({"Type": "container", "Action": "die", "Actor": {"ID": "c1"},
                      "time": 1_700_000_000},
                     EventAction(GONE, "c1", time_nano=1_700_000_000 * 10**9), id="time-seconds"),
        pytest.param({"Type": "container", "Action": "start", "Actor": {"ID": "c1"},
                      "time": datetime.fromtimestamp(1_700_000_000), "timeNano": True},
                     EventAction(C, "c1", time_nano=1_700_000_000 * 10**9),
                     id="time-datetime-from-aiodocker"),
    ],
)
def test_classify_odd_events(event: Any, expected: EventAction) -> None:
    assert classify_event(event) == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"time": "soon", "timeNano": -1}, None, id="garbage"),
        pytest.param({"time": 2, "timeNano": 1_500_000_000}, 1_500_000_000, id="nano-wins"),
    ],
)
def test_event_time(event: dict[str, Any], expected: int | None) -> None:
    assert event_time_nano(event) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1970-01-01T00:00:01.5Z", 1_500_000_000, id="fraction"),
        pytest.param("1970-01-01T00:00:01.000000007Z", 1_000_000_007, id="nanoseconds"),
        pytest.param("1970-01-01T01:00:02+01:00", 2_000_000_000, id="offset"),
        pytest.param("2026-11-28T14:11:22Z", 1_795_875_082 * 10**9, id="no-fraction"),
        pytest.param("2026-13-28T14:11:22Z", None, id="bad-month"),
        pytest.param("yesterday", None, id="not-a-time"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_engine_time(text: Any, expected: int | None) -> None:
    assert engine_time_nano(text) == expected


def test_since_param_is_seconds_dot_nanoseconds() -> None:
    assert since_param(1_795_875_101_480_998_611) == "1795875101.480998611"
    assert since_param(5_000_000_007) == "5.000000007"


@pytest.mark.parametrize(("options", "expected"), [
    (["ndots:2"], True), (["timeout:1", "ndots:0"], True), (["timeout:1"], False),
    (None, False), ("ndots:2", False),
])
def test_ndots_option_is_read_from_host_config(options: Any, expected: bool) -> None:
    raw = _with_networks({})
    raw["HostConfig"] = {"DnsOptions": options}
    info = container_from_inspect(raw)
    assert info is not None and info.ndots_set is expected


# A stale event (replayed after a reconnect, duplicated, or out of order) must never remove on
# its own word: a "die" replayed after the container started again would drop a live name.
@pytest.mark.parametrize(("kind", "when", "expected"), [
    (EventKind.REMOVE_CONTAINER, 100, EventKind.REFRESH_CONTAINER),
    (EventKind.LEAVE_NETWORK, 100, EventKind.REFRESH_CONTAINER),
    (EventKind.REMOVE_NETWORK, 100, EventKind.REFRESH_NETWORK),
    (EventKind.REFRESH_CONTAINER, 100, EventKind.REFRESH_CONTAINER),
    (EventKind.REMOVE_CONTAINER, 200, EventKind.REMOVE_CONTAINER),  # as new as the newest
    (EventKind.REMOVE_CONTAINER, 300, EventKind.REMOVE_CONTAINER),  # live
    (EventKind.REMOVE_NETWORK, None, EventKind.REMOVE_NETWORK),  # no time: taken as live
])
def test_stale_events_only_cause_reinspection(
        kind: EventKind, when: int | None, expected: EventKind) -> None:
    action = EventAction(kind, "c1", "n1", when)
    assert effective_kind(action, fresh_from=200) is expected
