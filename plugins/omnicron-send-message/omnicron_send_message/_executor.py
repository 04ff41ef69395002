"""The ``send_message`` executor: a host's ``omnicron_deliver_message``, else a transport."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import httpx
import msgspec
import pluggy

from omnicron_core.plugin import (
    ActionExecutor,
    ExecutionResult,
    Job,
    JobValidationError,
    ParamFlag,
    RunInfo,
    describe_error,
)

from ._settings import SendMessageSettings
from ._transports import GatewayError, Transport, make_transport

__all__ = ["SendMessageExecutor", "SendMessageParams"]

SESSION_REQUIRED = "session_id is required for send_message action"
MESSAGE_REQUIRED = "message is required for send_message action"
#: The original's message, followed by what to do about it.
NOT_CONFIGURED = (
    "agent not configured for send_message action: no host implements the "
    "omnicron_deliver_message hook and no transport is set; implement the hook, or set "
    "transport in [plugins.send_message] (console, jsonl or http)"
)
_MAX_SESSION_ID = 1024


class SendMessageParams(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """The parameters of a send_message action (the Go original's keys)."""

    session_id: Annotated[str, msgspec.Meta(description="Target agent session ID")]
    message: Annotated[str, msgspec.Meta(description="Message content")]


class SendMessageExecutor(ActionExecutor[SendMessageParams]):
    """Sends ``message`` to the agent session ``session_id``.

    A host implementation of ``omnicron_deliver_message`` gets the message first; when none
    answers, the transport of the settings delivers it; with neither, the run fails
    (:data:`NOT_CONFIGURED`): a host that forgot its hook finds out. Output: ``{session_id, message,
    response}``; ``response`` is the agent's reply, ``""`` for a transport without one.
    """

    action_type = "send_message"
    description = "Send a message to an agent session (host hook, console, jsonl or http)"
    params_type = SendMessageParams
    agent_session_param = "session_id"
    cli_flags = (
        ParamFlag("session_id", "--session-id", "Target agent session."),
        ParamFlag("message", "--message", "Message to send."),
    )

    def __init__(
        self,
        settings: SendMessageSettings | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or SendMessageSettings()
        self.plugin_manager = plugin_manager
        self.transport: Transport | None = make_transport(
            self.settings, http_transport=http_transport
        )

    def validate(self, params: SendMessageParams) -> None:
        if not params.session_id.strip():
            raise JobValidationError(SESSION_REQUIRED, field="action.session_id")
        if len(params.session_id) > _MAX_SESSION_ID or any(
            ord(c) < 32 or ord(c) == 127 for c in params.session_id
        ):
            raise JobValidationError(
                f"session_id must be at most {_MAX_SESSION_ID} characters with no control "
                "characters",
                field="action.session_id",
            )
        if not params.message.strip():
            raise JobValidationError(MESSAGE_REQUIRED, field="action.message")
        size = len(params.message.encode("utf-8", errors="surrogatepass"))
        limit = self.settings.max_message_bytes
        if size > limit:
            raise JobValidationError(
                f"message is {size} bytes (UTF-8), over the limit of {limit} bytes "
                "(plugins.send_message.max_message_bytes)",
                field="action.message",
            )

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        try:
            params = self.check(job.action)
        except JobValidationError as exc:
            return ExecutionResult.failed(exc.message)
        try:
            reply = await self._ask_host(params.session_id, params.message, job, run)
            if reply is None:
                if self.transport is None:
                    return ExecutionResult.failed(NOT_CONFIGURED)
                reply = await self.transport.send(params.session_id, params.message, job, run)
        except GatewayError as exc:
            return ExecutionResult.failed(f"send message failed: {exc}")
        except Exception as exc:  # a run never raises: the error becomes the result
            return ExecutionResult.failed(f"send message failed: {_describe(exc)}")
        return ExecutionResult.ok(
            {"session_id": params.session_id, "message": params.message, "response": reply}
        )

    async def _ask_host(self, session_id: str, message: str, job: Job, run: RunInfo) -> str | None:
        if self.plugin_manager is None:
            return None
        hook = getattr(self.plugin_manager.hook, "omnicron_deliver_message", None)
        if hook is None or hook.spec is None:
            return None
        result: Any = hook(session_id=session_id, message=message, job=job, run=run)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return None
        return result if isinstance(result, str) else str(result)

    async def aclose(self) -> None:
        if self.transport is not None:
            await self.transport.aclose()


def _describe(exc: BaseException) -> str:
    return describe_error(exc)
