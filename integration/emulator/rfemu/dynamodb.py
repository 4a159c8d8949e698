"""Atomic conditional writes, as DynamoDB makes them.

DynamoDB evaluates a write's condition and applies the write as one step: of several
PutItems conditioned on attribute_not_exists(pk), exactly one succeeds. moto 5.2.1 checks the
condition and then stores the item with nothing between them, and werkzeug serves each request
on its own thread, so two concurrent writes can both pass the check: CI caught two claims of
the same drain both winning (infra/aws/state TestTableConditionalWrites, "2 claims won, want
exactly 1"), and a drain claimed twice stops its runner twice.

Every write path of the backend (PutItem, UpdateItem, DeleteItem, TransactWriteItems, the
BatchWriteItem that calls the first and third, PartiQL statements) runs under one lock. Reads
do not take it. Writes are a millisecond or two; one lock for all tables costs nothing the
tests can measure and keeps the code obvious.
"""
from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb import models as ddbm

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "execute_statement",
          "execute_transaction", "batch_execute_statement")

_LOCK = threading.RLock()  # re-entrant: execute_transaction runs execute_statement
_ORIG: dict[str, Any] = {}


def _atomic(name: str) -> Any:
    orig = getattr(ddbm.DynamoDBBackend, name)
    _ORIG[name] = orig

    @functools.wraps(orig)
    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return orig(self, *args, **kwargs)

    return write


def install() -> None:
    for name in WRITES:
        setattr(ddbm.DynamoDBBackend, name, _atomic(name))
