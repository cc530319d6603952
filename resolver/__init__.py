# scopedns: a DNS server that answers each container as Docker's embedded DNS would, from a
# per-network name table fed by the engine's events. The sans-IO core (model, table, views,
# answer, wire, slowpath, framing, handler) imports no sockets; forward, transport, server and
# cli are the asyncio shell around it.
from resolver.answer import LocalAnswer, Policy, decide
from resolver.config import AliasOrder, Config, Upstream
from resolver.handler import Forward, Handler
from resolver.model import ContainerInfo, EndpointInfo, EngineState, LinkAlias, NetworkInfo
from resolver.table import NameTable

__all__ = [
    "AliasOrder",
    "Config",
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
    "Upstream",
    "decide",
]
