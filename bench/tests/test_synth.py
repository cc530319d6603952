# bench/synth.py: synthetic snapshots load through the snapshot source, are deterministic, keep
# every address in 127.0.0.0/8 inside its network's subnet, and every name the manifest lists
# resolves for every client address it lists (the promise the bench suite builds on).
from __future__ import annotations

import json
from ipaddress import ip_network
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from bench.synth import main as synth_main
from resolver.answer import Policy
from resolver.handler import Handler
from resolver.table import NameTable
from watchers.snapshot import load_snapshot


def synth(tmp_path: Path, *args: str) -> tuple[Path, dict[str, object]]:
    output = tmp_path / "synth.json"
    assert synth_main([*args, "--output", str(output)]) == 0
    return output, json.loads(Path(f"{output}.manifest.json").read_text())


@pytest.mark.parametrize("args", [
    pytest.param(["--containers", "300", "--networks", "20", "--aliases", "2"], id="spread"),
    pytest.param(["--containers", "300", "--networks", "1", "--aliases", "1"], id="crowded"),
])
def test_every_manifest_name_resolves_for_every_manifest_client(
        tmp_path: Path, args: list[str]) -> None:
    path, manifest = synth(tmp_path, *args)
    table = NameTable()
    table.replace_all(load_snapshot(path))
    handler = Handler(table, Policy(forwarding=False))
    profiles = manifest["profiles"]
    assert isinstance(profiles, dict) and set(profiles) >= {"host", "container", "links"}
    for key, profile in profiles.items():
        assert profile["clients"] and profile["names"], key
        clients, names = profile["clients"], profile["names"]
        # Every name from the first client, and every client with some of the names.
        pairs = [(clients[0], n) for n in names]
        pairs += [(c, names[k % len(names)]) for k, c in enumerate(clients)]
        pairs += [(clients[k % len(clients)], n) for k, n in enumerate(names)]
        for client, name in pairs:
            query = dns.message.make_query(name, profile["qtype"])
            wire = handler.handle(query.to_wire(), client, False)
            assert isinstance(wire, bytes), (key, client, name)
            reply = dns.message.from_wire(wire)
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer, (key, client, name)


def test_addresses_live_in_loopback_subnets_and_output_is_deterministic(tmp_path: Path) -> None:
    args = ["--containers", "500", "--networks", "300", "--aliases", "3"]
    (tmp_path / "again").mkdir()
    first, _ = synth(tmp_path, *args)
    second, _ = synth(tmp_path / "again", *args)
    assert first.read_bytes() == second.read_bytes()
    state = load_snapshot(first)
    assert len(state.networks) == 300 and len(state.containers) == 500
    subnets = {n.id: n.subnets[0] for n in state.networks}
    for index, network in enumerate(sorted(state.networks, key=lambda n: n.name)):
        assert network.subnets == (ip_network(f"127.{16 + index // 256}.{index % 256}.0/24"),)
    for container in state.containers:
        for endpoint in container.endpoints:
            assert endpoint.ipv4 in subnets[endpoint.network_id]
            assert endpoint.ipv4 in ip_network("127.0.0.0/8")
    assert any(len(c.endpoints) > 1 for c in state.containers)
    assert any(e.links for c in state.containers for e in c.endpoints)
