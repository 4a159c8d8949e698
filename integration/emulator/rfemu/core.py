"""Shared pieces of the emulator extension: the ordered transition log, EventBridge emission,
settings, the loopback-only runner simulator client, and the one lock that guards the state our
background timers change.

moto is not thread-safe and the server is threaded; our patches take LOCK around every change they
make to AutoScaling/EC2 state (API calls we patch and background timers alike), so a timer never
sees a group half-updated by a request we patched.
"""
from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from typing import Any

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

# LOCK guards AutoScaling/EC2 state changed by our patches and timers (re-entrant: patched calls nest).
LOCK = threading.RLock()


class Settings:
    """Launcher settings, filled in by launcher.py before install()."""

    def __init__(self) -> None:
        self.runnersim: str = ""  # base URL of the runner simulator, "" = none
        self.tick_period: float = 0.0  # seconds; 0 = scheduled rules fire at their own rate
        self.port: int = 0


settings = Settings()


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TransitionLog:
    """The ordered log of state transitions: seq numbers from 1, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def append(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ev = {k: v for k, v in fields.items() if k not in ("seq", "time", "kind")}
            ev["seq"] = len(self._events) + 1
            ev["time"] = now_rfc3339()
            ev["kind"] = kind
            self._events.append(ev)
            return ev

    def since(self, seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events[max(seq, 0):])


LOG = TransitionLog()


def log_event(kind: str, **fields: Any) -> dict[str, Any]:
    """Append one event to the transition log and return it (with seq and time)."""
    return LOG.append(kind, fields)


def warn(msg: str) -> None:
    print(f"rfemu: {msg}", file=sys.stderr, flush=True)


def emit_event(source: str, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None,
               region: str = REGION, account_id: str = ACCOUNT_ID) -> str:
    """Put one event onto the default EventBridge bus, as AWS services do: every enabled rule whose
    pattern matches delivers it to its targets (SQS among them). Returns the event id.

    Built as moto's put_events builds each rule's copy of an event, but a rule whose target fails
    (say its queue was deleted) neither fails the API call that caused the event nor keeps it from
    the other rules. Rules with only a schedule (no pattern) never receive service events (events.py).
    """
    import copy

    from moto.core.utils import unix_time
    from moto.events.models import events_backends
    from moto.events.utils import _BASE_EVENT_MESSAGE

    backend = events_backends[account_id][region]
    event_id = new_token()
    bus = backend.event_buses.get("default")
    failures = []
    for rule in list(bus.rules.values()) if bus else []:
        msg = copy.deepcopy(_BASE_EVENT_MESSAGE)
        msg.update({"id": event_id, "detail-type": detail_type, "source": source, "account": account_id,
                    "time": unix_time(), "region": region, "resources": list(resources or []),
                    "detail": json.loads(json.dumps(detail)), "ingestion-time": unix_time()})
        try:
            rule.send_to_targets(msg)
        except Exception as e:  # a target that cannot take it: AWS retries and drops; we log
            failures.append(f"{rule.name}: {e}")
    log_event("event.emitted", detail_type=detail_type, source=source, resources=list(resources or []),
              event_id=event_id)
    for failure in failures:
        warn(f"delivering {detail_type} to rule {failure}")
        log_event("event.undelivered", detail_type=detail_type, event_id=event_id, error=failure)
    return event_id


_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class RunnerSimError(Exception):
    pass


def check_loopback_url(url: str) -> None:
    """Raise RunnerSimError unless url is http:// on a loopback host."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or ""
    if parsed.scheme != "http" or not (host in _LOOPBACK_HOSTS or host.startswith("127.")):
        raise RunnerSimError(f"refusing non-loopback runner simulator URL {url!r}")


# Idle keep-alive connections to the runner simulator, shared by every thread. werkzeug serves
# each request on a thread of its own, so a connection kept per thread was never used twice:
# profiling the drain benchmark (RFEMU_PROFILE_FILE) found a TCP connect in every SendCommand (it
# asks the simulator which instances are managed) and every command invocation. A thread takes a
# connection for one request and gives it back; no proxies: nothing leaves loopback.
_IDLE: list[tuple[tuple[str, int], http.client.HTTPConnection]] = []
_IDLE_LOCK = threading.Lock()
_IDLE_MAX = 16


def _take_idle(key: tuple[str, int]) -> http.client.HTTPConnection | None:
    with _IDLE_LOCK:
        for i in range(len(_IDLE) - 1, -1, -1):
            if _IDLE[i][0] == key:
                return _IDLE.pop(i)[1]
    return None


def _give_back(key: tuple[str, int], conn: http.client.HTTPConnection) -> None:
    with _IDLE_LOCK:
        if len(_IDLE) < _IDLE_MAX:
            _IDLE.append((key, conn))
            return
    conn.close()


def _runnersim_request(base: str, method: str, path: str, data: bytes | None, headers: dict[str, str],
                       timeout: float) -> tuple[int, bytes]:
    parsed = urllib.parse.urlparse(base)
    key = (parsed.hostname or "", parsed.port or 80)
    prefix = parsed.path.rstrip("/")
    while True:
        conn = _take_idle(key)
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection(key[0], key[1], timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request(method, prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (http.client.HTTPException, OSError) as e:
            conn.close()
            # A kept-alive connection the simulator has closed fails on reuse, before the request
            # reaches it: try again (an idle one or a fresh one). A fresh connection's failure, or
            # a timeout (the simulator may have acted), is final.
            if not reused or isinstance(e, TimeoutError):
                raise
            continue
        if resp.will_close:
            conn.close()
        else:
            _give_back(key, conn)
        return resp.status, body


# SLOW_RUNNERSIM_CALL is how long a call to the runner simulator may take before the transition
# log records it (kind runnersim.slow).
SLOW_RUNNERSIM_CALL = 1.0


def runnersim_call(method: str, path: str, body: Any = None, timeout: float = 5.0) -> Any:
    """Call the runner simulator (loopback only; any other host is refused). Returns the decoded
    JSON body, or None when no simulator is configured. Raises RunnerSimError on failure."""
    base = settings.runnersim
    if not base:
        return None
    url = base.rstrip("/") + path
    check_loopback_url(url)
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    began = time.monotonic()
    try:
        status, raw = _runnersim_request(base, method, path, data, headers, timeout)
    except Exception as e:  # connection refused, timeout
        raise RunnerSimError(f"{method} {path}: {e}") from e
    finally:
        # Some callers hold the emulator's lock (launch, terminate): a slow simulator stalls every
        # Auto Scaling call meanwhile, heartbeats included. Say so in the log tests read.
        took = time.monotonic() - began
        if took >= SLOW_RUNNERSIM_CALL:
            log_event("runnersim.slow", call=f"{method} {path}", seconds=round(took, 3))
    if status >= 400:
        raise RunnerSimError(f"{method} {path}: HTTP {status}: {raw[:200]!r}")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as e:
        raise RunnerSimError(f"{method} {path}: not JSON: {raw[:200]!r}") from e


def new_token() -> str:
    return str(uuid.uuid4())


class Ticker:
    """One background thread that runs registered callbacks every `interval` seconds.

    Callbacks take the current time (time.monotonic()) and must be quick; exceptions are printed
    and do not stop the thread."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._callbacks: list[Any] = []
        self._started = False
        self._lock = threading.Lock()

    def register(self, fn: Any) -> None:
        with self._lock:
            self._callbacks.append(fn)
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="rfemu-ticker", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            now = time.monotonic()
            with self._lock:
                callbacks = list(self._callbacks)
            for fn in callbacks:
                try:
                    fn(now)
                except Exception:
                    warn("ticker callback failed:\n" + traceback.format_exc())


TICKER = Ticker()


def install_service_names() -> None:
    """Replace moto.core.utils.service_name_from_moto_package_name, which serializing an error
    calls with the failing service's package: moto caches it per package, but each first call
    lists every botocore service (hundreds of directories and files, about a second of a loaded
    emulator), so the first error of each service stalled every request behind it, in the middle
    of a test. One table for all packages, built once on a background thread at start-up."""
    from moto.core import utils

    table: dict[str, str] = {}
    built = threading.Lock()

    def lookup_table() -> dict[str, str]:
        with built:
            if not table:
                from botocore.session import Session

                table.update({name.replace("-", ""): name for name in Session().get_available_services()})
        return table

    def service_name_from_moto_package_name(moto_package_name: str) -> str:
        return lookup_table().get(moto_package_name, moto_package_name)

    utils.service_name_from_moto_package_name = service_name_from_moto_package_name
    threading.Thread(target=lookup_table, name="rfemu-service-names", daemon=True).start()
