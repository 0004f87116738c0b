"""The host names ``dbsafe serve`` answers to (the ``Host`` header), against DNS rebinding.

A page of any web site can make a browser on the dbsafe host send requests to
``http://127.0.0.1:8270`` under a name of the site's own (its DNS answer switches to
127.0.0.1 once the page is loaded): the browser then treats the portal as part of that site.
Such a request carries the site's name in ``Host``; the gate refuses every name that is not
one of the portal's own (400 ``request.bad_host``), before it reads anything else.

The names allowed: ``localhost``, ``127.0.0.1`` and ``::1``; the address given to
``--host``; every ``--allowed-host NAME``. When serving on every address (``0.0.0.0`` or
``::``) also this host's own names and any IP address literal: a browser sends an address
literal only to a page opened by that address, which no DNS answer can rebind.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::")


def _address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(header: str) -> str | None:
    """The name of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower-case,
    without a final dot; None when it is not one."""
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name if _address(name) else None
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    name = name.rstrip(".")
    if not name or any(not (c.isalnum() or c in "-._") for c in name) or not name.isascii():
        return None
    return name


class AllowedHosts:
    def __init__(self, names: Iterable[str], any_address: bool = False) -> None:
        self.names = frozenset(n.strip().lower().rstrip(".") for n in names)
        self.any_address = any_address

    @classmethod
    def for_serving(cls, host: str, extra: Iterable[str] = ()) -> AllowedHosts:
        """The names a serve on ``host`` answers to, with the administrator's ``extra``."""
        names = {*LOOPBACK_NAMES, *extra}
        every = host in EVERY_ADDRESS
        if every:
            names |= {socket.gethostname(), socket.getfqdn()}
        else:
            names.add(host)
        return cls(names, any_address=every)

    def allows(self, header: str | None) -> bool:
        name = host_name(header) if header else None
        if name is None:
            return False
        return name in self.names or (self.any_address and _address(name))
