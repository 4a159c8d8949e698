"""EC2 as our drains see it: `EC2 Instance State-change Notification` events, the runner
simulator told of every launch and termination (its killed jobs logged), and the control calls
that emit a Spot Instance Interruption Warning (then reclaim the instance) or a Rebalance
Recommendation.
"""
from __future__ import annotations

import time
from typing import Any

from moto.ec2.models import instances as ec2i

from . import autoscaling, core

_ORIG: dict[str, Any] = {}

# (deadline (monotonic), account, region, instance id) of pending spot reclaims; guarded by core.LOCK.
_RECLAIMS: list[tuple[float, str, str, str]] = []


def _arn(instance: Any) -> str:
    b = instance.ec2_backend
    return f"arn:aws:ec2:{b.region_name}:{b.account_id}:instance/{instance.id}"


def state_change(instance: Any, state: str) -> None:
    b = instance.ec2_backend
    core.emit_event("aws.ec2", "EC2 Instance State-change Notification",
                    {"instance-id": instance.id, "state": state}, [_arn(instance)],
                    region=b.region_name, account_id=b.account_id)
    group = getattr(getattr(instance, "autoscaling_group", None), "name", "")
    core.log_event("ec2.state", instance_id=instance.id, group=group, state=state)


def terminate(self: Any) -> Any:
    """Instance.terminate: emit shutting-down and terminated, and tell the runner simulator (which
    kills and counts the instance's remaining jobs)."""
    previous = self._state.name
    result = _ORIG["terminate"](self)
    if previous != "terminated":
        state_change(self, "shutting-down")
        try:
            reply = core.runnersim_call("DELETE", f"/instances/{self.id}")
        except core.RunnerSimError as e:
            core.warn(f"telling the runner simulator {self.id} terminated: {e}")
            core.log_event("runnersim.error", instance_id=self.id, call="DELETE /instances", error=str(e))
        else:
            if reply is not None:
                killed = reply.get("killed", 0) if isinstance(reply, dict) else 0
                core.log_event("instance.jobs_killed", instance_id=self.id, killed=killed, reported_by="emulator")
        state_change(self, "terminated")
    return result


def stop(self: Any) -> Any:
    previous = self._state.name
    result = _ORIG["stop"](self)
    if previous not in ("stopped", "stopping"):
        state_change(self, "stopping")
        state_change(self, "stopped")
    return result


def start(self: Any) -> Any:
    previous = self._state.name
    result = _ORIG["start"](self)
    if previous != "running":
        state_change(self, "pending")
        state_change(self, "running")
    return result


def run_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
    """RunInstances outside a group: the runner simulator hears of the launch too (group "")."""
    reservation = _ORIG["run_instances"](self, *args, **kwargs)
    if not autoscaling.in_asg_launch():
        for instance in reservation.instances:
            version = ""
            lt = kwargs.get("launch_template")
            if lt:
                try:
                    tmpl = self._get_template_from_args(lt)
                    version = str(tmpl.get_version(lt.get("Version", "$Default")).number)
                except Exception:
                    version = ""
            instance.rf_launch_template_version = version
            core.log_event("ec2.state", instance_id=instance.id, group="", state="running")
            autoscaling.announce_launch(instance, "", version)
    return reservation


def _find_instance(instance_id: str) -> Any:
    from moto.ec2 import ec2_backends

    for account_id, regions in list(ec2_backends.items()):
        for region, backend in list(regions.items()):
            try:
                return backend.get_instance(instance_id)
            except Exception:
                continue
    raise KeyError(instance_id)


def spot_interruption(instance_id: str, notice_seconds: float) -> None:
    """Emit a Spot Instance Interruption Warning now and reclaim (terminate) the instance after
    notice_seconds; its group then launches a replacement."""
    instance = _find_instance(instance_id)
    b = instance.ec2_backend
    core.emit_event("aws.ec2", "EC2 Spot Instance Interruption Warning",
                    {"instance-id": instance_id, "instance-action": "terminate"}, [_arn(instance)],
                    region=b.region_name, account_id=b.account_id)
    core.log_event("spot.interruption", instance_id=instance_id, notice_seconds=notice_seconds)
    with core.LOCK:
        _RECLAIMS.append((time.monotonic() + notice_seconds, b.account_id, b.region_name, instance_id))


def rebalance(instance_id: str) -> None:
    instance = _find_instance(instance_id)
    b = instance.ec2_backend
    core.emit_event("aws.ec2", "EC2 Instance Rebalance Recommendation", {"instance-id": instance_id},
                    [_arn(instance)], region=b.region_name, account_id=b.account_id)
    core.log_event("spot.rebalance", instance_id=instance_id)


def terminate_through_ec2(account_id: str, region: str, instance_ids: list[str]) -> None:
    """What the TerminateInstances API does: terminate, then let groups and target groups know."""
    from moto.autoscaling import autoscaling_backends
    from moto.ec2 import ec2_backends
    from moto.elbv2 import elbv2_backends

    with core.LOCK:
        ec2_backends[account_id][region].terminate_instances(instance_ids)
        autoscaling_backends[account_id][region].notify_terminate_instances(instance_ids)
        elbv2_backends[account_id][region].notify_terminate_instances(instance_ids)


def _tick(now: float) -> None:
    with core.LOCK:
        due = [r for r in _RECLAIMS if r[0] <= now]
        if not due:
            return
        _RECLAIMS[:] = [r for r in _RECLAIMS if r[0] > now]
        for _, account_id, region, instance_id in due:
            core.log_event("spot.reclaim", instance_id=instance_id)
            try:
                terminate_through_ec2(account_id, region, [instance_id])
            except Exception as e:
                core.warn(f"reclaiming spot instance {instance_id}: {e}")


def install() -> None:
    I = ec2i.Instance
    _ORIG["terminate"] = I.terminate
    _ORIG["stop"] = I.stop
    _ORIG["start"] = I.start
    _ORIG["run_instances"] = ec2i.InstanceBackend.run_instances
    I.terminate = terminate
    I.stop = stop
    I.start = start
    ec2i.InstanceBackend.run_instances = run_instances
    # TerminateInstances (and our reclaims) change group membership: serialize with the timers.
    orig_terminate_instances = ec2i.InstanceBackend.terminate_instances

    def terminate_instances(self: Any, instance_ids: list[str]) -> Any:
        with core.LOCK:
            return orig_terminate_instances(self, instance_ids)

    ec2i.InstanceBackend.terminate_instances = terminate_instances
    core.TICKER.register(_tick)
