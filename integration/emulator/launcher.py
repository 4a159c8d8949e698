#!/usr/bin/env python3
"""RunnerFleet's AWS emulator: moto server 5.2.1 plus the behaviour our drains depend on.

Usage: launcher.py --port P [--host 127.0.0.1] [--runnersim URL] [--tick-period DURATION]

It imports moto, refuses any version but 5.2.1 (the patches in rfemu/ reach into its internals),
installs the patches into moto's own models and responses, and serves moto's WSGI app on loopback,
with RunnerFleet's control routes under /_runnerfleet/ (see README.md).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import sys

MOTO_VERSION = "5.2.1"
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_duration(text: str) -> float:
    """Parse a Go-style duration ("500ms", "2s", "1m30s", "0") into seconds."""
    text = text.strip()
    if text in ("", "0"):
        return 0.0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"bad duration {text!r}")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", "-p", type=int, default=4566)
    parser.add_argument("--runnersim", default="", help="runner simulator base URL (loopback)")
    parser.add_argument("--tick-period", default="0",
                        help="fire every rate(...) scheduled rule this often (Go duration, e.g. 2s); 0 = at its rate")
    parser.add_argument("--access-log", action="store_true",
                        help="print a line per request (werkzeug's access log; off: only warnings and errors)")
    parser.add_argument("--without", action="append", default=[],
                        help="leave out one rfemu module (benchmarks measure moto's own behaviour)")
    args = parser.parse_args(argv)

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"launcher: refusing to listen on {args.host!r}: loopback only", file=sys.stderr)
        return 2

    try:
        import moto
    except ImportError as e:
        print(f"launcher: cannot import moto ({e}); install it: pip install 'moto[server]=={MOTO_VERSION}'",
              file=sys.stderr)
        return 3
    if moto.__version__ != MOTO_VERSION:
        print(f"launcher: moto {moto.__version__} found at {os.path.dirname(moto.__file__)}, but the "
              f"RunnerFleet patches are written for moto {MOTO_VERSION} exactly; install it: "
              f"pip install 'moto[server]=={MOTO_VERSION}'", file=sys.stderr)
        return 3

    sys.path.insert(0, HERE)
    from rfemu import core

    try:
        core.settings.tick_period = parse_duration(args.tick_period)
    except ValueError as e:
        print(f"launcher: --tick-period: {e}", file=sys.stderr)
        return 2
    core.settings.runnersim = args.runnersim
    core.settings.port = args.port
    if args.runnersim:
        try:
            core.check_loopback_url(args.runnersim)
        except core.RunnerSimError as e:
            print(f"launcher: --runnersim: {e}", file=sys.stderr)
            return 2

    core.install_service_names()
    installed = []
    for name in ("hotpaths", "gcpause", "dynamodb", "autoscaling", "refresh", "ec2", "events", "parameters", "cfnextra", "cloudformation", "changesets", "sqs", "ssm"):
        if name in args.without:
            continue
        try:
            mod = importlib.import_module(f"rfemu.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"rfemu.{name}":
                continue  # not written yet (rfemu.ssm lands separately)
            raise
        mod.install()
        installed.append(name)

    from moto.moto_server.werkzeug_app import create_backend_app
    from werkzeug.serving import run_simple

    from rfemu import control, dispatch, timing

    if not args.access_log:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    moto_app = dispatch.Dispatcher(create_backend_app)
    if "gcpause" in installed:
        from rfemu import gcpause

        gcpause.freeze()  # everything loaded so far; service models are frozen as they load
    app = timing.wrap(timing.profiled(control.wrap(moto_app)))

    def stop(signum, frame):  # noqa: ARG001
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"launcher: moto {moto.__version__} with rfemu [{', '.join(installed)}] on "
          f"http://{args.host}:{args.port} (runnersim={args.runnersim or 'none'}, "
          f"tick-period={core.settings.tick_period}s)", file=sys.stderr, flush=True)
    # werkzeug listens with a backlog of 128: past that many connections arriving at once (a
    # test's burst of a few hundred concurrent calls), the kernel resets the rest and the SDK
    # retries them, which duplicates non-idempotent calls such as SendCommand. The kernel caps
    # the backlog at net.core.somaxconn (4096 here).
    from werkzeug.serving import BaseWSGIServer

    BaseWSGIServer.request_queue_size = 1024
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
