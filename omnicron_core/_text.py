"""Text from outside (job names, errors, config keys, paths) made safe to show on a terminal."""

from __future__ import annotations

import re

__all__ = ["CONTROL_CHARS", "plain"]

#: The characters no name or description may hold and no output shows raw, as a regular
#: expression class: C0 and C1 control characters (Unicode category Cc, with DEL), line and
#: paragraph separators, and the bidi overrides and isolates that make text display as
#: something else. Validation refuses them (``_limits``); output escapes them (:func:`plain`).
CONTROL_CHARS = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# Output also escapes lone surrogates (undecodable bytes of a file name or argument, which
# cannot be encoded for a terminal).
_CONTROL = re.compile(f"[{CONTROL_CHARS}\ud800-\udfff]")


def _escape_control(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: object) -> str:
    """``text`` safe to print: every control character escaped (ESC as ``\\x1b``, a newline
    as ``\\x0a``)."""
    return _CONTROL.sub(_escape_control, str(text))
