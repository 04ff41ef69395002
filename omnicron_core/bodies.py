"""Reading an HTTP response body with a bound on its *decoded* size.

An HTTP client that decodes ``Content-Encoding`` for you (httpx's ``aiter_bytes``) lets a
590-byte body marked ``gzip, gzip`` grow to hundreds of MiB before any size cap applies.
Executors that read a response from a URL a model chose feed the raw bytes
(``aiter_raw``) to a :class:`BodyReader` instead: it decodes at most one ``gzip`` or
``deflate`` layer, never produces more than its limit, and refuses any other encoding.
"""

from __future__ import annotations

import zlib

from ._limits import quote

__all__ = ["BodyReader", "UndecodableBodyError"]

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS
# Compressed input read past the limit without filling it (a stream of empty blocks): stop.
_RAW_SLACK = 64 * 1024


class UndecodableBodyError(ValueError):
    """The body is in an encoding the reader does not decode, or is corrupt."""


class BodyReader:
    """Feed raw body chunks; ``body`` holds at most ``limit`` decoded bytes.

    ``BodyReader(response.headers.get("content-encoding"), limit)`` raises
    :class:`UndecodableBodyError` for an encoding other than none, ``identity``, ``gzip``
    (``x-gzip``) or ``deflate``, or for more than one layer. :meth:`feed` returns True once
    the limit is reached (``truncated`` is then set): stop reading there.
    """

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        tokens = [t.strip().lower() for t in (content_encoding or "").split(",")]
        layers = [t for t in tokens if t and t != "identity"]
        if len(layers) > 1:
            raise UndecodableBodyError(
                f"response has {len(layers)} content encodings ({quote(content_encoding or '')});"
                " only one gzip or deflate layer is decoded"
            )
        encoding = layers[0] if layers else ""
        if encoding not in ("", "gzip", "x-gzip", "deflate"):
            raise UndecodableBodyError(
                f"response has content encoding {quote(encoding)}; only gzip and deflate are "
                "decoded"
            )
        self.encoding = encoding
        self.limit = limit
        self.truncated = False
        self._buf = bytearray()
        self._raw = 0
        self._wbits = _GZIP if encoding in ("gzip", "x-gzip") else _ZLIB
        self._inflate = zlib.decompressobj(self._wbits) if encoding else None
        self._started = False

    @property
    def body(self) -> bytes:
        return bytes(self._buf)

    def _full(self) -> bool:
        self.truncated = True
        return True

    def feed(self, chunk: bytes) -> bool:
        """Add a raw chunk; True when no more should be read."""
        self._raw += len(chunk)
        room = self.limit - len(self._buf)
        if self._inflate is None:
            self._buf += chunk[:room]
            return self._full() if len(chunk) > room else False
        data = self._inflate_chunk(chunk, room)
        self._buf += data[:room]
        if len(data) > room or self._raw > self.limit + _RAW_SLACK:
            return self._full()
        return False

    def _inflate_chunk(self, chunk: bytes, room: int) -> bytes:
        assert self._inflate is not None
        out = bytearray()
        pending = chunk
        while pending and len(out) <= room:
            try:
                # never more than room + 1 bytes: enough to know the limit is passed
                data = self._inflate.decompress(pending, room + 1 - len(out))
            except zlib.error as exc:
                if self.encoding == "deflate" and not self._started:
                    # some servers send raw deflate without the zlib wrapper
                    self._inflate = zlib.decompressobj(_RAW_DEFLATE)
                    self._started = True
                    continue
                raise UndecodableBodyError(
                    f"response body is not valid {self.encoding}: {exc}"
                ) from None
            self._started = True
            out += data
            if self._inflate.unconsumed_tail:
                if not data and self._inflate.unconsumed_tail == pending:
                    break  # no progress (cannot happen with max_length >= 1; never spin)
                pending = self._inflate.unconsumed_tail
            elif self._inflate.eof and self._inflate.unused_data:
                # another gzip member follows (concatenated gzip is one body)
                pending = self._inflate.unused_data
                self._inflate = zlib.decompressobj(self._wbits)
            else:
                pending = b""
        return bytes(out)
