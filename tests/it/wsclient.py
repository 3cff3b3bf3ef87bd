"""A raw WebSocket client (RFC 6455, client side) for the Live API tests:
plain TCP to the proxy, or TLS (tls=ssl context) straight to the stand-in.

    w = WSClient(port)                          # handshake done; w.status
    m = w.setup(FLASH)                          # ("msg", {"setupComplete": {}}, 2)
    msgs = w.turn("Hello")                      # up to turnComplete
    w.close(4000, "bye"); w.closed()            # (code, reason) or None

Frames out are masked (or not, to test the server's checks), text
messages can be split into fragments with pings between them, and
messages in are reassembled.  recv() returns one of
    ("msg", obj, opcode)        a whole data message, JSON-decoded
    ("close", code, reason)     the peer's close frame
    ("ping", payload, None)     when auto_pong is off (else answered and
                                counted in self.pings)
    ("pong", payload, None)
and raises EOFError when the connection ends without a close frame.
Standard library only; one thread uses a client.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import time

LIVE_PATH = ("/ws/google.ai.generativelanguage.%s.GenerativeService."
             "BidiGenerateContent")
LIVE = LIVE_PATH % "v1beta"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def live_path(version="v1beta", constrained=False, slashes=1):
    return "/" * (slashes - 1) + LIVE_PATH % version + \
        ("Constrained" if constrained else "")


def accept_of(wskey):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(
        (wskey + WS_GUID).encode()).digest()).decode()


def _xor(payload, k):
    n = len(payload)
    if not n:
        return b""
    key = (k * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^
            int.from_bytes(key, "big")).to_bytes(n, "big")


def live_turn(text):
    return {"clientContent": {"turns": [{"role": "user",
                                         "parts": [{"text": text}]}],
                              "turnComplete": True}}


def turn_complete(m):
    return m[0] == "msg" and isinstance(m[1], dict) and \
        bool((m[1].get("serverContent") or {}).get("turnComplete"))


def texts_of(msgs):
    """The text parts of the modelTurns among msgs, in order."""
    out = []
    for m in msgs:
        if m[0] != "msg" or not isinstance(m[1], dict):
            continue
        turn = (m[1].get("serverContent") or {}).get("modelTurn") or {}
        out.extend(p["text"] for p in turn.get("parts", []) if "text" in p)
    return out


def usage_of(msgs):
    """The usageMetadata objects among msgs, in order."""
    return [m[1]["usageMetadata"] for m in msgs
            if m[0] == "msg" and isinstance(m[1], dict)
            and "usageMetadata" in m[1]]


class WSClient:
    """One WebSocket connection; the handshake is done by the constructor.
    status, headers (lower-case names) and body hold the HTTP answer; when
    status is not 101, nothing else works."""

    def __init__(self, port, path=LIVE, headers=None, key=None, tls=None,
                 host="127.0.0.1", timeout=10.0, wskey=None, method="GET",
                 auto_pong=True):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(raw, server_hostname="localhost") \
            if tls else raw
        self.auto_pong = auto_pong
        self.pings = 0          # pings seen (answered when auto_pong)
        self.masked_seen = False
        self.close_sent = False
        self.opcodes = []       # of the data messages received, in order
        self.wskey = wskey or base64.b64encode(os.urandom(16)).decode()
        h = {"Host": "%s:%d" % ("localhost" if tls else host, port),
             "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": self.wskey, "Sec-WebSocket-Version": "13"}
        if key is not None:
            h["x-goog-api-key"] = key
        h.update(headers or {})
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
            "%s: %s\r\n" % (k, v) for k, v in h.items() if v is not None)
        self.sock.sendall((head + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0") or 0)
            try:
                while len(self.buf) < n:
                    d = self.sock.recv(65536)
                    if not d:
                        break
                    self.buf += d
            except OSError:
                pass
            self.body = self.buf[:n]

    # -- the handshake's answer -------------------------------------------
    def accept_ok(self):
        return self.headers.get("sec-websocket-accept") == \
            accept_of(self.wskey)

    def error(self):
        """The Gemini-shaped error of a refused handshake, or {}."""
        try:
            obj = json.loads(self.body)
        except ValueError:
            return {}
        if isinstance(obj, list) and obj:
            obj = obj[0]
        return obj.get("error") or {} if isinstance(obj, dict) else {}

    # -- out ----------------------------------------------------------------
    def frame(self, opcode, payload, fin=True, mask=True, rsv=0):
        n = len(payload)
        b = bytes([(0x80 if fin else 0) | rsv | opcode])
        m = 0x80 if mask else 0
        if n < 126:
            b += bytes([m | n])
        elif n < 65536:
            b += bytes([m | 126]) + struct.pack("!H", n)
        else:
            b += bytes([m | 127]) + struct.pack("!Q", n)
        if mask:
            k = os.urandom(4)
            b += k + _xor(payload, k)
        else:
            b += payload
        self.sock.sendall(b)

    def send(self, obj, binary=False, fragments=1, ping=None):
        """One message holding obj as JSON; in fragments frames (about
        equal), with a ping (payload ping) after each but the last."""
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_bytes(data, binary, fragments, ping)

    def send_bytes(self, data, binary=False, fragments=1, ping=None):
        fragments = max(1, min(fragments, len(data) or 1))
        step = -(-len(data) // fragments)
        pieces = [data[i:i + step] for i in range(0, len(data), step)] or \
            [b""]
        for i, piece in enumerate(pieces):
            op = (OP_BIN if binary else OP_TEXT) if i == 0 else OP_CONT
            last = i == len(pieces) - 1
            self.frame(op, piece, fin=last)
            if ping is not None and not last:
                self.frame(OP_PING, ping)

    def ping(self, payload=b""):
        self.frame(OP_PING, payload)

    def close(self, code=1000, reason=""):
        """Our close frame (code None: one without a code); once."""
        if self.close_sent:
            return
        self.close_sent = True
        payload = b"" if code is None else \
            struct.pack("!H", code) + reason.encode()
        try:
            self.frame(OP_CLOSE, payload)
        except OSError:
            pass

    # -- in -----------------------------------------------------------------
    def _need(self, n):
        while len(self.buf) < n:
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError) as e:
                raise EOFError("reset: %s" % e)
            if not d:
                raise EOFError("eof")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        """(fin, opcode, payload, masked) of the next frame."""
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        mask = self._need(4) if b1 & 0x80 else None
        data = self._need(n)
        if mask:
            data = _xor(data, mask)
        return bool(b0 & 0x80), b0 & 0x0F, data, mask is not None

    def recv(self, timeout=None):
        """The next message (see the module's docstring)."""
        end = None if timeout is None else time.monotonic() + timeout
        parts, op = [], None
        while True:
            # The whole call is bounded, not each read: pings answered
            # on the way must not keep it going for ever.
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                self.sock.settimeout(left)
            fin, opcode, data, masked = self.read_frame()
            self.masked_seen = self.masked_seen or masked
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", data[:2])[0] \
                    if len(data) >= 2 else None
                return ("close", code, data[2:].decode("utf-8", "replace"))
            if opcode == OP_PING:
                self.pings += 1
                if self.auto_pong:
                    self.frame(OP_PONG, data)
                    continue
                return ("ping", data, None)
            if opcode == OP_PONG:
                return ("pong", data, None)
            if opcode != OP_CONT:
                op = opcode
            parts.append(data)
            if fin:
                payload = b"".join(parts)
                self.opcodes.append(op)
                try:
                    obj = json.loads(payload)
                except ValueError:
                    obj = payload
                return ("msg", obj, op)

    def until(self, pred, limit=100, timeout=None):
        """Messages up to and including the first that pred() accepts (or
        a close)."""
        out = []
        for _ in range(limit):
            m = self.recv(timeout)
            out.append(m)
            if pred(m) or m[0] == "close":
                break
        return out

    def closed(self, timeout=None):
        """Read up to the peer's close: (code, reason), answering it with
        the same code as RFC 6455 5.5.1 asks; None when the connection
        ended without one."""
        try:
            for _ in range(1000):
                m = self.recv(timeout)
                if m[0] == "close":
                    self.close(m[1])    # nothing when ours went first
                    return m[1], m[2]
        except (EOFError, OSError):
            return None
        return None

    def ended(self, timeout=5.0):
        """Read until the connection ends (EOF, reset, close frame) or
        timeout: "close", "eof" or None (still open)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                m = self.recv(left)
                if m[0] == "close":
                    return "close"
        except (EOFError, ConnectionError):
            return "eof"
        except socket.timeout:
            return None
        except OSError:
            return "eof"

    # -- a session's steps -------------------------------------------------
    def setup(self, model="models/gemini-2.5-flash", **fields):
        """Send setup (model as given: "models/x" or "x"); the first
        message back."""
        s = {"model": model}
        s.update(fields)
        self.send({"setup": s})
        return self.recv()

    def turn(self, text, binary=False, **kw):
        """A clientContent turn; the messages up to turnComplete."""
        self.send(live_turn(text), binary=binary, **kw)
        return self.until(turn_complete)

    def bye(self, code=1000, reason=""):
        """Close cleanly: our close, the peer's answer; returns it."""
        self.close(code, reason)
        c = self.closed()
        self.shut()
        return c

    def shut(self):
        try:
            self.sock.close()
        except OSError:
            pass
