"""Messages of the sample application."""

from mediator import Command, Notification, Query


class RegisterUser(Command[str]):
    email: str


class CountUsers(Query[int]):
    pass


class UserRegistered(Notification):
    email: str


#: What the sample handlers did, in order (the tests clear it).
EVENTS: list[str] = []
