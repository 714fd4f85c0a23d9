"""Exceptions that cross module boundaries and reach the user as messages."""


class ConfigError(Exception):
    """Bad user input: the CLI prints each problem on its own line and exits 2."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def leaves(exc: BaseException) -> list[BaseException]:
    """The plain exceptions inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


class ResponseRejected(Exception):
    """The app's response head is not valid HTTP (the front door's h11 refused it); the
    client has been answered 502 instead and the connection closes."""


class BadRequestBody(Exception):
    """The client's request body is malformed (400) or over the size limit (413); the
    front door has stopped reading it, and the client is answered ``status``."""

    def __init__(self, status: int, reason: str):
        self.status = status
        super().__init__(reason)
