"""Job event stream tickets: one purpose, one job, short-lived, unforgeable."""

from __future__ import annotations

import pytest

from gateway.security import Principal
from gateway.signing import UrlSigner
from gateway.tickets import JOB_EVENTS, InvalidTicket, TicketExpired, TicketIssuer

SECRET = "s" * 40
ADMIN = Principal(username="ada", role="admin", token_version=3)


def test_a_ticket_opens_its_own_stream_until_it_expires() -> None:
    tickets = TicketIssuer(SECRET, ttl_s=60)
    ticket = tickets.issue(ADMIN, JOB_EVENTS, "7", now=1000)
    assert ticket.expires_in == 60
    assert tickets.verify(ticket.value, JOB_EVENTS, "7", now=1000) == ADMIN
    # Reusable within its lifetime: EventSource reconnects with the same URL.
    assert tickets.verify(ticket.value, JOB_EVENTS, "7", now=1059) == ADMIN
    with pytest.raises(TicketExpired) as expired:
        tickets.verify(ticket.value, JOB_EVENTS, "7", now=1061)
    assert expired.value.code == "ticket_expired" and expired.value.status == 401


def test_a_ticket_opens_nothing_else() -> None:
    tickets = TicketIssuer(SECRET, ttl_s=60)
    value = tickets.issue(ADMIN, JOB_EVENTS, "7", now=1000).value
    with pytest.raises(InvalidTicket):
        tickets.verify(value, JOB_EVENTS, "8", now=1000)  # another job
    with pytest.raises(InvalidTicket):
        tickets.verify(value, "image-file", "7", now=1000)  # another purpose
    with pytest.raises(InvalidTicket):
        TicketIssuer("o" * 40).verify(value, JOB_EVENTS, "7", now=1000)  # another secret
    payload, _, sig = value.partition(".")
    for forged in (f"{payload}.{'0' * 64}", f"{payload[:-2]}xx.{sig}", payload, "", "é.é",
                   "x" * 5000):
        with pytest.raises(InvalidTicket):
            tickets.verify(forged, JOB_EVENTS, "7", now=1000)


def test_a_ticket_of_a_longer_lifetime_is_refused() -> None:
    long = TicketIssuer(SECRET, ttl_s=600).issue(ADMIN, JOB_EVENTS, "7", now=1000).value
    with pytest.raises(InvalidTicket):
        TicketIssuer(SECRET, ttl_s=60).verify(long, JOB_EVENTS, "7", now=1000)


def test_a_signed_image_url_is_no_ticket() -> None:
    url = UrlSigner(SECRET, ttl_s=900).url(7, "file", "admin", now=1000)
    sig = url.rsplit("sig=", 1)[1]
    with pytest.raises(InvalidTicket):
        TicketIssuer(SECRET).verify(sig, JOB_EVENTS, "7", now=1000)


def test_unknown_purposes_are_not_issued() -> None:
    with pytest.raises(ValueError):
        TicketIssuer(SECRET).issue(ADMIN, "anything", "7")
