"""The ``cron_*`` tool descriptors, their JSON Schemas, and the result of a call."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._config import SkillConfig

if TYPE_CHECKING:
    import mcp_types

__all__ = ["SkillTool", "ToolResult", "build_schemas"]

#: ``handler(arguments, principal) -> JSON value``; raises ``ToolError`` for a tool error.
ToolHandler = Callable[[dict[str, Any], "str | None"], Awaitable[Any]]


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gives back: JSON-serialisable ``content`` and an ``is_error`` flag.

    On success ``content`` is the tool's value (an object, or a list for ``cron_list``); on
    error it is ``{"error": message}`` and ``error`` holds the message.
    """

    content: Any
    is_error: bool = False

    @classmethod
    def failure(cls, message: str) -> ToolResult:
        return cls({"error": message}, is_error=True)

    @property
    def error(self) -> str:
        return str(self.content["error"]) if self.is_error else ""

    @property
    def text(self) -> str:
        """The content as JSON text (what goes back to the model)."""
        return json.dumps(self.content, ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        return {"is_error": self.is_error, "content": self.content}

    def to_openai_message(self, tool_call_id: str) -> dict[str, Any]:
        """A ``{"role": "tool", ...}`` message for OpenAI-style chat completions."""
        return {"role": "tool", "tool_call_id": tool_call_id, "content": self.text}

    def to_anthropic_block(self, tool_use_id: str) -> dict[str, Any]:
        """A ``tool_result`` content block for Anthropic's Messages API."""
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": tool_use_id,
            "content": self.text,
        }
        if self.is_error:
            block["is_error"] = True
        return block


@dataclass(frozen=True)
class SkillTool:
    """One agent tool: name, description, JSON Schema of its parameters, async handler."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: ToolHandler = field(repr=False)
    #: Parameters known to the skill but withheld by its config, with the reason.
    withheld: Mapping[str, str] = field(default_factory=dict, repr=False)

    def to_openai(self) -> dict[str, Any]:
        """The tool in OpenAI's function-calling format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": json.loads(json.dumps(self.parameters)),
            },
        }

    def to_anthropic(self) -> dict[str, Any]:
        """The tool in Anthropic's tool format."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": json.loads(json.dumps(self.parameters)),
        }

    def to_mcp(self) -> mcp_types.Tool:
        """The tool as an MCP ``Tool`` (needs the ``mcp`` extra)."""
        import mcp_types

        return mcp_types.Tool(
            name=self.name,
            description=self.description,
            input_schema=json.loads(json.dumps(self.parameters)),
        )


# -- schemas --------------------------------------------------------------------------------

_ID = {"type": "string", "description": "Job ID", "maxLength": 256}
_TIMEZONE = {
    "type": "string",
    "description": "IANA time zone for a cron expression and for the fire times shown "
    "(e.g. 'Europe/Berlin'; default: the scheduler's zone)",
    "maxLength": 64,
}
# Short text parameters: bounded so that nothing long is ever parsed or echoed back.
_SHORT = 64


def _create_properties(config: SkillConfig, *, update: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if update:
        props["id"] = dict(_ID)
    props["name"] = {
        "type": "string",
        "description": "Human-readable name for the job",
        "maxLength": config.max_name_length,
    }
    props["description"] = {
        "type": "string",
        "description": "Optional description of what the job does",
        "maxLength": config.max_description_length,
    }
    props["schedule_cron"] = {
        "type": "string",
        "description": "Cron expression with seconds (e.g., '0 0 9 * * *' for 9am daily, "
        "'0 */5 * * * *' for every 5 minutes)",
        "maxLength": config.max_cron_length,
    }
    props["schedule_interval"] = {
        "type": "string",
        "description": "Interval duration (e.g., '30m', '1h', '24h')",
        "maxLength": _SHORT,
    }
    props["schedule_once"] = {
        "type": "string",
        "description": "One-time execution timestamp in RFC3339 format",
        "maxLength": _SHORT,
    }
    props["timezone"] = dict(_TIMEZONE)
    props["action_type"] = {
        "type": "string",
        "enum": list(config.allowed_action_types),
        "description": "Type of action to perform",
    }
    props["session_id"] = {
        "type": "string",
        "description": "Target session ID (required for send_message action)",
        "maxLength": 256,
    }
    props["message"] = {
        "type": "string",
        "description": "Message content (required for send_message action)",
        "maxLength": config.max_message_length,
    }
    props["webhook_url"] = {
        "type": "string",
        "description": "Webhook URL (required for call_webhook action)",
        "maxLength": 2048,
    }
    props["webhook_method"] = {
        "type": "string",
        "description": "HTTP method for webhook (default: POST)",
        "maxLength": 16,
    }
    if config.allow_webhook_headers:
        props["webhook_headers"] = {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "HTTP headers for the webhook (name to value)",
        }
    if config.allow_webhook_body:
        props["webhook_body"] = {
            "type": "string",
            "description": "Request body for the webhook (JSON text for POST/PUT/PATCH)",
            "maxLength": config.max_action_string_length,
        }
    props["tool_name"] = {
        "type": "string",
        "description": "Tool name (required for call_tool action)",
        "maxLength": 256,
    }
    props["tool_params"] = {
        "type": "object",
        "description": "Tool parameters (for call_tool action)",
    }
    return props


def withheld_parameters(config: SkillConfig) -> dict[str, str]:
    out: dict[str, str] = {}
    if not config.allow_webhook_headers:
        out["webhook_headers"] = "this scheduler does not let agents set webhook headers"
    if not config.allow_webhook_body:
        out["webhook_body"] = "this scheduler does not let agents set a webhook body"
    return out


def _obj(props: Mapping[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(props)}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def build_schemas(config: SkillConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """Description and parameter schema of every tool, in the original's order (then ours)."""
    id_only = _obj({"id": _ID}, ["id"])
    next_props = {
        "schedule_cron": {
            "type": "string",
            "description": "Cron expression: 5 fields (min hour dom month dow), 6 with seconds "
            "first, or @daily / @every 1h",
            "maxLength": config.max_cron_length,
        },
        "schedule_interval": {
            "type": "string",
            "description": "Interval duration (e.g., '30m', '1h', '2d')",
            "maxLength": _SHORT,
        },
        "schedule_once": {
            "type": "string",
            "description": "One-time execution timestamp in RFC3339 format",
            "maxLength": _SHORT,
        },
        "timezone": dict(_TIMEZONE),
        "count": {
            "type": "integer",
            "minimum": 1,
            "maximum": config.max_preview_count,
            "description": "How many fire times to show (default 5)",
        },
    }
    return {
        "cron_create": (
            "Create a new scheduled job. Use cron expressions (e.g., '0 0 9 * * *' for 9am "
            "daily), interval (e.g., '1h' for hourly), or a specific time for one-time execution.",
            _obj(_create_properties(config, update=False), ["name", "action_type"]),
        ),
        "cron_list": (
            "List all scheduled jobs, optionally filtered by status",
            _obj(
                {
                    "status": {
                        "type": "string",
                        "enum": ["enabled", "disabled", "running"],
                        "description": "Filter by status",
                    }
                },
                [],
            ),
        ),
        "cron_get": ("Get detailed information about a specific job", id_only),
        "cron_delete": ("Delete a scheduled job", id_only),
        "cron_enable": ("Enable a disabled job to resume scheduling", id_only),
        "cron_disable": ("Disable a job without deleting it", id_only),
        "cron_trigger": ("Run a job immediately, regardless of its schedule", id_only),
        "cron_update": (
            "Change an existing job: give its id and only the fields to change. A new "
            "schedule_* replaces the old schedule; a new action_type replaces the whole action.",
            _obj(_create_properties(config, update=True), ["id"]),
        ),
        "cron_next": (
            "Preview the next fire times of a cron expression, interval or one-time timestamp "
            "without creating a job, with a plain-English description of the schedule.",
            _obj(next_props, []),
        ),
    }
