"""``${env:NAME}`` secret references, resolved from the environment at send time.

Shared by executors so that tokens live in the environment, not in the job store: a job
stores the reference, the executor resolves it just before sending.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._errors import MissingEnvVarError, SecretNotAllowedError

if TYPE_CHECKING:
    from ._models import Job

__all__ = [
    "MissingEnvVarError",
    "SecretNotAllowedError",
    "find_env_refs",
    "malformed_env_ref",
    "resolve_env_refs",
    "resolve_job_env_refs",
]

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REF = re.compile(r"\$\{env:[^}]*\}?")


def find_env_refs(value: str) -> list[str]:
    """The variable names referenced in ``value``, in order."""
    return _ENV_REF.findall(value)


def malformed_env_ref(value: str) -> str | None:
    """The first ``${env:...`` reference in ``value`` that is not ``${env:NAME}``, or None."""
    for match in _ANY_REF.finditer(value):
        if not _ENV_REF.fullmatch(match.group(0)):
            return match.group(0)
    return None


def resolve_env_refs(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``${env:NAME}`` in ``value`` with the variable's value.

    Raises :class:`MissingEnvVarError` for an unset variable, so a literal reference is never
    sent in place of the secret.
    """
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        try:
            return env[name]
        except KeyError:
            raise MissingEnvVarError(name) from None

    return _ENV_REF.sub(substitute, value)


def resolve_job_env_refs(job: Job, value: str, environ: Mapping[str, str] | None = None) -> str:
    """:func:`resolve_env_refs` for a value taken from ``job``: executors call this for
    anything a job carries, so that a job an agent made (``job.origin``, or a job with an
    ``owner_principal``, which only the agent tools set) can never read the
    scheduler's environment, whatever slipped past validation (an old store, a direct write).

    Raises :class:`SecretNotAllowedError` for such a job with a reference in ``value``."""
    if (job.origin or job.owner_principal) and "${env:" in value:
        raise SecretNotAllowedError(value)
    return resolve_env_refs(value, environ)
