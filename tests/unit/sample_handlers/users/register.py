from sample_handlers.base import AuditedCommandHandler
from sample_handlers.messages import EVENTS, RegisterUser


class RegisterUserHandler(AuditedCommandHandler[RegisterUser, str]):
    async def run(self, command: RegisterUser) -> str:
        EVENTS.append(f"register {command.email}")
        return f"user:{command.email}"
