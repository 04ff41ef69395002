"""The ``call_webhook`` executor."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
import ssl
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated, Any, cast

import anyio
import httpx
import msgspec

from omnicron_core.plugin import (
    ActionExecutor,
    BodyReader,
    ExecutionResult,
    Job,
    JobValidationError,
    ParamFlag,
    RunInfo,
    SecretNotAllowedError,
    UndecodableBodyError,
    describe_error,
    get_logger,
    parse_go_duration,
    resolve_job_env_refs,
)

from ._retry import backoff_delay, is_retryable_status, parse_retry_after
from ._secrets import MissingEnvVarError, find_env_refs, malformed_env_ref, resolve_env_refs
from ._settings import WebhookSettings, signing_key
from ._signing import idempotency_key, standard_webhooks_headers
from ._ssrf import (
    ALLOWED_SCHEMES,
    AddressPolicy,
    GuardedTransport,
    HostPolicy,
    RequestRefusedError,
    resolve_host,
    resolve_host_sync,
)

__all__ = ["METHODS", "WebhookExecutor", "WebhookParams"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
USER_AGENT = "omnicron-webhook/0.1"

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Set by the HTTP client from the request itself; a job overriding them would corrupt framing.
_MANAGED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Never forwarded to another origin on a redirect (with the headers that hold env secrets).
_CROSS_ORIGIN_DROP = frozenset({"authorization", "proxy-authorization", "cookie"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")
_ERROR_BODY_CHARS = 512
_VALIDATE_DNS_TIMEOUT = 2.0

_log = get_logger("omnicron.webhook")


class _CreateRequestError(Exception):
    """The request could not be built (a missing secret, a bad per-job timeout)."""


class _ReadError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _RedirectError(Exception):
    """A redirect that cannot be followed (no or a bad ``Location``)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Prepared:
    job_id: str
    run_id: str
    method: str
    url: httpx.URL
    headers: tuple[tuple[str, str], ...]
    secret_headers: frozenset[str]
    body: bytes
    message_id: str
    signing_key: bytes | None
    timeout: float


@dataclass(frozen=True, slots=True)
class _Attempt:
    result: ExecutionResult
    retryable: bool = False
    retry_after: float | None = None
    status: int | None = None


def _describe(exc: BaseException) -> str:
    return describe_error(exc)


def _redact(url: httpx.URL) -> str:
    """The URL without credentials, query or fragment, for logs."""
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def _snippet(text: str) -> str:
    text = text.strip()
    if len(text) > _ERROR_BODY_CHARS:
        return text[:_ERROR_BODY_CHARS] + "... (truncated)"
    return text


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = 443 if url.scheme == "https" else 80
    return url.scheme, url.host.lower(), url.port or default


class WebhookParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The parameters of a call_webhook action (the Go original's keys)."""

    webhook_url: Annotated[
        str, msgspec.Meta(description="Webhook URL, http or https", max_length=2048)
    ]
    webhook_method: Annotated[
        str,
        msgspec.Meta(
            description="HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS "
            "(default: POST)"
        ),
    ] = ""
    webhook_headers: Annotated[
        dict[str, str] | None,
        msgspec.Meta(
            description="HTTP headers (name to value); a value may hold ${env:NAME} secret "
            "references"
        ),
    ] = None
    webhook_body: Annotated[
        str, msgspec.Meta(description="Request body (JSON text for POST, PUT and PATCH)")
    ] = ""


class WebhookExecutor(ActionExecutor[WebhookParams]):
    """Calls an HTTP(S) webhook for each run: retries, signing, SSRF protection.

    One pooled :class:`httpx.AsyncClient` per executor, created on first use and closed by
    :meth:`aclose`. ``transport`` replaces the guarded network transport (tests hand in an
    :class:`httpx.MockTransport`); the connect-time address check then does not apply.
    """

    action_type = "call_webhook"
    description = "Call an HTTP(S) webhook (retries with backoff, signing, SSRF protection)"
    params_type = WebhookParams
    # As the original: a model never sets headers (they may carry secrets) or a body.
    agent_withheld = {
        "webhook_headers": "this scheduler does not let agents set webhook headers",
        "webhook_body": "this scheduler does not let agents set a webhook body",
    }
    cli_flags = (
        ParamFlag("webhook_url", "--webhook-url", "Webhook URL."),
        ParamFlag("webhook_method", "--webhook-method", "HTTP method (default POST)."),
        ParamFlag("webhook_headers", "--webhook-header", "NAME:VALUE (repeat).", kind="pairs"),
        ParamFlag("webhook_body", "--webhook-body", "Request body."),
    )

    def __init__(
        self,
        settings: WebhookSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or WebhookSettings()
        self._addresses = AddressPolicy(
            self.settings.allow_networks, enabled=self.settings.ssrf_protection
        )
        self._hosts = HostPolicy(self.settings.allow_hosts)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    # -- validation -----------------------------------------------------------------------

    def validate(self, params: WebhookParams) -> None:
        """Check the URL, method and headers; resolve the host best-effort."""
        self._check(params, resolve=True)

    async def validate_async(self, params: WebhookParams) -> None:
        """The add-time check the Scheduler awaits: as :meth:`validate`, but the host is
        resolved without blocking the event loop."""
        _, url = self._check(params, resolve=False)
        if not self._addresses.enabled or _is_literal(url.host):
            return
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with anyio.fail_after(_VALIDATE_DNS_TIMEOUT):
                addresses = await resolve_host(url.host, port)
        except (OSError, UnicodeError, TimeoutError):
            return  # best effort: the binding check happens at connect time
        try:
            self._addresses.check(url.host, addresses)
        except RequestRefusedError as exc:
            raise JobValidationError(
                f"webhook_url refused: {exc}", field="action.webhook_url"
            ) from None

    def _check(self, action: WebhookParams, *, resolve: bool) -> tuple[str, httpx.URL]:
        if not action.webhook_url:
            raise JobValidationError(
                "webhook_url is required for call_webhook action", field="action.webhook_url"
            )
        try:
            url = httpx.URL(action.webhook_url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise JobValidationError(
                f"invalid webhook_url: {exc}", field="action.webhook_url"
            ) from None
        if url.scheme not in ALLOWED_SCHEMES:
            got = f"{url.scheme!r}" if url.scheme else "none"
            raise JobValidationError(
                f"webhook_url scheme must be http or https (got {got})",
                field="action.webhook_url",
            )
        if not url.host:
            raise JobValidationError("webhook_url must include a host", field="action.webhook_url")
        method = (action.webhook_method or "POST").upper()
        if method not in METHODS:
            raise JobValidationError(
                f"webhook_method must be one of {', '.join(METHODS)} (got {action.webhook_method!r})",
                field="action.webhook_method",
            )
        for name, value in (action.webhook_headers or {}).items():
            self._check_header(name, value)
        if not self._hosts.allows(url.host):
            raise JobValidationError(
                f"webhook_url host {url.host!r} is not in plugins.webhook.allow_hosts",
                field="action.webhook_url",
            )
        if self._addresses.enabled:
            port = url.port or (443 if url.scheme == "https" else 80)
            if resolve:
                addresses = resolve_host_sync(url.host, port, _VALIDATE_DNS_TIMEOUT)
            else:
                # At run time only literals are checked here; names are checked on connect.
                addresses = resolve_host_sync(url.host, port, 0) if _is_literal(url.host) else None
            try:
                self._addresses.check(url.host, addresses or [])
            except RequestRefusedError as exc:
                raise JobValidationError(
                    f"webhook_url refused: {exc}", field="action.webhook_url"
                ) from None
        return method, url

    @staticmethod
    def _check_header(name: str, value: str) -> None:
        field = "action.webhook_headers"
        if not _TOKEN.match(name):
            raise JobValidationError(f"invalid webhook header name {name!r}", field=field)
        if name.lower() in _MANAGED_HEADERS:
            raise JobValidationError(
                f"webhook header {name!r} is set by the HTTP client and cannot be given",
                field=field,
            )
        if not isinstance(value, str) or not _HEADER_VALUE.match(value):
            raise JobValidationError(
                f"webhook header {name!r} must be printable ASCII without CR or LF", field=field
            )
        bad = malformed_env_ref(value)
        if bad:
            raise JobValidationError(
                f"webhook header {name!r} has a malformed secret reference {bad!r} "
                "(write ${env:NAME})",
                field=field,
            )

    # -- execution ------------------------------------------------------------------------

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        """Send the webhook (with retries) and report ``{status_code, body}``; never raises."""
        try:
            try:
                prepared = self._prepare(job, run)
            except JobValidationError as exc:
                return ExecutionResult.failed(f"invalid action: {exc.message}")
            except _CreateRequestError as exc:
                return ExecutionResult.failed(f"create request failed: {exc}")
            return await self._run(prepared)
        except Exception as exc:  # execute must not raise: report anything unforeseen
            return ExecutionResult.failed(f"webhook request failed: {_describe(exc)}")

    def _prepare(self, job: Job, run: RunInfo) -> _Prepared:
        params = self.decode_params(job.action)
        method, url = self._check(params, resolve=False)
        headers: list[tuple[str, str]] = []
        secret_headers: set[str] = set()
        for name, value in (params.webhook_headers or {}).items():
            if find_env_refs(value):
                secret_headers.add(name.lower())
                try:
                    value = resolve_job_env_refs(job, value)
                except (MissingEnvVarError, SecretNotAllowedError) as exc:
                    raise _CreateRequestError(f"header {name!r}: {exc}") from None
                if not _HEADER_VALUE.match(value):
                    raise _CreateRequestError(
                        f"header {name!r}: the resolved secret is not printable ASCII"
                    )
            headers.append((name, value))
        key: bytes | None = None
        # An agent's job is not signed (unless the operator says so): a model choosing URL
        # and body would otherwise get the operator's signature on any body it likes.
        agent_job = bool(job.origin or job.owner_principal)
        if self.settings.signing_secret and (not agent_job or self.settings.sign_agent_jobs):
            try:
                key = signing_key(resolve_env_refs(self.settings.signing_secret))
            except MissingEnvVarError as exc:
                raise _CreateRequestError(f"signing_secret: {exc}") from None
            except ValueError as exc:
                raise _CreateRequestError(f"signing_secret: {exc}") from None
        return _Prepared(
            job_id=job.id,
            run_id=run.run_id,
            method=method,
            url=url,
            headers=tuple(headers),
            secret_headers=frozenset(secret_headers),
            body=params.webhook_body.encode(),
            message_id=idempotency_key(job, run),
            signing_key=key,
            timeout=self._timeout_for(job),
        )

    def _timeout_for(self, job: Job) -> float:
        raw: Any = (job.metadata or {}).get("webhook_timeout")
        if raw is None or raw == "":
            return self.settings.timeout
        seconds = math.nan
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            seconds = float(raw)
        elif isinstance(raw, str):
            try:
                seconds = float(raw)
            except ValueError:
                with contextlib.suppress(ValueError):
                    seconds = parse_go_duration(raw) / 1e9
        if not (seconds > 0 and math.isfinite(seconds)):
            raise _CreateRequestError(
                f"invalid webhook_timeout {raw!r} in job metadata "
                "(seconds > 0, or a duration such as '45s')"
            )
        return min(seconds, self.settings.max_timeout)

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            transport = self._transport or GuardedTransport(self._addresses, self._hosts)
            self._client = httpx.AsyncClient(
                transport=transport,
                follow_redirects=False,
                trust_env=False,
                # every request carries its own timeout (_build); never httpx's 5 s default
                timeout=httpx.Timeout(self.settings.timeout),
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _run(self, p: _Prepared) -> ExecutionResult:
        client = self._get_client()
        settings = self.settings
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            outcome = await self._attempt(client, p)
            fields: dict[str, Any] = {
                "job_id": p.job_id,
                "run_id": p.run_id,
                "attempt": attempt,
                "max_attempts": settings.max_attempts,
                "method": p.method,
                "url": _redact(p.url),
                "elapsed": round(time.monotonic() - started, 3),
            }
            if outcome.status is not None:
                fields["status"] = outcome.status
            if not outcome.result.success:
                fields["error"] = outcome.result.error
            if outcome.result.success:
                _log.info("webhook.attempt", outcome="success", delay=None, **fields)
                return outcome.result
            if not outcome.retryable or attempt >= settings.max_attempts:
                _log.warning("webhook.attempt", outcome="failed", delay=None, **fields)
                return outcome.result
            if outcome.retry_after is not None:
                delay = min(outcome.retry_after, settings.backoff_max)
            else:
                delay = backoff_delay(attempt, settings.backoff_initial, settings.backoff_max)
            _log.warning("webhook.attempt", outcome="retry", delay=round(delay, 3), **fields)
            await anyio.sleep(delay)

    async def _attempt(self, client: httpx.AsyncClient, p: _Prepared) -> _Attempt:
        try:
            with anyio.fail_after(p.timeout):
                status, headers, data = await self._exchange(client, p)
        except RequestRefusedError as exc:
            return _Attempt(ExecutionResult.failed(f"webhook request failed: refused: {exc}"))
        except (TimeoutError, httpx.TimeoutException):
            return _Attempt(
                ExecutionResult.failed(f"webhook request failed: timed out after {p.timeout:g}s"),
                retryable=True,
            )
        except _ReadError as exc:
            output = {"status_code": exc.status, "body": ""}
            return _Attempt(
                ExecutionResult.failed(f"read response failed: {exc}", output), status=exc.status
            )
        except _RedirectError as exc:
            output = {"status_code": exc.status, "body": ""}
            return _Attempt(ExecutionResult.failed(str(exc), output), status=exc.status)
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return _Attempt(
                ExecutionResult.failed(f"webhook request failed: {_describe(exc)}"),
                retryable=not _is_certificate_error(exc),
            )
        except httpx.HTTPError as exc:
            return _Attempt(ExecutionResult.failed(f"webhook request failed: {_describe(exc)}"))
        body = data.decode("utf-8", errors="replace")
        output = {"status_code": status, "body": body}
        if 200 <= status < 300:
            return _Attempt(ExecutionResult.ok(output), status=status)
        retryable = is_retryable_status(status)
        return _Attempt(
            ExecutionResult.failed(f"webhook returned status {status}: {_snippet(body)}", output),
            retryable=retryable,
            retry_after=parse_retry_after(headers.get("retry-after")) if retryable else None,
            status=status,
        )

    async def _exchange(
        self, client: httpx.AsyncClient, p: _Prepared
    ) -> tuple[int, httpx.Headers, bytes]:
        """One attempt: send, follow redirects if enabled, read the capped body."""
        method, url, body, headers = p.method, p.url, p.body, list(p.headers)
        hops = 0
        while True:
            request = self._build(client, p, method, url, headers, body)
            response = await client.send(request, stream=True)
            try:
                if not (self.settings.follow_redirects and response.is_redirect):
                    return response.status_code, response.headers, await self._read(response, p)
                if hops >= self.settings.max_redirects:
                    raise RequestRefusedError(
                        f"too many redirects (more than {self.settings.max_redirects})"
                    )
                hops += 1
                status = response.status_code
                location = response.headers.get("location")
                if not location:
                    raise _RedirectError(
                        status, f"webhook returned {status} without a Location header"
                    )
                # (httpx itself refuses a malformed Location: "Invalid URL in location header")
                target = response.url.join(location)
                if (status == 303 and method != "HEAD") or (
                    status in (301, 302) and method == "POST"
                ):
                    method, body = "GET", b""
                    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
                if _origin(target) != _origin(url):
                    headers = [
                        (k, v)
                        for k, v in headers
                        if k.lower() not in _CROSS_ORIGIN_DROP and k.lower() not in p.secret_headers
                    ]
                _log.info(
                    "webhook.redirect",
                    job_id=p.job_id,
                    status=status,
                    hop=hops,
                    location=_redact(target),
                )
                url = target
            finally:
                await response.aclose()

    def _build(
        self,
        client: httpx.AsyncClient,
        p: _Prepared,
        method: str,
        url: httpx.URL,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> httpx.Request:
        out = httpx.Headers()
        if body and method in _BODY_METHODS:
            out["Content-Type"] = "application/json"
        for name, value in headers:
            out[name] = value
        idem = self.settings.idempotency_header
        if idem and idem not in out:
            out[idem] = p.message_id
        if p.signing_key is not None:
            out.update(
                standard_webhooks_headers(p.signing_key, p.message_id, int(time.time()), body)
            )
        return client.build_request(
            method, url, headers=out, content=body or None, timeout=httpx.Timeout(p.timeout)
        )

    async def _read(self, response: httpx.Response, p: _Prepared) -> bytes:
        """At most ``max_response_bytes`` of the *decoded* body; the rest is never read.

        The raw bytes are decoded here, with the bound (httpx would inflate a compressed body
        whole before any cap applies: a decompression bomb)."""
        limit = self.settings.max_response_bytes
        try:
            reader = BodyReader(response.headers.get("content-encoding"), limit)
        except UndecodableBodyError as exc:
            raise _ReadError(response.status_code, str(exc)) from None
        chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if reader.feed(chunk):
                        _log.info("webhook.response_truncated", job_id=p.job_id, limit=limit)
                        break
        except httpx.StreamConsumed:
            # a response built in memory (an injected httpx.MockTransport): already read
            reader = BodyReader(None, limit)
            reader.feed(response.content)
        except httpx.HTTPError as exc:
            raise _ReadError(response.status_code, _describe(exc)) from exc
        except UndecodableBodyError as exc:
            raise _ReadError(response.status_code, str(exc)) from None
        return reader.body


def _is_certificate_error(exc: BaseException) -> bool:
    """True if a TLS certificate check caused ``exc``: retrying cannot help."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
