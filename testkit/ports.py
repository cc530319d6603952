# A loopback port free for both UDP and TCP, for a server started as a separate process (a
# server in this process binds port 0 instead).
from __future__ import annotations

import socket


def free_port(address: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `address` now (0.0.0.0: on every address)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
