# scopedns: a DNS server that answers each container as Docker's embedded DNS would, from a
# per-network name table fed by the engine's events. The sans-IO core (model, table, views,
# answer, wire, slowpath, framing, handler, cache, health, upstream_reply) imports no sockets;
# forward, transport, udp, tcp, sources, server and cli are the asyncio shell around it
# (docs/design.md).
# Only the core's public names are re-exported here, so importing the package opens no event
# loop machinery.
from resolver.answer import AliasOrder, LocalAnswer, Policy, decide
from resolver.handler import Forward, Handler
from resolver.model import ContainerInfo, EndpointInfo, EngineState, LinkAlias, NetworkInfo
from resolver.table import NameTable

__all__ = [
    "AliasOrder",
    "ContainerInfo",
    "EndpointInfo",
    "EngineState",
    "Forward",
    "Handler",
    "LinkAlias",
    "LocalAnswer",
    "NameTable",
    "NetworkInfo",
    "Policy",
    "decide",
]
