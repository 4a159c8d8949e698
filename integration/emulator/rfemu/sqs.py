"""A fix for moto's FIFO long poll.

moto's receive_message waits with `queue.wait_for_messages(1)`, which returns at once whenever the
queue holds any visible message, even one it may not deliver because its message group is in flight:
a long poll on a FIFO queue whose only group is in flight spins a core for the whole wait. It also
snapshots the in-flight groups once, so a group freed by DeleteMessage during the wait stays blocked.

Our receive_message is moto's loop with two changes: the in-flight groups are recomputed on every
pass, and when nothing is deliverable it sleeps on the queue's condition (woken by new messages) for
at most POLL_INTERVAL before looking again (visibility expiry and deletes do not notify).
"""
from __future__ import annotations

from copy import deepcopy
from typing import Any

from moto.core.utils import unix_time
from moto.sqs import models as sqsm

POLL_INTERVAL = 0.1  # seconds between looks while nothing is deliverable; 10 cheap passes a second

_ORIG: dict[str, Any] = {}


def _blocked_groups(queue: Any) -> set[str]:
    """Groups with a message in flight (received, not yet visible again)."""
    return {m.group_id for m in queue.pending_messages if m.group_id is not None and not m.visible}


def receive_message(self: Any, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
                    message_attribute_names: list[str] | None = None) -> list[Any]:
    if message_attribute_names is None:
        message_attribute_names = []
    queue = self.get_queue(queue_name)
    result: list[Any] = []
    polling_end = unix_time() + wait_seconds_timeout

    while True:
        messages_to_dlq: list[Any] = []
        # Released groups: pending messages whose visibility timed out are no longer in flight.
        for message in list(queue.pending_messages):
            if message.visible:
                queue.pending_messages.remove(message)
        blocked = _blocked_groups(queue) if queue.fifo_queue else set()

        for message in queue.messages:
            if not message.visible:
                continue
            if queue.fifo_queue and message.group_id:
                if message.group_id in blocked:
                    continue
            if (queue.dead_letter_queue is not None and queue.redrive_policy
                    and message.approximate_receive_count >= queue.redrive_policy["maxReceiveCount"]):
                messages_to_dlq.append(message)
                continue
            queue.pending_messages.add(message)
            message.mark_received(visibility_timeout=visibility_timeout)
            message_copy = deepcopy(message)
            sqsm._filter_message_attributes(message_copy, message_attribute_names)
            if not self.is_message_valid_based_on_retention_period(queue_name, message):
                break
            result.append(message_copy)
            if len(result) >= count:
                break

        for message in messages_to_dlq:
            queue._messages.remove(message)
            queue.dead_letter_queue.add_message(message)  # type: ignore[union-attr]

        if result or wait_seconds_timeout == 0:
            return result
        remaining = polling_end - unix_time()
        if remaining <= 0:
            return result
        with queue._messages_lock:
            queue._messages_lock.wait(timeout=min(POLL_INTERVAL, remaining))


def install() -> None:
    _ORIG["receive_message"] = sqsm.SQSBackend.receive_message
    sqsm.SQSBackend.receive_message = receive_message
