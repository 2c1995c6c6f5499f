"""A minimal HTTP/1.1 client for one job: POST a body on a kept-alive connection, read the
status and (a bounded part of) the answer.

Why not ``http.client``, ``h11`` or ``httpx``: measured on loopback (docs/performance.md), a
POST and its answer cost about 240 µs of CPU through ``http.client`` (its header parsing goes
through the ``email`` package) and as much through ``h11``, against about 40 µs here, and the
delivery target (5,000 messages/s on two cores, shared with the receiver) leaves less than
200 µs per message for everything. What is needed is small: requests we build ourselves (no
user-supplied header names or values: the ids are UUIDs, the rest is ours), and answers read
by ``Content-Length``, ``Transfer-Encoding: chunked``, or to the close, honouring
``Connection: close``, skipping ``1xx`` interim answers. Connections are opened through
:class:`~consentry.outbound.targets.TargetPolicy`, which checks every address it connects to.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass

from .targets import TargetPolicy

#: The longest status line and header block accepted.
MAX_HEAD = 64 * 1024
#: Past this many body bytes the answer is not read further: the connection is closed.
MAX_BODY = 1024 * 1024


class ProtocolError(OSError):
    """The endpoint's answer is not HTTP/1.x as expected."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # the first ``keep`` bytes
    will_close: bool


class Connection:
    """One kept-alive connection to ``host:port`` (TLS when ``tls``)."""

    def __init__(
        self, host: str, port: int, *, tls: bool, timeout_s: float, policy: TargetPolicy
    ) -> None:
        sock = policy.connect(host, port, timeout_s)
        if tls:
            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self._buf = bytearray()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def post(self, head: bytes, body: bytes, keep: int) -> Answer:
        """Send one request (``head`` ends with the blank line) and read its answer."""
        self.sock.sendall(head + body)
        while True:
            status, version, fields = self._read_head()
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer: the real one follows
            break
        close = fields.get("connection", "").lower() == "close" or (
            version == "HTTP/1.0" and fields.get("connection", "").lower() != "keep-alive"
        )
        if status in (204, 304) or 100 <= status < 200:
            return Answer(status, b"", close)
        if "chunked" in fields.get("transfer-encoding", "").lower():
            data, complete = self._read_chunked()
        elif "content-length" in fields:
            try:
                length = int(fields["content-length"])
            except ValueError:
                raise ProtocolError("a bad Content-Length") from None
            data, complete = self._read_exactly(length)
        else:
            data, complete = self._read_to_close(), False
        return Answer(status, bytes(data[:keep]), close or not complete)

    # -- reading ------------------------------------------------------------------------------

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the endpoint closed the connection")
        self._buf += chunk

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            if len(self._buf) > MAX_HEAD:
                raise ProtocolError("an answer line too long")
            self._fill()

    def _read_head(self) -> tuple[int, str, dict[str, str]]:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > MAX_HEAD:
                raise ProtocolError("an answer head too long")
            self._fill()
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        return int(parts[1]), parts[0], fields

    def _read_exactly(self, length: int) -> tuple[bytes, bool]:
        if length > MAX_BODY:
            return b"", False  # not worth reading: close the connection instead
        while len(self._buf) < length:
            self._fill()
        data = bytes(self._buf[:length])
        del self._buf[:length]
        return data, True

    def _read_chunked(self) -> tuple[bytes, bool]:
        out = bytearray()
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError("a bad chunk size") from None
            if size == 0:
                while self._line():  # trailers, up to the blank line
                    pass
                return bytes(out), True
            if len(out) + size > MAX_BODY:
                return bytes(out), False
            data, _ = self._read_exactly(size)
            out += data
            if self._line():
                raise ProtocolError("a chunk not followed by CRLF")

    def _read_to_close(self) -> bytes:
        try:
            while len(self._buf) <= MAX_BODY:
                self._fill()
        except (TimeoutError, ConnectionResetError):
            pass
        data = bytes(self._buf)
        self._buf.clear()
        return data


__all__ = ["Answer", "Connection", "ProtocolError"]
