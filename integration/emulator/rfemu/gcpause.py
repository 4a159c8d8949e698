"""Keep Python's full garbage collections from stalling the emulator.

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
from typing import Any

from moto.core import responses as core_responses
from moto.core import utils as core_utils

_ORIG: dict[str, Any] = {}


def freeze() -> None:
    """Collect once, then move everything alive out of the collector's reach."""
    gc.collect()
    gc.freeze()


def install() -> None:
    orig = core_utils.get_service_model
    _ORIG["get_service_model"] = orig
    loaded: set[str] = set()

    @functools.wraps(orig)
    def get_service_model(service_name: str) -> Any:
        model = orig(service_name)  # cached by moto after the first call
        if service_name not in loaded:
            loaded.add(service_name)
            freeze()
        return model

    # core.responses imported it by name (parse and serialize); core.errors imports it per call.
    core_utils.get_service_model = get_service_model
    core_responses.get_service_model = get_service_model  # type: ignore[attr-defined]
