"""The one error type of the SDK."""

from __future__ import annotations

from typing import Any, Optional


class FaaSError(Exception):
    """A failed call: the server answered with a status outside 2xx, or no
    answer came at all.

    Attributes:
        status: The HTTP status (400, 401, 404, 501, 503, ...), or ``0`` when
            there was no answer (connection refused, DNS failure, the SDK's own
            time limit).
        code: The server's machine-readable code (``invalid_request``,
            ``unauthorized``, ``not_found``, ``not_available``, ``busy``, ...).
            Without an answer it is ``network_error`` or ``timeout``; when the
            answer was not the server's JSON error (a proxy's page) it is
            ``http_<status>``.
        message: The server's message meant for the caller, unchanged.
        retry_after: The wait the server asked for in ``Retry-After``
            (429/503 answers), in seconds, or ``None``.
        request: Method and path of the failed request, e.g.
            ``"POST /api/v1/execute"``.
        body: The decoded JSON body of the error answer, when there was one.

    A program that fails, times out or is killed is *not* a ``FaaSError``:
    ``execute`` returns, and the result's ``status`` and ``exit_code`` say
    what happened.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request: str = "",
        retry_after: Optional[float] = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request = request
        self.retry_after = retry_after
        self.body = body

    @property
    def is_not_found(self) -> bool:
        """True for 404: the endpoint or the thing asked for does not exist."""
        return self.status == 404

    @property
    def is_not_implemented(self) -> bool:
        """True for 501: the server does not offer this (e.g. a planned mode) yet."""
        return self.status == 501

    @property
    def is_retryable(self) -> bool:
        """True for 429 and 503, the answers the client retries on its own."""
        return self.status in (429, 503)

    def __str__(self) -> str:
        what = f"{self.status} {self.code}" if self.status > 0 else self.code
        where = f", {self.request}" if self.request else ""
        return f"{self.message} ({what}{where})"

    def __repr__(self) -> str:
        return (
            f"FaaSError(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request={self.request!r})"
        )
