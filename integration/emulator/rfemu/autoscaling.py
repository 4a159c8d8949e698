"""Auto Scaling as our drains depend on it: lifecycle hooks that hold instances in Pending:Wait /
Terminating:Wait, the documented lifecycle-action events, CompleteLifecycleAction,
RecordLifecycleActionHeartbeat, heartbeat and global timeouts, scale-in that respects protection,
instances that record their launch template version, and the runner simulator told of launches.

Instance refresh lives in refresh.py and uses begin_termination / the same hooks.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from moto.autoscaling import models as asm
from moto.autoscaling import responses as asr
from moto.autoscaling.exceptions import ValidationError
from moto.core.responses import ActionResult, EmptyResult

from . import core

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"

# AWS caps the global timeout of a lifecycle action at 48 hours or 100 × the heartbeat timeout.
MAX_GLOBAL_TIMEOUT = 172800
GLOBAL_TIMEOUT_FACTOR = 100

# Lifecycle states that count toward the desired capacity (AWS counts Pending and InService).
COUNTED = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")

_ORIG: dict[str, Any] = {}
_tls = threading.local()


class Action:
    """One lifecycle action: an instance waiting on one hook."""

    def __init__(self, group: Any, state: Any, hook: Any) -> None:
        self.token = core.new_token()
        self.group_name = group.name
        self.group_arn = group.arn
        self.hook_name = hook.name
        self.instance_id = state.instance.id
        self.transition = hook.lifecycle_transition
        self.heartbeat_timeout = float(hook.heartbeat_timeout)
        self.default_result = hook.default_result or "ABANDON"
        self.metadata = getattr(hook, "notification_metadata", None)
        now = time.monotonic()
        self.heartbeat_deadline = now + self.heartbeat_timeout
        self.global_deadline = now + min(MAX_GLOBAL_TIMEOUT, GLOBAL_TIMEOUT_FACTOR * self.heartbeat_timeout)
        self.done = False
        self.result = ""


# token -> Action; guarded by core.LOCK.
ACTIONS: dict[str, Action] = {}


def _backend(account_id: str = core.ACCOUNT_ID, region: str = core.REGION) -> Any:
    return asm.autoscaling_backends[account_id][region]


def group_hooks(group: Any, transition: str) -> list[Any]:
    return [h for h in group.autoscaling_backend.lifecycle_hooks.values()
            if h.auto_scaling_group_name == group.name and h.lifecycle_transition == transition]


def set_state(state: Any, to: str) -> None:
    frm = state.lifecycle_state
    state.lifecycle_state = to
    core.log_event("instance.state", instance_id=state.instance.id, group=state.auto_scaling_group_name,
                   **{"from": frm, "to": to})


def counted(state: Any) -> bool:
    return state.lifecycle_state in COUNTED


def resolve_version(group: Any) -> str:
    """The launch template version number a launch from group uses now ("" without a template)."""
    lt = group.ec2_launch_template
    if lt is None:
        return ""
    try:
        return str(lt.get_version(getattr(group, "launch_template_version", "$Default")).number)
    except Exception:
        return str(lt.default_version_number)


def launch_template_id_of(state: Any) -> str:
    """The id of the launch template state was launched from: recorded at launch (AWS keeps it),
    else the group's ("" when it has none)."""
    recorded = getattr(state, "rf_launch_template_id", None)
    if recorded is not None:
        return recorded
    group = state.auto_scaling_group
    return group.ec2_launch_template.id if group is not None and group.ec2_launch_template is not None else ""


def _version_key(state: Any) -> tuple[int, int]:
    """Scale-in order: instances of another launch template than the group's first (AWS's default
    termination policy prefers the oldest launch template), then the oldest version."""
    group = state.auto_scaling_group
    current = group.ec2_launch_template.id if group is not None and group.ec2_launch_template is not None else ""
    on_current = 1 if launch_template_id_of(state) == current else 0
    v = getattr(state, "rf_launch_template_version", "")
    try:
        return on_current, int(v)
    except (TypeError, ValueError):
        return on_current, 0


# --- launch -------------------------------------------------------------------------------------

def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
    """Launch count_needed instances; each records its launch template version, is announced to
    the runner simulator, and waits in Pending:Wait when the group has launch hooks."""
    with core.LOCK:
        before = {id(s) for s in self.instance_states}
        _tls.asg_launch = True
        try:
            _ORIG["replace"](self, count_needed, propagated_tags)
        finally:
            _tls.asg_launch = False
        version = resolve_version(self)
        lt = self.ec2_launch_template
        for state in [s for s in self.instance_states if id(s) not in before]:
            state.rf_launch_template_version = version
            state.instance.rf_launch_template_version = version
            # The template itself too, as AWS keeps it: after the group switches to another
            # template (or a stack update replaces it), the instance still names the old one.
            state.rf_launch_template_id = lt.id if lt is not None else ""
            state.rf_launch_template_name = lt.name if lt is not None else ""
            state.lifecycle_state = ""
            set_state(state, "Pending")
            announce_launch(state.instance, self.name, version)
            hooks = group_hooks(self, LAUNCHING)
            if hooks:
                set_state(state, "Pending:Wait")
                for hook in hooks:
                    start_action(self, state, hook)
            else:
                set_state(state, "InService")


def in_asg_launch() -> bool:
    return bool(getattr(_tls, "asg_launch", False))


def announce_launch(instance: Any, group: str, version: str) -> None:
    body = {"instance_id": instance.id, "group": group, "private_ip": instance.private_ip or "",
            "launch_template_version": version}
    try:
        core.runnersim_call("POST", "/instances", body)
    except core.RunnerSimError as e:
        core.warn(f"telling the runner simulator of {instance.id}: {e}")
        core.log_event("runnersim.error", instance_id=instance.id, call="POST /instances", error=str(e))


def launch_template_of_state(self: Any) -> dict[str, Any] | None:
    """InstanceState.launch_template: the launch template (id, name) and version the instance was
    launched from, as AWS keeps them — not the group's current template (moto's answer, which
    made an instance of a replaced template look launched from its successor). An instance our
    launch did not record (attached) falls back to the group's template and default version."""
    recorded = getattr(self, "rf_launch_template_id", None)
    if recorded is not None:
        if not recorded:
            return None  # launched while the group had no launch template
        return {"LaunchTemplateId": recorded,
                "LaunchTemplateName": getattr(self, "rf_launch_template_name", ""),
                "Version": getattr(self, "rf_launch_template_version", "")}
    group = self.auto_scaling_group
    if group is None or group.ec2_launch_template is None:
        return None
    version = getattr(self, "rf_launch_template_version", "") or str(group.ec2_launch_template.default_version_number)
    return {"LaunchTemplateId": group.ec2_launch_template.id,
            "LaunchTemplateName": group.ec2_launch_template.name,
            "Version": version}


# --- scale in / terminate -----------------------------------------------------------------------

def _target_instances(self: Any) -> int:
    """How many instances the desired capacity means (moto's arithmetic for mixed instances)."""
    target = self.desired_capacity or 0
    policy = self.mixed_instances_policy or {}
    overrides = policy.get("LaunchTemplate", {}).get("Overrides", []) if policy else []
    if not overrides:
        return target
    import math

    distribution = policy.get("InstancesDistribution", {})
    base = int(distribution.get("OnDemandBaseCapacity", 0))
    pct = int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100))
    weight_str = str(overrides[0].get("WeightedCapacity", "1"))
    weight = int(weight_str) if weight_str.isdigit() and int(weight_str) > 0 else 1
    if base >= target:
        on_demand, spot = target, 0
    else:
        above = target - base
        od_above = int(above * pct) / 100.0
        spot = int(above - od_above)
        on_demand = int(base + od_above)
    return math.ceil(on_demand / weight) + math.ceil(spot / weight)


def set_desired_capacity(self: Any, new_capacity: int | None) -> None:
    """Reconcile the group to its desired capacity: launch what is missing; choose unprotected
    instances for scale-in (oldest launch template version first, then oldest launch) and send them
    through the terminate hooks."""
    with core.LOCK:
        self.desired_capacity = self.min_size if new_capacity is None else new_capacity
        current = [s for s in self.instance_states if counted(s)]
        delta = _target_instances(self) - len(current)
        if delta > 0:
            self.replace_autoscaling_group_instances(delta, self.get_propagated_tags())
        elif delta < 0:
            candidates = [s for s in current if not s.protected_from_scale_in]
            # Pending instances first (AWS prefers not to lose InService capacity), then oldest version.
            candidates.sort(key=lambda s: (s.lifecycle_state == "InService", _version_key(s)))
            for state in candidates[: -delta]:
                begin_termination(self, state)
        if self.name in self.autoscaling_backend.autoscaling_groups:
            self.autoscaling_backend.update_attached_elbs(self.name)
            self.autoscaling_backend.update_attached_target_groups(self.name)


def begin_termination(group: Any, state: Any, hooks: bool = True) -> None:
    """Take state out of service: Terminating:Wait with one action per terminate hook, or straight
    to termination when the group has none (or hooks=False)."""
    with core.LOCK:
        if state.lifecycle_state.startswith("Terminating"):
            return
        cancel_actions(state.instance.id)
        term_hooks = group_hooks(group, TERMINATING) if hooks else []
        if term_hooks:
            set_state(state, "Terminating:Wait")
            for hook in term_hooks:
                start_action(group, state, hook)
        else:
            set_state(state, "Terminating")
            finish_termination(group, state)


def finish_termination(group: Any, state: Any) -> None:
    """Terminate the EC2 instance (rfemu.ec2 tells the runner simulator) and drop it from group."""
    with core.LOCK:
        cancel_actions(state.instance.id)
        if state.lifecycle_state == "Terminating:Wait":
            set_state(state, "Terminating:Proceed")
        if state in group.instance_states:
            group.instance_states.remove(state)
        if state.instance.state != "terminated":
            group.autoscaling_backend.ec2_backend.terminate_instances([state.instance.id])
        set_state(state, "Terminated")


def terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
    """TerminateInstanceInAutoScalingGroup through the terminate hooks; without decrement the group
    launches a replacement at once (the terminating instance no longer counts)."""
    with core.LOCK:
        found = [(g, s) for g in self.autoscaling_groups.values() for s in g.instance_states
                 if s.instance.id == instance_id]
        if not found:
            raise ValidationError(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
        group, state = found[0]
        original = group.desired_capacity
        if should_decrement and counted(state):
            if group.desired_capacity - 1 < (group.min_size or 0):
                raise ValidationError(
                    f"Currently, desiredSize equals minSize ({group.min_size}). Terminating instance without "
                    "replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity "
                    "flag to false or lower group's min size.")
            group.desired_capacity -= 1
        activity = asm.TerminateInstanceActivity(state.instance, original)
        begin_termination(group, state)
        group.set_desired_capacity(group.desired_capacity)
        return activity


def notify_terminate_instances(self: Any, instance_ids: list[str]) -> None:
    """Instances terminated through EC2 leave their group, which launches replacements."""
    with core.LOCK:
        for name, group in list(self.autoscaling_groups.items()):
            leaving = [s for s in group.instance_states if s.instance.id in instance_ids]
            if not leaving:
                continue
            for state in leaving:
                cancel_actions(state.instance.id)
                group.instance_states.remove(state)
                set_state(state, "Terminated")
            group.set_desired_capacity(group.desired_capacity)
            self.update_attached_elbs(name)


def delete_auto_scaling_group(self: Any, group_name: str) -> None:
    """Deleting a group terminates its instances without hooks (as ForceDelete does) and drops its hooks."""
    with core.LOCK:
        if group_name not in self.autoscaling_groups:
            raise ValidationError(
                f"AutoScalingGroup name not found - AutoScalingGroup '{group_name}' not found")
        group = self.autoscaling_groups[group_name]
        group.desired_capacity = 0
        for state in list(group.instance_states):
            if not state.lifecycle_state.startswith("Terminating"):
                set_state(state, "Terminating")
            finish_termination(group, state)
        for key in [k for k, h in self.lifecycle_hooks.items() if h.auto_scaling_group_name == group_name]:
            del self.lifecycle_hooks[key]
        self.autoscaling_groups.pop(group_name, None)


# --- lifecycle actions --------------------------------------------------------------------------

def start_action(group: Any, state: Any, hook: Any) -> Action:
    action = Action(group, state, hook)
    ACTIONS[action.token] = action
    launching = action.transition == LAUNCHING
    detail = {
        "LifecycleActionToken": action.token,
        "AutoScalingGroupName": group.name,
        "LifecycleHookName": hook.name,
        "EC2InstanceId": action.instance_id,
        "LifecycleTransition": action.transition,
        "Origin": "EC2" if launching else "AutoScalingGroup",
        "Destination": "AutoScalingGroup" if launching else "EC2",
    }
    if action.metadata is not None:
        detail["NotificationMetadata"] = action.metadata
    core.log_event("hook.start", instance_id=action.instance_id, group=group.name, hook=hook.name,
                   token=action.token, transition=action.transition)
    kind = "EC2 Instance-launch Lifecycle Action" if launching else "EC2 Instance-terminate Lifecycle Action"
    core.emit_event("aws.autoscaling", kind, detail, [group.arn],
                    region=group.region, account_id=group.account_id)
    return action


def cancel_actions(instance_id: str) -> None:
    for action in ACTIONS.values():
        if action.instance_id == instance_id and not action.done:
            action.done = True
            action.result = "CANCELLED"


def _find_action(backend: Any, group_name: str, hook_name: str, token: str | None,
                 instance_id: str | None) -> Action:
    if token:
        action = ACTIONS.get(token)
        if action is None or action.done or action.group_name != group_name or action.hook_name != hook_name:
            raise ValidationError(f"No active Lifecycle Action found with token {token}")
        return action
    if instance_id:
        for action in ACTIONS.values():
            if (not action.done and action.instance_id == instance_id and action.group_name == group_name
                    and action.hook_name == hook_name):
                return action
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")
    raise ValidationError("Either LifecycleActionToken or InstanceId must be specified")


def complete_lifecycle_action(backend: Any, group_name: str, hook_name: str, token: str | None,
                              instance_id: str | None, result: str) -> None:
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"Invalid LifecycleActionResult: {result}; valid values are CONTINUE and ABANDON")
    with core.LOCK:
        action = _find_action(backend, group_name, hook_name, token, instance_id)
        action.done = True
        action.result = result
        core.log_event("hook.complete", instance_id=action.instance_id, token=action.token, result=result,
                       by="token" if token else "instance_id", hook=hook_name, group=group_name)
        _resolve(backend, action)


def record_heartbeat(backend: Any, group_name: str, hook_name: str, token: str | None,
                     instance_id: str | None) -> None:
    with core.LOCK:
        action = _find_action(backend, group_name, hook_name, token, instance_id)
        action.heartbeat_deadline = min(time.monotonic() + action.heartbeat_timeout, action.global_deadline)
        core.log_event("hook.heartbeat", instance_id=action.instance_id, token=action.token, hook=hook_name,
                       group=group_name)


def _resolve(backend: Any, action: Action) -> None:
    """When every action of this instance and transition is done, move the instance on."""
    siblings = [a for a in ACTIONS.values() if a.instance_id == action.instance_id and a.transition == action.transition
                and a.result != "CANCELLED"]
    if any(not a.done for a in siblings):
        return
    group = backend.autoscaling_groups.get(action.group_name)
    if group is None:
        return
    states = [s for s in group.instance_states if s.instance.id == action.instance_id]
    if not states:
        return
    state = states[0]
    if action.transition == TERMINATING:
        finish_termination(group, state)
        return
    if any(a.result == "ABANDON" for a in siblings):
        # ABANDON on launch: the instance is terminated and the group launches another.
        set_state(state, "Terminating")
        finish_termination(group, state)
        group.set_desired_capacity(group.desired_capacity)
        return
    set_state(state, "Pending:Proceed")
    set_state(state, "InService")


def _tick(now: float) -> None:
    with core.LOCK:
        due = [a for a in ACTIONS.values() if not a.done and now >= min(a.heartbeat_deadline, a.global_deadline)]
        for action in due:
            if action.done:
                continue
            action.done = True
            action.result = action.default_result
            core.log_event("hook.timeout", instance_id=action.instance_id, token=action.token,
                           result=action.result, hook=action.hook_name, group=action.group_name,
                           timeout="global" if now >= action.global_deadline else "heartbeat")
            for backend in _all_backends():
                if action.group_name in backend.autoscaling_groups:
                    _resolve(backend, action)
                    break
        # Forget finished actions after a while so wrong-token errors stay exact but memory bounded.
        if len(ACTIONS) > 10000:
            for token in [t for t, a in ACTIONS.items() if a.done][:5000]:
                del ACTIONS[token]


def _all_backends() -> list[Any]:
    out = []
    for account_id, regions in list(asm.autoscaling_backends.items()):
        for region, backend in list(regions.items()):
            out.append(backend)
    return out


# --- hooks --------------------------------------------------------------------------------------

def put_hook(backend: Any, group_name: str, spec: dict[str, Any]) -> Any:
    """Create or replace a hook from an API/template specification (heartbeat timeouts below AWS's
    30 s minimum are accepted so tests run in short real time)."""
    if not spec.get("LifecycleHookName") or not spec.get("LifecycleTransition"):
        raise ValidationError("A lifecycle hook needs a LifecycleHookName and a LifecycleTransition")
    if spec["LifecycleTransition"] not in (LAUNCHING, TERMINATING):
        raise ValidationError(f"Invalid LifecycleTransition: {spec['LifecycleTransition']}")
    timeout = spec.get("HeartbeatTimeout")
    hook = backend.create_lifecycle_hook(
        name=spec.get("LifecycleHookName"),
        as_name=group_name,
        transition=spec.get("LifecycleTransition"),
        timeout=int(timeout) if timeout not in (None, "") else None,
        result=spec.get("DefaultResult"),
    )
    if spec.get("NotificationMetadata") is not None:
        hook.notification_metadata = spec.get("NotificationMetadata")
    # moto fills in a made-up queue and role; AWS shows them only when they were given.
    hook.notification_target_arn = spec.get("NotificationTargetARN") or None
    hook.role_arn = spec.get("RoleARN") or None
    hook.global_timeout = min(MAX_GLOBAL_TIMEOUT, GLOBAL_TIMEOUT_FACTOR * int(hook.heartbeat_timeout))
    return hook


def create_auto_scaling_group(self: Any, *args: Any, lifecycle_hook_specs: list[dict[str, Any]] | None = None,
                              **kwargs: Any) -> Any:
    """CreateAutoScalingGroup; hooks of LifecycleHookSpecificationList exist before the first launch."""
    with core.LOCK:
        name = kwargs.get("name") if "name" in kwargs else args[0]
        lifecycle_hook_specs = [s for s in lifecycle_hook_specs or [] if isinstance(s, dict)]
        for spec in lifecycle_hook_specs:
            put_hook(self, name, spec)
        try:
            return _ORIG["create_group"](self, *args, **kwargs)
        except Exception:
            for spec in lifecycle_hook_specs or []:
                self.lifecycle_hooks.pop(f"{name}_{spec.get('LifecycleHookName')}", None)
            raise


def delete_lifecycle_hook(self: Any, as_name: str, name: str) -> None:
    """DeleteLifecycleHook completes the hook's outstanding actions first, as AWS does (ABANDON for
    launching instances, CONTINUE for terminating ones)."""
    with core.LOCK:
        _ORIG["delete_hook"](self, as_name, name)
        for action in [a for a in ACTIONS.values() if not a.done and a.group_name == as_name and a.hook_name == name]:
            action.done = True
            action.result = "ABANDON" if action.transition == LAUNCHING else "CONTINUE"
            core.log_event("hook.complete", instance_id=action.instance_id, token=action.token, result=action.result,
                           by="hook_deleted", hook=name, group=as_name)
            _resolve(self, action)


# --- responses ----------------------------------------------------------------------------------

def _resp_put_lifecycle_hook(self: Any) -> Any:
    group_name = self._get_param("AutoScalingGroupName")
    if group_name not in self.autoscaling_backend.autoscaling_groups:
        raise ValidationError(f"Group {group_name} not found")
    put_hook(self.autoscaling_backend, group_name, {
        "LifecycleHookName": self._get_param("LifecycleHookName"),
        "LifecycleTransition": self._get_param("LifecycleTransition"),
        "HeartbeatTimeout": self._get_param("HeartbeatTimeout"),
        "DefaultResult": self._get_param("DefaultResult"),
        "NotificationMetadata": self._get_param("NotificationMetadata"),
        "NotificationTargetARN": self._get_param("NotificationTargetARN"),
        "RoleARN": self._get_param("RoleARN"),
    })
    return EmptyResult()


def _resp_complete_lifecycle_action(self: Any) -> Any:
    complete_lifecycle_action(
        self.autoscaling_backend,
        group_name=self._get_param("AutoScalingGroupName"),
        hook_name=self._get_param("LifecycleHookName"),
        token=self._get_param("LifecycleActionToken"),
        instance_id=self._get_param("InstanceId"),
        result=self._get_param("LifecycleActionResult"),
    )
    return EmptyResult()


def _resp_record_lifecycle_action_heartbeat(self: Any) -> Any:
    record_heartbeat(
        self.autoscaling_backend,
        group_name=self._get_param("AutoScalingGroupName"),
        hook_name=self._get_param("LifecycleHookName"),
        token=self._get_param("LifecycleActionToken"),
        instance_id=self._get_param("InstanceId"),
    )
    return EmptyResult()


def _resp_create_auto_scaling_group(self: Any) -> Any:
    specs = self._get_param("LifecycleHookSpecificationList", []) or []
    with core.LOCK:
        _tls.hook_specs = specs
        try:
            return _ORIG["resp_create_group"](self)
        finally:
            _tls.hook_specs = None


def set_pending_hook_specs(specs: list[dict[str, Any]] | None) -> None:
    """Hook specifications for the next create_auto_scaling_group on this thread (API or template)."""
    _tls.hook_specs = specs


def _backend_create_group_from_api(self: Any, *args: Any, **kwargs: Any) -> Any:
    specs = getattr(_tls, "hook_specs", None)
    _tls.hook_specs = None
    return create_auto_scaling_group(self, *args, lifecycle_hook_specs=specs, **kwargs)


def backend_set_desired_capacity(self: Any, group_name: str, desired_capacity: int | None) -> None:
    """SetDesiredCapacity, refused outside [MinSize, MaxSize] as AWS does."""
    with core.LOCK:
        group = self.autoscaling_groups.get(group_name)
        if group is None:
            raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{group_name}' not found")
        if desired_capacity is not None and getattr(_tls, "clamp", False):
            # Scaling policies (ExecutePolicy) clamp to the group's bounds instead of failing.
            if group.max_size is not None:
                desired_capacity = min(desired_capacity, group.max_size)
            if group.min_size is not None:
                desired_capacity = max(desired_capacity, group.min_size)
        if desired_capacity is not None:
            if group.max_size is not None and desired_capacity > group.max_size:
                raise ValidationError(f"New SetDesiredCapacity value {desired_capacity} is above max value "
                                      f"{group.max_size} for the AutoScalingGroup.")
            if group.min_size is not None and desired_capacity < group.min_size:
                raise ValidationError(f"New SetDesiredCapacity value {desired_capacity} is below min value "
                                      f"{group.min_size} for the AutoScalingGroup.")
        group.set_desired_capacity(desired_capacity)
        self.update_attached_elbs(group_name)


def _clamped(fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with core.LOCK:
            _tls.clamp = True
            try:
                return fn(*args, **kwargs)
            finally:
                _tls.clamp = False

    wrapper.__name__ = fn.__name__
    return wrapper


def _locked(fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with core.LOCK:
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def install() -> None:
    G = asm.FakeAutoScalingGroup
    B = asm.AutoScalingBackend
    R = asr.AutoScalingResponse
    _ORIG["replace"] = G.replace_autoscaling_group_instances
    _ORIG["create_group"] = B.create_auto_scaling_group
    _ORIG["delete_hook"] = B.delete_lifecycle_hook
    B.delete_lifecycle_hook = delete_lifecycle_hook
    _ORIG["resp_create_group"] = R.create_auto_scaling_group

    G.replace_autoscaling_group_instances = replace_autoscaling_group_instances
    G.set_desired_capacity = set_desired_capacity
    asm.InstanceState.launch_template = property(launch_template_of_state)
    B.terminate_instance = terminate_instance
    B.notify_terminate_instances = notify_terminate_instances
    B.delete_auto_scaling_group = delete_auto_scaling_group
    B.create_auto_scaling_group = _backend_create_group_from_api
    # Every other backend call that changes instance states runs under the same lock as our timers.
    B.set_desired_capacity = backend_set_desired_capacity
    B.change_capacity = _clamped(B.change_capacity)
    B.change_capacity_percent = _clamped(B.change_capacity_percent)
    for name in ("update_auto_scaling_group", "detach_instances", "attach_instances",
                 "enter_standby_instances", "exit_standby_instances", "set_instance_protection",
                 "describe_auto_scaling_groups", "describe_auto_scaling_instances"):
        setattr(B, name, _locked(getattr(B, name)))

    R.put_lifecycle_hook = _resp_put_lifecycle_hook
    R.complete_lifecycle_action = _resp_complete_lifecycle_action
    R.record_lifecycle_action_heartbeat = _resp_record_lifecycle_action_heartbeat
    R.create_auto_scaling_group = _resp_create_auto_scaling_group
    core.TICKER.register(_tick)
