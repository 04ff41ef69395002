"""The hook that the send-message plugin adds: a host delivers a message to an agent session."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from omnicron_core.plugin import hookspec

if TYPE_CHECKING:
    from omnicron_core.plugin import Job, RunInfo

__all__ = ["omnicron_deliver_message"]


@hookspec(firstresult=True)
def omnicron_deliver_message(
    session_id: str, message: str, job: Job, run: RunInfo
) -> str | Awaitable[str | None] | None:
    """Deliver a ``send_message`` job's message to an agent session and return the agent's reply.

    Implemented by host applications that own the agent sessions.
    Stops at the first non-None result. When every implementation returns ``None`` (or there is
    none), the executor falls back to the transport chosen in ``[plugins.send_message]``
    (``console`` by default).

    The hook is called on the scheduler's event loop, so an implementation must not block: do
    slow work in a coroutine and return it (the executor awaits any awaitable result; pluggy does
    not). An awaitable that resolves to ``None`` also declines, and the transport is used.
    An exception fails the run with ``send message failed: <exception>``.

    :param session_id: the job's ``session_id`` parameter, the agent session to talk to.
    :param message: the job's ``message`` parameter, already validated (not empty, within
        ``max_message_bytes``).
    :param job: a copy of the job being run (``job.id``, ``job.name``, ``job.metadata``).
    :param run: this run: ``run.run_id`` (stable for the run, to de-duplicate),
        ``run.scheduled_at`` (the fire time, ``None`` for a manual trigger).
    :return: the agent's reply as a ``str`` (other values are converted with ``str()``), an
        awaitable of it, or ``None`` to let the next implementation or the transport handle it.

    Example::

        from omnicron_core.plugin import hookimpl

        class AgentHost:
            def __init__(self, agents):
                self.agents = agents

            @hookimpl
            def omnicron_deliver_message(self, session_id, message):
                agent = self.agents.get(session_id)
                if agent is None:
                    return None  # not ours: another host or the transport takes it
                return agent.process(message)  # a coroutine: the executor awaits it
    """
