"""Errors of the SDK: :class:`FaaSError` and its subclasses for answers a
caller typically handles on their own (404, 409, merge conflicts, 422)."""

from __future__ import annotations

from typing import Any, List, Optional, Type


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

    Some answers raise a subclass, so they can be caught on their own:
    :class:`NotFoundError` (404), :class:`ConflictError` (409) and its
    :class:`MergeConflictError` (409 ``merge_conflict``, with ``paths``), and
    :class:`UnprocessableError` (422). Catching ``FaaSError`` catches them all.
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
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request={self.request!r})"
        )


class NotFoundError(FaaSError):
    """404: the endpoint, or the thing asked for, does not exist (for this
    account). Examples: an unknown snapshot or session, a session that ended,
    or an ephemeral execution given to ``create_snapshot`` (only executions in
    a live session, mode ``checkpointed`` or ``branched``, can be snapshotted;
    ``message`` says so)."""


class ConflictError(FaaSError):
    """409: the request conflicts with the current state, e.g. ``code``
    ``snapshot_broken`` (a snapshot whose image cannot be restored) or
    ``conflict`` (already exists; an instance that is paused or stopped where it
    must run, or created without ``enable_ssh`` when asked for SSH)."""


class UnprocessableError(FaaSError):
    """422 (code ``unprocessable``): the request is well formed but the thing
    asked cannot do it, e.g. ``instances.vscode`` on an instance whose image
    lacks ``code-server``; ``message`` names what is missing."""


class MergeConflictError(ConflictError):
    """409 ``merge_conflict``: branches to merge changed the same paths
    differently (strategy ``union``).

    Attributes:
        paths: The conflicting paths, as the server listed them
            (e.g. ``["/workspace/a.txt"]``).
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
        super().__init__(status, code, message, request, retry_after, body)
        paths = body.get("paths") if isinstance(body, dict) else None
        self.paths: List[str] = [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


def error_class(status: int, code: str) -> Type[FaaSError]:
    """The class of the error raised for an answer with this status and code."""
    if status == 404:
        return NotFoundError
    if status == 409:
        return MergeConflictError if code == "merge_conflict" else ConflictError
    if status == 422:
        return UnprocessableError
    return FaaSError
