"""Who made a dashboard or admin API request, for the audit trail: ``request_actor``.

``require_auth`` leaves the request's principal in its scope. With the dashboard's token, a request that sent the
token as ``Authorization: Bearer`` comes from the admin API (actor ``token``) and a browser's session cookie from the
dashboard (actor ``session``); with the mounting application's ``authenticate=``, its principal names the actor (its
``username``, ``name`` or ``id`` attribute, else ``str()``). The client address is the connection's peer (behind a
proxy, run the server with ``--forwarded-allow-ips`` so that it is the browser's).
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from scheduling.audit import Actor

__all__ = ["PRINCIPAL_KEY", "request_actor"]

#: The request-scope key ``require_auth`` stores the principal under.
PRINCIPAL_KEY = "cqrs_scheduling_principal"


def _name(principal: object) -> str:
    for attribute in ("username", "name", "id"):
        value = getattr(principal, attribute, None)
        if value is not None and not callable(value):
            return str(value)[:256]
    return str(principal)[:256] or "unknown"


def request_actor(request: HTTPConnection) -> Actor:
    principal = request.scope.get(PRINCIPAL_KEY)
    client = request.client.host if request.client is not None else None
    if principal == "bearer":
        return Actor(source="api", name="token", client=client)
    if principal == "cookie":
        return Actor(source="dashboard", name="session", client=client)
    return Actor(source="dashboard", name=_name(principal) if principal is not None else "unknown", client=client)
