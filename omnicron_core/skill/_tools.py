"""The ``cron_*`` tool descriptors, their JSON Schemas, and the result of a call."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._config import SkillConfig
from ._policy_args import PREVIEW_POLICY_FIELDS, policy_schema

if TYPE_CHECKING:
    import mcp_types

__all__ = [
    "SKILL_PARAMS",
    "ActionParams",
    "AgentAction",
    "SkillTool",
    "ToolResult",
    "build_schemas",
    "merge_action_params",
]

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
_CRON_TEXT = (
    "Cron expression: 5 fields (minute hour day-of-month month day-of-week, e.g. '0 9 * * *' "
    "for 9am daily, '*/5 * * * *' for every 5 minutes), 6 fields with seconds first "
    "('0 0 9 * * *'), or @daily / @every 1h"
)
_INTERVAL_TEXT = "Interval between runs as a duration, e.g. '30m', '1h', '2d'"
_ONCE_TEXT = (
    "One-time fire time, RFC 3339 with a zone offset, e.g. '2026-04-25T14:30:00Z' or "
    "'2026-04-25T16:30:00+02:00' (a time without an offset is refused)"
)
# Short text parameters: bounded so that nothing long is ever parsed or echoed back.
_SHORT = 64
#: The skill's own parameters of cron_create / cron_update: an action parameter with one of
#: these names is offered only inside ``action_params``.
SKILL_PARAMS = frozenset(
    {
        "id",
        "name",
        "description",
        "schedule_cron",
        "schedule_interval",
        "schedule_once",
        "timezone",
        "action_type",
        "action_params",
    }
)


@dataclass(frozen=True)
class AgentAction:
    """An action type as the agent tools offer it: from an installed, allowed executor."""

    type: str
    description: str
    #: JSON Schema of the parameters (an object schema with ``properties``).
    parameters: Mapping[str, Any]
    #: The parameter that defaults to the caller's session (``""`` if none).
    session_param: str = ""
    #: Parameters not offered to agents, with the reason.
    withheld: Mapping[str, str] = field(default_factory=dict)

    @property
    def param_names(self) -> list[str]:
        return list(self.parameters.get("properties", {}))


@dataclass(frozen=True)
class ActionParams:
    """The action parameters the tools offer, merged over the action types."""

    #: Flat parameter name -> schema (with "for <type>" in its description).
    properties: dict[str, Any]
    #: Flat parameter name -> the action types that have it.
    owners: dict[str, list[str]]
    #: Withheld parameter name -> reason.
    withheld: dict[str, str]
    #: Whether some parameter is reachable only through ``action_params``.
    needs_nested: bool
    #: Those parameters: name -> schema (with "for <type>" and "(required)" in its description).
    nested: dict[str, Any] = field(default_factory=dict)


def merge_action_params(actions: Sequence[AgentAction], config: SkillConfig) -> ActionParams:
    props: dict[str, Any] = {}
    owners: dict[str, list[str]] = {}
    withheld: dict[str, str] = {}
    needs_nested = False
    nested: dict[str, Any] = {}
    nested_owners: dict[str, list[str]] = {}
    for action in actions:
        for name, spec in action.parameters.get("properties", {}).items():
            if name in action.withheld and name not in config.allow_params:
                withheld.setdefault(name, action.withheld[name])
                continue
            target = props
            if name in SKILL_PARAMS:
                needs_nested = True
                target = nested
                nested_owners.setdefault(name, []).append(action.type)
            else:
                owners.setdefault(name, []).append(action.type)
            if name in target:
                continue
            item = _optional_collapsed(spec)
            item.pop("default", None)
            if name == action.session_param:
                item["description"] = (
                    f"{item.get('description', 'Agent session ID')} (default: your own session)"
                )
            elif name in action.parameters.get("required", ()):
                item["description"] = f"{item.get('description', name)} (required)"
            if item.get("type") == "string":
                item["maxLength"] = min(
                    item.get("maxLength", config.max_param_length), config.max_param_length
                )
            allowed = config.allowed_values.get(name)
            if allowed is not None and item.get("type") == "string":
                item["enum"] = list(allowed)
            target[name] = item
    for table, who in ((props, owners), (nested, nested_owners)):
        for name, kinds in who.items():
            if len(actions) > 1 or table is nested:
                text = table[name].get("description", "")
                table[name]["description"] = f"For {', '.join(kinds)}: {text}".rstrip(": ")
    return ActionParams(props, owners, withheld, needs_nested, nested)


def _optional_collapsed(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [X, {"type": "null"}]}`` as X: for a tool call, null means "not given"."""
    item = dict(spec)
    options = item.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1 and len(rest) < len(options):
            del item["anyOf"]
            item = {**rest[0], **item}
    return item


def _create_properties(
    config: SkillConfig, actions: Sequence[AgentAction], merged: ActionParams, *, update: bool
) -> dict[str, Any]:
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
    least = config.min_interval
    props["schedule_cron"] = {
        "type": "string",
        "description": _CRON_TEXT,
        "maxLength": config.max_cron_length,
    }
    props["schedule_interval"] = {
        "type": "string",
        "description": _INTERVAL_TEXT + (f" (at least {least})" if config.min_interval_ns else ""),
        "maxLength": _SHORT,
    }
    props["schedule_once"] = {"type": "string", "description": _ONCE_TEXT, "maxLength": _SHORT}
    props["timezone"] = dict(_TIMEZONE)
    kinds = "; ".join(f"{a.type}: {a.description}" if a.description else a.type for a in actions)
    props["action_type"] = {
        "type": "string",
        "enum": [a.type for a in actions],
        "description": f"Type of action to perform ({kinds or 'none installed'})",
    }
    props.update(merged.properties)
    if merged.needs_nested:
        props["action_params"] = {
            "type": "object",
            "description": "Action parameters as an object, for the parameters whose names "
            f"are also names of this tool's own arguments ({', '.join(merged.nested)}); the "
            "others may go here too",
            "properties": merged.nested,
        }
    if config.policy.fields:
        props["policy"] = policy_schema(config.policy, config.min_interval_ns)
    return props


def _obj(props: Mapping[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": dict(props)}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def build_schemas(
    config: SkillConfig, actions: Sequence[AgentAction]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Description and parameter schema of every tool, in the original's order (then ours)."""
    merged = merge_action_params(actions, config)
    id_only = _obj({"id": _ID}, ["id"])
    least = config.min_interval
    rate = f" Jobs may run at most once every {least}." if config.min_interval_ns else ""
    next_props = {
        "schedule_cron": {
            "type": "string",
            "description": _CRON_TEXT,
            "maxLength": config.max_cron_length,
        },
        "schedule_interval": {"type": "string", "description": _INTERVAL_TEXT, "maxLength": _SHORT},
        "schedule_once": {"type": "string", "description": _ONCE_TEXT, "maxLength": _SHORT},
        "timezone": dict(_TIMEZONE),
        "count": {
            "type": "integer",
            "minimum": 1,
            "maximum": config.max_preview_count,
            "description": "How many fire times to show (default 5)",
        },
    }
    if any(f in config.policy.fields for f in PREVIEW_POLICY_FIELDS):
        bounds = policy_schema(config.policy, config.min_interval_ns)
        bounds["properties"] = {
            k: v for k, v in bounds["properties"].items() if k in PREVIEW_POLICY_FIELDS
        }
        bounds["description"] = (
            "The bounds a job would have (start_at, end_at, max_runs), applied to the preview"
        )
        next_props["policy"] = bounds
    return {
        "cron_create": (
            "Create a new scheduled job with one schedule: a cron expression (e.g. '0 9 * * *' "
            "for 9am daily), an interval (e.g. '1h' for hourly) or a one-time RFC 3339 time "
            f"with a zone offset.{rate} Times in answers are shown in the job's time zone.",
            _obj(
                _create_properties(config, actions, merged, update=False), ["name", "action_type"]
            ),
        ),
        "cron_list": (
            "List your scheduled jobs (the ones you created), optionally filtered by status",
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
        "cron_disable": (
            "Disable a job without deleting it",
            _obj(
                {
                    "id": _ID,
                    "note": {
                        "type": "string",
                        "maxLength": 500,
                        "description": "Why the job is paused (optional; kept on the job as "
                        "pause.note, shown by cron_get, cleared by cron_enable)",
                    },
                },
                ["id"],
            ),
        ),
        "cron_trigger": ("Run a job immediately, regardless of its schedule", id_only),
        "cron_update": (
            "Change an existing job: give its id and only the fields to change. A new "
            "schedule_* replaces the old schedule; a new action_type replaces the whole action."
            + rate,
            _obj(_create_properties(config, actions, merged, update=True), ["id"]),
        ),
        "cron_next": (
            "Preview the next fire times of a cron expression, interval or one-time timestamp "
            "without creating a job, with a plain-English description of the schedule.",
            _obj(next_props, []),
        ),
        "cron_history": (
            "Show a job's recent runs, newest first: when each fire was due, whether it ran "
            "(succeeded, failed, cancelled, interrupted) or not (skipped while a run was still "
            "going, missed during downtime), how late, and its error.",
            _obj(
                {
                    "id": _ID,
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 100,
                        "description": "How many records (default 10)",
                    },
                    "outcome": {
                        "type": "string",
                        "enum": [
                            "running",
                            "succeeded",
                            "failed",
                            "skipped",
                            "missed",
                            "cancelled",
                            "interrupted",
                        ],
                        "description": "Only records with this outcome",
                    },
                },
                ["id"],
            ),
        ),
    }
