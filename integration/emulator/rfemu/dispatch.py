"""moto's server dispatcher without its per-request lock and directory scans.

moto 5.2.1's DomainDispatcherApplication.get_application picks the backend app of every request
while holding one global lock, and on the way calls backends.list_of_moto_modules() (an
os.listdir of moto's package plus an os.path.isdir per entry, ~130 stat calls) and tries its
~1,000 URL patterns in turn. Measured under the drain benchmark (RFEMU_PROFILE_FILE, see
timing.py): get_application was 65% of all time in the emulator, every request queued behind
that lock, and a PutItem that takes 2 ms alone took 27 ms on average.

Dispatcher keeps moto's decisions exactly (it calls moto's own infer_service_region_host and
the same host → backend rules), but lists moto's modules once, remembers each host's backend,
and takes the lock only to create a backend's app the first time.
"""
from __future__ import annotations

import threading
from typing import Any

import moto.backends as backends
from moto.moto_server.werkzeug_app import DEFAULT_SERVICE_REGION, DomainDispatcherApplication

_UNSET = object()


class Dispatcher(DomainDispatcherApplication):
    """DomainDispatcherApplication with cached host → backend lookups and no global lock on the
    request path (moto internals used: backend_url_patterns, infer_service_region_host,
    app_instances, create_app)."""

    def __init__(self, create_app: Any) -> None:
        super().__init__(create_app)
        self._modules = frozenset(backends.list_of_moto_modules())
        self._hosts: dict[str | None, Any] = {}
        self._create_lock = threading.Lock()

    def get_backend_for_host(self, host: str | None) -> Any:
        cached = self._hosts.get(host, _UNSET)
        if cached is not _UNSET:
            return cached
        backend = self._backend_for_host(host)
        if backend is not None:
            # Only found backends are remembered: moto prints a hint for unknown hosts each time.
            self._hosts[host] = backend
        return backend

    def _backend_for_host(self, host: str | None) -> Any:
        if host is None:
            return None
        if host == "moto_api":
            return host
        if host in self._modules:
            return host
        for backend, pattern in self.backend_url_patterns:
            if pattern.match(f"http://{host}"):
                return backend
        if "amazonaws.com" in host:
            print(f"Unable to find appropriate backend for {host}.")  # noqa: T201 (moto's message)
        return None

    def get_application(self, environ: dict[str, Any]) -> Any:
        path_info = environ.get("PATH_INFO", "")
        if isinstance(path_info, bytes):
            path_info = path_info.decode("utf-8")
        if path_info.startswith("/moto-api") or path_info == "/favicon.ico":
            host = "moto_api"
        elif path_info.startswith("/latest/meta-data/") or path_info.startswith("/latest/api/"):
            host = "instance_metadata"
        else:
            host = None
        backend = self.get_backend_for_host(host)
        if not backend:
            host = self.infer_service_region_host(environ, path_info)
            if host is None:
                service, region = DEFAULT_SERVICE_REGION
                host = f"{service}.{region}.amazonaws.com"
            backend = self.get_backend_for_host(host)
        app = self.app_instances.get(backend)
        if app is None:
            with self._create_lock:
                app = self.app_instances.get(backend)
                if app is None:
                    app = self.create_app(backend)
                    self.app_instances[backend] = app
        return app
