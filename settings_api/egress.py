"""Egress policy for tenant-chosen upstream URLs: which addresses the gateway connects to (the
tenant headers it sends there are mcp_core.headers.refused_header's job).

Tenants choose ``upstreamUrl``; unchecked, it would let one make the gateway reach its own
loopback services, the private network or a cloud metadata endpoint, and map them from the
error messages. Every address is checked once resolved, right before connecting (the upstream
client's connector, :meth:`EgressPolicy.connector`: names through :class:`EgressResolver`, the
address dialled through :meth:`EgressPolicy.socket_factory`), so odd spellings
(``0x7f000001``, ``127.1``) and DNS rebinding cannot slip through. The operator opens specific
ranges with ``MCPGW_UPSTREAM_ALLOWED_NETWORKS``.

:func:`create_upstream_client` makes the one HTTP client of every upstream request, both
planes' (catalog reads, callUrl's calls): mcp_core.client's session over this policy's
connector.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from ssl import SSLContext
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientSession, TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from mcp_core.client.errors import AddressRefused
from mcp_core.client.http_client import create_http_client

__all__ = [
    "NOT_ALLOWED_MESSAGE",
    "REFUSED_NETWORKS",
    "EgressPolicy",
    "EgressRefused",
    "EgressResolver",
    "create_upstream_client",
    "parse_networks",
]

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# What a tenant is told: never what (if anything) listens at the address.
NOT_ALLOWED_MESSAGE = (
    "the upstream URL points to an address the gateway does not connect to "
    "(loopback, private, link-local, shared or reserved networks)"
)

# Every range refused unless MCPGW_UPSTREAM_ALLOWED_NETWORKS opens it, with why. IPv4 forms
# embedded in IPv6 (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged as
# the IPv4 address they reach. First match names the reason (the log says it; tenants don't).
REFUSED_NETWORKS: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("0.0.0.0/8", "this network (unspecified)"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (future use, broadcast)"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved (IPv4-compatible, deprecated)"),
        ("100::/64", "reserved (discard-only)"),
        ("64:ff9b:1::/48", "private (local-use NAT64)"),
        ("2001::/23", "reserved (IETF protocol assignments: Teredo, benchmarking, ORCHID)"),
        ("2001:db8::/32", "reserved (documentation)"),
        ("3fff::/20", "reserved (documentation)"),
        ("5f00::/16", "reserved (SRv6 SIDs)"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "reserved (site-local, deprecated)"),
        ("ff00::/8", "multicast"),
        # Outside 2000::/3 nothing is global unicast: unallocated, or one of the above.
        ("::/3", "reserved (not global unicast)"),
        ("4000::/2", "reserved (not global unicast)"),
        ("8000::/1", "reserved (not global unicast)"),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")


class EgressRefused(AddressRefused):
    """The policy refuses every address of this host (the upstream client answers
    ``not-allowed`` with :data:`NOT_ALLOWED_MESSAGE`; ``reason``, the range, goes to the log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(NOT_ALLOWED_MESSAGE, reason)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); ``ValueError`` names a bad
    one (host bits set included: ``10.0.0.1/8`` is a typo for something)."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR network ({exc})") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Refuses :data:`REFUSED_NETWORKS` except the operator's ``allowed`` networks."""

    allowed: tuple[Network, ...] = ()

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why the gateway must not connect to `address` (None: it may)."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self._opened(ip):
            return None
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
            if self._opened(ip):
                return None
        for network, why in REFUSED_NETWORKS:
            if ip.version == network.version and ip in network:
                return why
        return None

    def check_resolved(self, addresses: Iterable[str | IPAddress]) -> None:
        """Raise :class:`EgressRefused` when any of a host's addresses is refused: a name
        that also resolves to a refused address is refused whole, whichever one a connection
        would pick."""
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                raise EgressRefused(why)

    async def check_url(self, url: str, *, timeout_s: float) -> None:
        """Refuse `url` at configuration time: a literal IP at once, a name once resolved
        (within `timeout_s`). A name that does not resolve now passes: connecting checks
        again, and fails on its own."""
        try:
            host = urlsplit(url).hostname
        except ValueError:  # e.g. an unclosed "[": no connection can be made to it either
            return
        if not host:
            return
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:  # a name (or an odd spelling of a number): resolve it
            pass
        else:
            self.check_resolved([literal])
            return
        try:
            async with asyncio.timeout(timeout_s):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, None, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError, UnicodeError):
            return
        self.check_resolved(str(info[4][0]) for info in infos)

    def connector(self, *, ssl: SSLContext | bool = True) -> TCPConnector:
        """An aiohttp connector applying this policy to every address it connects to: names
        through :class:`EgressResolver`, IP literals (aiohttp never resolves them) through
        :meth:`socket_factory`. ``ssl``: True verifies with the system's certificates. Made
        inside the running loop."""
        # No connection cap (aiohttp's default is 100, one queue for every tenant): upstream
        # requests are bounded per integration or tenant by their callers' bulkheads.
        return TCPConnector(
            resolver=EgressResolver(self), socket_factory=self.socket_factory, limit=0, ssl=ssl
        )

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp's ``TCPConnector(socket_factory=...)``: the last check before a connect,
        on the very address it goes to (IP literals never reach the resolver)."""
        family, type_, proto, _, sockaddr = addr_info
        self.check_resolved([sockaddr[0]])
        return socket.socket(family=family, type=type_, proto=proto)

    def _opened(self, ip: IPAddress) -> bool:
        return any(ip.version == network.version and ip in network for network in self.allowed)


def create_upstream_client(
    *,
    allowed_networks: Iterable[Network] = (),
    timeout_s: float,
    ssl_context: SSLContext | None = None,
) -> ClientSession:
    """The client for every upstream request, made inside the running loop: it connects only
    where the policy allows and verifies TLS with the system's certificates, or with
    ``ssl_context`` (tests); ``timeout_s`` bounds each request."""
    policy = EgressPolicy(tuple(allowed_networks))
    connector = policy.connector(ssl=ssl_context if ssl_context is not None else True)
    return create_http_client(connector, timeout_s=timeout_s)


class EgressResolver(AbstractResolver):
    """aiohttp's default resolver, refusing a host any of whose addresses the policy refuses
    (the DNS answer aiohttp caches is the checked one)."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self._policy.check_resolved(result["host"] for result in results)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address reaches (mapped, NAT64 well-known prefix, 6to4)."""
    if not isinstance(ip, IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None
