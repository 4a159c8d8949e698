"""RunnerFleet's control routes, served beside moto's WSGI app under /_runnerfleet/:

  GET  /_runnerfleet/health                 {"moto": "5.2.1", "pid": 1234, "model_loads": {"ssm/service-2": 1}}
                                            (the harness checks the pid: the port may have gone to
                                            another emulator; model_loads: botocore models read)
  GET  /_runnerfleet/log?since=N            {"events": [...]} (events with seq > N, in order)
  POST /_runnerfleet/log                    append one event {"kind": "...", ...}; answers it with seq/time
  POST /_runnerfleet/spot-interruption      {"instance_id", "notice_seconds"}
  POST /_runnerfleet/rebalance              {"instance_id"}
  POST /_runnerfleet/faults                 arm an injected failure of an API call (faults.py)
"""
from __future__ import annotations

import json
import os
from typing import Any

from werkzeug.wrappers import Request, Response

from . import core, faults, gcpause

PREFIX = "/_runnerfleet/"


class BadRequest(Exception):
    pass


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _body(req: Request) -> dict[str, Any]:
    try:
        data = json.loads(req.get_data() or b"{}")
    except ValueError as e:
        raise BadRequest(f"body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def handle(req: Request) -> Response:
    route = req.path[len(PREFIX):]
    if route == "health" and req.method == "GET":
        import moto

        return _json(200, {"moto": moto.__version__, "pid": os.getpid(), "model_loads": gcpause.loads()})
    if route == "log" and req.method == "GET":
        try:
            since = int(req.args.get("since", "0"))
        except ValueError:
            raise BadRequest("since must be an integer")
        return _json(200, {"events": core.LOG.since(since)})
    if route == "log" and req.method == "POST":
        body = _body(req)
        kind = body.pop("kind", None)
        if not isinstance(kind, str) or not kind:
            raise BadRequest('an event needs a string "kind"')
        return _json(200, core.log_event(kind, **body))
    if route == "spot-interruption" and req.method == "POST":
        from . import ec2

        body = _body(req)
        instance_id = body.get("instance_id")
        notice = body.get("notice_seconds", 120)
        if not isinstance(instance_id, str) or not isinstance(notice, (int, float)) or notice < 0:
            raise BadRequest('want {"instance_id": "i-...", "notice_seconds": N>=0}')
        ec2.spot_interruption(instance_id, float(notice))
        return _json(200, {"instance_id": instance_id, "notice_seconds": notice})
    if route == "rebalance" and req.method == "POST":
        from . import ec2

        body = _body(req)
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str):
            raise BadRequest('want {"instance_id": "i-..."}')
        ec2.rebalance(instance_id)
        return _json(200, {"instance_id": instance_id})
    if route == "faults" and req.method == "POST":
        try:
            return _json(200, faults.add(_body(req)))
        except faults.BadFault as e:
            raise BadRequest(str(e)) from e
    return _json(404, {"error": f"no route {req.method} {req.path}"})


def wrap(moto_app: Any) -> Any:
    """Return a WSGI app serving /_runnerfleet/* here and everything else from moto_app, failing
    the calls armed faults match (faults.py)."""
    moto_faulty = faults.wrap(moto_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith(PREFIX):
            req = Request(environ)
            try:
                resp = handle(req)
            except BadRequest as e:
                resp = _json(400, {"error": str(e)})
            except KeyError as e:
                resp = _json(404, {"error": f"not found: {e}"})
            return resp(environ, start_response)
        return moto_faulty(environ, start_response)

    return app
