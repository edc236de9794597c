"""A lean client-side WebSocket (RFC 6455) for the soak test, as an asyncio.Protocol.

Only what a Pusher client needs: the HTTP/1.1 upgrade, text frames (fragmented or not), control
frames (ping -> pong, close handshake), masked client frames, no extensions. Messages are
handed to a callback synchronously from data_received and sends are plain transport writes, so
a connection costs no task, no queue and no future per message: one Python process can keep
10 000 of them busy (the `websockets` library needs several times the CPU for the same load).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1 << 20


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if n:
        keystream = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")
    return header + mask + payload


def _retrieve(future: asyncio.Future) -> None:
    """Marks a failure as seen, so asyncio does not log it when nobody awaited the future."""
    if not future.cancelled():
        future.exception()


class WsClient(asyncio.Protocol):
    """Subclass and override on_text(payload: bytes) and on_lost(); use send_text/close/abort."""

    __slots__ = (
        "transport", "buf", "handshaken", "accept", "request", "opened", "done",
        "close_code", "close_sent", "frag", "frag_op",
    )

    def __init__(self, host: str, port: int, path: str) -> None:
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"User-Agent: poxide-soak\r\n\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = False
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future = loop.create_future()  # the upgrade was accepted
        self.opened.add_done_callback(_retrieve)
        self.done: asyncio.Future = loop.create_future()  # the TCP connection is gone
        self.close_code: int | None = None  # from the server's close frame; 1006 if none
        self.close_sent = False
        self.frag: list[bytes] | None = None
        self.frag_op = 0

    # -- to override ---------------------------------------------------------------------

    def on_text(self, payload: bytes) -> None:
        pass

    def on_lost(self) -> None:
        pass

    # -- sending -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.handshaken and not self.close_sent and not self.done.done()

    def send_text(self, text: str) -> bool:
        if not self.is_open:
            return False
        self.transport.write(encode_frame(0x1, text.encode()))
        return True

    def close(self, code: int = 1000) -> None:
        """Starts the close handshake; the server answers and closes the TCP connection."""
        if self.transport is None or self.done.done():
            return
        if not self.handshaken:
            self.transport.abort()
            return
        if not self.close_sent:
            self.close_sent = True
            self.transport.write(encode_frame(0x8, code.to_bytes(2, "big")))

    def abort(self) -> None:
        """Drops the TCP connection without a close handshake (a vanished client)."""
        if self.transport is not None and not self.done.done():
            self.transport.abort()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.done.done():
            self.done.set_result(None)
        self.on_lost()

    def fail(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        self.close_code = self.close_code or 1002
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 16384:
                    self.fail("handshake response too long")
                return
            head = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            if not head[0].startswith(b"HTTP/1.1 101"):
                self.fail(f"upgrade refused: {head[0][:100]!r}")
                return
            accept = None
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-accept":
                    accept = value.strip()
            if accept != self.accept:
                self.fail("bad Sec-WebSocket-Accept")
                return
            self.handshaken = True
            self.opened.set_result(None)
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            off = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[off : off + 2], "big")
                off += 2
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[off : off + 8], "big")
                off += 8
            if b1 & 0x80 or b0 & 0x70 or length > MAX_MESSAGE:
                self.fail("masked, reserved-bit or oversized server frame")
                return
            if n - off < length:
                break
            payload = bytes(buf[off : off + length])
            pos = off + length
            self.frame(b0 & 0x80, b0 & 0x0F, payload)
            if self.done.done():
                return
        if pos:
            del buf[:pos]

    def frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x1 or opcode == 0x2:
            if fin:
                if opcode == 0x1:
                    self.on_text(payload)
            else:
                self.frag, self.frag_op = [payload], opcode
        elif opcode == 0x0:
            if self.frag is None:
                self.fail("continuation without a start")
                return
            self.frag.append(payload)
            if fin:
                message, self.frag = b"".join(self.frag), None
                if self.frag_op == 0x1:
                    self.on_text(message)
        elif opcode == 0x9:  # ping
            if not self.close_sent:
                self.transport.write(encode_frame(0xA, payload))
        elif opcode == 0x8:  # close: answer it; the server then closes the TCP connection
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.close_sent:
                self.close_sent = True
                self.transport.write(encode_frame(0x8, payload[:2]))
            asyncio.get_running_loop().call_later(5, self.abort)  # if it does not
