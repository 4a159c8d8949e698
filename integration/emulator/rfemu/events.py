"""EventBridge as AWS runs it for us: rules with a schedule fire a `Scheduled Event` (resources[0] =
the rule ARN) at their rate, or every --tick-period when the launcher has one; a rule with only a
schedule never receives service events (moto treats a missing pattern as "match everything");
disabled rules deliver nothing.
"""
from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

from moto.core.utils import unix_time
from moto.events import models as evm

from . import core

_ORIG: dict[str, Any] = {}
_tls = threading.local()

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}

# rule ARN -> monotonic time of the next firing.
_NEXT: dict[str, float] = {}


def rate_seconds(expression: str | None) -> float | None:
    m = _RATE.match((expression or "").strip())
    if not m:
        return None
    return int(m.group(1)) * _UNIT[m.group(2)]


def send_to_targets(self: Any, event: Any, transform_input: bool = True) -> None:
    if self.state != "ENABLED":
        return
    if self.scheduled_expression and not self.event_pattern.get_pattern() and not getattr(_tls, "scheduled", False):
        return
    _ORIG["send_to_targets"](self, event, transform_input)


def fire(rule: Any) -> None:
    """Deliver one Scheduled Event for rule to its targets."""
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": rule.account_id,
        "time": unix_time(),
        "region": rule.region_name,
        "resources": [rule.arn],
        "detail": {},
        "ingestion-time": unix_time(),
    }
    _tls.scheduled = True
    try:
        _ORIG["send_to_targets"](rule, event, True)
    finally:
        _tls.scheduled = False
    core.log_event("event.emitted", detail_type="Scheduled Event", source="aws.events", resources=[rule.arn],
                   event_id=event["id"])


def _tick(now: float) -> None:
    seen = set()
    for account_id, regions in list(evm.events_backends.items()):
        for region, backend in list(regions.items()):
            bus = backend.event_buses.get("default")
            if bus is None:
                continue
            for rule in list(bus.rules.values()):
                if not rule.scheduled_expression or rule.state != "ENABLED":
                    continue
                period = core.settings.tick_period or rate_seconds(rule.scheduled_expression)
                if not period:
                    continue  # cron(...) without a tick period: not fired (see README)
                arn = rule.arn
                seen.add(arn)
                due = _NEXT.get(arn)
                if due is None:
                    _NEXT[arn] = now + period
                    continue
                if now >= due:
                    _NEXT[arn] = max(due + period, now)
                    try:
                        fire(rule)
                    except Exception as e:
                        core.warn(f"firing scheduled rule {arn}: {e}")
    for arn in [a for a in _NEXT if a not in seen]:
        del _NEXT[arn]


def _cache_jsonpath() -> None:
    """Parse each JSONPath once. moto's EventTemplateParser.parse (every delivery of an event to a
    rule's target) parses the 8 paths of its input map with jsonpath_ng.ext.parse, whose PLY
    parser costs ~15 ms a path: ~120 ms an event, which made a SetDesiredCapacity that sends 100
    instances through their terminate hooks take 28 s. Parsed expressions are immutable (find
    only reads them), so one per path string serves every thread."""
    import functools

    import jsonpath_ng.ext as jpx

    if not hasattr(jpx.parse, "cache_info"):
        jpx.parse = functools.lru_cache(maxsize=1024)(jpx.parse)


def install() -> None:
    _cache_jsonpath()
    _ORIG["send_to_targets"] = evm.Rule.send_to_targets
    evm.Rule.send_to_targets = send_to_targets
    core.TICKER.register(_tick)
