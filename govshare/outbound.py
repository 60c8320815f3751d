"""Outbound HTTP that cannot be aimed at the exchange's own network.

Webhooks, HTTP sources and S3 endpoints are URLs a department gives us. Without a check
they reach what only the server can reach: its loopback services, the private network
and the cloud metadata endpoint (169.254.169.254, fd00:ec2::254), which hands out the
server's credentials. So every outbound request's host is resolved, each address is
checked, and the connection goes to the address that was checked (a second lookup could
answer differently: DNS rebinding). Redirects are followed by the client one hop at a
time, and each hop passes through the same transport, so each is checked the same way.

``GOVSHARE_OUTBOUND_ALLOWLIST`` (a JSON list of host names, addresses or CIDR ranges)
names the internal hosts that may be reached all the same: a name there is allowed
whatever it resolves to; an address or range, for any host resolving into it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from govshare.settings import get_settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata endpoints: link-local or private already, named so that no allowlisted range lets them through.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


class OutboundRefused(httpx.TransportError):
    """An outbound request to an address the exchange does not call (an ``httpx.TransportError``, so callers' handlers see it)."""


def _kind(address: Address) -> str | None:
    """Why ``address`` is internal (loopback, private, ...), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for kind, flag in (("a loopback", address.is_loopback), ("a link-local", address.is_link_local),
                       ("a multicast", address.is_multicast), ("an unspecified", address.is_unspecified),
                       ("a reserved", address.is_reserved), ("a private", address.is_private)):
        if flag:
            return f"{kind} address"
    if not address.is_global:
        return "not a public address"  # shared (100.64/10), documentation and other special ranges
    return None


@dataclass(frozen=True)
class Policy:
    """Which hosts and addresses outbound requests may reach beyond the public internet."""

    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def from_allowlist(cls, entries: Iterable[str]) -> Policy:
        hosts, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def refusal(self, host: str, address: Address) -> str | None:
        """Why ``host`` at ``address`` may not be called, or None when it may."""
        kind = _kind(address)
        if kind is None or host.lower().rstrip(".") in self.hosts:
            return None
        if address not in METADATA_ADDRESSES and any(address in network for network in self.networks):
            return None
        return f"{host} is {address}, {kind}; outbound calls reach it only when GOVSHARE_OUTBOUND_ALLOWLIST names it"

    def resolve(self, host: str, port: int) -> str:
        """The checked address to connect to for ``host``: every address it resolves to must be allowed."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as error:
                raise OutboundRefused(f"{host} could not be resolved: {error}") from None
            found = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
            if not found:
                raise OutboundRefused(f"{host} resolves to no address")
        # The connection goes to the address returned, so any allowed one will do.
        reasons = []
        for address in found:
            if (reason := self.refusal(host, address)) is None:
                return str(address)
            reasons.append(reason)
        raise OutboundRefused(reasons[0])

    def check_url(self, url: str) -> None:
        """Raise ``OutboundRefused`` unless ``url``'s host resolves to an allowed address.

        Without pinning: for clients that take no transport of ours (pyarrow's S3 client), which
        resolve the name again themselves.
        """
        parsed = httpx.URL(url)
        if not parsed.host:
            raise OutboundRefused(f"{url} names no host")
        self.resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))


def policy() -> Policy:
    """The policy of ``GOVSHARE_OUTBOUND_ALLOWLIST``."""
    return Policy.from_allowlist(get_settings().outbound_allowlist)


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport that connects only to addresses the policy allows, pinned to the address it checked."""

    def __init__(self, *, policy: Policy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        address = self._policy.resolve(host, request.url.port or (443 if request.url.scheme == "https" else 80))
        if address == host:
            return super().handle_request(request)
        # A copy, so that redirects are still resolved against the name: its Host header keeps the
        # name (set when the request was built), and TLS checks the certificate against the name.
        pinned = httpx.Request(request.method, request.url.copy_with(host=address), headers=request.headers,
                               stream=request.stream, extensions={**request.extensions, "sni_hostname": host})
        return super().handle_request(pinned)


def client(*, allowlist: Iterable[str] | None = None, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` for calls to URLs others gave us: internal addresses refused (``OutboundRefused``) on
    every request and redirect, unless ``allowlist`` (default: ``GOVSHARE_OUTBOUND_ALLOWLIST``) names them.

    Keyword arguments go to ``httpx.Client`` (timeout, headers, follow_redirects...); proxies from the
    environment are not used, since a proxy would make the connection the check was about.
    """
    chosen = Policy.from_allowlist(allowlist) if allowlist is not None else policy()
    return httpx.Client(transport=GuardedTransport(policy=chosen), trust_env=False, **kwargs)
