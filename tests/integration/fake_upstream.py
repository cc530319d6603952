"""The fake upstream of the integration tests as a process: tests.fakes.FakeUpstream in mode
"invalid-only" (NXDOMAIN for every name except `.invalid` ones, whose A is 192.0.2.53) on each
--listen address, appending every query to a JSON-lines log (qname, qtype, transport, peer) so
a test can tell that a name was forwarded. Nothing it answers ever leaves the host.

Run from the repository root: `python -m tests.integration.fake_upstream --listen
127.0.0.1:5300 [--listen ...] --log FILE`. It prints `READY` once every socket is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import TextIO

from tests.fakes import FakeUpstream


def query_logger(stream: TextIO) -> Callable[[str, str, str, str], None]:
    def record(qname: str, qtype: str, transport: str, peer: str) -> None:
        line = {"qname": qname, "qtype": qtype, "transport": transport, "peer": peer}
        stream.write(json.dumps(line) + "\n")
        stream.flush()

    return record


async def main(listens: list[tuple[str, int]], stream: TextIO) -> None:
    for host, port in listens:
        await FakeUpstream(mode="invalid-only", host=host, port=port,
                           on_query=query_logger(stream)).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", action="append", type=parse_listen, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a", encoding="utf-8") as log_stream:
        try:
            asyncio.run(main(args.listen, log_stream))
        except KeyboardInterrupt:
            sys.exit(0)
