"""Where a webhook may point: public addresses only, unless the operator allows more.

A webhook URL is chosen by whoever subscribes, which includes an account administrator: a URL
naming ``127.0.0.1``, ``10.0.0.5`` or ``169.254.169.254`` would make the delivery worker send
requests inside the operator's network on that person's behalf (server-side request forgery).
So a target must resolve to *global* addresses only (not loopback, private, link-local,
carrier-grade NAT, multicast, reserved or unspecified), except for the networks the operator
lists in ``CONSENTRY_WEBHOOK_ALLOW_NETWORKS`` (comma-separated CIDRs, e.g.
``127.0.0.0/8,10.20.0.0/16``; ``*`` allows every address).

The check runs twice: when a subscription is made (for a quick, clear refusal) and again at
every connection the worker opens, on the addresses it is about to connect to: it resolves the
name itself, refuses if *any* answer is outside what is allowed, and connects to an address it
checked, so a name that resolved to a public address at subscription time and to an internal
one later (DNS rebinding) is caught.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

ENV = "CONSENTRY_WEBHOOK_ALLOW_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(Exception):
    """A webhook target resolves to an address the operator has not allowed."""


@dataclass(frozen=True)
class TargetPolicy:
    """The non-public networks a webhook may nevertheless reach (``any``: everything)."""

    allowed: tuple[IPNetwork, ...] = ()
    any: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TargetPolicy:
        """Read ``CONSENTRY_WEBHOOK_ALLOW_NETWORKS``; a bad entry is an error naming it."""
        env = os.environ if environ is None else environ
        return cls.parse(env.get(ENV) or "")

    @classmethod
    def parse(cls, text: str) -> TargetPolicy:
        items = [p.strip() for p in text.split(",") if p.strip()]
        if "*" in items:
            return cls(any=True)
        nets: list[IPNetwork] = []
        for item in items:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise InvalidInput(
                    f"{ENV}: {item!r} is not a network",
                    hint="give CIDRs separated by commas, e.g. 127.0.0.0/8,10.20.0.0/16",
                    field=ENV,
                ) from None
        return cls(tuple(nets))

    def allows(self, address: IPAddress) -> bool:
        """Whether a connection to ``address`` is allowed."""
        if self.any:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in net for net in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise :class:`TargetRefused` unless every address of ``host`` is allowed."""
        for address in addresses:
            if not self.allows(address):
                raise TargetRefused(
                    f"{host} resolves to {address}, which is not a public address; an operator "
                    f"can allow it with {ENV}"
                )

    def resolve(self, host: str, port: int) -> list[tuple[int, Any]]:
        """``(family, sockaddr)`` of ``host`` to connect to, every one of them checked."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found: list[tuple[int, Any]] = [(int(fam), addr) for fam, _t, _p, _c, addr in infos]
        self.check(host, [ipaddress.ip_address(str(addr[0]).split("%")[0]) for _f, addr in found])
        return found

    def connect(self, host: str, port: int, timeout_s: float) -> socket.socket:
        """A TCP connection to ``host`` on an address that passed the check."""
        error: OSError | None = None
        for family, addr in self.resolve(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout_s)
                sock.connect(addr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise error or OSError(f"{host} has no address")


def check_target(url_host: str, policy: TargetPolicy | None = None) -> None:
    """At subscription time: refuse a host that is, or resolves to, an address not allowed.
    A name that does not resolve here is accepted (the worker checks again at each
    connection, and a name may well resolve only where the worker runs)."""
    policy = policy or TargetPolicy.from_env()
    if policy.any:
        return
    try:
        literal = ipaddress.ip_address(url_host.strip("[]"))
    except ValueError:
        literal = None
    try:
        if literal is not None:
            policy.check(url_host, [literal])
        else:
            try:
                policy.resolve(url_host, 443)
            except OSError:
                return
    except TargetRefused as exc:
        raise InvalidInput(
            f"webhook URL refused: {exc}",
            hint="give an endpoint on a public address",
            field="url",
        ) from None


__all__ = ["ENV", "TargetPolicy", "TargetRefused", "check_target"]
