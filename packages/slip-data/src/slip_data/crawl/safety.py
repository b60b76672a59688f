"""SSRF guard: only public destinations, checked on every hop after DNS resolution.

aiohttp skips the resolver for IP-literal hosts, so `check_url` covers those before a
request is sent, and `GuardedResolver` covers names after they resolve (no TOCTOU: the
connector connects to exactly the addresses the resolver returned).
"""

import ipaddress
import socket
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

ALLOWED_SCHEMES = frozenset({"http", "https"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedDestination(OSError):
    """Raised by the resolver so aiohttp aborts before connecting; reported as `blocked`."""


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that embed an IPv4 address reach that IPv4 address.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: URL, allow_private: bool) -> str | None:
    """Why `url` must not be requested, or None; run on the first URL and on each redirect."""
    if url.scheme not in ALLOWED_SCHEMES:
        return f"scheme {url.scheme or '(none)'!r} is not http(s)"
    host = url.host
    if not host:
        return "URL has no host"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: GuardedResolver checks what it resolves to
    if not allow_private and not is_public_address(ip):
        return f"{host} is not a public address"
    return None


def _normalise(host: str) -> str:
    return host.rstrip(".").lower()


class GuardedResolver(AbstractResolver):
    """Resolves through `host_map` first (trusted), else DNS, refusing non-public answers."""

    def __init__(
        self,
        host_map: Mapping[str, tuple[str, int]] | None = None,
        allow_private: bool = False,
        inner: AbstractResolver | None = None,
    ) -> None:
        self._map = {_normalise(name): dest for name, dest in (host_map or {}).items()}
        self._allow_private = allow_private
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        mapped = self._map.get(_normalise(host))
        if mapped is not None:
            ip, mapped_port = mapped
            return [
                ResolveResult(
                    hostname=host,
                    host=ip,
                    port=mapped_port,
                    family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            ]
        answers = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            # Refuse the name if any answer is internal: a mixed answer is a rebinding trick.
            for answer in answers:
                if not is_public_address(answer["host"]):
                    raise BlockedDestination(f"{host} resolves to non-public {answer['host']}")
        return answers

    async def close(self) -> None:
        await self._inner.close()
