"""Per-run idempotency keys and Standard Webhooks signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC

from omnicron_core.plugin import Job, RunInfo

__all__ = ["idempotency_key", "standard_webhooks_headers"]

# Namespace of the per-run keys; changing it would change every key.
_NAMESPACE = uuid.UUID("5b0f7c1e-6a55-4d4c-9a51-6f6d6e696372")


def idempotency_key(job: Job, run: RunInfo) -> str:
    """A key that is the same for every attempt of one run and differs between runs.

    Derived from the job id and the fire time the run answers, so a run retried (or claimed
    again after a crash) keeps its key; a manual trigger has no fire time and uses its run id.
    """
    if run.scheduled_at is not None:
        fire = run.scheduled_at.astimezone(UTC).isoformat(timespec="microseconds")
        name = f"{job.id}\x00scheduled\x00{fire}"
    else:
        name = f"{job.id}\x00manual\x00{run.run_id}"
    return str(uuid.uuid5(_NAMESPACE, name))


def standard_webhooks_headers(
    key: bytes, message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
