"""In-process CQRS mediator: commands, queries and notifications dispatched to handlers built by ``injector``."""

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
