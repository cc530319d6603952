# The checks of the isolation property test (test_isolation_property.py): every client asks
# every question (A, AAAA, PTR, SRV; the SRV additional section is left to tests/test_srv.py)
# of the table (answer.decide on its view, and the wire replies of long-lived
# Handlers parsed back with dnspython) and of the reference model; the answers must agree, and
# none may carry an address from a network the client is not on. Totals are counted for -s.
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address

import dns.message
import dns.rdatatype
from dns.rcode import Rcode
from dns.rcode import to_text as rcode_text

from resolver.answer import FORWARD, AliasOrder, LocalAnswer, Policy, decide
from resolver.handler import Forward, Handler
from resolver.table import NameTable
from resolver.views import View
from tests.reference_model import Expected, ModelView, ReferenceModel
from tests.toy_engine import HOST_VIEW, STRANGERS, Engine

ORDERS = {"first": Policy(alias_order=AliasOrder.FIRST),
          "ordered": Policy(alias_order=AliasOrder.ORDERED)}
TOTALS = dict.fromkeys(("histories", "steps", "answers", "wire_answers", "fresh_tables"), 0)


# ----- asking --------------------------------------------------------------------------------


def decided(table: NameTable, view: View | None, qname: str, qtype: str, policy: Policy
            ) -> Expected:
    rdtype = dns.rdatatype.from_text(qtype)
    decision = decide(view, table.synced, qname.lower().removesuffix("."), rdtype, policy)
    if decision is FORWARD:
        return Expected("FORWARD")
    assert isinstance(decision, LocalAnswer)
    records = tuple(r.rdata.to_text() for r in decision.records)
    return Expected(rcode_text(Rcode.make(decision.rcode)), records)


# Queries are built, and identical replies parsed, once: dnspython is the slow part here.
_WIRE_QUERIES: dict[tuple[str, str], bytes] = {}
_PARSED_REPLIES: dict[bytes, Expected] = {}


def on_the_wire(handler: Handler, client: str, qname: str, qtype: str) -> Expected:
    """The same question as a UDP packet through Handler.handle, the reply parsed back."""
    query = _WIRE_QUERIES.get((qname, qtype))
    if query is None:
        query = dns.message.make_query(qname, qtype, use_edns=False, id=4242).to_wire()
        _WIRE_QUERIES[(qname, qtype)] = query
    outcome = handler.handle(query, client, False)
    if isinstance(outcome, Forward):
        return Expected("FORWARD")
    assert isinstance(outcome, bytes), outcome
    parsed = _PARSED_REPLIES.get(outcome)
    if parsed is None:
        reply = dns.message.from_wire(outcome)
        parsed = Expected(rcode_text(reply.rcode()),
                          tuple(rd.to_text() for rrset in reply.answer for rd in rrset))
        if len(_PARSED_REPLIES) > 100_000:
            _PARSED_REPLIES.clear()
        _PARSED_REPLIES[outcome] = parsed
    return parsed


@dataclass
class Memo:
    """Answers depend on the view only: each side works one out once per view and question
    (the table's views are named by their key, as the Handler's cache names them)."""

    model_views: dict[ModelView | None, int] = field(default_factory=dict)
    expected: dict[tuple[int, str, str, str], Expected] = field(default_factory=dict)
    decided: dict[tuple[str, str, str, str], Expected] = field(default_factory=dict)


def compare_everything(table: NameTable, model: ReferenceModel, engine: Engine,
                       handlers: dict[str, Handler] | None = None) -> None:
    """Every client asks every question under both alias orders."""
    asked, memo = engine.questions(), Memo()
    known = {str(a) for c in model.containers.values() for ep in c.endpoints
             for a in ep.addresses}
    for client in engine.clients():
        view = model.view(client)
        assert view is not None or client not in (HOST_VIEW, *known)
        assert view is None or client not in STRANGERS
        compare_client(table, model, client, asked, memo, handlers)


def compare_client(table: NameTable, model: ReferenceModel, client: str,
                   asked: list[tuple[str, str, bool]], memo: Memo,
                   handlers: dict[str, Handler] | None) -> None:
    view = model.view(client)
    view_id = memo.model_views.setdefault(view, len(memo.model_views))
    table_view = table.view_for(ip_address(client))
    table_key = "" if table_view is None else table_view.key
    allowed = reachable(model, client)
    for qname, qtype, wire in asked:
        for order, policy in ORDERS.items():
            key = (view_id, qname, qtype, order)
            if key not in memo.expected:
                memo.expected[key] = (Expected("REFUSED") if view is None
                                      else model.answer_in(view, qname, qtype, order))
            want = memo.expected[key]
            table_key_q = (table_key, qname, qtype, order)
            if table_key_q not in memo.decided:
                memo.decided[table_key_q] = decided(table, table_view, qname, qtype, policy)
            got = memo.decided[table_key_q]
            assert got == want, (client, qname, qtype, order)
            assert {text.split()[-1] for text in got.records} <= allowed, (
                "isolation", client, qname, got)
            TOTALS["answers"] += 1
            if wire and handlers is not None:
                on_wire = on_the_wire(handlers[order], client, qname, qtype)
                assert on_wire == want, ("wire", client, qname, qtype, order)
                TOTALS["wire_answers"] += 1


def reachable(model: ReferenceModel, client: str) -> set[str]:
    """Every record text a client may ever see: the addresses on the networks it is on, and
    their PTR and SRV targets `<container name>.<network>.` (docs/views.md: nothing from other
    networks; an SRV record is checked by its target)."""
    mine = model.networks_of(client)
    allowed: set[str] = set()
    for c in model.containers.values():
        for ep in c.endpoints:
            if ep.network_id in mine:
                allowed.update(str(a) for a in ep.addresses)
                allowed.add(f"{c.name}.{model.networks[ep.network_id].name}.")
    return allowed


