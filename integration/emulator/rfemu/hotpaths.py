"""Per-request work moto repeats for every request, done once.

Profiled under the drain benchmark (RFEMU_PROFILE_FILE, see timing.py; 5,182 requests), three
pure computations that moto 5.2.1 redoes on every request were about an eighth of the emulator's
CPU outside long-poll waits, all of it with the GIL held:

- BaseResponse.call_action lists the response class's methods with inspect.getmembers
  (method_names_from_class, 2.7 s of the profile): the same list for the same class every time.
  It is remembered per class; the rfemu patches add their methods at install time, before the
  first request, so the first listing is final.
- _enrich_response draws a 52-character request id one random.choice at a time
  (gen_amzn_requestid_long, 1.9 s): here it is 208 random bits in hex, still 52 characters.
  From random.getrandbits, not os.urandom: os.urandom releases the GIL around its getrandom()
  call, so under load every request waited to take the lock back (4,906 calls, 2.45 s in a later
  profile of the same benchmark: 0.5 ms a request, against 0.7 µs for the call on an idle
  interpreter).
  (moto's seedable random is not needed for request ids: nothing compares them.)
- camelcase_to_underscores walks its argument character by character (17,000 calls, 1.2 s) for
  a small, fixed set of action and parameter names: remembered per name.

The results are the same as moto's; only the time changes.
"""
from __future__ import annotations

import functools
import random
from typing import Any

from moto.core import responses as core_responses
from moto.core import utils as core_utils
from moto.utilities import aws_headers

_ORIG: dict[str, Any] = {}


def _method_names_from_class(clazz: object) -> list[str]:
    names = _NAMES.get(clazz)
    if names is None:
        names = _ORIG["method_names_from_class"](clazz)
        _NAMES[clazz] = names
    # A copy: moto's callers may treat the list as their own.
    return list(names)


_NAMES: dict[object, list[str]] = {}


def _gen_amzn_requestid_long(headerdict: dict[str, Any] | None = None) -> str:
    req_id = f"{random.getrandbits(208):052X}"
    if headerdict is not None and isinstance(headerdict, dict):
        headerdict.update({"x-amzn-requestid": req_id})
    return req_id


def install() -> None:
    _ORIG["method_names_from_class"] = core_utils.method_names_from_class
    _ORIG["camelcase_to_underscores"] = core_utils.camelcase_to_underscores
    remembered = functools.lru_cache(maxsize=4096)(core_utils.camelcase_to_underscores)

    def cached_camel(argument: Any) -> Any:
        return remembered(argument) if isinstance(argument, str) else _ORIG["camelcase_to_underscores"](argument)

    for mod in (core_utils, core_responses):
        mod.method_names_from_class = _method_names_from_class  # type: ignore[attr-defined]
        mod.camelcase_to_underscores = cached_camel  # type: ignore[attr-defined]
    aws_headers.gen_amzn_requestid_long = _gen_amzn_requestid_long
    core_responses.gen_amzn_requestid_long = _gen_amzn_requestid_long  # type: ignore[attr-defined]
