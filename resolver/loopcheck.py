# Would forwarding to an upstream reach one of our own listeners (a loop)? Asked once at start,
# after the listen addresses are bound (docs/forwarding.md). A wildcard listen on port P is
# every local address on P, so "local" is probed by binding a throwaway socket.
from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from resolver.exchange import Upstream


def forwards_to_itself(upstream: Upstream, listening: Sequence[tuple[str, int]]) -> bool:
    """Would queries to `upstream` reach one of the bound `listening` addresses? A `::` UDP
    socket takes IPv4 too (IPV6_V6ONLY is off by default on Linux)."""
    try:
        target = _unmapped(upstream.host)
    except ValueError:
        return (upstream.host, upstream.port) in listening
    for host, port in listening:
        if port != upstream.port:
            continue
        try:
            bound = _unmapped(host)
        except ValueError:
            continue  # a listen name is not an address we could be asked on
        if bound == target or (bound.is_unspecified and bound.version >= target.version
                               and is_local_address(target)):
            return True
    return False


def _unmapped(host: str) -> IPv4Address | IPv6Address:
    address = ip_address(host.split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_local_address(address: IPv4Address | IPv6Address) -> bool:
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
