"""In-process CQRS mediator: commands, queries and notifications dispatched to handlers built by ``injector``.

What lives here: ``messages`` (``Command``, ``Query``, ``Notification``), ``handlers`` (their handler bases),
``behaviors`` (pipeline behaviors), ``mediator`` (``Mediator``: send and publish), ``module`` (``MediatorModule``,
registration in an ``injector`` container) and ``errors``; private: ``_registry`` (which handler serves which
message) and ``_factories`` (building handlers and behaviors). It knows nothing of scheduling or stores.
"""

from .behaviors import PipelineBehavior
from .errors import DuplicateHandlerError, HandlerNotFoundError, MediatorError
from .handlers import CommandHandler, NotificationHandler, QueryHandler
from .mediator import Mediator
from .messages import Command, Notification, Query
from .module import MediatorModule

__all__ = [
    "Command",
    "CommandHandler",
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "Mediator",
    "MediatorError",
    "MediatorModule",
    "Notification",
    "NotificationHandler",
    "PipelineBehavior",
    "Query",
    "QueryHandler",
]
