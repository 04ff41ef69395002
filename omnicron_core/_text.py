"""Text from outside (job names, errors, config keys, paths) made safe to show on a terminal."""

from __future__ import annotations

import re

__all__ = ["plain"]

#: C0 and C1 control characters, DEL, the Unicode controls that reorder or break lines (bidi
#: overrides and isolates, line and paragraph separators) and lone surrogates (undecodable
#: bytes of a file name or argument; they cannot be encoded for output).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: object) -> str:
    """``text`` safe to print: every control character escaped (ESC as ``\\x1b``, a newline
    as ``\\x0a``)."""
    return _CONTROL.sub(_escape_control, str(text))
