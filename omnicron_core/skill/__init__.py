"""The ``cron`` agent skill: tools a model calls to schedule and manage jobs.

``await skill.call("cron_create", '{"name": ...}', principal="session:42")`` is the one entry
point an agent framework needs; ``skill.openai_tools()`` / ``skill.anthropic_tools()`` /
``tool.to_mcp()`` export the tool definitions. See ``docs/agents.md``.
"""

from ._args import ArgumentError
from ._config import SkillConfig, load_skill_config
from ._skill import Skill, ToolError
from ._tools import SkillTool, ToolResult

__all__ = [
    "ArgumentError",
    "Skill",
    "SkillConfig",
    "SkillTool",
    "ToolError",
    "ToolResult",
    "load_skill_config",
]
