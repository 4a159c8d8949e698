"""CloudFormation as our stacks need it: `CloudFormation Stack Status Change` events on every
stack status transition; AWS::AutoScaling::LifecycleHook resources and a group's
LifecycleHookSpecificationList honoured on create and update; groups updated in place on a stack
update (as AWS does without an UpdatePolicy), rather than deleted and recreated.
"""
from __future__ import annotations

from typing import Any

from moto.autoscaling import models as asm
from moto.cloudformation import models as cfm
from moto.cloudformation import parsing as cfp
from moto.core.common_models import CloudFormationModel

from . import autoscaling, core

_ORIG: dict[str, Any] = {}


# --- stack status events ------------------------------------------------------------------------

def _get_status(self: Any) -> str:
    return self.__dict__.get("_rf_status", "")


def _set_status(self: Any, value: str) -> None:
    old = self.__dict__.get("_rf_status")
    self.__dict__["_rf_status"] = value
    if value == old or value == "CREATE_PENDING" or not getattr(self, "stack_id", None):
        return
    core.emit_event("aws.cloudformation", "CloudFormation Stack Status Change",
                    {"stack-id": self.stack_id, "status-details": {"status": value, "status-reason": ""}},
                    [self.stack_id], region=self.region_name, account_id=self.account_id)
    core.log_event("stack.status", stack_id=self.stack_id, stack=self.name, status=value)


def _add_stack_event(self: Any, resource_status: str, *args: Any, **kwargs: Any) -> None:
    # Stack-level events mark the stack's status transitions (UPDATE_IN_PROGRESS, DELETE_IN_PROGRESS
    # are only events in moto): keep the status in step so each transition is announced once.
    self.status = resource_status
    _ORIG["add_stack_event"](self, resource_status, *args, **kwargs)


# --- lifecycle hooks from templates -------------------------------------------------------------

class CfnLifecycleHook(CloudFormationModel):
    """AWS::AutoScaling::LifecycleHook (moto 5.2.1 skips it with a warning)."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook
        self.name = hook.name
        self.group_name = hook.auto_scaling_group_name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "LifecycleHookName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::AutoScaling::LifecycleHook"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> "CfnLifecycleHook":
        props = dict(cloudformation_json.get("Properties", {}))
        props.setdefault("LifecycleHookName", resource_name)
        backend = asm.autoscaling_backends[account_id][region_name]
        with core.LOCK:
            hook = autoscaling.put_hook(backend, props["AutoScalingGroupName"], props)
        return cls(hook)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,  # type: ignore[override]
                                        cloudformation_json: dict[str, Any], account_id: str,
                                        region_name: str) -> "CfnLifecycleHook":
        backend = asm.autoscaling_backends[account_id][region_name]
        props = dict(cloudformation_json.get("Properties", {}))
        props.setdefault("LifecycleHookName", original_resource.name)
        with core.LOCK:
            if (props["AutoScalingGroupName"], props["LifecycleHookName"]) != (original_resource.group_name,
                                                                                original_resource.name):
                backend.delete_lifecycle_hook(original_resource.group_name, original_resource.name)
            hook = autoscaling.put_hook(backend, props["AutoScalingGroupName"], props)
        return cls(hook)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str) -> None:
        backend = asm.autoscaling_backends[account_id][region_name]
        group = cloudformation_json.get("Properties", {}).get("AutoScalingGroupName")
        with core.LOCK:
            if group:
                backend.delete_lifecycle_hook(group, resource_name)

    def delete(self, account_id: str, region_name: str) -> None:
        asm.autoscaling_backends[account_id][region_name].delete_lifecycle_hook(self.group_name, self.name)


def _group_create_from_cfn(cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
                           region_name: str, **kwargs: Any) -> Any:
    specs = cloudformation_json.get("Properties", {}).get("LifecycleHookSpecificationList") or []
    with core.LOCK:
        autoscaling.set_pending_hook_specs(specs)
        try:
            return _ORIG["group_create"].__func__(cls, resource_name, cloudformation_json, account_id,
                                                   region_name, **kwargs)
        finally:
            autoscaling.set_pending_hook_specs(None)


def _group_update_from_cfn(cls: Any, original_resource: Any, new_resource_name: str,
                           cloudformation_json: dict[str, Any], account_id: str, region_name: str) -> Any:
    """Update a group in place (AWS replaces a group only when its name changes)."""
    props = cloudformation_json.get("Properties", {})
    backend = asm.autoscaling_backends[account_id][region_name]
    if not props.get("AutoScalingGroupName"):
        new_resource_name = original_resource.name  # moto generates a fresh name on every update
    if new_resource_name != original_resource.name or original_resource.name not in backend.autoscaling_groups:
        cls.delete_from_cloudformation_json(original_resource.name, cloudformation_json, account_id, region_name)
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)
    with core.LOCK:
        for spec in props.get("LifecycleHookSpecificationList") or []:
            if isinstance(spec, dict):
                autoscaling.put_hook(backend, original_resource.name, spec)
        desired = props.get("DesiredCapacity")
        backend.update_auto_scaling_group(
            name=original_resource.name,
            availability_zones=props.get("AvailabilityZones", []),
            desired_capacity=int(desired) if desired not in (None, "") else None,
            max_size=int(props["MaxSize"]) if props.get("MaxSize") not in (None, "") else None,
            min_size=int(props["MinSize"]) if props.get("MinSize") not in (None, "") else None,
            launch_config_name=props.get("LaunchConfigurationName"),
            launch_template=props.get("LaunchTemplate", {}),
            vpc_zone_identifier=(",".join(props.get("VPCZoneIdentifier", [])) or None),
            health_check_period=props.get("HealthCheckGracePeriod"),
            health_check_type=props.get("HealthCheckType"),
            new_instances_protected_from_scale_in=props.get("NewInstancesProtectedFromScaleIn"),
            mixed_instances_policy=props.get("MixedInstancesPolicy") or None,
        )
        return backend.autoscaling_groups[original_resource.name]


def install() -> None:
    S = cfm.Stack
    _ORIG["add_stack_event"] = S._add_stack_event
    S._add_stack_event = _add_stack_event
    S.status = property(_get_status, _set_status)

    G = asm.FakeAutoScalingGroup
    _ORIG["group_create"] = G.__dict__["create_from_cloudformation_json"]
    G.create_from_cloudformation_json = classmethod(_group_create_from_cfn)
    G.update_from_cloudformation_json = classmethod(_group_update_from_cfn)

    # moto builds its CloudFormation type map from CloudFormationModel.__subclasses__() once (lru_cache):
    # our CfnLifecycleHook subclass is defined above; clear the caches so it is found.
    cfp.get_model_list.cache_clear()
    cfp.get_model_map.cache_clear()
    cfp.get_name_type_map.cache_clear()
