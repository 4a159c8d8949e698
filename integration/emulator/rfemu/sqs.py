"""A fix for moto's FIFO long poll.

moto's receive_message waits with `queue.wait_for_messages(1)`, which returns at once whenever the
queue holds any visible message, even one it may not deliver because its message group is in flight:
a long poll on a FIFO queue whose only group is in flight spins a core for the whole wait. It also
snapshots the in-flight groups once, so a group freed by DeleteMessage during the wait stays blocked.

Our receive_message is moto's loop with these changes: the in-flight groups are recomputed on every
pass, and when nothing is deliverable it sleeps on the queue's condition (woken by new messages) for
at most POLL_INTERVAL before looking again (visibility expiry and deletes do not notify); the look
and the wait happen under that condition's lock, so a message sent in between is never missed.

It is also linear in the queue once per pass, where moto's was quadratic: moto checked each
received message's retention with get_queue_attributes, which counts the queue's visible, in-flight
and delayed messages (three passes, each reading the clock per message), and read the clock twice
per message through Message.visible/.delayed. With a few hundred delayed drain follow-ups in the
lifecycle queue a receive of 10 messages took ~100 ms under load (600 ms measured in-process with
400 delayed messages) and the drain benchmark's events waited behind it; here one clock reading
per pass, and expired messages are skipped (moto stopped the pass at the first one, after marking
it received).
"""
from __future__ import annotations

from copy import deepcopy
from typing import Any

from moto.core.utils import unix_time, unix_time_millis
from moto.sqs import models as sqsm

POLL_INTERVAL = 0.1  # seconds between looks while nothing is deliverable; 10 cheap passes a second

_ORIG: dict[str, Any] = {}


def receive_message(self: Any, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
                    message_attribute_names: list[str] | None = None) -> list[Any]:
    if message_attribute_names is None:
        message_attribute_names = []
    queue = self.get_queue(queue_name)
    result: list[Any] = []
    polling_end = unix_time() + wait_seconds_timeout
    retention_ms = int(queue.message_retention_period) * 1000

    while True:
        messages_to_dlq: list[Any] = []
        # One look under the queue's condition, so a SendMessage between this look and the wait
        # below cannot slip by unnoticed (add_message notifies under the same lock).
        with queue._messages_lock:
            # One clock reading per pass: Message.visible/.delayed each read the clock (a
            # datetime computation), which was most of a pass over a queue of delayed messages.
            now_ms = unix_time_millis()
            # Released groups: pending messages whose visibility timed out are no longer in flight.
            for message in [m for m in queue.pending_messages if now_ms > m.visible_at]:
                queue.pending_messages.discard(message)
            blocked = ({m.group_id for m in queue.pending_messages if m.group_id is not None}
                       if queue.fifo_queue else set())

            for message in list(queue._messages):
                if not now_ms > message.visible_at or now_ms < message.delayed_until:
                    continue  # in flight, or delayed
                if queue.fifo_queue and message.group_id and message.group_id in blocked:
                    continue
                if message.sent_timestamp is not None and message.sent_timestamp + retention_ms <= now_ms:
                    continue  # past the retention period: never delivered (moto checked this per
                    # message through get_queue_attributes, three passes over the queue each time)
                if (queue.dead_letter_queue is not None and queue.redrive_policy
                        and message.approximate_receive_count >= queue.redrive_policy["maxReceiveCount"]):
                    messages_to_dlq.append(message)
                    continue
                queue.pending_messages.add(message)
                message.mark_received(visibility_timeout=visibility_timeout)
                message_copy = deepcopy(message)
                sqsm._filter_message_attributes(message_copy, message_attribute_names)
                result.append(message_copy)
                if len(result) >= count:
                    break

            remaining = polling_end - unix_time()
            if not (result or messages_to_dlq or wait_seconds_timeout == 0 or remaining <= 0):
                queue._messages_lock.wait(timeout=min(POLL_INTERVAL, remaining))
                continue

        for message in messages_to_dlq:
            queue._messages.remove(message)
            queue.dead_letter_queue.add_message(message)  # type: ignore[union-attr]

        if result or wait_seconds_timeout == 0 or polling_end - unix_time() <= 0:
            return result


def _delayed(self: Any) -> int:
    now_ms = unix_time_millis()
    return sum(1 for m in self._messages if now_ms < m.delayed_until)


def _not_visible(self: Any) -> int:
    now_ms = unix_time_millis()
    return sum(1 for m in self._messages if not now_ms > m.visible_at)


def _visible(self: Any) -> int:
    now_ms = unix_time_millis()
    return sum(1 for m in self._messages if now_ms > m.visible_at and not now_ms < m.delayed_until)


def install() -> None:
    _ORIG["receive_message"] = sqsm.SQSBackend.receive_message
    sqsm.SQSBackend.receive_message = receive_message
    # The approximate counts, with one clock reading each instead of one or two per message:
    # moto's SendMessage reads Queue.attributes (all three counts) for one flag, which cost 8 ms a
    # send next to 400 delayed messages, with the GIL held.
    sqsm.Queue.approximate_number_of_messages_delayed = property(_delayed)
    sqsm.Queue.approximate_number_of_messages_not_visible = property(_not_visible)
    sqsm.Queue.approximate_number_of_messages = property(_visible)
