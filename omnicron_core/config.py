"""The ``omnicron.toml`` config file: sections, decoding, and errors that name their place.

A config has three parts::

    [scheduler]          # how the runtime runs (zone, store, concurrency, grace periods, metrics)
    [log]                # level and format of the runtime's log events
    [plugins.<name>]     # each plugin's own settings, checked by that plugin's own Struct
    [[jobs]]             # jobs declared by the file, reconciled into the store on every start

Every error is a :class:`ConfigError` whose ``field`` is its place (``jobs[2].schedule.cron``);
:func:`load_config` and :func:`check_jobs` collect as many as they can and raise them together
as :class:`ConfigErrors`.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ._duration import as_timedelta
from ._errors import ConfigError, JobValidationError, SettingError
from ._limits import JobLimits
from ._locate import join_path, locate
from ._models import Action, Job, JobStatus, Schedule, dec_hook, utcnow
from ._runs import Policy
from ._scheduler import TUNING_FIELDS
from ._store import DEFAULT_STORE_URL

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "SOURCE_CONFIG",
    "SOURCE_HASH_KEY",
    "SOURCE_KEY",
    "Config",
    "ConfigErrors",
    "DeclaredJob",
    "LogSettings",
    "SchedulerSettings",
    "apply_env",
    "declared_jobs",
    "decode_config",
    "decode_declared_jobs",
    "definition_hash",
    "load_config",
    "load_effective_config",
    "located",
    "read_config_file",
    "too_deep",
]

#: The file ``omnicron run`` reads when ``-c`` is not given (and it exists).
DEFAULT_CONFIG_FILE = "omnicron.toml"
#: ``metadata`` key marking a job as declared by a config file (value :data:`SOURCE_CONFIG`).
SOURCE_KEY = "omnicron.source"
SOURCE_CONFIG = "config"
#: ``metadata`` key holding the hash of the declared definition the store was last synced to.
SOURCE_HASH_KEY = "omnicron.config_hash"

#: How deep lists and tables may nest in a config (far more than any real config needs; the
#: decoders and hashes recurse, so a hostile depth must stop here).
MAX_DEPTH = 32
#: Upper bound of the settings in seconds (about 31 years): infinity and huge values would
#: overflow the time arithmetic.
MAX_SECONDS = 1e9

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "console", "json"]


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


#: A span in the config file: a Go duration string (``"30s"``, ``"1m30s"``) or seconds.
Span = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)] | str


class SchedulerSettings(_Section):
    """The ``[scheduler]`` section: :class:`~omnicron_core.SchedulerConfig` as text.

    The tuning keys (:data:`~omnicron_core._scheduler.TUNING_FIELDS`) are ``SchedulerConfig``'s
    fields under the same names; unset ones take ``SchedulerConfig``'s defaults (the one place
    they are written). Spans are Go duration strings or seconds. ``timezone`` is the API's
    ``location``; ``store`` is a URL where the API takes a ``Store``. The metrics keys belong to
    the runtime, not the scheduler.
    """

    #: IANA zone for cron expressions without their own; ``""`` is the machine's zone.
    timezone: str = ""
    #: Store URL (``sqlite:///omnicron.db``, ``memory://``, ``postgresql://...``).
    store: str = DEFAULT_STORE_URL
    #: Backend-specific options passed to the store factory.
    store_options: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Runs in flight at once (default 1024).
    max_concurrency: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: Most jobs taken from the store per claim (default 1000).
    claim_batch: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: How long a stop waits for runs in flight before cancelling them (default ``"30s"``).
    shutdown_grace: Span | None = None
    #: How late past its fire time a run may start before it is skipped (recorded as
    #: missed); unset runs every late fire once.
    misfire_grace: Span | None = None
    #: Longest wait before re-reading a store other processes write (default ``"1s"``).
    external_check: Span | None = None
    #: How long a permanent store error (read-only, damaged, full, missing) may last before
    #: ``omnicron run`` stops with exit status 1 (default ``"30s"``); busy/locked errors are
    #: retried meanwhile.
    store_error_window: Span | None = None
    #: Run-history records kept per job, the newest (default 100; ``0``: keep them all).
    history_keep: Annotated[int, msgspec.Meta(ge=0)] | None = None
    #: Records older than this are pruned (default ``"720h"``, 30 days; ``"0s"``: no limit).
    history_max_age: Span | None = None
    #: How often retention prunes, in the background (default ``"60s"``).
    history_prune_interval: Span | None = None
    #: Port of the Prometheus ``/metrics`` and ``/healthz`` endpoint; unset serves none,
    #: ``0`` picks a free port.
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    #: Address the metrics endpoint listens on.
    metrics_host: str = "127.0.0.1"
    #: Size limits on every job (``[scheduler.limits]``: ``max_name_length``,
    #: ``max_cron_length``, ``max_action_bytes``...; see ``omnicron_core.JobLimits``).
    limits: JobLimits = msgspec.field(default_factory=JobLimits)

    def __post_init__(self) -> None:
        for name in (
            "shutdown_grace",
            "misfire_grace",
            "external_check",
            "store_error_window",
            "history_max_age",
            "history_prune_interval",
        ):
            value = getattr(self, name)
            if value is not None:
                try:
                    as_timedelta(value, field=name)
                except ValueError as exc:
                    raise SettingError(str(exc).split(": ", 1)[-1], name) from None

    def tuning(self) -> dict[str, Any]:
        """The tuning keys that are set, as ``SchedulerConfig`` keyword arguments."""
        return {name: v for name in TUNING_FIELDS if (v := getattr(self, name)) is not None}


class LogSettings(_Section):
    """The ``[log]`` section."""

    level: LogLevel = "info"
    #: ``auto`` is ``console`` on a terminal and ``json`` (one object a line) otherwise.
    format: LogFormat = "auto"


class Config(_Section):
    """A whole config file. ``plugins`` and ``jobs`` stay raw until checked on their own, so
    that one bad job or plugin section does not hide the errors of the others."""

    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    plugins: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    jobs: list[Any] = msgspec.field(default_factory=list)
    #: The agent skill's limits (``omnicron_core.skill.SkillConfig``), read by ``omnicron mcp``.
    skill: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Where the config came from (not a key of the file).
    source: str = ""


class DeclaredJob(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[jobs]]`` entry: the definition fields of the JSON job (no run state)."""

    id: str
    name: str
    description: str = ""
    schedule: Schedule
    action: Action
    metadata: dict[str, Any] | None = None
    enabled: bool | None = None
    status: Literal["enabled", "disabled"] | None = None
    #: Schedule policies (overlap, catch-up, jitter, bounds, timeout, retries): docs/policies.md.
    policy: Policy | None = None


class ConfigErrors(ConfigError):
    """Several config errors at once; ``errors`` holds each (with its ``field``)."""

    def __init__(self, errors: Iterable[ConfigError], *, partial: Config | None = None) -> None:
        self.errors = list(errors)
        #: The config with defaults in place of the sections that failed, so that checks of the
        #: other sections can still run (``omnicron validate`` reports them all).
        self.partial = partial
        super().__init__("\n".join(str(e) for e in self.errors))


def located(
    exc: msgspec.ValidationError | JobValidationError, prefix: str = "", *, root: type | None = None
) -> ConfigError:
    """A :class:`ConfigError` at ``prefix`` + the error's own place
    (``jobs[2].schedule.cron: expected str, got int``): msgspec's errors through
    :func:`omnicron_core._locate.locate`, the one translation of them."""
    if isinstance(exc, JobValidationError):
        return ConfigError(exc.message, field=join_path(prefix, exc.field or "") or None)
    return locate(exc, prefix, root=root)


def too_deep(value: Any, prefix: str, limit: int = MAX_DEPTH) -> str | None:
    """The place of the first value of ``value`` nested more than ``limit`` lists or tables
    deep (``jobs[0].metadata.a[0][0]...``), or ``None``. Iterative: any depth is safe."""
    stack: list[tuple[Any, str, int]] = [(value, prefix, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict):
            children = [(v, join_path(where, f".{k}"), depth + 1) for k, v in item.items()]
        elif isinstance(item, list | tuple):
            children = [(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item)]
        else:
            continue
        if depth >= limit and children:
            return where
        stack.extend(children)
    return None


def decode_config(data: Mapping[str, Any], *, source: str = "") -> Config:
    """A :class:`Config` from parsed TOML (or any mapping). Raises :class:`ConfigErrors`."""
    errors: list[ConfigError] = []
    raw = dict(data)
    sections: dict[str, Any] = {}
    # Decode each section on its own so an error in one does not hide another's.
    for key, value in raw.items():
        if key not in ("scheduler", "log", "plugins", "jobs", "skill"):
            errors.append(
                ConfigError(
                    "unknown section (expected scheduler, log, plugins, jobs or skill)", field=key
                )
            )
            continue
        deep = too_deep(value, key)
        if deep is not None:
            errors.append(
                ConfigError(
                    f"nested more than {MAX_DEPTH} levels deep (lists and tables)", field=deep
                )
            )
            continue
        if key == "plugins" and isinstance(value, dict):
            # msgspec names a bad dict value `plugins[...]`; name the plugin instead.
            bad = [name for name, section in value.items() if not isinstance(section, dict)]
            for name in bad:
                errors.append(
                    ConfigError(
                        f"expected a table of settings ([plugins.{name}]), "
                        f"got {type(value[name]).__name__}",
                        field=f"plugins.{name}",
                    )
                )
            if bad:
                continue
        try:
            sections[key] = getattr(msgspec.convert({key: value}, type=Config), key)
        except msgspec.ValidationError as exc:
            errors.append(located(exc, root=Config))
    config = Config(**sections, source=source)
    if errors:
        raise ConfigErrors(errors, partial=config)
    return config


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed TOML of a config file. Raises :class:`ConfigErrors` located at the file for
    a file that cannot be read, is not UTF-8, is not TOML (line and column named) or nests
    deeper than the parser can follow."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigErrors(
            [ConfigError(f"cannot read config file: {exc.strerror}", field=str(p))]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigErrors(
            [
                ConfigError(
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                    "save the file as UTF-8",
                    field=str(p),
                )
            ]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigErrors([ConfigError(f"invalid TOML: {exc}", field=str(p))]) from None
    except RecursionError:
        raise ConfigErrors(
            [
                ConfigError(
                    f"arrays or tables nested too deeply (at most {MAX_DEPTH} levels)",
                    field=str(p),
                )
            ]
        ) from None


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and decode a TOML config file; ``None`` is the empty config (all defaults).

    Raises :class:`ConfigErrors` (TOML syntax errors name the line and column).
    """
    if path is None:
        return Config()
    return decode_config(read_config_file(path), source=str(Path(path)))


def apply_env(config: Config, env: Mapping[str, str] | None = None) -> Config:
    """The config with ``OMNICRON_STORE``, ``OMNICRON_LOG_LEVEL`` and ``OMNICRON_LOG_FORMAT``
    applied (environment wins over the file)."""
    env = os.environ if env is None else env
    scheduler, log = config.scheduler, config.log
    errors: list[ConfigError] = []
    if env.get("OMNICRON_STORE"):
        scheduler = msgspec.structs.replace(scheduler, store=env["OMNICRON_STORE"])
    for var, key in (("OMNICRON_LOG_LEVEL", "level"), ("OMNICRON_LOG_FORMAT", "format")):
        value = env.get(var, "").strip().lower()
        if not value:
            continue
        try:
            log = msgspec.convert({**msgspec.structs.asdict(log), key: value}, type=LogSettings)
        except msgspec.ValidationError as exc:
            errors.append(ConfigError(located(exc).message, field=var))
    if errors:
        raise ConfigErrors(errors)
    return msgspec.structs.replace(config, scheduler=scheduler, log=log)


def load_effective_config(
    path: str | os.PathLike[str] | None,
    *,
    store: str | None = None,
    env: Mapping[str, str] | None = None,
    errors: list[ConfigError] | None = None,
) -> Config:
    """The config a process runs with: the file (``None``: all defaults), then the environment
    (``OMNICRON_STORE``, ``OMNICRON_LOG_LEVEL``, ``OMNICRON_LOG_FORMAT``), then an explicit
    ``store`` (a ``--store`` flag). The one place that layers them, for ``omnicron`` (run,
    validate, jobs) and ``omnicron mcp`` alike.

    Raises :class:`ConfigErrors`; or, given an ``errors`` list, appends to it and goes on with
    defaults in place of the sections that failed (``omnicron validate`` reports them all).
    """
    try:
        config = load_config(path)
    except ConfigErrors as exc:
        if errors is None or exc.partial is None:
            raise
        errors += exc.errors
        config = exc.partial
    try:
        config = apply_env(config, env)
    except ConfigErrors as exc:
        if errors is None:
            raise
        errors += exc.errors
    if store:
        config = msgspec.structs.replace(
            config, scheduler=msgspec.structs.replace(config.scheduler, store=store)
        )
    return config


def definition_hash(declared: DeclaredJob) -> str:
    """A stable hash of a declared job's definition: what the reconcile compares across starts."""
    data = msgspec.to_builtins(declared, enc_hook=str, order="sorted")
    if data.get("policy") is None:
        data.pop("policy", None)  # entries without a policy hash as before policies existed
    body = msgspec.json.encode(data, order="sorted")
    return hashlib.sha256(body).hexdigest()[:16]


def _decode_declared(raw: Any, prefix: str) -> DeclaredJob:
    try:
        declared = msgspec.convert(raw, type=DeclaredJob, dec_hook=dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        raise located(exc, prefix, root=DeclaredJob) from None
    if (
        declared.enabled is not None
        and declared.status is not None
        and declared.enabled != (declared.status == "enabled")
    ):
        raise ConfigError("enabled and status disagree; set one of them", field=f"{prefix}")
    if declared.metadata and any(k.startswith("omnicron.") for k in declared.metadata):
        raise ConfigError(
            "metadata keys starting with 'omnicron.' are reserved", field=f"{prefix}.metadata"
        )
    return declared


def declared_jobs(config: Config) -> list[tuple[DeclaredJob, Job]]:
    """Decode every ``[[jobs]]`` entry (see :func:`decode_declared_jobs`); raise
    :class:`ConfigErrors` listing every malformed entry and duplicate id."""
    out, errors = decode_declared_jobs(config)
    if errors:
        raise ConfigErrors(errors)
    return [(d, j) for _, d, j in out]


def decode_declared_jobs(
    config: Config,
) -> tuple[list[tuple[int, DeclaredJob, Job]], list[ConfigError]]:
    """Decode every ``[[jobs]]`` entry into its definition and the Job it declares.

    The Job is marked ``metadata["omnicron.source"] = "config"`` with the definition's hash in
    ``metadata["omnicron.config_hash"]``. Schedules and actions are not validated here (that
    needs the plugins: see :mod:`omnicron_core.runtime`). Returns ``(index, definition, job)``
    for the well-formed entries, and the errors of the others.
    """
    errors: list[ConfigError] = []
    out: list[tuple[int, DeclaredJob, Job]] = []
    seen: dict[str, int] = {}
    now = utcnow()
    for index, raw in enumerate(config.jobs):
        prefix = f"jobs[{index}]"
        try:
            declared = _decode_declared(raw, prefix)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if declared.id in seen:
            errors.append(
                ConfigError(
                    f"duplicate job id {declared.id!r} (also jobs[{seen[declared.id]}])",
                    field=f"{prefix}.id",
                )
            )
            continue
        seen[declared.id] = index
        disabled = declared.enabled is False or declared.status == "disabled"
        metadata = dict(declared.metadata or {})
        metadata[SOURCE_KEY] = SOURCE_CONFIG
        metadata[SOURCE_HASH_KEY] = definition_hash(declared)
        job = Job(
            id=declared.id,
            name=declared.name,
            description=declared.description,
            schedule=declared.schedule,
            action=declared.action,
            status=JobStatus.DISABLED if disabled else JobStatus.ENABLED,
            created_at=now,
            updated_at=now,
            metadata=metadata,
            policy=declared.policy,
        )
        out.append((index, declared, job))
    return out, errors
