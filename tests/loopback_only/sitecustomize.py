"""Loaded by every generator subprocess the exporter tests start (tests/exporter_checks.py puts this
folder on PYTHONPATH): the libraries under test may reach only loopback addresses.

LiteLLM, for one, fetches a model price map from the internet unless told not to. A name lookup or
connection to anything but 127.0.0.0/8, ::1 or localhost raises at once, so a library that phones
home fails its test loudly instead of sending traffic off the machine.
"""

from __future__ import annotations

import ipaddress
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _check(address: object) -> None:
    if isinstance(address, tuple) and address and not _is_loopback(address[0]):
        raise OSError(f"exporter tests allow loopback only; refused {address[0]!r}")


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_loopback(host):
        raise socket.gaierror(socket.EAI_NONAME, f"exporter tests allow loopback only; refused {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _connect_ex(self, address)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
