"""CloudFormation change sets closer to AWS's:

- CreateChangeSet without ChangeSetType means UPDATE (AWS's default; moto assumed CREATE and made a
  second, empty stack of the same name, so every resource showed as Add).
- A resource whose properties reference (Ref, Fn::GetAtt, Fn::Sub) a resource being added or
  modified is modified too, after it, as AWS re-evaluates it: a group using
  `!GetAtt LaunchTemplate.LatestVersionNumber` moves to the template's new version on an update
  (moto left it on the old one). This applies to UpdateStack and ExecuteChangeSet alike.
- Parameter-only changes show up in change sets (moto's change-set diff ignored parameters).
- A resource that fails during UpdateStack or ExecuteChangeSet no longer fails the call (AWS
  applies updates asynchronously): the stack rolls back to its previous template and parameters,
  UPDATE_IN_PROGRESS → UPDATE_ROLLBACK_IN_PROGRESS → UPDATE_ROLLBACK_COMPLETE (or
  UPDATE_ROLLBACK_FAILED), with the failure as the status reason; an executed change set ends
  EXECUTE_FAILED.
- Each Modify carries Replacement ("True" / "False"), Scope ["Properties"] and Details naming the
  changed properties with RequiresRecreation ("Always" / "Never") from a table of the
  replacement-requiring properties of the resource types our stacks use; a type missing from the
  table says "Conditional".
"""
from __future__ import annotations

from typing import Any

from moto.cloudformation import models as cfm
from moto.cloudformation import parsing as cfp
from moto.cloudformation import responses as cfr

_ORIG: dict[str, Any] = {}

# Properties whose change replaces the resource (AWS's "Update requires: Replacement").
REPLACING: dict[str, set[str]] = {
    "AWS::AutoScaling::AutoScalingGroup": {"AutoScalingGroupName", "InstanceId"},
    "AWS::AutoScaling::LifecycleHook": {"AutoScalingGroupName", "LifecycleHookName"},
    "AWS::EC2::LaunchTemplate": {"LaunchTemplateName"},
    "AWS::EC2::SecurityGroup": {"GroupName", "GroupDescription", "VpcId"},
    "AWS::EC2::SecurityGroupIngress": {"GroupId", "GroupName", "IpProtocol", "FromPort", "ToPort", "CidrIp",
                                       "CidrIpv6", "SourceSecurityGroupId", "SourceSecurityGroupName",
                                       "SourceSecurityGroupOwnerId", "SourcePrefixListId"},
    "AWS::Events::Rule": {"Name", "EventBusName"},
    "AWS::IAM::Role": {"RoleName", "Path"},
    "AWS::IAM::InstanceProfile": {"InstanceProfileName", "Path"},
    "AWS::IAM::Policy": set(),
    "AWS::IAM::ManagedPolicy": {"ManagedPolicyName", "Path"},
    "AWS::KMS::Key": set(),
    "AWS::KMS::Alias": {"AliasName"},
    "AWS::SQS::Queue": {"QueueName", "FifoQueue"},
    "AWS::SQS::QueuePolicy": set(),
    "AWS::SSM::Parameter": {"Name"},
    "AWS::SSM::Document": {"Name", "DocumentType", "Content", "DocumentFormat"},  # Content: unless UpdateMethod NewVersion
    "AWS::DynamoDB::Table": {"TableName", "KeySchema", "LocalSecondaryIndexes"},
    "AWS::ECS::Cluster": {"ClusterName"},
    "AWS::ECS::Service": {"ServiceName", "Cluster", "LaunchType", "Role", "LoadBalancers"},
    "AWS::ECS::TaskDefinition": {"Family", "ContainerDefinitions", "Cpu", "Memory", "NetworkMode",
                                 "ExecutionRoleArn", "TaskRoleArn", "RequiresCompatibilities", "Volumes"},
    "AWS::Logs::LogGroup": {"LogGroupName"},
    "AWS::CloudWatch::Alarm": {"AlarmName"},
    "AWS::CloudWatch::Dashboard": {"DashboardName"},
}


def _references(node: Any) -> set[str]:
    """Names a template node refers to: Ref X, Fn::GetAtt [X, ...] / "X.Attr", ${X} / ${X.Attr} in Fn::Sub."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                out.add(value)
            elif key == "Fn::GetAtt":
                if isinstance(value, list) and value and isinstance(value[0], str):
                    out.add(value[0])
                elif isinstance(value, str):
                    out.add(value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) and value else value
                if isinstance(text, str):
                    import re

                    out.update(m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text))
                if isinstance(value, list) and len(value) > 1:
                    out.update(_references(value[1]))
            else:
                out.update(_references(value))
    elif isinstance(node, list):
        for item in node:
            out.update(_references(item))
    return out


def _changed_parameters(rm: Any, parameters: dict[str, Any] | None) -> set[str]:
    if not parameters:
        return set()
    return {p for p in parameters if rm.input_parameters.get(p) != parameters[p]}


def build_resource_diff(self: Any, other_template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """moto's diff, plus the resources that reference an added or modified one (after it)."""
    diff = _ORIG["build_resource_diff"](self, other_template, parameters)
    old = self._resource_json_map
    new = other_template.get("Resources", {})
    changed = set(diff["Add"]) | set(diff["Modify"])
    grew = True
    while grew:
        grew = False
        for name, body in new.items():
            if name in changed or name not in old:
                continue
            if _references(body.get("Properties", {})) & changed:
                cls = cfp.resource_class_from_type(body.get("Type", ""))
                if cls is None or hasattr(cls.update_from_cloudformation_json, "__isabstractmethod__"):
                    continue  # moto cannot update it in place; leave it as it is
                diff["Modify"].append(name)
                changed.add(name)
                grew = True
    return diff


def _details(rtype: str, old: dict[str, Any], new: dict[str, Any], params: set[str], resources: set[str]) -> tuple[str, list[dict[str, Any]]]:
    old_p = old.get("Properties", {}) or {}
    new_p = new.get("Properties", {}) or {}
    replacing = set(REPLACING.get(rtype, set()))
    if rtype == "AWS::SSM::Document" and new_p.get("UpdateMethod") == "NewVersion":
        replacing.discard("Content")
    details = []
    for prop in sorted(set(old_p) | set(new_p)):
        refs = _references(new_p.get(prop))
        if old_p.get(prop) != new_p.get(prop):
            source, cause = "DirectModification", None
        elif refs & params:
            source, cause = "ParameterReference", sorted(refs & params)[0]
        elif refs & resources:
            source, cause = "ResourceAttribute", sorted(refs & resources)[0]
        else:
            continue
        d = {"Target": {"Attribute": "Properties", "Name": prop,
                        "RequiresRecreation": "Always" if prop in replacing else "Never"},
             "Evaluation": "Static" if source == "DirectModification" else "Dynamic",
             "ChangeSource": source}
        if cause:
            d["CausingEntity"] = cause
        details.append(d)
    if rtype not in REPLACING:
        replacement = "Conditional"
    elif any(d["Target"]["RequiresRecreation"] == "Always" for d in details):
        replacement = "True"
    else:
        replacement = "False"
    return replacement, details


def diff(self: Any) -> list[Any]:
    """ChangeSet.diff: Add / Modify (with Replacement and Details) / Remove, parameters included."""
    rm = self.stack.resource_map
    new_resources = (self.template_dict or {}).get("Resources", {})
    by_action = rm.build_resource_diff(self.template_dict, self.parameters)
    params = _changed_parameters(rm, self.parameters)
    changed = set(by_action["Add"]) | set(by_action["Modify"])
    changes = []
    for name in by_action["Add"]:
        c = cfm.Change("Add", name, new_resources[name]["Type"])
        changes.append(c)
    for name in by_action["Modify"]:
        rtype = new_resources[name]["Type"]
        c = cfm.Change("Modify", name, rtype)
        c.replacement, c.details = _details(rtype, rm._resource_json_map.get(name, {}), new_resources[name], params,
                                            changed - {name})
        c.scope = ["Properties"]
        parsed = rm._parsed_resources.get(name)
        c.physical_resource_id = getattr(parsed, "physical_resource_id", None) if parsed is not None else None
        changes.append(c)
    for name in by_action["Remove"]:
        c = cfm.Change("Remove", name, rm._resource_json_map[name]["Type"])
        parsed = rm._parsed_resources.get(name)
        c.physical_resource_id = getattr(parsed, "physical_resource_id", None) if parsed is not None else None
        changes.append(c)
    return changes


def _rollback(stack: Any, old_template: Any, old_params: dict[str, Any], error: Exception) -> None:
    from . import core

    reason = f"{type(error).__name__}: {getattr(error, 'message', None) or error}"
    core.warn(f"stack {stack.name}: update failed ({reason}); rolling back")
    stack.status_reason = reason
    stack.stack_status_reason = reason
    stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
    try:
        stack.template = old_template
        stack._parse_template()
        stack.resource_map.update(stack.template_dict, old_params)
        stack.output_map = stack._create_output_map()
    except Exception as e:  # noqa: BLE001
        stack._add_stack_event("UPDATE_ROLLBACK_FAILED", resource_status_reason=str(e))
        return
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")


def stack_update(self: Any, template: str, role_arn: str | None = None, parameters: dict[str, Any] | None = None,
                 tags: dict[str, str] | None = None) -> None:
    """Stack.update as moto does it, rolled back when a resource fails."""
    old_template = self.template
    old_params = dict(self.resource_map.input_parameters or {})
    self._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
    self.template = template
    self._parse_template()
    try:
        self.resource_map.update(self.template_dict, parameters)
    except Exception as e:  # noqa: BLE001 - any resource failure rolls the stack back
        _rollback(self, old_template, old_params, e)
        return
    self.output_map = self._create_output_map()
    self._add_stack_event("UPDATE_COMPLETE")
    self.status = "UPDATE_COMPLETE"
    self.role_arn = role_arn
    if parameters:
        self.parameters = parameters
    if tags is not None:
        self.tags = tags


def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
    """ExecuteChangeSet as moto does it, except that a failed UPDATE rolls the stack back (the
    change set ends EXECUTE_FAILED) and a change set is looked up within the named stack."""
    from moto.cloudformation.exceptions import ValidationError

    change_set = self.change_sets.get(change_set_name)
    if change_set is None:
        candidates = [cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name]
        if stack_name:
            candidates = [cs for cs in candidates if stack_name in (cs.stack_name, cs.stack_id)] or candidates
        change_set = candidates[-1] if candidates else None
    if change_set is None:
        raise ValidationError(stack_name)
    stack = self.stacks[change_set.stack_id]
    if change_set.change_set_type == "CREATE":
        stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
        change_set.apply()
        stack._add_stack_event("CREATE_COMPLETE")
    else:
        old_template = stack.template
        old_params = dict(stack.resource_map.input_parameters or {})
        stack._add_stack_event("UPDATE_IN_PROGRESS")
        try:
            change_set.apply()
        except Exception as e:  # noqa: BLE001 - any resource failure rolls the stack back
            _rollback(stack, old_template, old_params, e)
            change_set.execution_status = "EXECUTE_FAILED"
            change_set.status_reason = str(e)
            return
        stack._add_stack_event("UPDATE_COMPLETE")
    change_set.execution_status = "EXECUTE_COMPLETE"
    stack.status = f"{change_set.change_set_type}_COMPLETE"
    stack.template = change_set.template


def create_change_set(self: Any) -> Any:
    """CreateChangeSet with AWS's default ChangeSetType (UPDATE)."""
    orig_get_param = self._get_param

    def get_param(name: str, default: Any = None) -> Any:
        if name == "ChangeSetType":
            return orig_get_param(name) or "UPDATE"
        return orig_get_param(name, default)

    self._get_param = get_param
    try:
        return _ORIG["create_change_set"](self)
    finally:
        del self._get_param


def install() -> None:
    _ORIG["build_resource_diff"] = cfp.ResourceMap.build_resource_diff
    cfp.ResourceMap.build_resource_diff = build_resource_diff
    cfm.ChangeSet.diff = diff
    cfm.CloudFormationBackend.execute_change_set = execute_change_set
    cfm.Stack.update = stack_update
    _ORIG["create_change_set"] = cfr.CloudFormationResponse.create_change_set
    cfr.CloudFormationResponse.create_change_set = create_change_set
