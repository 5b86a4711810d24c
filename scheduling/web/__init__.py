"""The dashboard and admin HTTP API (``pip install 'cqrs-scheduling[web]'``): a FastAPI app to mount or serve.

What lives here: ``app`` (``create_dashboard_app``), ``settings`` (``DashboardSettings``), ``api`` (the JSON
routes), ``pages`` (the HTML pages), ``security`` (token, session and CSRF checks), ``context`` (what a request
sees); private: ``_serve`` (the listening socket and signal handling of ``cqrs-scheduling dashboard``). Every
number and action comes from ``scheduling.admin``, as in the command line.

.. versionadded:: 0.3
"""

from __future__ import annotations

from .app import create_dashboard_app
from .settings import DashboardSettings

__all__ = ["DashboardSettings", "create_dashboard_app"]
