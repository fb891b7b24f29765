"""The exception every request-checking module of the server raises for a client's mistake."""


class BadRequest(ValueError):
    """The client's request is wrong: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status
