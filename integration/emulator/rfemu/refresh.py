"""Instance refresh: StartInstanceRefresh / DescribeInstanceRefreshes / CancelInstanceRefresh
(moto 5.2.1 answers 500), replacing instances through the same terminate/launch hooks as scale-in.

A background tick advances each refresh: while fewer than the allowed number of instances are
out of service (desired − ⌈desired × MinHealthyPercentage / 100⌉, at least 1), it sends the next
instance to replace through begin_termination and lets the group launch its replacement. An
instance protected from scale-in is skipped (ScaleInProtectedInstances "Ignore", the default),
replaced ("Refresh") or waited for until unprotected ("Wait").
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from moto.autoscaling import models as asm
from moto.autoscaling import responses as asr
from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
from moto.core.responses import ActionResult

from . import autoscaling, core


class InstanceRefreshInProgress(AutoscalingClientError):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(AutoscalingClientError):
    code = "ActiveInstanceRefreshNotFound"


ACTIVE = ("Pending", "InProgress", "Cancelling")


class Refresh:
    def __init__(self, group: Any, preferences: dict[str, Any], desired: dict[str, Any]) -> None:
        self.id = core.new_token()
        self.group_name = group.name
        self.account_id = group.account_id
        self.region = group.region
        self.status = "InProgress"
        self.status_reason = ""
        self.start_time = datetime.now(timezone.utc)
        self.end_time: datetime | None = None
        self.preferences = preferences
        self.desired = desired
        self.min_healthy = int(preferences.get("MinHealthyPercentage", 90) or 90)
        self.protected_mode = preferences.get("ScaleInProtectedInstances") or "Ignore"
        version = autoscaling.resolve_version(group)
        template = group.ec2_launch_template.id if group.ec2_launch_template is not None else ""
        skip_matching = bool(preferences.get("SkipMatching"))
        self.to_replace: list[str] = []
        for state in group.instance_states:
            if not autoscaling.counted(state):
                continue
            if (skip_matching and getattr(state, "rf_launch_template_version", "") == version
                    and autoscaling.launch_template_id_of(state) == template):
                continue
            if state.protected_from_scale_in and self.protected_mode == "Ignore":
                continue
            self.to_replace.append(state.instance.id)
        self.total = len(self.to_replace)
        self.replaced: list[str] = []  # sent through termination

    def describe(self) -> dict[str, Any]:
        done = len([i for i in self.replaced])
        pct = 100 if self.total == 0 else int(100 * done / self.total)
        if self.status == "Successful":
            pct = 100
        out = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group_name,
            "Status": self.status,
            "StatusReason": self.status_reason,
            "StartTime": self.start_time,
            "PercentageComplete": pct,
            "InstancesToUpdate": max(self.total - done, 0),
            "Preferences": {"MinHealthyPercentage": self.min_healthy,
                            "ScaleInProtectedInstances": self.protected_mode,
                            "SkipMatching": bool(self.preferences.get("SkipMatching"))},
        }
        if self.end_time:
            out["EndTime"] = self.end_time
        if self.desired:
            out["DesiredConfiguration"] = self.desired
        return out


# group name -> refreshes, newest last; guarded by core.LOCK.
REFRESHES: dict[str, list[Refresh]] = {}


def _finish(r: Refresh, status: str, reason: str = "") -> None:
    r.status = status
    r.status_reason = reason
    r.end_time = datetime.now(timezone.utc)
    core.log_event("refresh.status", group=r.group_name, refresh_id=r.id, status=status)


def _step(r: Refresh) -> None:
    backend = asm.autoscaling_backends[r.account_id][r.region]
    group = backend.autoscaling_groups.get(r.group_name)
    if group is None:
        _finish(r, "Failed", "the group was deleted")
        return
    states = {s.instance.id: s for s in group.instance_states}
    # Out of service: ours still terminating, and any new instance not yet InService.
    in_flight = [i for i in r.replaced if i in states]
    pending = [s for s in group.instance_states if s.lifecycle_state.startswith("Pending")]
    if r.status == "Cancelling":
        if not in_flight:
            _finish(r, "Cancelled")
        return
    desired = group.desired_capacity or 0
    allowed = max(1, desired - math.ceil(desired * r.min_healthy / 100.0))
    remaining = [i for i in r.to_replace if i not in r.replaced]
    while remaining and len(in_flight) + len(pending) < allowed:
        chosen = None
        for instance_id in remaining:
            state = states.get(instance_id)
            if state is None or not autoscaling.counted(state):
                r.replaced.append(instance_id)  # gone already: nothing to replace
                continue
            if state.protected_from_scale_in and r.protected_mode == "Wait":
                continue
            chosen = state
            break
        remaining = [i for i in r.to_replace if i not in r.replaced]
        if chosen is None:
            break
        r.replaced.append(chosen.instance.id)
        remaining.remove(chosen.instance.id)
        core.log_event("refresh.replace", group=r.group_name, refresh_id=r.id, instance_id=chosen.instance.id)
        autoscaling.begin_termination(group, chosen)
        group.set_desired_capacity(group.desired_capacity)
        in_flight = [i for i in r.replaced if i in {s.instance.id for s in group.instance_states}]
        pending = [s for s in group.instance_states if s.lifecycle_state.startswith("Pending")]
    if not remaining and not in_flight and not pending:
        _finish(r, "Successful")


def _tick(now: float) -> None:
    with core.LOCK:
        for refreshes in list(REFRESHES.values()):
            for r in refreshes:
                if r.status in ("InProgress", "Cancelling"):
                    _step(r)


def start(backend: Any, group_name: str, preferences: dict[str, Any], desired: dict[str, Any]) -> str:
    with core.LOCK:
        group = backend.autoscaling_groups.get(group_name)
        if group is None:
            raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{group_name}' not found")
        for r in REFRESHES.get(group_name, []):
            if r.status in ACTIVE:
                raise InstanceRefreshInProgress(
                    f"An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.")
        lt = (desired or {}).get("LaunchTemplate")
        if lt:
            group._set_launch_configuration(None, lt, None)
        r = Refresh(group, preferences or {}, desired or {})
        REFRESHES.setdefault(group_name, []).append(r)
        core.log_event("refresh.status", group=group_name, refresh_id=r.id, status="InProgress",
                       to_replace=list(r.to_replace))
        _step(r)
        return r.id


def cancel(backend: Any, group_name: str) -> str:
    with core.LOCK:
        for r in REFRESHES.get(group_name, []):
            if r.status in ("Pending", "InProgress"):
                r.status = "Cancelling"
                core.log_event("refresh.status", group=group_name, refresh_id=r.id, status="Cancelling")
                _step(r)
                return r.id
        raise ActiveInstanceRefreshNotFound(f"No in progress or pending Instance Refresh found for Auto Scaling group {group_name}")


def _resp_start(self: Any) -> Any:
    params = self._get_params()
    refresh_id = start(self.autoscaling_backend, self._get_param("AutoScalingGroupName"),
                       params.get("Preferences") or {}, params.get("DesiredConfiguration") or {})
    return ActionResult({"InstanceRefreshId": refresh_id})


def _resp_describe(self: Any) -> Any:
    group_name = self._get_param("AutoScalingGroupName")
    ids = self._get_param("InstanceRefreshIds", []) or []
    with core.LOCK:
        refreshes = [r.describe() for r in reversed(REFRESHES.get(group_name, []))
                     if not ids or r.id in ids]
    return ActionResult({"InstanceRefreshes": refreshes})


def _resp_cancel(self: Any) -> Any:
    return ActionResult({"InstanceRefreshId": cancel(self.autoscaling_backend, self._get_param("AutoScalingGroupName"))})


def install() -> None:
    R = asr.AutoScalingResponse
    R.start_instance_refresh = _resp_start
    R.describe_instance_refreshes = _resp_describe
    R.cancel_instance_refresh = _resp_cancel
    core.TICKER.register(_tick)
