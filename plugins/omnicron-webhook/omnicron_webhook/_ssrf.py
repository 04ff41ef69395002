"""SSRF protection: which addresses a webhook may reach, checked when each connection opens.

The transport resolves the host itself, refuses the connection if any resolved address is
non-public (unless its network is allow-listed), then connects to a checked address. TLS SNI and
the ``Host`` header keep the original host name, because httpcore passes the origin's host to
``start_tls`` and httpx builds the header from the URL. Every connection (including redirect hops
and reconnects of the pool) goes through :meth:`GuardedNetworkBackend.connect_tcp`, so a host
whose DNS answer changes after validation (DNS rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from collections.abc import Iterable, Sequence

import anyio
import httpcore
import httpx

__all__ = [
    "AddressPolicy",
    "GuardedNetworkBackend",
    "GuardedTransport",
    "HostPolicy",
    "IPAddress",
    "RequestRefusedError",
    "resolve_host",
    "resolve_host_sync",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")

_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RequestRefusedError(Exception):
    """The webhook request was refused by policy before any connection was made."""


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), else ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private"``…), or None if it is."""
    ip = _unwrap(ip)
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-global"
    return None


class AddressPolicy:
    """Refuses non-public addresses unless their network is in ``allow_networks``."""

    def __init__(self, allow_networks: Iterable[str] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.allow_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allow_networks
        )

    def refusal(self, ip: IPAddress) -> str | None:
        """The reason ``ip`` is refused, or None if a webhook may connect to it."""
        if not self.enabled:
            return None
        reason = classify(ip)
        if reason is None:
            return None
        effective = _unwrap(ip)
        for net in self.allow_networks:
            if effective in net or ip in net:
                return None
        return reason

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise :class:`RequestRefusedError` if any of ``host``'s addresses is refused."""
        for ip in addresses:
            reason = self.refusal(ip)
            if reason is not None:
                where = f"{ip} is" if host.strip("[]") == str(ip) else f"{host} resolves to {ip},"
                raise RequestRefusedError(
                    f"{where} a {reason} address (allowed only if its network is in "
                    "plugins.webhook.allow_networks)"
                )


class HostPolicy:
    """The optional host allow-list: ``example.com`` (exact) or ``*.example.com`` (subdomains)."""

    def __init__(self, allow_hosts: Iterable[str] = ()) -> None:
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for entry in allow_hosts:
            name = entry.strip().lower().rstrip(".")
            if name.startswith("*."):
                self.suffixes.append(name[1:])
            else:
                self.exact.add(name.strip("[]"))

    @property
    def active(self) -> bool:
        return bool(self.exact or self.suffixes)

    def allows(self, host: str) -> bool:
        if not self.active:
            return True
        name = host.lower().rstrip(".").strip("[]")
        return name in self.exact or any(name.endswith(s) for s in self.suffixes)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _unique(infos: Iterable[tuple[object, ...]]) -> list[IPAddress]:
    out: list[IPAddress] = []
    for info in infos:
        sockaddr = info[4]
        assert isinstance(sockaddr, tuple)
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _unique(infos)


def resolve_host_sync(host: str, port: int, timeout: float) -> list[IPAddress] | None:
    """Best-effort blocking resolution for validation: None when it fails or takes too long."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        return _unique(future.result(timeout=timeout))
    except (OSError, UnicodeError, concurrent.futures.TimeoutError):
        return None
    finally:
        pool.shutdown(wait=False)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address against the policy, then connects to a checked one."""

    def __init__(
        self, policy: AddressPolicy, backend: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._policy = policy
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore.AsyncNetworkBackend API
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await resolve_host(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        self._policy.check(host, addresses)
        last: Exception | None = None
        for ip in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore.AsyncNetworkBackend API
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RequestRefusedError("webhooks do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every request and connection passes the webhook policies.

    Ignores proxy environment variables: a proxy would make the checked address the proxy's.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        hosts: HostPolicy | None = None,
        *,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(trust_env=False, limits=limits)
        self._hosts = hosts or HostPolicy()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        check_url_target(request.url, self._hosts)
        return await super().handle_async_request(request)


def check_url_target(url: httpx.URL, hosts: HostPolicy) -> None:
    """Refuse a scheme other than http/https, a missing host, or a host not allow-listed."""
    if url.scheme not in ALLOWED_SCHEMES:
        raise RequestRefusedError(f"scheme {url.scheme!r} is not allowed (only http and https)")
    if not url.host:
        raise RequestRefusedError("URL has no host")
    if not hosts.allows(url.host):
        raise RequestRefusedError(f"host {url.host!r} is not in plugins.webhook.allow_hosts")
