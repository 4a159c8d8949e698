"""Injected failures of AWS JSON-protocol calls, for the ways a call fails in AWS that moto never
shows: refused before the service acted (throttled), or failed after it acted (the answer lost).

  POST /_runnerfleet/faults {"action": "SendCommand", "when": "before" | "after",
                             "status": 400, "code": "ThrottlingException",
                             "instance_id": "i-...", "count": 1}

The next ``count`` requests whose X-Amz-Target ends in ``.{action}`` (and, when ``instance_id`` is
given, whose JSON body names that instance in InstanceIds or InstanceId) are answered with
``status`` and an AWS JSON error body of type ``code``:

- ``before``: the request never reaches moto, nothing is done (AWS throttling a call).
- ``after``: moto serves the request first (the command is sent, the item written), then the
  answer is replaced by the error (AWS failing, or the network losing, the answer of a call that
  took effect).

Each injected failure is logged as ``fault.injected`` {action, when, code, status, instance_id}.
Faults are process-wide: tests that share an emulator scope theirs with ``instance_id``.
"""
from __future__ import annotations

import io
import json
import threading
from typing import Any

from . import core

_LOCK = threading.Lock()
_FAULTS: list[dict[str, Any]] = []


class BadFault(ValueError):
    pass


def add(body: dict[str, Any]) -> dict[str, Any]:
    """Validate and arm one fault; returns it as armed."""
    action, when = body.get("action"), body.get("when")
    status, code = body.get("status", 400), body.get("code")
    count, instance = body.get("count", 1), body.get("instance_id")
    problems = []
    if not isinstance(action, str) or not action.isalnum():
        problems.append('"action" must be an API action name, like "SendCommand"')
    if when not in ("before", "after"):
        problems.append('"when" must be "before" or "after"')
    if not isinstance(status, int) or not 400 <= status <= 599:
        problems.append('"status" must be an HTTP error status (400-599)')
    if not isinstance(code, str) or not code:
        problems.append('"code" must be an AWS error code, like "ThrottlingException"')
    if not isinstance(count, int) or count < 1:
        problems.append('"count" must be a positive integer')
    if instance is not None and not isinstance(instance, str):
        problems.append('"instance_id" must be a string')
    if problems:
        raise BadFault("; ".join(problems))
    fault = {"action": action, "when": when, "status": status, "code": code, "count": count, "instance_id": instance}
    with _LOCK:
        _FAULTS.append(fault)
    return dict(fault)


def _instances(body: bytes) -> set[str]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    ids = data.get("InstanceIds")
    out = {i for i in ids if isinstance(i, str)} if isinstance(ids, list) else set()
    if isinstance(data.get("InstanceId"), str):
        out.add(data["InstanceId"])
    return out


def _take(action: str, body: bytes) -> dict[str, Any] | None:
    """The armed fault this request triggers (its count used up by one), or None."""
    with _LOCK:
        if not _FAULTS:
            return None
        instances: set[str] | None = None
        for fault in _FAULTS:
            if fault["action"] != action:
                continue
            if fault["instance_id"] is not None:
                if instances is None:
                    instances = _instances(body)
                if fault["instance_id"] not in instances:
                    continue
            fault["count"] -= 1
            if fault["count"] == 0:
                _FAULTS.remove(fault)
            return dict(fault)
    return None


def _answer(fault: dict[str, Any], start_response: Any) -> list[bytes]:
    core.log_event("fault.injected", action=fault["action"], when=fault["when"], code=fault["code"],
                   status=fault["status"], instance_id=fault["instance_id"])
    body = json.dumps({"__type": fault["code"], "message": f"injected by the emulator ({fault['when']} {fault['action']})"}).encode()
    start_response(f"{fault['status']} Injected", [("Content-Type", "application/x-amz-json-1.1"),
                                                   ("Content-Length", str(len(body)))])
    return [body]


def wrap(app: Any) -> Any:
    """Return a WSGI app that serves app, failing the requests armed faults match."""

    def faulty(environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not _FAULTS or "." not in target:
            return app(environ, start_response)
        # Read the body to match on the instance, then hand moto an unread copy.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        fault = _take(target.rsplit(".", 1)[1], body)
        if fault is None:
            return app(environ, start_response)
        if fault["when"] == "before":
            return _answer(fault, start_response)
        # after: moto does the work; its answer is read to the end and dropped.
        result = app(environ, lambda status, headers, exc_info=None: (lambda data: None))
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return _answer(fault, start_response)

    return faulty
