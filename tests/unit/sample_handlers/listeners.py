"""Imports a handler from another module: scanning registers it once, where it is defined."""

from mediator import NotificationHandler

from .messages import EVENTS, UserRegistered
from .users.register import RegisterUserHandler

__all__ = ["OnUserRegistered", "RegisterUserHandler"]


class OnUserRegistered(NotificationHandler[UserRegistered]):
    async def handle(self, notification: UserRegistered) -> None:
        EVENTS.append(f"welcome {notification.email}")
