"""The dashboard and admin HTTP API (``pip install 'cqrs-scheduling[web]'``): a FastAPI app to mount or serve.

.. versionadded:: 0.3
"""

from __future__ import annotations

from .app import create_dashboard_app
from .settings import DashboardSettings

__all__ = ["DashboardSettings", "create_dashboard_app"]
