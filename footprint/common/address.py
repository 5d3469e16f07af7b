"""Listening addresses given on the command line: `--prometheus` and `footprint serve --listen`. Pure."""

from __future__ import annotations

from footprint.common.errors import FootprintError

LOOPBACK = "127.0.0.1"  # the default host: nothing is served to the network unless asked


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """'9464', ':9464', 'host:9464' or '[::1]:9464' -> (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if ":" in host and not host.startswith("["):  # '::1' alone: an IPv6 host needs its brackets and a port
        raise FootprintError(f"{flag} takes [HOST:]PORT, with an IPv6 host in brackets ([::1]:PORT), got '{text}'")
    host = host.strip("[]") or LOOPBACK
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise FootprintError(f"{flag} takes [HOST:]PORT, got '{text}'")
    return host, int(port)
