"""Live output of an execution over Server-Sent Events
(``GET /api/v1/executions/{id}/events``): plain HTTP with urllib, no WebSocket
and no dependency."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from ._http import Transport
from .errors import FaaSError
from .models import ExecutionResult


@dataclass
class StreamOutput:
    """A piece of output, as the program wrote it.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"``.
        data: The text.
    """

    stream: str
    data: str


class ExecutionStream:
    """The live output of one execution, as an iterator of :class:`StreamOutput`.

    It replays the execution's output from the start, then follows it live until
    the program exits: attaching works while the execution runs and for 10
    minutes after. Iterate it with ``for`` or ``async for``; when the iteration
    ends, ``result`` holds the execution's result and ``exit_code`` its exit
    code. A failure raises :class:`FaaSError` from the iteration (404 for an
    unknown execution; an ``error`` frame of the server raises one with
    ``status`` 0 and the frame's code).

    ``async for`` reads the stream in a worker thread, so it does not block the
    event loop. Close the stream (or use it as a context manager) to stop
    following early; the execution itself goes on.
    """

    def __init__(self, http: Transport, execution_id: str) -> None:
        self.execution_id = execution_id
        #: The execution's result, once the stream reached its exit.
        self.result: Optional[ExecutionResult] = None
        #: The program's exit code, once the stream reached its exit.
        self.exit_code: Optional[int] = None
        self._http = http
        self._resp: Any = None
        self._events: Optional[Iterator[Dict[str, Any]]] = None
        self._done = False
        self._lock = threading.Lock()
        self._what = f"GET /api/v1/executions/{execution_id}/events"

    # -- iteration -------------------------------------------------------------

    def __iter__(self) -> "ExecutionStream":
        return self

    def __next__(self) -> StreamOutput:
        with self._lock:
            if self._done:
                raise StopIteration
            try:
                return self._next_output()
            except BaseException:
                self._finish()
                raise

    def __aiter__(self) -> "ExecutionStream":
        return self

    async def __anext__(self) -> StreamOutput:
        loop = asyncio.get_running_loop()
        # StopIteration cannot travel through a Future: the worker returns None.
        out = await loop.run_in_executor(None, self._next_or_none)
        if out is None:
            raise StopAsyncIteration
        return out

    def _next_or_none(self) -> Optional[StreamOutput]:
        try:
            return self.__next__()
        except StopIteration:
            return None

    def close(self) -> None:
        """Stop following (the execution itself goes on)."""
        self._done = True
        resp, self._resp = self._resp, None
        if resp is not None:
            try:
                resp.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def __enter__(self) -> "ExecutionStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "ExecutionStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

    def _finish(self) -> None:
        self.close()

    def _next_output(self) -> StreamOutput:
        if self._events is None:
            from urllib.parse import quote

            path = "/api/v1/executions/" + quote(self.execution_id, safe="") + "/events"
            # No time limit: the stream lasts as long as the program (the server
            # sends a heartbeat every 15 s while it is silent).
            self._resp, _ = self._http.open("GET", path, accept="text/event-stream", timeout=0)
            self._events = _read_events(self._resp)
        for frame in self._events:
            kind = frame.get("type")
            if kind in ("stdout", "stderr"):
                return StreamOutput(stream=kind, data=frame.get("data") or "")
            if kind == "exit":
                result = frame.get("result")
                self.result = ExecutionResult.from_dict(result) if isinstance(result, dict) else None
                code = frame.get("code")
                self.exit_code = code if isinstance(code, int) else (self.result.exit_code if self.result else None)
                self._finish()
                raise StopIteration
            if kind == "error":
                raise FaaSError(0, frame.get("error_code") or "stream_error",
                                frame.get("error") or "the server reported an error on the stream",
                                self._what, body=frame)
            # started, heartbeat and frame types added later: nothing to yield.
        if self._done:
            raise StopIteration
        raise FaaSError(0, "stream_closed", "the event stream ended before the execution exited", self._what)


def _read_events(resp: Any) -> Iterator[Dict[str, Any]]:
    """Parse a text/event-stream body into frames (the JSON of each ``data``)."""
    data: List[str] = []
    event = ""
    while True:
        try:
            raw = resp.readline()
        except (OSError, ValueError, AttributeError):
            return  # closed by close(), or the connection broke
        if not raw:
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "":
            if data:
                frame = json.loads("\n".join(data))
                if isinstance(frame, dict):
                    if not frame.get("type") and event:
                        frame["type"] = event
                    yield frame
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
