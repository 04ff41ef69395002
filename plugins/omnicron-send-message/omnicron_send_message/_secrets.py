"""``${env:NAME}`` secret references in gateway headers, resolved from the environment at send time."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["MissingEnvVarError", "malformed_env_ref", "resolve_env_refs"]

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REF = re.compile(r"\$\{env:[^}]*\}?")


class MissingEnvVarError(KeyError):
    """A ``${env:NAME}`` reference names a variable that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"environment variable {self.name} is not set"


def malformed_env_ref(value: str) -> str | None:
    """The first ``${env:...`` reference in ``value`` that is not ``${env:NAME}``, or None."""
    for match in _ANY_REF.finditer(value):
        if not _ENV_REF.fullmatch(match.group(0)):
            return match.group(0)
    return None


def resolve_env_refs(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``${env:NAME}`` in ``value`` with the variable's value.

    Raises :class:`MissingEnvVarError` for an unset variable, so the literal reference is never
    sent in place of the secret.
    """
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        try:
            return env[match.group(1)]
        except KeyError:
            raise MissingEnvVarError(match.group(1)) from None

    return _ENV_REF.sub(substitute, value)
