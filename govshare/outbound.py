"""Outbound HTTP that cannot be aimed at the exchange's own network.

Webhooks, HTTP sources and S3 endpoints are URLs a department gives us. Without a check
they reach what only the server can reach: its loopback services, the private network
and the cloud metadata endpoint (169.254.169.254, fd00:ec2::254), which hands out the
server's credentials. So every outbound request's host is resolved, each address is
checked, and the connection goes to the address that was checked (a second lookup could
answer differently: DNS rebinding). Redirects are followed by the client one hop at a
time, and each hop passes through the same transport, so each is checked the same way.
Live services call providers through ``AsyncSession`` (aiohttp), with the same policy:
names checked as each connection is made, addresses in the URL before each request, and
no redirect followed.

``GOVSHARE_OUTBOUND_ALLOWLIST`` (a JSON list of host names, addresses or CIDR ranges)
names the internal hosts that may be reached all the same: a name there is allowed
whatever it resolves to; an address or range, for any host resolving into it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.abc
import certifi
import httpx
import yarl
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from govshare.settings import get_settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata endpoints: link-local or private already, named so that no allowlisted range lets them through.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


class OutboundRefused(httpx.TransportError):
    """An outbound request to an address the exchange does not call (an ``httpx.TransportError``, so callers' handlers see it)."""


class Unresolvable(OutboundRefused):
    """A host name that resolves to no address (refused at call time; a registration may name it all the same)."""


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
        literal = _literal(host)
        if literal is not None:
            return self.choose(host, [literal])
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise Unresolvable(f"{host} could not be resolved: {error}") from None
        return self.choose(host, _addresses(host, infos))

    async def resolve_async(self, host: str, port: int) -> str:
        """``resolve`` on the running event loop (the name looked up without blocking it)."""
        literal = _literal(host)
        if literal is not None:
            return self.choose(host, [literal])
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise Unresolvable(f"{host} could not be resolved: {error}") from None
        return self.choose(host, _addresses(host, infos))

    def choose(self, host: str, found: list[Address]) -> str:
        """An allowed address of ``found`` (the connection goes to the address returned, so any allowed one will do)."""
        reasons = []
        for address in found:
            if (reason := self.refusal(host, address)) is None:
                return str(address)
            reasons.append(reason)
        raise OutboundRefused(reasons[0])

    def registration_refusal(self, url: str) -> str | None:
        """Why ``url`` may not be registered as a service to call (its host internal and not allowlisted), or None.

        A name that does not resolve now is let through: the address is checked again at every call,
        since what a name resolves to can change.
        """
        parsed = httpx.URL(url)
        if not parsed.host:
            return f"{url} names no host"
        try:
            self.resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
        except Unresolvable:
            return None
        except OutboundRefused as refusal:
            return str(refusal)
        return None

    def check_url(self, url: str) -> None:
        """Raise ``OutboundRefused`` unless ``url``'s host resolves to an allowed address.

        Without pinning: for clients that take no transport of ours (pyarrow's S3 client), which
        resolve the name again themselves.
        """
        parsed = httpx.URL(url)
        if not parsed.host:
            raise OutboundRefused(f"{url} names no host")
        self.resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _addresses(host: str, infos: list) -> list[Address]:
    found = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
    if not found:
        raise Unresolvable(f"{host} resolves to no address")
    return found


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


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's name lookup through the policy: a connection is made only to the address checked."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[aiohttp.abc.ResolveResult]:
        address = await self._policy.resolve_async(host, port)
        version = ipaddress.ip_address(address).version
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET6 if version == 6 else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


class AsyncSession:
    """A pooled keep-alive ``aiohttp.ClientSession`` for calls to URLs others gave us, with ``client``'s checks.

    aiohttp, not httpx, on the live services' hot path: on this machine an httpx.AsyncClient
    request cost 1.6-1.8 ms of CPU against aiohttp's 0.2 ms (evaluation/bench/REPORT.md, "live").
    Names are resolved through the policy at each new connection (``GuardedResolver``: no DNS
    cache, so a name that now points inside is refused); an address written in the URL never
    reaches a resolver in aiohttp, so it is checked here before every request. Redirects are
    not followed, no cookies are kept, no proxy is taken from the environment, and answers are
    read as sent (not decompressed: a size limit counts what arrived).
    """

    def __init__(self, *, policy: Policy, ssl_context: ssl.SSLContext | None = None, connections: int = 256,
                 keepalive_seconds: float = 30) -> None:
        self._policy = policy
        self._literals: dict[str, str | None] = {}  # host written as an address -> why refused (None: allowed)
        connector = aiohttp.TCPConnector(limit=connections, use_dns_cache=False, resolver=GuardedResolver(policy),
                                         ssl=ssl_context if ssl_context is not None else True, keepalive_timeout=keepalive_seconds)
        # No time limit of aiohttp's own (a timer per request): callers bound each exchange whole (asyncio.timeout).
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                             trust_env=False, skip_auto_headers=("User-Agent",),
                                             timeout=aiohttp.ClientTimeout(total=None))

    def check(self, url: yarl.URL) -> None:
        """``OutboundRefused`` when ``url``'s host is an address the policy refuses (names are checked as resolved)."""
        host = url.host or ""
        if host not in self._literals:
            literal = _literal(host)
            reason = None
            if literal is not None:
                try:
                    self._policy.choose(host, [literal])
                except OutboundRefused as refusal:
                    reason = str(refusal)
            if len(self._literals) >= 256:
                self._literals.clear()
            self._literals[host] = reason
        if self._literals[host] is not None:
            raise OutboundRefused(self._literals[host])

    def request(self, method: str, url: str, **kwargs: Any):
        """``aiohttp.ClientSession.request`` (use as ``async with``), checked first and never redirected."""
        target = yarl.URL(url, encoded=True)
        if not target.host:
            raise OutboundRefused(f"{url} names no host")
        self.check(target)
        return self.session.request(method, target, allow_redirects=False, **kwargs)

    async def close(self) -> None:
        await self.session.close()


def async_session(*, allowlist: Iterable[str] | None = None, ssl_context: ssl.SSLContext | None = None,
                  **kwargs: Any) -> AsyncSession:
    """``client``'s checks on an ``AsyncSession`` (aiohttp): ``ssl_context`` verifies the server (and may hold a
    client certificate); the allowlist defaults to ``GOVSHARE_OUTBOUND_ALLOWLIST``."""
    chosen = Policy.from_allowlist(allowlist) if allowlist is not None else policy()
    return AsyncSession(policy=chosen, ssl_context=ssl_context, **kwargs)


def tls_context(*, ca_certificate: str | None = None, certificate: str | None = None,
                private_key: str | None = None) -> ssl.SSLContext:
    """A TLS client context: the server verified against ``ca_certificate`` (PEM; the public roots when None), and
    ``certificate`` with ``private_key`` (PEM) presented to it when given (mutual TLS).

    ``ValueError`` names the field that is not usable: ``ca_certificate``, ``certificate`` or ``private_key``.
    The key reaches OpenSSL through a file, as Python's ssl module loads keys only from files: that
    file holds it encrypted with a one-time password, in a private folder, and is removed at once.
    """
    if ca_certificate is not None:
        try:
            x509.load_pem_x509_certificates(ca_certificate.encode())
            context = ssl.create_default_context(cadata=ca_certificate)
        except (ValueError, ssl.SSLError) as error:
            raise ValueError(f"ca_certificate: not a PEM certificate ({error})") from None
    else:
        context = ssl.create_default_context(cafile=certifi.where())
    if certificate is None and private_key is None:
        return context
    if certificate is None or private_key is None:
        raise ValueError(f"{'certificate' if certificate is None else 'private_key'}: a client certificate and its private key go together")
    try:
        chain = x509.load_pem_x509_certificates(certificate.encode())
    except ValueError as error:
        raise ValueError(f"certificate: not a PEM certificate ({error})") from None
    try:
        key = serialization.load_pem_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"private_key: not an unencrypted PEM private key ({error})") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise ValueError("private_key: does not match the certificate's public key")
    password = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="govshare-tls-") as folder:  # mode 0700
        path = os.path.join(folder, "client.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(password)))
            file.write(b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain))
        try:
            context.load_cert_chain(path, password=password)
        except ssl.SSLError as error:
            raise ValueError(f"certificate: not usable with its private key ({error})") from None
    return context
