"""HTTP transport: one request with urllib (a JSON body, or raw bytes for file
transfers), errors as FaaSError, and bounded retries of 429/503 answers that
honour Retry-After."""

from __future__ import annotations

import email.utils
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .errors import FaaSError, error_class

SDK_VERSION = "0.1.0"

_BASE_BACKOFF = 0.25
_MAX_BACKOFF = 8.0
_MAX_ERROR_BODY = 64 << 10
_ERROR_SNIPPET = 200


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Parse a ``Retry-After`` header: delay-seconds or an HTTP date.

    Returns seconds to wait, or ``None`` when the value is absent or unusable.
    """
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    if v.isdigit():
        return float(int(v))
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if now is None:
        now = time.time()
    return max(0.0, when.timestamp() - now)


def backoff(attempt: int) -> float:
    """Exponential back-off with jitter in [d/2, d) for retry number attempt+1."""
    d = min(_BASE_BACKOFF * (2 ** min(attempt, 16)), _MAX_BACKOFF)
    return d / 2 + random.random() * (d / 2)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, not something to follow with the API key."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class Transport:
    """Sends JSON requests to one server."""

    def __init__(
        self,
        endpoint: str,
        api_key: Optional[str],
        max_retries: int,
        max_retry_wait: float,
        timeout: Optional[float],
        headers: Mapping[str, str],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self.api_key = api_key
        self.max_retries = max(0, max_retries)
        self.max_retry_wait = max(0.0, max_retry_wait)
        self.timeout = timeout
        self.headers = dict(headers)
        self.sleep = sleep
        self._opener = urllib.request.build_opener(_NoRedirect())

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Optional[Mapping[str, Any]] = None,
        auth: bool = True,
        retry: bool = True,
        timeout: Optional[float] = None,
        accept: Optional[Callable[[int, Any], bool]] = None,
        data: Optional[bytes] = None,
        content_type: str = "application/octet-stream",
    ) -> Any:
        """Send one call and return the decoded JSON answer (``None`` for an
        empty body). Raises FaaSError for a non-2xx answer (after retries),
        unless ``accept(status, body)`` is true for it, and when no answer came.
        ``data`` sends raw bytes (of ``content_type``) instead of a JSON ``body``.
        """
        resp, what = self.open(method, path, body, query=query, auth=auth, retry=retry,
                               timeout=timeout, accept_error=accept, data=data, content_type=content_type)
        if isinstance(resp, FaaSError):
            return resp.body
        with resp:
            raw = resp.read()
        return _decode(raw, what) if raw else None

    def call_bytes(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        accept: str = "application/octet-stream",
    ) -> bytes:
        """Send one call (no body) and return the 2xx answer's raw body, for
        downloads. Errors as for :meth:`call`."""
        resp, what = self.open(method, path, query=query, timeout=timeout, accept=accept)
        try:
            with resp:
                return resp.read()
        except (socket.timeout, TimeoutError) as e:
            raise FaaSError(0, "timeout", f"no answer within {timeout or self.timeout} s", what) from e
        except OSError as e:
            raise FaaSError(0, "network_error", f"reading the answer failed: {e}", what) from e

    def open(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Optional[Mapping[str, Any]] = None,
        auth: bool = True,
        retry: bool = True,
        timeout: Optional[float] = None,
        accept: str = "application/json",
        accept_error: Optional[Callable[[int, Any], bool]] = None,
        data: Optional[bytes] = None,
        content_type: str = "application/octet-stream",
    ) -> Tuple[Any, str]:
        """Send a request, retrying 429/503 answers, and return ``(response,
        what)`` with the 2xx response's body unread (the caller closes it), or
        the FaaSError of an error answer that ``accept_error`` takes. Every
        other answer raises its FaaSError. The body is ``body`` as JSON, or
        ``data`` as it is (sent with ``content_type``)."""
        url = self.endpoint + path
        if query:
            q = {k: str(v) for k, v in query.items() if v is not None}
            if q:
                url += "?" + urllib.parse.urlencode(q)
        headers: Dict[str, str] = {
            "Accept": accept,
            "User-Agent": f"faas-python/{SDK_VERSION}",
        }
        headers.update(self.headers)
        if data is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        what = f"{method} {urllib.parse.urlsplit(url).path}"
        max_retries = self.max_retries if retry else 0
        limit = timeout if timeout is not None else self.timeout

        attempt = 0
        while True:
            resp, err = self._send(url, method, data, headers, what, limit)
            if err is None:
                return resp, what
            if accept_error is not None and accept_error(err.status, err.body):
                return err, what
            if not err.is_retryable or attempt >= max_retries:
                raise err
            wait = err.retry_after if err.retry_after is not None else backoff(attempt)
            self.sleep(min(wait, self.max_retry_wait))
            attempt += 1

    def _send(
        self,
        url: str,
        method: str,
        data: Optional[bytes],
        headers: Dict[str, str],
        what: str,
        timeout: Optional[float],
    ) -> Tuple[Any, Optional[FaaSError]]:
        """One attempt: (open 2xx response, None) or (None, the answer's FaaSError)."""
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        kwargs: Dict[str, Any] = {}
        if timeout is not None and timeout > 0:
            kwargs["timeout"] = timeout
        try:
            resp = self._opener.open(req, **kwargs)
        except urllib.error.HTTPError as e:
            try:
                raw = e.read(_MAX_ERROR_BODY)
            finally:
                e.close()
            return None, _to_error(e.code, e.headers, raw, what)
        except (socket.timeout, TimeoutError) as e:
            raise FaaSError(0, "timeout", f"no answer within {timeout} s", what) from e
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise FaaSError(0, "timeout", f"no answer within {timeout} s", what) from e
            origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(url))
            raise FaaSError(0, "network_error", f"cannot reach {origin}: {reason}", what) from e
        except (ConnectionError, OSError) as e:
            origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(url))
            raise FaaSError(0, "network_error", f"cannot reach {origin}: {e}", what) from e
        if 200 <= resp.status <= 299:
            return resp, None
        # A status urllib does not raise for (e.g. a 1xx/3xx that was not followed).
        with resp:
            raw = resp.read(_MAX_ERROR_BODY)
        return None, _to_error(resp.status, resp.headers, raw, what)


def _decode(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FaaSError(0, "invalid_response", f"the answer to {what} is not JSON", what) from e


def _to_error(status: int, headers: Mapping[str, str], raw: bytes, what: str) -> FaaSError:
    """Turn an error answer into a FaaSError, keeping the server's message and code."""
    retry_after = parse_retry_after(headers.get("Retry-After") if headers is not None else None)
    text = raw.decode("utf-8", errors="replace")
    body: Any = None
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    message = ""
    code = ""
    if isinstance(body, dict):
        if isinstance(body.get("code"), str):
            code = body["code"]
        err = body.get("error")
        if isinstance(err, str):
            message = err
        elif isinstance(err, dict):
            if isinstance(err.get("message"), str):
                message = err["message"]
            if not code and isinstance(err.get("code"), str):
                code = err["code"]
        elif isinstance(body.get("message"), str):
            message = body["message"]
    if not message:
        snippet = " ".join(text.split())
        if len(snippet) > _ERROR_SNIPPET:
            snippet = snippet[:_ERROR_SNIPPET] + "..."
        reason = _reason(status)
        message = f"{status} {reason}" + (f": {snippet}" if snippet else " (empty body)")
    if not code:
        code = f"http_{status}"
    return error_class(status, code)(status, code, message, what, retry_after, body)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
