# `scopedns explain ADDRESS [NAME]` (docs/operations.md): asks a running server's --http
# listener (GET /v1/clients/<address>?name=NAME) and prints its explanation, or one line
# saying why it could not.
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from resolver.config import parse_host_port
from resolver.explain import render_text

TIMEOUT = 10.0


def explain_url(http: str, address: str, name: str | None) -> str:
    host, port = parse_host_port(http, 9153)
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{port}/v1/clients/{urllib.parse.quote(address, safe='')}"
    return url + (f"?{urllib.parse.urlencode({'name': name})}" if name else "")


def fetch_explanation(url: str) -> dict[str, Any]:
    """The server's JSON; raises ValueError with a one-line reason."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            result: dict[str, Any] = json.load(response)
            return result
    except urllib.error.HTTPError as error:
        try:
            reason = json.load(error).get("error", error.reason)
        except (ValueError, AttributeError):
            reason = error.reason
        raise ValueError(f"the server says: {reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ValueError(f"no scopedns --http answers at {url}: {reason}") from None


def explain_command(http: str, address: str, name: str | None, raw: bool) -> int:
    try:
        result = fetch_explanation(explain_url(http, address, name))
    except ValueError as error:
        print(f"scopedns: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if raw else render_text(result))
    return 0
