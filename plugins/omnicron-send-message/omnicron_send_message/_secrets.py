"""``${env:NAME}`` secret references: the shared implementation in ``omnicron_core.secrets``."""

from omnicron_core.plugin import (
    MissingEnvVarError,
    find_env_refs,
    malformed_env_ref,
    resolve_env_refs,
)

__all__ = ["MissingEnvVarError", "find_env_refs", "malformed_env_ref", "resolve_env_refs"]
