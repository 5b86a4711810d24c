from mediator import QueryHandler
from sample_handlers.messages import CountUsers


class CountUsersHandler(QueryHandler[CountUsers, int]):
    def handle(self, query: CountUsers) -> int:
        return 7
