"""SSM Parameter Store emits `Parameter Store Change` events (source aws.ssm) on PutParameter
(operation Create / Update) and DeleteParameter(s) (operation Delete), as AWS does."""
from __future__ import annotations

from typing import Any

from moto.ssm import models as ssmm

from . import core

_ORIG: dict[str, Any] = {}


def _arn(backend: Any, name: str) -> str:
    return f"arn:aws:ssm:{backend.region_name}:{backend.account_id}:parameter/{name.lstrip('/')}"


def _emit(backend: Any, operation: str, name: str, ptype: str | None, description: str | None) -> None:
    detail = {"operation": operation, "name": name, "type": ptype or "String"}
    if description:
        detail["description"] = description
    core.emit_event("aws.ssm", "Parameter Store Change", detail, [_arn(backend, name)],
                    region=backend.region_name, account_id=backend.account_id)
    core.log_event("parameter.change", name=name, operation=operation)


def put_parameter(self: Any, *args: Any, **kwargs: Any) -> Any:
    param = _ORIG["put"](self, *args, **kwargs)
    if param is not None:
        _emit(self, "Create" if param.version == 1 else "Update", param.name, param.parameter_type,
              param.description)
    return param


def _last(self: Any, name: str) -> Any:
    try:
        versions = self._parameters[self._parameters.normalize_name(name)]
        return versions[-1] if versions else None
    except Exception:
        return None


def delete_parameter(self: Any, name: str) -> None:
    last = _last(self, name)
    _ORIG["delete"](self, name)
    _emit(self, "Delete", name, getattr(last, "parameter_type", None), getattr(last, "description", None))


def delete_parameters(self: Any, names: list[str]) -> list[str]:
    lasts = {n: _last(self, n) for n in names}
    deleted = _ORIG["delete_many"](self, names)
    for name in deleted:
        last = lasts.get(name)
        _emit(self, "Delete", name, getattr(last, "parameter_type", None), getattr(last, "description", None))
    return deleted


def install() -> None:
    B = ssmm.SimpleSystemManagerBackend
    _ORIG["put"] = B.put_parameter
    _ORIG["delete"] = B.delete_parameter
    _ORIG["delete_many"] = B.delete_parameters
    B.put_parameter = put_parameter
    B.delete_parameter = delete_parameter
    B.delete_parameters = delete_parameters
