"""SSM Run Command as our drains depend on it, run against the runner simulator.

moto 5.2.1 makes every SendCommand an instant Success on any instance, answers 500 to
ListCommandInvocations and has no DescribeInstanceInformation. Here:

- Managed instances are the instances the runner simulator runs (GET {runnersim}/instances, every
  instance not terminated). DescribeInstanceInformation lists them (Online); SendCommand to any
  other instance fails with InvalidInstanceId, as AWS's does for an instance that is not managed.
- Documents named ``runnerfleet-*-stop-intake``, ``runnerfleet-*-status``,
  ``runnerfleet-*-unregister`` (and exactly ``runnerfleet-stop-intake`` etc.) run as
  ``POST {runnersim}/instances/{id}/actions/{action}``; the action's exit code, stdout and stderr
  become the invocation's ResponseCode, StandardOutputContent and StandardErrorContent (non-zero:
  Failed). They are accepted even when no such document was created in the emulator (the shell
  they hold cannot run here anyway), and DescribeDocument describes them then (and AWS-* ones, as
  AWS's), so that the worker's start-up check of its drain documents holds wherever SendCommand
  would. A document created by CloudFormation is described too (moto failed to hash its Content,
  a mapping there, with a 500). Any other document fails: one that does not exist with
  InvalidDocument at SendCommand and DescribeDocument, one that exists (or an AWS-* one) as a
  Failed invocation.
- Commands run asynchronously: Pending → InProgress → Success / Failed / TimedOut. The
  ``executionTimeout`` parameter (seconds, default 3600) bounds the action; a simulator that does
  not answer within it gives TimedOut. GetCommandInvocation answers InvocationDoesNotExist for
  INVOCATION_DELAY after SendCommand, as AWS does while the command is being delivered.
- An instance that disappears before its command runs gives a Failed invocation with
  StatusDetails "Undeliverable".
- Every invocation transition is logged as ``ssm.command`` {command_id, instance_id, document,
  status}.

moto internals touched (moto 5.2.1, moto/ssm/models.py and responses.py):
- SimpleSystemManagerBackend.send_command (wrapped: validation before, our run state after);
- SimpleSystemManagerBackend.describe_document (wrapped: a drain or AWS-* document not created is
  described instead of refused; a created one is moto's own answer); Document.hash (replaced:
  hashes a mapping Content as sorted JSON);
- Command._get_instance_ids_from_targets (replaced: moto's sends a command without Targets to
  every EC2 instance);
- Command.status / status_details / completed_count / error_count / target_count (set by us);
  Command.invocations (replaced by our runs; Command.get_invocation patched to read them);
- SimpleSystemManagerResponse gains list_command_invocations and describe_instance_information
  (moto dispatches an action to the response method of its snake_case name and serializes the
  returned ActionResult against the botocore output shape).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from moto.core.responses import ActionResult
from moto.ssm import models as ssmm
from moto.ssm import responses as ssmr
from moto.ssm.exceptions import InvalidDocument, SSMException, ValidationException

from . import core

# How long a new invocation stays invisible to GetCommandInvocation (AWS: while it is delivered).
INVOCATION_DELAY = 0.5
# AWS-RunShellScript's default executionTimeout.
DEFAULT_EXECUTION_TIMEOUT = 3600
# AWS keeps the first 24,000 characters of output in the invocation.
MAX_OUTPUT = 24000
# Max results of DescribeInstanceInformation / ListCommandInvocations pages (AWS's maximum is 50).
PAGE = 50

_DOC = re.compile(r"^runnerfleet-(?:.*-)?(stop-intake|status|unregister)$")

_ORIG: dict[str, Any] = {}
# command id -> _Run; guarded by _LOCK.
_RUNS: dict[str, "_Run"] = {}
_LOCK = threading.RLock()
# Invocations run on a pool of threads. A thread started per invocation made SendCommand wait for
# the new thread to start, several GIL switch intervals on a loaded emulator (about 6 ms per
# SendCommand under the drain benchmark's profile). Each invocation sleeps INVOCATION_DELAY and
# then makes one short call to the simulator, so a few dozen threads keep up with hundreds of
# commands a second.
_INVOCATIONS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="rfemu-ssm")


class InvalidInstanceId(SSMException):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidInstanceId", message)


class InvocationDoesNotExist(SSMException):
    def __init__(self) -> None:
        super().__init__("InvocationDoesNotExist", "")


class InvalidNextToken(SSMException):
    def __init__(self) -> None:
        super().__init__("InvalidNextToken", "The specified token is not valid.")


def action_of(document: str | None) -> str | None:
    """The simulator action a document maps to, or None."""
    m = _DOC.match(document or "")
    return m.group(1) if m else None


def _aws_time(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Invocation:
    """One (command, instance) pair."""

    def __init__(self, run: "_Run", instance_id: str, private_ip: str) -> None:
        self.run = run
        self.instance_id = instance_id
        self.private_ip = private_ip
        self.status = "Pending"
        self.status_details = "Pending"
        self.response_code = -1
        self.stdout = ""
        self.stderr = ""
        self.start: datetime | None = None
        self.end: datetime | None = None

    def finished(self) -> bool:
        return self.status in ("Success", "Failed", "TimedOut", "Cancelled")

    def plugin(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "Name": "aws:runShellScript",
            "Status": self.status,
            "StatusDetails": self.status_details,
            "ResponseCode": self.response_code,
            "Output": (self.stdout + self.stderr)[:2500],
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "OutputS3Region": "",
            "OutputS3BucketName": "",
            "OutputS3KeyPrefix": "",
        }
        if self.start:
            p["ResponseStartDateTime"] = self.start
        if self.end:
            p["ResponseFinishDateTime"] = self.end
        return p

    def get_response(self) -> dict[str, Any]:
        """GetCommandInvocation's answer."""
        cmd = self.run.command
        out: dict[str, Any] = {
            "CommandId": cmd.command_id,
            "InstanceId": self.instance_id,
            "Comment": cmd.comment,
            "DocumentName": cmd.document_name,
            "DocumentVersion": "$DEFAULT",
            "PluginName": "aws:runShellScript",
            "ResponseCode": self.response_code,
            "ExecutionStartDateTime": _aws_time(self.start) if self.start else "",
            "ExecutionElapsedTime": _iso_duration(((self.end or _utcnow()) - self.start).total_seconds())
            if self.start else "",
            "ExecutionEndDateTime": _aws_time(self.end) if self.end else "",
            "Status": self.status,
            "StatusDetails": self.status_details,
            "StandardOutputContent": self.stdout[:MAX_OUTPUT],
            "StandardOutputUrl": "",
            "StandardErrorContent": self.stderr[:MAX_OUTPUT],
            "StandardErrorUrl": "",
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }
        return out

    def list_response(self, details: bool) -> dict[str, Any]:
        """One entry of ListCommandInvocations."""
        cmd = self.run.command
        out: dict[str, Any] = {
            "CommandId": cmd.command_id,
            "InstanceId": self.instance_id,
            "InstanceName": "",
            "Comment": cmd.comment,
            "DocumentName": cmd.document_name,
            "DocumentVersion": "$DEFAULT",
            "RequestedDateTime": cmd.requested_date_time,
            "Status": self.status,
            "StatusDetails": self.status_details,
            "TraceOutput": "",
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "CommandPlugins": [self.plugin()] if details else [],
            "ServiceRole": cmd.service_role_arn or "",
            "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": "Command"},
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }
        return out


class _Run:
    """Our state of one command."""

    def __init__(self, command: Any, action: str | None, execution_timeout: float,
                 instances: dict[str, str]) -> None:
        self.command = command
        self.action = action
        self.execution_timeout = execution_timeout
        self.visible_at = time.monotonic() + INVOCATION_DELAY
        self.invocations = {iid: _Invocation(self, iid, ip) for iid, ip in instances.items()}

    def visible(self) -> bool:
        return time.monotonic() >= self.visible_at

    def _log(self, inv: _Invocation) -> None:
        core.log_event("ssm.command", command_id=self.command.command_id, instance_id=inv.instance_id,
                       document=self.command.document_name, status=inv.status)

    def update_command(self) -> None:
        """Derive the command's status and counts from its invocations (with _LOCK held)."""
        invs = list(self.invocations.values())
        cmd = self.command
        cmd.target_count = len(invs)
        cmd.completed_count = sum(1 for i in invs if i.finished())
        cmd.error_count = sum(1 for i in invs if i.status in ("Failed", "TimedOut"))
        if not invs:
            cmd.status, cmd.status_details = "Success", "Success"
        elif all(i.status == "Pending" for i in invs):
            cmd.status, cmd.status_details = "Pending", "Pending"
        elif not all(i.finished() for i in invs):
            cmd.status, cmd.status_details = "InProgress", "InProgress"
        elif any(i.status == "TimedOut" for i in invs):
            cmd.status, cmd.status_details = "TimedOut", "TimedOut"
        elif any(i.status == "Failed" for i in invs):
            cmd.status, cmd.status_details = "Failed", "Failed"
        else:
            cmd.status, cmd.status_details = "Success", "Success"

    def set(self, inv: _Invocation, status: str, details: str | None = None, **fields: Any) -> None:
        with _LOCK:
            inv.status = status
            inv.status_details = details or status
            for k, v in fields.items():
                setattr(inv, k, v)
            self.update_command()
        self._log(inv)

    def execute(self) -> None:
        """The command's life, off the request's thread: one invocation per instance, side by side."""
        for inv in self.invocations.values():
            _INVOCATIONS.submit(self._execute_logged, inv)

    def _execute_logged(self, inv: _Invocation) -> None:
        # A pool's thread keeps an exception in a future nobody reads: say it, as a thread would.
        try:
            self._execute_one(inv)
        except Exception:
            core.warn(f"command {self.command.command_id} on {inv.instance_id}: {traceback.format_exc()}")

    def _execute_one(self, inv: _Invocation) -> None:
        time.sleep(INVOCATION_DELAY)
        if self.action is None:
            now = _utcnow()
            self.set(inv, "Failed", "Failed", response_code=1, start=now, end=now,
                     stderr=f"the local world runs only RunnerFleet's drain documents "
                            f"(runnerfleet-*-stop-intake|status|unregister), not {self.command.document_name!r}\n")
            return
        start = _utcnow()
        self.set(inv, "InProgress", "InProgress", start=start)
        began = time.monotonic()
        try:
            reply = core.runnersim_call("POST", f"/instances/{inv.instance_id}/actions/{self.action}",
                                        {"command_id": self.command.command_id},
                                        timeout=self.execution_timeout)
        except core.RunnerSimError as e:
            end = _utcnow()
            if time.monotonic() - began >= self.execution_timeout * 0.99:
                self.set(inv, "TimedOut", "ExecutionTimedOut", response_code=-1, end=end,
                         stderr=f"execution timed out after {self.execution_timeout:g}s\n")
            elif "HTTP 404" in str(e):
                self.set(inv, "Failed", "Undeliverable", response_code=-1, end=end,
                         stderr="the instance is not managed any more (terminated)\n")
            else:
                self.set(inv, "Failed", "Failed", response_code=-1, end=end,
                         stderr=f"runner simulator: {e}\n")
            return
        end = _utcnow()
        if not isinstance(reply, dict):
            self.set(inv, "Failed", "Failed", response_code=-1, end=end,
                     stderr="no runner simulator is configured\n")
            return
        code = int(reply.get("exit_code", 1))
        self.set(inv, "Success" if code == 0 else "Failed", "Success" if code == 0 else "Failed",
                 response_code=code, end=end,
                 stdout=str(reply.get("stdout", "")), stderr=str(reply.get("stderr", "")))


def managed_instances() -> dict[str, str]:
    """Instance id -> private IP of every instance the runner simulator runs (not terminated)."""
    try:
        state = core.runnersim_call("GET", "/instances")
    except core.RunnerSimError as e:
        core.warn(f"asking the runner simulator for its instances: {e}")
        return {}
    if not isinstance(state, dict):
        return {}
    out = {}
    for inst in state.get("instances") or []:
        if inst.get("process") != "terminated" and inst.get("instance_id"):
            out[inst["instance_id"]] = inst.get("private_ip", "")
    return out


def _execution_timeout(parameters: dict[str, Any] | None) -> float:
    raw = (parameters or {}).get("executionTimeout")
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    if raw in (None, ""):
        return float(DEFAULT_EXECUTION_TIMEOUT)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValidationException(f"executionTimeout {raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValidationException(f"executionTimeout must be positive, got {raw!r}")
    return value


def send_command(self: Any, **kwargs: Any) -> Any:
    """SimpleSystemManagerBackend.send_command: validate as AWS does, then run asynchronously."""
    document = kwargs.get("document_name") or ""
    action = action_of(document)
    if action is None and not document.startswith("AWS-") and not self._documents.get(document):
        raise InvalidDocument(f"Document with name {document} does not exist.")
    timeout = _execution_timeout(kwargs.get("parameters"))
    managed = managed_instances()
    explicit = list(kwargs.get("instance_ids") or [])
    unmanaged = [i for i in explicit if i not in managed]
    if unmanaged:
        raise InvalidInstanceId(f"Instances {unmanaged} not in a valid state for account {self.account_id}")
    kwargs["instance_ids"] = explicit
    command = _ORIG["send_command"](self, **kwargs)
    # AWS only targets managed instances.
    targeted = {i: managed[i] for i in command.instance_ids if i in managed}
    run = _Run(command, action, timeout, targeted)
    with _LOCK:
        command.instance_ids = list(targeted)
        command.invocations = []
        _RUNS[command.command_id] = run
        run.update_command()
    for inv in run.invocations.values():
        run._log(inv)
    run.execute()
    return command


def describe_document(self: Any, name: str, document_version: str, version_name: str) -> dict[str, Any]:
    try:
        return _ORIG["describe_document"](self, name, document_version, version_name)
    except InvalidDocument:
        if not action_of(name) and not name.startswith("AWS-"):
            raise
    # A document SendCommand accepts without its having been created (see the module doc): a
    # drain document, or one of AWS's own (AWS-RunShellScript), which every account has.
    return {
        "Name": name, "Owner": "Amazon" if name.startswith("AWS-") else self.account_id, "Status": "Active",
        "DocumentType": "Command", "DocumentFormat": "YAML", "SchemaVersion": "2.2", "DocumentVersion": "1",
        "LatestVersion": "1", "DefaultVersion": "1", "PlatformTypes": ["Linux"], "CreatedDate": _utcnow(),
        "Description": "a document the local world runs without its content",
    }


def document_hash(self: Any) -> str:
    """Document.hash: moto hashes Content as a string, but a document created by CloudFormation
    holds it as the template's mapping (Content: {schemaVersion: ...}), and DescribeDocument
    failed with a 500 on it."""
    content = self.content if isinstance(self.content, str) else json.dumps(self.content, sort_keys=True)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def get_invocation(self: Any, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
    """Command.get_invocation: our run's invocation, invisible for a moment after SendCommand."""
    with _LOCK:
        run = _RUNS.get(self.command_id)
        if run is None:
            return _ORIG["get_invocation"](self, instance_id, plugin_name)
        inv = run.invocations.get(instance_id)
        if inv is None or not run.visible():
            raise InvocationDoesNotExist()
        if plugin_name not in (None, "", "aws:runShellScript", "runShellScript"):
            raise InvocationDoesNotExist()
        return inv.get_response()


def _page(items: list[Any], next_token: str | None, max_results: int | None) -> tuple[list[Any], str | None]:
    start = 0
    if next_token:
        try:
            start = int(next_token)
        except ValueError:
            raise InvalidNextToken() from None
        if start < 0 or start > len(items):
            raise InvalidNextToken()
    size = max(1, min(int(max_results or PAGE), PAGE))
    page = items[start:start + size]
    nxt = str(start + size) if start + size < len(items) else None
    return page, nxt


def resp_list_command_invocations(self: Any) -> ActionResult:
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    details = bool(self._get_param("Details", False))
    filters = self._get_param("Filters", []) or []
    backend = self.ssm_backend
    if command_id:
        commands = [backend.get_command_by_id(command_id)]
    else:
        commands = list(backend._commands)
    entries = []
    with _LOCK:
        for cmd in sorted(commands, key=lambda c: c.requested_date_time, reverse=True):
            run = _RUNS.get(cmd.command_id)
            if run is None or not run.visible():
                continue
            for inv in run.invocations.values():
                if instance_id and inv.instance_id != instance_id:
                    continue
                if not _match_invocation_filters(inv, filters):
                    continue
                entries.append(inv.list_response(details))
    page, nxt = _page(entries, self._get_param("NextToken"), self._get_param("MaxResults"))
    result: dict[str, Any] = {"CommandInvocations": page}
    if nxt:
        result["NextToken"] = nxt
    return ActionResult(result)


def _match_invocation_filters(inv: _Invocation, filters: list[dict[str, Any]]) -> bool:
    for f in filters:
        key, value = f.get("key") or f.get("Key"), f.get("value") or f.get("Value")
        if key == "Status" and inv.status != value:
            return False
        if key == "DocumentName" and inv.run.command.document_name != value:
            return False
    return True


def resp_describe_instance_information(self: Any) -> ActionResult:
    wanted: set[str] | None = None
    ping: set[str] | None = None
    for f in (self._get_param("Filters", []) or []):
        if f.get("Key") in ("InstanceIds", "InstanceId"):
            wanted = set(f.get("Values") or [])
        elif f.get("Key") == "PingStatus":
            ping = set(f.get("Values") or [])
    for f in (self._get_param("InstanceInformationFilterList", []) or []):
        if f.get("key") == "InstanceIds":
            wanted = set(f.get("valueSet") or [])
        elif f.get("key") == "PingStatus":
            ping = set(f.get("valueSet") or [])
    now = _utcnow()
    items = []
    for iid, ip in sorted(managed_instances().items()):
        if wanted is not None and iid not in wanted:
            continue
        if ping is not None and "Online" not in ping:
            continue
        items.append({
            "InstanceId": iid,
            "PingStatus": "Online",
            "LastPingDateTime": now,
            "AgentVersion": "3.3.0.0",
            "IsLatestVersion": True,
            "PlatformType": "Linux",
            "PlatformName": "Amazon Linux",
            "PlatformVersion": "2023",
            "ResourceType": "EC2Instance",
            "IPAddress": ip,
            "ComputerName": f"ip-{ip.replace('.', '-')}.ec2.internal" if ip else iid,
        })
    page, nxt = _page(items, self._get_param("NextToken"), self._get_param("MaxResults"))
    result: dict[str, Any] = {"InstanceInformationList": page}
    if nxt:
        result["NextToken"] = nxt
    return ActionResult(result)


def instance_ids_from_targets(self: Any) -> list[str]:
    """Command._get_instance_ids_from_targets: moto turns no Targets into an empty EC2 filter,
    which matches every instance, so a command sent to one instance ran on all of them. Here no
    Targets means no targeted instance; the "InstanceIds" key lists instances as AWS defines it;
    other keys (tag:Name, ...) filter EC2 instances as before."""
    ids: list[str] = []
    filters: dict[str, Any] = {}
    for target in self.targets or []:
        if target.get("Key") == "InstanceIds":
            ids.extend(target.get("Values") or [])
        else:
            filters[target["Key"]] = target.get("Values") or []
    if filters:
        from moto.ec2 import ec2_backends

        backend = ec2_backends[self.account_id][self.backend_region]
        for reservation in backend.all_reservations(filters=filters):
            ids.extend(instance.id for instance in reservation.instances)
    return ids


def install() -> None:
    B = ssmm.SimpleSystemManagerBackend
    C = ssmm.Command
    R = ssmr.SimpleSystemManagerResponse
    _ORIG["send_command"] = B.send_command
    _ORIG["get_invocation"] = C.get_invocation
    _ORIG["describe_document"] = B.describe_document
    B.describe_document = describe_document
    ssmm.Document.hash = property(document_hash)
    B.send_command = send_command
    C.get_invocation = get_invocation
    C._get_instance_ids_from_targets = instance_ids_from_targets
    R.list_command_invocations = resp_list_command_invocations
    R.describe_instance_information = resp_describe_instance_information
