# Deleting conntrack entries over ctnetlink (docs/takeover.md): the UDP flows to 127.0.0.11:53
# of the namespace the calling thread is in. A client that keeps one UDP socket (c-ares, nginx's
# resolver) keeps its conntrack entry, and with it the NAT decided when the flow began; deleting
# the entry makes its next query NATed afresh, to us when taking over, back to Docker when
# handing back. Speaks netlink directly (a dump, then one delete per match) rather than running
# the conntrack tool: no child process per container, microseconds instead of tens of ms.
from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED, NLA_TYPE_MASK = 0x8000, 0x3FFF
CTA_TUPLE_ORIG = 1
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_DST = 2
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
NLMSG_HEADER = struct.Struct("=IHHII")
NFGEN_HEADER = struct.Struct("=BBH")
NLA_HEADER = struct.Struct("=HH")
RECEIVE_SIZE = 1 << 16
TIMEOUT = 2.0


def _attributes(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(type, payload, the whole attribute) of each netlink attribute in `data`."""
    offset = 0
    while offset + 4 <= len(data):
        length, kind = NLA_HEADER.unpack_from(data, offset)
        if length < 4 or offset + length > len(data):
            return
        whole = data[offset : offset + length]
        yield kind & NLA_TYPE_MASK, whole[4:], whole
        offset += (length + 3) & ~3


def _find(data: bytes, kind: int) -> bytes | None:
    return next((payload for k, payload, _ in _attributes(data) if k == kind), None)


def tuple_matches(tuple_payload: bytes, address: bytes, proto: int, port: int) -> bool:
    """Is this CTA_TUPLE_ORIG payload a flow to address:port over proto?"""
    ip_part = _find(tuple_payload, CTA_TUPLE_IP)
    proto_part = _find(tuple_payload, CTA_TUPLE_PROTO)
    if ip_part is None or proto_part is None:
        return False
    number = _find(proto_part, CTA_PROTO_NUM)
    dport = _find(proto_part, CTA_PROTO_DST_PORT)
    return (_find(ip_part, CTA_IP_V4_DST) == address and number == bytes([proto])
            and dport == struct.pack("!H", port))


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    message_type = (NFNL_SUBSYS_CTNETLINK << 8) | kind
    payload = NFGEN_HEADER.pack(socket.AF_INET, 0, 0) + body
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(payload), message_type, flags, seq, 0) \
        + payload


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            return
        yield kind, data[offset + NLMSG_HEADER.size : offset + length]
        offset += (length + 3) & ~3


def _dump_matching(sock: socket.socket, address: bytes, proto: int, port: int) -> list[bytes]:
    """The CTA_TUPLE_ORIG attributes (whole) of matching entries."""
    sock.send(_message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, b""))
    found: list[bytes] = []
    while True:
        for kind, body in _messages(sock.recv(RECEIVE_SIZE)):
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                error = -struct.unpack_from("=i", body)[0]
                if error:
                    raise OSError(error, "conntrack dump failed")
                return found
            if kind & 0xFF != IPCTNL_MSG_CT_NEW:
                continue
            for attr_kind, payload, whole in _attributes(body[NFGEN_HEADER.size:]):
                if attr_kind == CTA_TUPLE_ORIG and tuple_matches(payload, address, proto, port):
                    found.append(whole)


def delete_flows(address: str = "127.0.0.11", port: int = 53,
                 proto: int = socket.IPPROTO_UDP) -> int:
    """Delete the conntrack entries of flows to address:port in the calling thread's network
    namespace; how many went. Raises OSError when ctnetlink cannot be used."""
    packed = socket.inet_aton(address)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((0, 0))
        matches = _dump_matching(sock, packed, proto, port)
        deleted = 0
        for seq, tuple_attr in enumerate(matches, start=2):
            sock.send(_message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, tuple_attr))
            for kind, body in _messages(sock.recv(RECEIVE_SIZE)):
                if kind == NLMSG_ERROR and struct.unpack_from("=i", body)[0] == 0:
                    deleted += 1
        return deleted
