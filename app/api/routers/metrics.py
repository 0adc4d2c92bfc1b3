"""``GET /metrics``: the Prometheus text exposition (kept out of the OpenAPI document).

Who may read it: a scraper in one of ``REGISTRY_METRICS_SCRAPE_NETWORKS`` without a token
(default: this host's loopback, where a Prometheus server or agent beside the service
scrapes it), anyone else with an admin's or an auditor's bearer token. The figures name models
and versions and show how the plant uses them, so they are not public; a scraper rarely holds
a token that never expires (only service accounts' API keys do, and those are for
predictions), so the network is the scraper's credential and the token a person's.
Behind a reverse proxy on the same host every client looks local unless the proxy forwards
the client's address (uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1): then do not forward
``/metrics``, or set the networks to ``[]``.
"""

from __future__ import annotations

from ipaddress import ip_address

from fastapi import APIRouter, Request, Response

from app.api.deps import Credentials, SessionDep, authorize
from app.enums import Role
from app.settings import get_settings
from app.telemetry import metrics

router = APIRouter(tags=["health"])
READERS = frozenset({Role.admin, Role.auditor})


def _from_scrape_network(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        address = ip_address(request.client.host)
    except ValueError:
        return False  # not an IP address (a Unix socket, a test client)
    return any(address in network for network in get_settings().metrics_scrape_networks)


@router.get("/metrics", include_in_schema=False)
def read_metrics(request: Request, session: SessionDep, credentials: Credentials) -> Response:
    if not _from_scrape_network(request):
        authorize(session, credentials, READERS)
    return Response(content=metrics.exposition(), media_type=metrics.CONTENT_TYPE)
