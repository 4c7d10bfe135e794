"""Which network address a request came from, believing forwarded headers only from the
proxies the operator names.

Anyone can send X-Forwarded-For or Forwarded: believed from the open network, they let a
caller write any address they like into the audit trail (and a host and scheme into the
links the server gives out). So the socket's peer is the
client, unless it is one of the trusted proxies (BEVAN_TRUSTED_PROXIES); then the
forwarded chain is read from the right, past every trusted proxy, and the first address
that is not one is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidProxySetting(ValueError):
    """BEVAN_TRUSTED_PROXIES names something that is not an address or a network."""


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose forwarded headers are believed (none by default)."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        """Return the proxies named by addresses or CIDR networks ("10.0.0.0/8", "::1")."""
        networks = []
        for entry in entries:
            text = entry.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise InvalidProxySetting(
                    f"BEVAN_TRUSTED_PROXIES: {text!r} is not an address or a network"
                ) from None
        return cls(tuple(networks))

    def trusts(self, address: str | None) -> bool:
        """Return True if address is one of the trusted proxies."""
        if not self.networks or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def client_address(scope: Mapping[str, Any], trusted: TrustedProxies) -> str | None:
    """Return the address of the client a request came from (the socket's peer, unless
    that is a trusted proxy: then the nearest untrusted address it forwarded)."""
    peer = scope.get("client")
    address: str | None = peer[0] if peer else None
    if not trusted.trusts(address):
        return address
    chain = _forwarded_chain(scope.get("headers", ()))
    for hop in reversed(chain):
        if not trusted.trusts(hop):
            return hop
    return chain[0] if chain else address


def _forwarded_chain(headers: Sequence[tuple[bytes, bytes]]) -> list[str]:
    """Return the addresses a request passed through, nearest the client first: from
    Forwarded (RFC 7239) if present, else X-Forwarded-For."""
    forwarded, x_forwarded = [], []
    for key, value in headers:
        if key == b"forwarded":
            for element in value.decode("latin-1").split(","):
                for pair in element.split(";"):
                    name, _, given = pair.strip().partition("=")
                    if name.lower() == "for":
                        forwarded.append(_bare(given.strip().strip('"')))
        elif key == b"x-forwarded-for":
            x_forwarded += [_bare(a.strip()) for a in value.decode("latin-1").split(",")]
    return [a for a in (forwarded or x_forwarded) if a]


def _bare(address: str) -> str:
    """Return an address without its port or IPv6 brackets ("[::1]:80" -> "::1")."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    if address.count(":") == 1:
        return address.partition(":")[0]
    return address


_WEBSOCKET = {"http": "ws", "https": "wss"}


class ForwardedHeaders:
    """ASGI middleware: for a request through a trusted proxy, take the client's address,
    scheme and host from what the proxy forwarded, so that links, the OAuth audience and
    the audit trail all see the request as the client made it. From anyone else the
    forwarded headers change nothing."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            if self.proxies.trusts(peer[0] if peer else None):
                scope = dict(scope)
                address = client_address(scope, self.proxies)
                if address is not None:
                    scope["client"] = (address, 0)
                scheme, host = _forwarded_origin(scope.get("headers", ()))
                if scheme in ("http", "https"):
                    scope["scheme"] = scheme if scope["type"] == "http" else _WEBSOCKET[scheme]
                if host:
                    scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [
                        (b"host", host.encode("latin-1"))
                    ]
        await self.app(scope, receive, send)


def _forwarded_origin(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """Return the scheme and host the client used, as the nearest proxy forwarded them:
    from Forwarded (RFC 7239) if present, else X-Forwarded-Proto and X-Forwarded-Host."""
    scheme = host = None
    x_scheme = x_host = None
    for key, value in headers:
        text = value.decode("latin-1")
        if key == b"forwarded":
            nearest = text.split(",")[-1]
            for pair in nearest.split(";"):
                name, _, given = pair.strip().partition("=")
                if name.lower() == "proto":
                    scheme = given.strip('"').lower()
                elif name.lower() == "host":
                    host = given.strip('"')
        elif key == b"x-forwarded-proto":
            x_scheme = text.split(",")[-1].strip().lower()
        elif key == b"x-forwarded-host":
            x_host = text.split(",")[-1].strip()
    if scheme is None and host is None:
        return x_scheme, x_host
    return scheme, host
