# `scopedns resolv-conf`: the /etc/resolv.conf a container bind-mounts to ask scopedns directly
# (docs/deployment.md, "The ways in"). Only the text: which file to write and where is the caller's.
from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

# Docker writes ndots:0 for containers: a name without dots is asked as it is first, so a
# container name never turns into a search-list query (glibc; busybox nslookup tries the
# search list first whatever ndots says).
DEFAULT_NDOTS = 0


def render_resolv_conf(nameservers: Sequence[str], search: Sequence[str] = (),
                       ndots: int = DEFAULT_NDOTS) -> str:
    """Raises ValueError naming the flag when a value cannot go in the file."""
    if not nameservers:
        raise ValueError("--nameserver is required")
    lines = ["# scopedns resolv-conf: bind-mount as the container's /etc/resolv.conf"]
    for server in nameservers:
        try:
            ip_address(server)
        except ValueError:
            raise ValueError(f"--nameserver {server!r} is not an IP address "
                             "(resolv.conf takes addresses, on port 53)") from None
        lines.append(f"nameserver {server}")
    if search:
        lines.append("search " + " ".join(domain.strip(".") for domain in search))
    if not 0 <= ndots <= 15:
        raise ValueError(f"--ndots {ndots} is not within 0..15")
    lines.append(f"options ndots:{ndots}")
    return "\n".join(lines) + "\n"
