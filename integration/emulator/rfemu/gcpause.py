"""Keep Python's full garbage collections, and moto's service-model loads, from stalling the emulator.

This module owns moto's service-model loading (moto.core.utils): besides the garbage collector
(below), it lets one thread at a time load a model the first time (install: moto's
functools.cache let 100 concurrent first calls each load the SSM model, 19-27 s a call) and
counts the loads (loads(), in the health answer).

Python's cyclic collector stops every thread while it runs, and a full (generation 2) collection
walks every tracked object. Most of the emulator's objects are the botocore service models moto
loads on the first request of each service (tens of thousands of dicts and lists each) and never
frees. Measured under the drain benchmark (gc.callbacks, RFEMU_TIMING_FILE): three full
collections of 111-189 ms each, during which no request was served; the slowest event of the
run (189 ms against a p50 of 11 ms) was one of them.

gc.freeze() moves every object alive into a permanent generation that collections skip. We
freeze once when the launcher has installed everything, and again each time moto loads a service
model (a handful of times per emulator, early: get_service_model caches). What was garbage at
those moments stays allocated — a one-off few objects, not a growing leak — and what is created
later is collected as before.
"""
from __future__ import annotations

import functools
import gc
import threading
from typing import Any

from moto.core import responses as core_responses
from moto.core import utils as core_utils

_ORIG: dict[str, Any] = {}


def freeze() -> None:
    """Collect once, then move everything alive out of the collector's reach."""
    gc.collect()
    gc.freeze()


_LOADS: dict[str, int] = {}
_LOADS_LOCK = threading.Lock()


def loads() -> dict[str, int]:
    """How often each botocore model was read from disk ("ssm/service-2": 1), for the health
    answer: a test checks that concurrent first calls of a service load its model once."""
    with _LOADS_LOCK:
        return dict(_LOADS)


def install() -> None:
    orig_load = core_utils._load_service_model

    @functools.wraps(orig_load)
    def _load_service_model(service_name: str, model_name: str) -> Any:
        with _LOADS_LOCK:
            key = f"{service_name}/{model_name}"
            _LOADS[key] = _LOADS.get(key, 0) + 1
        return orig_load(service_name, model_name)

    # Looked up by name at call time inside moto.core.utils (get_service_model, paginators).
    core_utils._load_service_model = _load_service_model

    orig = core_utils.get_service_model
    _ORIG["get_service_model"] = orig
    loaded: set[str] = set()
    first_load = threading.Lock()

    @functools.wraps(orig)
    def get_service_model(service_name: str) -> Any:
        if service_name in loaded:
            return orig(service_name)  # cached by moto after the first call
        # One load at a time. moto's cache (functools.cache) does not stop concurrent misses:
        # 100 drains' first SendCommands at once each loaded the SSM model themselves, every load
        # listing botocore's data directories under one interpreter lock, and each call took
        # 19-27 s (TestHundredDrainsSideBySide, RFEMU_TIMING_FILE; RFEMU_PROFILE_FILE: 104 model
        # loads). The others wait here for the first and then read the cache.
        with first_load:
            model = orig(service_name)
            if service_name not in loaded:
                freeze()
                loaded.add(service_name)
        return model

    # core.responses imported it by name (parse and serialize); core.errors imports it per call.
    core_utils.get_service_model = get_service_model
    core_responses.get_service_model = get_service_model  # type: ignore[attr-defined]
