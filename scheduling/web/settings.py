"""``DashboardSettings``: how the dashboard and its admin API behave (authentication, read-only mode, refresh)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["DashboardSettings"]


class DashboardSettings(BaseModel):
    """Settings of one dashboard app (``create_dashboard_app(store, settings=...)``).

    .. versionadded:: 0.1
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The bearer token that grants access (``Authorization: Bearer <token>``, or ``?token=`` once to log a browser
    #: in). Required unless the mounting application passes its own ``authenticate=`` dependency.
    token: SecretStr | None = None
    #: Refuse every mutation (403) and hide it from the pages and the OpenAPI document.
    read_only: bool = False
    #: How often the pages refresh their live parts, in seconds.
    refresh_seconds: float = Field(default=3.0, gt=0, le=3_600)
    #: The name shown in the pages' title and heading.
    title: str = Field(default="cqrs-scheduling", min_length=1, max_length=200)
    #: Entries per page in the pages' lists.
    page_size: int = Field(default=50, ge=1, le=500)
    #: How long a browser session (the cookie set at login) stays valid.
    session_lifetime: timedelta = Field(default=timedelta(hours=12), gt=timedelta(0))
    #: The key that signs session cookies and CSRF tokens. Default: random per process (sessions end with the
    #: process). Set the same value in every process when several serve the dashboard behind one address.
    session_secret: SecretStr | None = None
    #: Origins besides the request's own scheme and ``Host`` whose mutations are accepted (``Origin`` check), such
    #: as ``https://dash.example.com`` when a proxy rewrites the ``Host`` header. ``scheme://host[:port]`` only.
    allowed_origins: frozenset[str] = frozenset()
    #: Failed logins (a wrong token) a client address may make within ``login_window``; the next attempts within
    #: it are refused with 429 and ``Retry-After``.
    login_attempts: int = Field(default=5, ge=1, le=10_000)
    login_window: timedelta = Field(default=timedelta(minutes=1), gt=timedelta(0))

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple | set | frozenset):
            return value
        origins = set()
        for origin in value:
            text = str(origin).strip().rstrip("/").lower()
            parts = urlsplit(text)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
                raise ValueError(f"not an origin: {origin!r} (use scheme://host[:port], e.g. https://dash.example.com)")
            origins.add(text)
        return frozenset(origins)
