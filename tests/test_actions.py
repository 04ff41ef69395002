"""Actions belong to their executors: ``Action = type + params``, the Go shape, located
parameter errors at every entry point, and the plugin-author API (``omnicron_core.plugin``)."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import sqlite3
import tomllib
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
from structlog.testing import capture_logs

import omnicron_core
import omnicron_core.plugin as plugin_api
from omnicron_core import (
    Action,
    Job,
    JobValidationError,
    Registry,
    Schedule,
    Scheduler,
    SchedulerConfig,
    Store,
    StoreConfig,
    decode_job,
    encode_job,
    get_plugin_manager,
    new_job,
)
from omnicron_core.config import decode_config
from omnicron_core.plugin import (
    ActionExecutor,
    ExecutionResult,
    ParamFlag,
    RunInfo,
    StoreBackendSpec,
    hookimpl,
)
from omnicron_core.runtime import Runtime, plugin_infos
from omnicron_core.skill import Skill, SkillConfig

ROOT = Path(__file__).resolve().parents[1]

# -- a third-party executor, registered without installing it ---------------------------------


class NoteParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Parameters of the note action."""

    path: Annotated[str, msgspec.Meta(description="File to append to")]
    text: Annotated[str, msgspec.Meta(description="Line to append")]
    times: Annotated[int, msgspec.Meta(ge=1, description="How many copies")] = 1


class NoteExecutor(ActionExecutor[NoteParams]):
    action_type = "note"
    description = "Append a line to a file"
    params_type = NoteParams

    def validate(self, params: NoteParams) -> None:
        if not params.path.startswith("/"):
            raise JobValidationError("path must be absolute", field="path")

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        params = self.check(job.action)
        line = (params.text + "\n") * params.times
        await asyncio.to_thread(_append, params.path, line)
        return ExecutionResult.ok({"path": params.path})


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


class NotePlugin:
    @hookimpl
    def omnicron_action_executors(self) -> list[ActionExecutor[Any]]:
        return [NoteExecutor()]


@pytest.fixture
def registry() -> Registry:
    return Registry(get_plugin_manager(plugins=[NotePlugin()]))


def note_job(**params: Any) -> Job:
    return new_job(
        "n1", "note", Schedule(interval=omnicron_core.Duration("1h")), Action("note", params)
    )


# -- the model -------------------------------------------------------------------------------

GO_JOB = (
    '{"id":"go","name":"n","schedule":{"cron":"0 9 * * *"},"action":{"type":"call_webhook",'
    '"webhook_url":"https://example.com/h","webhook_method":"POST","webhook_headers":{"X-A":"1"},'
    '"webhook_body":"{}"},"status":"enabled","created_at":"2026-01-02T03:04:05Z",'
    '"updated_at":"2026-01-02T03:04:05Z","run_count":0}'
)


def test_go_action_keys_load_into_params_and_are_written_back_flat() -> None:
    job = decode_job(GO_JOB)
    assert job.action.type == "call_webhook"
    assert job.action.params == {
        "webhook_url": "https://example.com/h",
        "webhook_method": "POST",
        "webhook_headers": {"X-A": "1"},
        "webhook_body": "{}",
    }
    assert encode_job(job).decode() == GO_JOB


def test_nested_params_input_is_accepted_and_written_flat() -> None:
    job = decode_job(
        '{"id":"a","name":"a","action":{"type":"note","params":{"path":"/x","text":"t"}}}'
    )
    assert job.action == Action("note", {"path": "/x", "text": "t"})
    assert json.loads(encode_job(job))["action"] == {"type": "note", "path": "/x", "text": "t"}
    with pytest.raises(msgspec.ValidationError, match=r"not both .* - at `\$\.action`"):
        decode_job('{"action":{"type":"note","params":{"path":"/x"},"text":"t"}}')
    with pytest.raises(msgspec.ValidationError, match=r"params: expected object, got str"):
        decode_job('{"action":{"type":"note","params":"x"}}')


def test_copy_never_aliases_params() -> None:
    job = note_job(path="/x", text="t", extra={"deep": [1, {"a": 2}]})
    copy = job.copy()
    copy.action.params["extra"]["deep"][1]["a"] = 99
    copy.action.params["text"] = "changed"
    assert job.action.params == {"path": "/x", "text": "t", "extra": {"deep": [1, {"a": 2}]}}
    assert copy.action is not job.action and copy.action.params is not job.action.params


def _code_words(source: str) -> list[tuple[int, str]]:
    """String constants (docstrings excluded) and every name of a module's code: attributes,
    variables, arguments, keywords, definitions, imports."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                out.append((node.lineno, node.value))
        elif isinstance(node, ast.Attribute):
            out.append((node.lineno, node.attr))
        elif isinstance(node, ast.Name):
            out.append((node.lineno, node.id))
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            out.append((node.lineno, node.arg))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.append((node.lineno, node.name))
        elif isinstance(node, ast.alias):
            out.append((getattr(node, "lineno", 0), node.asname or node.name))
    return out


# Names that merely look like a plugin's: the MCP protocol's tools/call, and the agent tool's
# name (``cron_create``...) that ``Skill.call(tool_name, arguments)`` takes.
_NOT_PLUGIN_NAMES = {
    ("omnicron_core/mcp_server.py", "call_tool"),
    ("omnicron_core/mcp_server.py", "on_call_tool"),
    ("omnicron_core/mcp_server.py", "to_call_tool_result"),
    ("omnicron_core/skill/_skill.py", "tool_name"),
}


def test_core_code_names_no_plugin_field() -> None:
    pattern = re.compile(
        r"session_id|webhook_|tool_name|tool_params|send_message|call_webhook|call_tool"
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {word!r}"
        for path in (ROOT / "omnicron_core").rglob("*.py")
        for line, word in _code_words(path.read_text())
        if pattern.search(word)
        and (path.relative_to(ROOT).as_posix(), word) not in _NOT_PLUGIN_NAMES
    ]
    assert offenders == []


# -- located errors at every entry point -----------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"text": "t"}, "action.path", "invalid action: path is required for note action"),
        (
            {"path": "/x", "text": "t", "colour": "red"},
            "action.colour",
            "invalid action: unknown parameter 'colour' for note action; note parameters: "
            "path, text, times",
        ),
        (
            {"path": "/x", "text": 5},
            "action.text",
            "invalid action: text: expected str, got int",
        ),
        ({"path": "/x", "text": "t", "times": 0}, "action.times", "expected int >= 1"),
        ({"path": "x", "text": "t"}, "action.path", "invalid action: path must be absolute"),
    ],
)
async def test_api_reports_located_param_errors(
    registry: Registry, params: dict[str, Any], field: str, message: str
) -> None:
    scheduler = Scheduler(
        SchedulerConfig(store=Store(StoreConfig(url="memory://")), registry=registry)
    )
    with pytest.raises(JobValidationError) as info:
        await scheduler.add_job(note_job(**params))
    assert info.value.field == field
    assert message in info.value.message
    assert await scheduler.list_jobs() == []  # nothing saved


def test_builtin_messages_of_the_original_come_from_the_plugins() -> None:
    registry = Registry(get_plugin_manager())
    cases = [
        (Action("send_message", message="m"), "session_id is required for send_message action"),
        (Action("send_message", session_id="s"), "message is required for send_message action"),
        (Action("call_webhook"), "webhook_url is required for call_webhook action"),
        (Action("call_tool"), "tool_name is required for call_tool action"),
    ]
    for action, reason in cases:
        with pytest.raises(JobValidationError) as info:
            registry.validate_action(action)
        assert info.value.message == f"invalid action: {reason}"


def test_config_reports_located_param_errors(tmp_path: Path) -> None:
    text = (
        f'[scheduler]\nstore = "sqlite:///{tmp_path / "c.db"}"\n'
        "[[jobs]]\nid='a'\nname='a'\nschedule={interval='1h'}\n"
        "action={type='note', path='/tmp/x', text=3}\n"
    )
    runtime = Runtime(
        decode_config(tomllib.loads(text)),
        plugin_manager=get_plugin_manager(plugins=[NotePlugin()]),
    )
    errors = runtime.check()
    assert [(e.field, e.message) for e in errors] == [
        ("jobs[0].action.text", "invalid action: text: expected str, got int")
    ]


async def test_agent_tools_offer_the_params_of_a_third_party_type(registry: Registry) -> None:
    skill = Skill(
        SkillConfig(
            allowed_action_types=("note", "send_message", "call_nothing"), min_interval="0"
        ),
        store="memory://",
        registry=registry,
    )
    create = skill.get_tool("cron_create")
    assert create is not None
    props = create.parameters["properties"]
    # installed ∩ allowed: call_nothing is not installed
    assert props["action_type"]["enum"] == ["note", "send_message"]
    assert "note: Append a line to a file" in props["action_type"]["description"]
    assert props["path"]["type"] == "string" and "File to append to" in props["path"]["description"]
    assert props["times"]["minimum"] == 1
    assert "default: your own session" in props["session_id"]["description"]
    assert "call_webhook" not in json.dumps(create.parameters)
    async with skill:
        base = {"name": "n", "schedule_interval": "1h", "action_type": "note", "text": "t"}
        bad = await skill.call("cron_create", {**base, "path": "relative"})
        assert bad.error == "add job: invalid action: path must be absolute"
        missing = await skill.call("cron_create", {**base, "text": None, "path": "/x"})
        assert missing.error == "add job: invalid action: text is required for note action"
        typed = await skill.call("cron_create", {**base, "text": 1, "path": "/x"})
        assert typed.error == "parameter 'text' must be a string, got integer (1)"
        low = await skill.call("cron_create", {**base, "path": "/x", "times": 0})
        assert low.error == "parameter 'times' must be at least 1, got 0"
        wrong = await skill.call(
            "cron_create",
            {"name": "n", "schedule_interval": "1h", "action_type": "note", "message": "m"},
        )
        assert wrong.error.startswith("parameter 'message' belongs to send_message, not note")
        good = await skill.call(
            "cron_create",
            {
                "name": "n",
                "schedule_interval": "1h",
                "action_type": "note",
                "path": "/x",
                "text": "t",
            },
        )
        assert not good.is_error, good.content
        job = await skill.call("cron_get", {"id": good.content["id"]})
        assert job.content["action"] == {"type": "note", "path": "/x", "text": "t"}
        # interval fire times are whole seconds, in one zone
        assert all("." not in t for t in job.content["next_fire_times"])
        assert job.content["next_run_at"] == job.content["next_fire_times"][0]


class GreetParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(description="Who to greet")]
    timezone: str = "UTC"


class GreetExecutor(ActionExecutor[GreetParams]):
    action_type = "greet"
    description = "Greet someone"
    params_type = GreetParams

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        return ExecutionResult.ok(self.check(job.action).name)


async def test_params_named_like_the_tools_own_arguments_are_offered_in_action_params() -> None:
    """A third-party parameter called ``name`` or ``timezone`` is offered (with its schema
    and description) inside ``action_params``, and a model that forgets it is told where."""

    class P:
        @hookimpl
        def omnicron_action_executors(self) -> list[Any]:
            return [GreetExecutor()]

    registry = Registry(get_plugin_manager(plugins=[P()]))
    skill = Skill(SkillConfig(min_interval="0"), store="memory://", registry=registry)
    create = skill.get_tool("cron_create")
    assert create is not None
    nested = create.parameters["properties"]["action_params"]
    assert "(name, timezone)" in nested["description"]
    assert nested["properties"]["name"]["description"] == "For greet: Who to greet (required)"
    assert nested["properties"]["timezone"]["type"] == "string"
    async with skill:
        base = {"name": "job", "schedule_interval": "1h", "action_type": "greet"}
        missing = await skill.call("cron_create", base)
        assert missing.error == (
            "greet needs its parameter 'name' inside action_params (a top-level 'name' is "
            "the job's own)"
        )
        made = await skill.call("cron_create", {**base, "action_params": {"name": "bob"}})
        assert not made.is_error, made.content
        fired = await skill.call("cron_trigger", {"id": made.content["id"]})
        assert fired.content["output"] == "bob"


def test_plugins_listing_has_descriptions_and_schemas() -> None:
    infos = {i.name: i for i in plugin_infos(get_plugin_manager(plugins=[NotePlugin()]))}
    note = next(i for i in infos.values() if "note" in i.action_types)
    assert note.actions == [
        {
            "type": "note",
            "description": "Append a line to a file",
            "parameters": NoteExecutor().params_schema(),
        }
    ]
    schema = note.actions[0]["parameters"]
    assert schema["required"] == ["path", "text"]
    assert schema["additionalProperties"] is False
    assert (
        infos["webhook"].actions[0]["parameters"]["properties"]["webhook_url"]["type"] == "string"
    )


# -- the pluggy call path and isolation ------------------------------------------------------


class BrokenExecutors:
    @hookimpl
    def omnicron_action_executors(self) -> list[Any]:
        raise RuntimeError("executor plugin bug")

    @hookimpl
    def omnicron_store_backends(self) -> list[Any]:
        raise RuntimeError("backend plugin bug")


class WrongThings:
    @hookimpl
    def omnicron_action_executors(self) -> list[Any]:
        return ["not an executor"]


def test_a_plugin_raising_in_a_registration_hook_does_not_break_the_others() -> None:
    pm = get_plugin_manager(plugins=[BrokenExecutors(), NotePlugin(), WrongThings()])
    registry = Registry(pm)
    with capture_logs() as logs:
        executors = registry.executors
        backends = registry.backends
    assert {"note", "send_message", "call_webhook", "call_tool"} <= set(executors)
    assert {"memory", "sqlite"} <= set(backends)
    failed = {type(e).__name__: str(e) for e in registry.failures.values()}
    assert failed["RuntimeError"] == "executor plugin bug"
    assert "returned str from omnicron_action_executors" in failed["PluginError"]
    assert [e["hook"] for e in logs if e["event"] == "plugin.registration_failed"] == [
        "omnicron_action_executors",
        "omnicron_action_executors",
        "omnicron_store_backends",
    ]
    with pytest.raises(JobValidationError, match=r"plugins not loaded: .*executor plugin bug"):
        registry.validate_action(Action("missing"))


def test_registration_hooks_go_through_pluggys_call_path() -> None:
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def omnicron_action_executors(self) -> Generator[None, list[Any], list[Any]]:
            seen.append("executors")
            return (yield)

        @hookimpl(wrapper=True)
        def omnicron_store_backends(self) -> Generator[None, list[Any], list[Any]]:
            seen.append("backends")
            return (yield)

    pm = get_plugin_manager(plugins=[Wrapper()])
    traced: list[str] = []
    pm.trace.root.setwriter(traced.append)
    pm.enable_tracing()
    registry = Registry(pm)
    assert "send_message" in registry.executors and "sqlite" in registry.backends
    assert seen and set(seen) == {"executors", "backends"}
    assert any("omnicron_action_executors" in line for line in traced)


def test_a_store_spec_of_the_wrong_kind_is_isolated() -> None:
    class Odd:
        @hookimpl
        def omnicron_store_backends(self) -> list[Any]:
            return [("redis", object())]

    registry = Registry(get_plugin_manager(plugins=[Odd()]))
    assert "sqlite" in registry.backends
    assert any("StoreBackendSpec" in str(e) for e in registry.failures.values())
    assert isinstance(registry.backends["sqlite"], StoreBackendSpec)


def test_an_executor_without_params_type_is_refused() -> None:
    class NoParams(ActionExecutor[Any]):
        action_type = "bare"

        async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
            return ExecutionResult.ok()

    class P:
        @hookimpl
        def omnicron_action_executors(self) -> list[Any]:
            return [NoParams()]

    registry = Registry(get_plugin_manager(plugins=[P()]))
    assert "bare" not in registry.executors
    assert any("has no params_type" in str(e) for e in registry.failures.values())


class _Opaque:
    """A type msgspec can decode with a dec_hook but has no JSON Schema for."""


class OpaqueParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    thing: _Opaque | None = None


async def test_an_executor_whose_params_have_no_json_schema_is_isolated() -> None:
    """The agent tools, MCP and ``omnicron plugins`` show every executor's schema: one that has
    none is refused when it registers (naming the plugin and the fix), not when an agent asks."""

    class Opaque(ActionExecutor[OpaqueParams]):
        action_type = "opaque"
        params_type = OpaqueParams

        async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
            return ExecutionResult.ok()

    class P:
        @hookimpl
        def omnicron_action_executors(self) -> list[Any]:
            return [Opaque()]

    pm = get_plugin_manager(plugins=[P()])
    registry = Registry(pm)
    assert "opaque" not in registry.executors and "send_message" in registry.executors
    (failure,) = registry.failures.values()
    assert "executor 'opaque' has parameters without a JSON Schema" in str(failure)
    assert "extra_json_schema" in str(failure)
    skill = Skill(SkillConfig(min_interval="0"), store="memory://", registry=registry)
    create = skill.get_tool("cron_create")
    assert create is not None
    enum = create.parameters["properties"]["action_type"]["enum"]
    assert "send_message" in enum and "opaque" not in enum
    assert any("send_message" in i.action_types for i in plugin_infos(pm))


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        (ParamFlag("path", "bad flag"), "flag must look like --name"),
        (ParamFlag("nope", "--nope"), "'nope' is not one of its parameters (path, text, times)"),
        ("--path", "expected a ParamFlag, got str"),
    ],
)
def test_an_executor_with_a_bad_cli_flag_is_isolated(flag: Any, words: str) -> None:
    """A bad flag would break ``omnicron jobs add`` for every plugin: the executor is refused
    when it registers instead, naming what is wrong."""

    class BadFlag(NoteExecutor):
        action_type = "badflag"
        cli_flags = (flag,)

    class P:
        @hookimpl
        def omnicron_action_executors(self) -> list[Any]:
            return [BadFlag()]

    registry = Registry(get_plugin_manager(plugins=[P()]))
    assert "badflag" not in registry.executors and "send_message" in registry.executors
    (failure,) = registry.failures.values()
    assert "executor 'badflag' has a bad cli_flags entry" in str(failure)
    assert words in str(failure)


@pytest.mark.parametrize(
    ("attrs", "words"),
    [
        ({"agent_withheld": ["path"]}, "agent_withheld must map parameter names"),
        ({"agent_session_param": "session"}, "agent_session_param 'session' is not one of"),
        ({"description": None}, "description must be a str, got NoneType"),
    ],
)
def test_an_executor_the_agent_tools_cannot_show_is_isolated(
    attrs: dict[str, Any], words: str
) -> None:
    bad = type("Bad", (NoteExecutor,), {"action_type": "bad", **attrs})

    class P:
        @hookimpl
        def omnicron_action_executors(self) -> list[Any]:
            return [bad()]

    registry = Registry(get_plugin_manager(plugins=[P()]))
    assert "bad" not in registry.executors and "send_message" in registry.executors
    (failure,) = registry.failures.values()
    assert "executor 'bad': " + words in str(failure)
    skill = Skill(SkillConfig(min_interval="0"), store="memory://", registry=registry)
    assert skill.get_tool("cron_create") is not None


# -- the plugin-author API -------------------------------------------------------------------


def test_plugin_api_exports_exactly_the_intended_names() -> None:
    assert set(plugin_api.__all__) == {
        "ENTRY_POINT_GROUP", "Action", "ActionExecutor", "ConfigError", "Duration",
        "ExecutionResult", "HookResult", "Job", "JobNotFoundError", "JobPatch", "JobStatus",
        "JobValidationError", "MissingEnvVarError", "OmnicronError", "ParamFlag",
        "PluginContext", "PluginError", "RunInfo", "Schedule", "SettingError", "StoreBackend",
        "StoreBackendSpec", "StoreError", "call_each_plugin", "dec_hook", "decode_job",
        "encode_job", "find_env_refs", "format_go_duration", "hookimpl", "hookspec",
        "job_from_builtins", "job_to_builtins", "load_plugin_settings", "malformed_env_ref",
        "params_json_schema", "parse_go_duration", "resolve_env_refs", "BodyReader",
        "UndecodableBodyError", "SecretNotAllowedError", "describe_error", "resolve_job_env_refs", "get_logger",
        "make_private_dirs", "RunOutcome", "RunRecord", "RunWrites", "fire_run_id",
    }  # fmt: skip
    for name in plugin_api.__all__:
        assert getattr(plugin_api, name) is not None, name
    assert plugin_api.StoreBackend is omnicron_core.StoreBackend
    assert plugin_api.hookimpl is omnicron_core.hookimpl


def _core_imports(source: str) -> list[str]:
    """Every ``omnicron_core`` module or name a source imports, dotted (``omnicron_core._x``,
    ``omnicron_core.plugin.hookimpl``), from the AST (parenthesised and nested imports too)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "omnicron_core"]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "omnicron_core"
        ):
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def test_no_plugin_imports_a_private_core_module() -> None:
    sources = [
        *ROOT.glob("plugins/*/omnicron_*/**/*.py"),
        *ROOT.glob("examples/plugins/*/**/*.py"),
    ]
    assert sources
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in sources
        for name in _core_imports(p.read_text())
        if any(part.startswith("_") for part in name.split("."))
        # omnicron_core.plugin is the plugin author's API, omnicron_core.testing its test kits
        or not name.startswith(("omnicron_core.plugin.", "omnicron_core.testing."))
    ]
    assert offenders == []
    # the check sees what it must refuse
    assert _core_imports("from omnicron_core import (\n    _models,\n)") == [
        "omnicron_core._models"
    ]
    assert _core_imports("import omnicron_core._plugins as p") == ["omnicron_core._plugins"]


# -- stores written before this change -------------------------------------------------------


async def test_a_sqlite_store_written_before_params_loads_unchanged(tmp_path: Path) -> None:
    """The stored JSON keeps the flat Go keys, so no migration rewrites rows: a row in the
    form the previous release wrote reads back, runs through the executor's check, and is
    written back in the same form."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    store = Store(StoreConfig(url=url))
    await store.open()
    await store.save(
        new_job("seed", "seed", Schedule(cron="0 9 * * *"), Action("call_tool", tool_name="now"))
    )
    await store.close()
    # The previous release's storage encoding of a job (struct order, defaults omitted).
    old = (
        '{"id":"go","name":"n","schedule":{"cron":"0 9 * * *"},"action":{"type":"send_message",'
        '"session_id":"s1","message":"hi"},"created_at":"2026-01-02T03:04:05Z",'
        '"updated_at":"2026-01-02T03:04:05Z","run_count":3,"metadata":{}}'
    )
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO jobs (id, status, next_run_at, data) VALUES ('go', 'enabled', NULL, ?)",
            (old.encode(),),
        )
    store = Store(StoreConfig(url=url))
    await store.open()
    job = await store.get("go")
    assert job.action == Action("send_message", session_id="s1", message="hi")
    assert job.run_count == 3 and job.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    Registry(get_plugin_manager()).validate_action(job.action)
    job.run_count = 4
    await store.save(job)
    await store.close()
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM jobs WHERE id = 'go'").fetchone()
    assert json.loads(data)["action"] == {
        "type": "send_message",
        "session_id": "s1",
        "message": "hi",
    }


def test_plugin_distributions_depend_on_a_compatible_core_range() -> None:
    projects = [
        *ROOT.glob("plugins/*/pyproject.toml"),
        *ROOT.glob("examples/plugins/*/pyproject.toml"),
    ]
    assert len(projects) >= 4
    for project in projects:
        deps = tomllib.loads(project.read_text())["project"]["dependencies"]
        (core,) = [d for d in deps if d.startswith("omnicron-core")]
        assert re.fullmatch(r"omnicron-core>=0\.1,<0\.2", core), (project, core)


# -- docs checked against the installed executors -------------------------------------------


def _type_text(spec: dict[str, Any]) -> str:
    if "anyOf" in spec:
        return " or ".join(_type_text(o) for o in spec["anyOf"] if o != {"type": "null"})
    kind = spec.get("type", "any")
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"object of {spec['additionalProperties'].get('type', 'any')}"
    return str(kind)


def params_table(action: dict[str, Any]) -> str:
    """The parameters table of an executor page, as docs/executors/*.md hold it."""
    schema = action["parameters"]
    required = set(schema.get("required", []))
    lines = [
        f"Parameters of `{action['type']}` (beside `type` in the action; generated from the "
        "executor's params Struct, checked by tests/test_actions.py):",
        "",
        "| parameter | type | required | description |",
        "|---|---|---|---|",
    ]
    for name, spec in schema.get("properties", {}).items():
        lines.append(
            f"| `{name}` | {_type_text(spec)} | {'yes' if name in required else 'no'} | "
            f"{spec.get('description', '')} |"
        )
    return "\n".join(lines) + "\n"


EXECUTOR_PAGES = {
    "call_tool": "call_tool.md",
    "call_webhook": "webhook.md",
    "send_message": "send_message.md",
}


@pytest.mark.parametrize("action_type", sorted(EXECUTOR_PAGES))
def test_executor_pages_show_the_installed_parameters(action_type: str) -> None:
    executor = Registry(get_plugin_manager()).executors[action_type]
    page = (ROOT / "docs" / "executors" / EXECUTOR_PAGES[action_type]).read_text()
    found = re.search(
        rf"<!-- params:{action_type} -->\n(.*?)<!-- /params:{action_type} -->", page, re.S
    )
    assert found, f"no parameters block in {EXECUTOR_PAGES[action_type]}"
    expected = params_table({"type": action_type, "parameters": executor.params_schema()})
    assert found.group(1) == expected


def test_agents_doc_lists_the_offered_action_types() -> None:
    skill = Skill(store="memory://")
    create = skill.get_tool("cron_create")
    assert create is not None
    props = create.parameters["properties"]
    doc = (ROOT / "docs" / "agents.md").read_text()
    table = doc.split("<!-- agent-action-types -->")[1].split("<!-- /agent-action-types -->")[0]
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.strip().splitlines()[2:]}
    registry = Registry(get_plugin_manager())
    assert sorted(rows) == props["action_type"]["enum"]
    for kind, row in rows.items():
        executor = registry.executors[kind]
        assert f"| {executor.description} |" in row
        for name in executor.params_schema()["properties"]:
            assert f"`{name}`" in row, (kind, name)
            offered = name in props or name in executor.agent_withheld
            assert offered, (kind, name)


async def test_mcp_server_offers_and_checks_a_third_party_type(
    registry: Registry, tmp_path: Path
) -> None:
    from mcp import Client

    from omnicron_core.mcp_server import build_server

    skill = Skill(
        SkillConfig(min_interval="0"), store="memory://", registry=registry, start_scheduler=False
    )
    async with skill, Client(build_server(skill)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        props = tools["cron_create"].input_schema["properties"]
        assert "note" in props["action_type"]["enum"]
        assert props["times"] == {
            "description": "For note: How many copies",
            "type": "integer",
            "minimum": 1,
        }
        target = tmp_path / "n.txt"
        bad = await client.call_tool(
            "cron_create",
            {
                "name": "n",
                "schedule_interval": "1h",
                "action_type": "note",
                "path": "rel",
                "text": "t",
            },
        )
        assert bad.is_error
        assert json.loads(bad.content[0].text) == {
            "error": "add job: invalid action: path must be absolute"
        }
        good = await client.call_tool(
            "cron_create",
            {"name": "n", "schedule_interval": "1h", "action_type": "note", "path": str(target),
             "text": "hello", "times": 2},
        )  # fmt: skip
        assert not good.is_error
        job_id = json.loads(good.content[0].text)["id"]
        fired = await client.call_tool("cron_trigger", {"id": job_id})
        assert json.loads(fired.content[0].text)["success"] is True
    assert target.read_text() == "hello\nhello\n"


def test_agent_tool_texts_agree_and_state_the_limits() -> None:
    skill = Skill(SkillConfig(min_interval="5m"), store="memory://")
    tools = {t.name: t for t in skill.tools()}
    create = tools["cron_create"].parameters["properties"]
    preview = tools["cron_next"].parameters["properties"]
    # one text for cron and intervals in both tools (5 fields, or 6 with seconds first)
    assert create["schedule_cron"]["description"] == preview["schedule_cron"]["description"]
    assert "5 fields" in create["schedule_cron"]["description"]
    assert "6 fields with seconds first" in create["schedule_cron"]["description"]
    assert preview["schedule_interval"]["description"] in create["schedule_interval"]["description"]
    # the limits are stated, not learnt from errors
    assert "at least 5m" in create["schedule_interval"]["description"]
    assert "at most once every 5m" in tools["cron_create"].description
    assert "zone offset" in create["schedule_once"]["description"]
    # session_id defaults to the caller's session, so it is not "required"
    assert "required" not in create["session_id"]["description"]
    assert "default: your own session" in create["session_id"]["description"]
    assert "(required)" in create["message"]["description"]
    assert tools["cron_list"].description.startswith("List your scheduled jobs")


async def test_agent_errors_say_where(registry: Registry) -> None:
    skill = Skill(SkillConfig(min_interval="0"), store="memory://", registry=registry)
    async with skill:
        base = {"name": "n", "schedule_interval": "1h", "action_type": "call_webhook"}
        bad = await skill.call(
            "cron_create", {**base, "webhook_url": "https://example.com", "webhook_method": "BREW"}
        )
        assert bad.error.startswith("add job: invalid action: webhook_method must be one of")
        tool = await skill.call(
            "cron_create", {**base, "action_type": "call_tool", "tool_name": "rm_rf"}
        )
        assert tool.error.endswith("(at action.tool_name)")
