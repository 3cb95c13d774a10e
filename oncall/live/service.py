"""`oncall receive` without the CLI: bind, serve, drain and stop (tests and scripts use this too)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path

from oncall.errors import InputError
from oncall.live.payload import SOURCE_PREFIX
from oncall.live.receiver import DEFAULT_FLUSH_EVERY, DEFAULT_LINGER, DEFAULT_MAX_BACKLOG_SPANS, Receiver
from oncall.live.server import DEFAULT_MAX_BODY, OTLPServer
from oncall.store.compact import Compactor

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318  # OTLP/HTTP's registered port: exporters send here by default


def is_loopback(host: str) -> bool:
    """True when every address `host` names is on this machine's loopback."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class ReceiveService:
    """The receiver and its HTTP server. start() binds (raising InputError when it cannot)."""

    def __init__(self, db_path: Path, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 token: str | None = None, flush_every: float = DEFAULT_FLUSH_EVERY,
                 max_backlog_spans: int = DEFAULT_MAX_BACKLOG_SPANS, max_body: int = DEFAULT_MAX_BODY,
                 compact: bool = True, linger: float | None = DEFAULT_LINGER) -> None:
        if not is_loopback(host) and not token:
            raise InputError(f"--host {host} accepts traces from other machines; that needs a bearer token: "
                             "put it in an environment variable and pass --token-env NAME")
        self.host = host
        self.port = port
        self.token = token
        self.max_body = max_body
        # A part a second would be thousands of parts an hour: the compactor (store.compact) merges
        # them in its own thread, woken after every part; readers are never blocked by it.
        self.compactor = Compactor(db_path) if compact else None
        self.receiver = Receiver(db_path, source=f"{SOURCE_PREFIX}{host}:{port}", flush_every=flush_every,
                                 max_backlog_spans=max_backlog_spans, linger=linger,
                                 after_flush=(lambda db: self.compactor.poke()) if self.compactor else None)
        self.server: OTLPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Open the incident, bind and serve in a background thread; returns the endpoint URL."""
        self.receiver.start()
        if self.compactor is not None:
            self.compactor.start()
        try:
            self.server = OTLPServer((self.host, self.port), self.receiver, token=self.token, max_body=self.max_body)
        except OSError as exc:
            self.receiver.stop()
            if self.compactor is not None:
                self.compactor.stop()
            raise InputError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc} "
                             "(another receiver or Collector on that port? choose one with --port)") from None
        # The source names the port really bound (--port 0 picks a free one).
        self.port = self.server.server_address[1]
        self.receiver.source = f"{SOURCE_PREFIX}{self.host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="oncall-http", daemon=True)
        self._thread.start()
        return self.server.url

    def stop(self) -> None:
        """Drain: refuse new requests (503), write and acknowledge everything accepted, then close."""
        self.receiver.stop()
        if self.server is not None:
            deadline = time.monotonic() + 5
            while self.server.in_flight and time.monotonic() < deadline:
                time.sleep(0.02)  # handlers released by the last part are sending their 200s
            self.server.shutdown()
            self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self.compactor is not None:
            self.compactor.stop()  # a merge in progress is abandoned cleanly, never half-registered
