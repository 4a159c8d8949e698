"""Request timing for profiling the emulator (off unless RFEMU_TIMING_FILE names a file).

Each request served appends one line to that file:
``start_unix_s duration_ms active_requests method path action response_bytes``, where action is the X-Amz-Target
header (JSON protocols) or the Action form field (query protocols). Compare the start times with a
Go client's timestamps to see where a slow call spends its time (queued in the client, in the
server, or behind other requests holding the GIL).
"""
from __future__ import annotations

import io
import os
import threading
import time
import urllib.parse
from typing import Any

_lock = threading.Lock()
_active = 0


def wrap(app: Any) -> Any:
    path = os.environ.get("RFEMU_TIMING_FILE", "")
    if not path:
        return app
    out = open(path, "a", buffering=1)

    def timed(environ: dict[str, Any], start_response: Any) -> Any:
        global _active
        began = time.time()
        action = environ.get("HTTP_X_AMZ_TARGET", "")
        if not action and environ.get("REQUEST_METHOD") == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        with _lock:
            _active += 1
            active = _active
        size = -1
        try:
            body = list(app(environ, start_response))
            size = sum(len(b) for b in body)
            return body
        finally:
            with _lock:
                _active -= 1
            out.write(f"{began:.6f} {(time.time() - began) * 1000:.2f} {active} "
                      f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')} {action or '-'} {size}\n")

    return timed


def profiled(app: Any) -> Any:
    """Profile every request with cProfile when RFEMU_PROFILE_FILE names a file; the merged
    statistics are written there every few seconds (pstats format, read with python -m pstats).
    Profiling slows the emulator several times over: use it to find hot spots, never to time.
    "{pid}" in the name becomes the process id: the drain benchmark runs an emulator per service."""
    path = os.environ.get("RFEMU_PROFILE_FILE", "").replace("{pid}", str(os.getpid()))
    if not path:
        return app
    import cProfile
    import pstats

    merged: list[Any] = []
    lock = threading.Lock()

    def dump() -> None:
        while True:
            time.sleep(3)
            with lock:
                if merged:
                    merged[0].dump_stats(path)

    threading.Thread(target=dump, name="rfemu-profile", daemon=True).start()

    def run(environ: dict[str, Any], start_response: Any) -> Any:
        prof = cProfile.Profile()
        prof.enable()
        try:
            return list(app(environ, start_response))
        finally:
            prof.disable()
            with lock:
                if merged:
                    merged[0].add(prof)
                else:
                    merged.append(pstats.Stats(prof))

    return run
