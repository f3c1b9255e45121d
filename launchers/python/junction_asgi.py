"""ASGI 3.0 for Junction's Python launcher: http, websocket and lifespan
scopes as Unit 1.35 gives them (spec/applications.md section 4.3), legacy
ASGI 2 (double-callable) applications included.

Loaded by junction_python.py (the "core" below) for ASGI applications. Each
of the `threads` runs its own asyncio event loop; the first one, on the main
thread, also owns the router connections: it reads frames, starts requests
on the least busy loop and writes the output of all of them, batched per
loop iteration. With one thread nothing crosses threads.

Standard library only; Python 3.9 or later.
"""

import asyncio
import collections
import signal
import socket
import sys
import threading
import types

core = None  # junction_python, set by serve()

# Frame types and flags, copied from the core by serve().
T_HELLO = T_REQUEST = T_DATA = T_HEAD = T_CREDIT = T_ABORT = T_ERROR = 0
T_WS_ACCEPT = T_WS_TEXT = T_WS_BINARY = T_WS_CLOSE = 0
F_END = F_MORE = RF_TLS = RF_WEBSOCKET = 0
MAX_DATA = CREDIT_AT = 0
_pack_hdr = _pack_u16 = _pack_u32 = None
STATUS = None

# Requests one process serves at once (ASGI takes every request at once).
ASGI_SLOTS = 65535

WS_INIT, WS_CONNECT, WS_ACCEPTED, WS_DISCONNECTED, WS_CLOSED = range(5)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011

_DISCONNECT = 'http.disconnect'


def _asgi_version(spec):
    return {'version': '3.0', 'spec_version': spec}


def _address(text, port):
    """A scope `client`/`server` pair: (ip, port) or, for Unix sockets, (path, None)."""
    if text.startswith('unix:'):
        return (text[5:], None)
    return (text, port)


# -- output: one router connection ------------------------------------------

class Connection:
    """One router connection, read and written on the first loop.

    Output of every stream is queued in `out` and written once per loop
    iteration (a flush scheduled with call_soon runs after everything that is
    ready now); what the socket does not take waits for it to be writable.
    """

    def __init__(self, sock, server):
        self.sock = sock
        self.fd = sock.fileno()
        self.server = server
        self.loop = server.workers[0].loop
        self.owner = threading.get_ident()
        self.streams = {}
        self.peer_window = core.WINDOW
        self.buf = b''
        self.out = []
        self.backlog = collections.deque()
        self.scheduled = False
        self.closed = False
        self.lock = threading.Lock()
        if server.threads == 1:
            self.emit = self.emit_here
        sock.setblocking(False)
        self.loop.add_reader(self.fd, self.on_readable)
        self.emit(core.hello_frame(ASGI_SLOTS, 0, core.FEATURE_WEBSOCKET))

    def emit_here(self, data):
        """emit() when every stream runs on this connection's loop (one thread)."""
        self.out.append(data)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def emit(self, data):
        """Queue `data` for the router; written at the end of this loop iteration."""
        if threading.get_ident() == self.owner:
            self.out.append(data)
            if not self.scheduled:
                self.scheduled = True
                self.loop.call_soon(self.flush)
            return
        with self.lock:
            self.out.append(data)
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self.flush)

    def flush(self):
        if self.server.threads > 1:
            with self.lock:
                parts = self.out
                self.out = []
                self.scheduled = False
        else:
            parts = self.out
            self.out = []
            self.scheduled = False
        if self.closed or not parts:
            return
        if self.backlog:
            self.backlog.extend(parts)
            return
        data = parts[0] if len(parts) == 1 else b''.join(parts)
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.shut()
            return
        if n < len(data):
            self.backlog.append(memoryview(data)[n:])
            self.loop.add_writer(self.fd, self.on_writable)

    def on_writable(self):
        """Write what the socket did not take before, oldest first."""
        backlog = self.backlog
        while backlog:
            head = backlog[0]
            try:
                n = self.sock.send(head)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.shut()
                return
            if n < len(head):
                backlog[0] = memoryview(head)[n:]
                return
            backlog.popleft()
        self.loop.remove_writer(self.fd)

    def on_readable(self):
        try:
            chunk = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b''
        if not chunk:
            self.shut()
            return
        buf = self.buf + chunk if self.buf else chunk
        off = 0
        n = len(buf)
        streams = self.streams
        start = self.server.start
        unpack = core.HDR.unpack_from
        hsize = core.HDR_SIZE
        while n - off >= hsize:
            length, ftype, flags, _, sid = unpack(buf, off)
            end = off + hsize + length
            if end > n:
                break
            payload = buf[off + hsize:end]
            off = end
            if ftype == T_REQUEST:
                start(self, sid, payload, flags)
                continue
            s = streams.get(sid)
            if s is None:
                if ftype == T_HELLO and sid == 0:
                    version = core.U16.unpack_from(payload)[0]
                    if version != core.PROTOCOL_VERSION:
                        core.log('alert', 'unsupported application protocol version %d' % version)
                        self.shut()
                        return
                    self.peer_window = core.U32.unpack_from(payload, 12)[0]
                continue
            if s.worker.loop is self.loop:
                s.frame(ftype, flags, payload)
            else:
                s.worker.loop.call_soon_threadsafe(s.frame, ftype, flags, payload)
        self.buf = buf[off:] if off < n else b''

    def shut(self):
        """The router closed the connection: every open stream is aborted."""
        if self.closed:
            return
        self.closed = True
        try:
            self.server.connections.remove(self)
        except ValueError:
            pass
        try:
            self.loop.remove_reader(self.fd)
            if self.backlog:
                self.loop.remove_writer(self.fd)
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        for s in list(self.streams.values()):
            if s.worker.loop is self.loop:
                s.frame(T_ABORT, 0, b'')
            else:
                s.worker.loop.call_soon_threadsafe(s.frame, T_ABORT, 0, b'')
        self.streams.clear()


# -- one request ----------------------------------------------------------------

class Stream:
    """What http and websocket streams share: identity, window, terminal frame."""

    __slots__ = ('conn', 'worker', 'sid', 'loop', 'send_window', 'consumed', 'finished',
                 'receiver', 'sender', 'gone', 'emit')

    def __init__(self, conn, worker, sid):
        self.conn = conn
        self.worker = worker
        self.loop = worker.loop
        self.sid = sid
        self.send_window = conn.peer_window
        self.consumed = 0
        self.finished = False
        self.receiver = None    # future of a receive() waiting for input
        self.sender = None      # future of a send() waiting for window
        self.gone = False       # the router aborted the stream
        self.emit = conn.emit

    def credit_in(self, payload):
        if len(payload) >= 4:
            self.send_window += core.U32.unpack_from(payload)[0]
            self.wake_sender()

    def wake_sender(self):
        f = self.sender
        if f is not None and not f.done():
            self.sender = None
            f.set_result(None)

    def waiting(self):
        """A receive() waits (and was not cancelled): input can go straight to it."""
        f = self.receiver
        return f is not None and not f.done()

    def wake_receiver(self, message):
        f = self.receiver
        if f is not None:
            self.receiver = None
            if not f.done():
                f.set_result(message)
            return True
        return False

    def consumed_bytes(self, n, eof):
        """Give the router window back as body bytes are consumed."""
        self.consumed += n
        if self.consumed >= CREDIT_AT and not eof:
            c = self.consumed
            self.consumed = 0
            self.emit(_pack_hdr(4, T_CREDIT, 0, 0, self.sid) + _pack_u32(c))

    async def window(self, want):
        """Body bytes of `want` that may go now; waits for CREDIT. 0 when the stream is gone."""
        while self.send_window <= 0:
            if self.gone or self.conn.closed:
                return 0
            f = self.loop.create_future()
            self.sender = f
            await f
        if self.gone or self.conn.closed:
            return 0
        room = min(self.send_window, want)
        self.send_window -= room
        return room

    def terminal(self, ftype, flags=0, payload=b''):
        """The one terminal frame of the stream; ftype 0: it went out already."""
        if self.finished:
            return
        self.finished = True
        self.conn.streams.pop(self.sid, None)
        self.worker.active -= 1
        if ftype:
            self.emit(_pack_hdr(len(payload), ftype, flags, 0, self.sid) + payload)


# (name, value) → (encoded field, Content-Length value or -2 when not Content-Length);
# most responses repeat the same fields. Cleared when full.
_FIELD_CACHE = {}
_CACHE_SIZE = 1024


def _encode_field(h, i):
    """Encode one ASGI header (a [name, value] pair of byte strings); TypeError as Unit raises them."""
    try:
        hit = iter(h)
    except TypeError:
        raise TypeError("'headers' item #%d is not an iterable" % i)
    name = next(hit, None)
    if not isinstance(name, bytes):
        raise TypeError("'headers' item #%d 'name' is not a byte string" % i)
    value = next(hit, None)
    if not isinstance(value, bytes):
        raise TypeError("'headers' item #%d 'value' is not a byte string" % i)
    length = -2
    if len(name) == 14 and name.lower() == b'content-length':
        try:
            length = int(value)
        except ValueError:
            length = -1
    pack = _pack_u16
    enc = (pack(len(name)) + name + pack(len(value)) + value, length)
    if type(h) is tuple:
        if len(_FIELD_CACHE) >= _CACHE_SIZE:
            _FIELD_CACHE.clear()
        _FIELD_CACHE[h] = enc
    return enc


def _encode_headers(headers):
    """ASGI response headers → (encoded frame fields, count, Content-Length or -1)."""
    if headers is None:
        return b'', 0, -1
    try:
        it = iter(headers)
    except TypeError:
        raise TypeError("'headers' is not an iterable")
    cache = _FIELD_CACHE
    parts = []
    length = -1
    for h in it:
        enc = cache.get(h) if type(h) is tuple else None
        if enc is None:
            enc = _encode_field(h, len(parts))
        parts.append(enc[0])
        if enc[1] >= -1:
            length = enc[1]
    return b''.join(parts), len(parts), length


class HttpStream(Stream):
    """An `http` scope: receive() gives the body as it arrives, send() streams the response."""

    __slots__ = ('chunks', 'eof', 'body_done', 'started', 'head', 'head_sent', 'length',
                 'sent', 'complete')

    def __init__(self, conn, worker, sid, no_body):
        # Stream.__init__, inlined: this runs for every request.
        self.conn = conn
        self.worker = worker
        self.loop = worker.loop
        self.sid = sid
        self.send_window = conn.peer_window
        self.consumed = 0
        self.finished = False
        self.receiver = None
        self.sender = None
        self.gone = False
        self.emit = conn.emit
        self.chunks = None          # a deque of body chunks once one arrives
        self.eof = bool(no_body)
        self.body_done = False      # the message with more_body False went to the app
        self.started = False
        self.head = None
        self.head_sent = False
        self.length = -1
        self.sent = 0
        self.complete = False       # the last body message was sent

    # frames from the router
    def frame(self, ftype, flags, payload):
        if ftype == T_DATA:
            if payload:
                if self.chunks is None:
                    self.chunks = collections.deque()
                self.chunks.append(payload)
            if flags & F_END:
                self.eof = True
            if self.waiting() and (self.chunks or self.eof):
                self.wake_receiver(self._body_message())
        elif ftype == T_CREDIT:
            self.credit_in(payload)
        elif ftype == T_ABORT:
            self.gone = True
            self.eof = True
            self.wake_receiver({'type': _DISCONNECT})
            self.wake_sender()

    def _body_message(self):
        chunks = self.chunks
        if not chunks:
            body = b''
        elif len(chunks) == 1:
            body = chunks.popleft()
        else:
            body = b''.join(chunks)
            chunks.clear()
        more = not self.eof
        if not more:
            self.body_done = True
        if body:
            self.consumed_bytes(len(body), self.eof)
        return {'type': 'http.request', 'body': body, 'more_body': more}

    # the application's receive and send
    async def receive(self):
        if self.gone or self.complete:
            return {'type': _DISCONNECT}
        if self.chunks or (self.eof and not self.body_done):
            return self._body_message()
        f = self.loop.create_future()
        self.receiver = f
        return await f

    def _unexpected(self, mtype, expected):
        """The error for a message of type `mtype` where `expected` was due."""
        if not isinstance(mtype, str):
            core.log('error', "asgi_http_send: 'type' is not a unicode string", self.sid)
            return TypeError("'type' is not a unicode string")
        return RuntimeError("Expected ASGI message '%s', but got '%s'" % (expected, mtype))

    async def send(self, message):
        mtype = message.get('type')
        if not self.started:
            if mtype != 'http.response.start':
                raise self._unexpected(mtype, 'http.response.start')
            status = message.get('status')
            if status.__class__ is not int and not isinstance(status, int):
                core.log('error', "asgi_http_response_start: 'status' is not an integer", self.sid)
                raise TypeError("'status' is not an integer")
            fields, count, length = _encode_headers(message.get('headers'))
            self.head = STATUS.pack(status & 0xffff, count) + fields
            self.length = length
            self.started = True
            return
        if mtype != 'http.response.body':
            raise self._unexpected(mtype, 'http.response.body')
        if self.complete:
            raise RuntimeError("Unexpected ASGI message 'http.response.body' sent, after response already completed")
        more = message.get('more_body', False)
        if more is not True and more is not False:
            raise TypeError("'more_body' is not a bool")
        body = message.get('body', b'')
        if body.__class__ is not bytes:
            if body is None:
                body = b''
            elif isinstance(body, (bytes, bytearray)):
                body = bytes(body)
            else:
                raise TypeError("'body' is not a byte string or bytearray")
        n = len(body)
        if self.length >= 0 and self.sent + n > self.length:
            raise RuntimeError('Response content longer than Content-Length')
        if not more:
            self.complete = True
        if self.gone:
            return
        sid = self.sid
        last = not more
        self.sent += n
        if not self.head_sent:
            self.head_sent = True
            head = self.head
            if n <= MAX_DATA and self.send_window >= n:
                self.send_window -= n
                flags = F_END if last else 0
                self.emit(_pack_hdr(len(head) + n, T_HEAD, flags, 0, sid) + head + body)
                if last:
                    self._ended()
                return
            self.emit(_pack_hdr(len(head), T_HEAD, 0, 0, sid) + head)
        if n == 0:
            if last:
                self.emit(_pack_hdr(0, T_DATA, F_END, 0, sid))
                self._ended()
            return
        if n <= MAX_DATA and self.send_window >= n:
            self.send_window -= n
            self.emit(_pack_hdr(n, T_DATA, F_END if last else 0, 0, sid) + body)
            if last:
                self._ended()
            return
        view = memoryview(body)
        off = 0
        while off < n:
            room = await self.window(min(MAX_DATA, n - off))
            if room == 0:
                return
            end = off + room
            self.emit(_pack_hdr(room, T_DATA, F_END if last and end == n else 0, 0, sid) + bytes(view[off:end]))
            off = end
        if last:
            self._ended()

    def _ended(self):
        """The END flag went out: the stream is over for the router; a waiting receive() gets http.disconnect."""
        self.terminal(0)
        if self.receiver is not None:
            self.wake_receiver({'type': _DISCONNECT})

    def done(self, ok):
        """The application returned (ok) or failed."""
        if self.finished:
            return
        if not ok:
            self.terminal(T_ERROR)
        elif self.gone:
            self.terminal(T_ERROR)
        elif not self.started:
            # Nothing at all: the router answers 200 text/plain, empty.
            self.terminal(T_DATA, F_END)
        elif not self.head_sent:
            self.head_sent = True
            self.terminal(T_HEAD, F_END, self.head)
        else:
            self.terminal(T_DATA, F_END)
        if self.receiver is not None:
            self.wake_receiver({'type': _DISCONNECT})


class WebSocketStream(Stream):
    """A `websocket` scope: connect, accept or deny, messages both ways, close codes."""

    __slots__ = ('state', 'messages', 'partial', 'partial_type', 'close_code', 'pending_exc', 'denied')

    def __init__(self, conn, worker, sid):
        Stream.__init__(self, conn, worker, sid)
        self.state = WS_INIT
        self.messages = collections.deque()
        self.partial = []
        self.partial_type = 0
        self.close_code = CLOSE_GOING_AWAY
        self.pending_exc = None
        self.denied = False

    # frames from the router
    def frame(self, ftype, flags, payload):
        if ftype == T_WS_TEXT or ftype == T_WS_BINARY:
            if self.state != WS_ACCEPTED:
                return
            if flags & F_MORE:
                self.partial.append(payload)
                self.partial_type = ftype
                return
            if self.partial:
                self.partial.append(payload)
                payload = b''.join(self.partial)
                self.partial = []
            if ftype == T_WS_TEXT:
                message = {'type': 'websocket.receive', 'text': payload.decode('utf-8', 'replace')}
            else:
                message = {'type': 'websocket.receive', 'bytes': payload}
            n = len(payload)
            if self.waiting():
                self.consumed_bytes(n, False)
                self.wake_receiver(message)
            else:
                self.messages.append((message, n))
        elif ftype == T_WS_CLOSE:
            code = core.U16.unpack_from(payload)[0] if len(payload) >= 2 else CLOSE_NORMAL
            self._disconnected(code)
        elif ftype == T_CREDIT:
            self.credit_in(payload)
        elif ftype == T_ABORT:
            self.gone = True
            self._disconnected(CLOSE_GOING_AWAY)
            self.wake_sender()

    def _disconnected(self, code):
        if self.state in (WS_DISCONNECTED, WS_CLOSED):
            return
        self.state = WS_DISCONNECTED
        self.close_code = code
        if not self.messages:
            self.wake_receiver({'type': 'websocket.disconnect', 'code': code})

    # the application's receive and send
    async def receive(self):
        if self.pending_exc is not None:
            e, self.pending_exc = self.pending_exc, None
            raise RuntimeError(e)
        state = self.state
        if state == WS_CLOSED:
            core.log('error', 'receive() called for closed WebSocket', self.sid)
            raise RuntimeError('WebSocket already closed')
        if state == WS_INIT:
            self.state = WS_CONNECT
            return {'type': 'websocket.connect'}
        if self.messages:
            message, n = self.messages.popleft()
            self.consumed_bytes(n, False)
            return message
        if state == WS_DISCONNECTED:
            return {'type': 'websocket.disconnect', 'code': self.close_code}
        f = self.loop.create_future()
        self.receiver = f
        return await f

    async def send(self, message):
        mtype = message.get('type')
        if not isinstance(mtype, str):
            core.log('error', "asgi_websocket_send: 'type' is not a unicode string", self.sid)
            raise TypeError("'type' is not a unicode string")
        if mtype == 'websocket.accept':
            return self._accept(message)
        if mtype == 'websocket.close':
            return self._close(message)
        if mtype == 'websocket.send':
            return await self._send(message)
        core.log('error', "asgi_websocket_send: unexpected 'type': '%s'" % mtype, self.sid)
        raise AssertionError("unexpected 'type': '%s'" % mtype)

    def _check(self, accepting):
        state = self.state
        if state == WS_INIT:
            raise RuntimeError('WebSocket connect not received')
        if state == WS_ACCEPTED and accepting:
            raise RuntimeError('WebSocket already accepted')
        if state == WS_DISCONNECTED:
            raise RuntimeError('WebSocket disconnected')
        if state == WS_CLOSED:
            raise RuntimeError('WebSocket already closed')

    def _accept(self, message):
        self._check(True)
        subprotocol = message.get('subprotocol')
        fields, count, _ = _encode_headers(message.get('headers'))
        proto = subprotocol.encode('latin-1') if isinstance(subprotocol, str) and subprotocol else b''
        payload = _pack_u16(len(proto)) + proto + _pack_u16(count) + fields
        self.emit(_pack_hdr(len(payload), T_WS_ACCEPT, 0, 0, self.sid) + payload)
        self.state = WS_ACCEPTED

    def _close(self, message):
        if self.state == WS_INIT:
            raise RuntimeError('WebSocket connect not received')
        if self.state == WS_DISCONNECTED:
            raise RuntimeError('WebSocket disconnected')
        if self.state == WS_CLOSED:
            raise RuntimeError('WebSocket already closed')
        if self.state == WS_ACCEPTED:
            code = message.get('code')
            if code is not None and not isinstance(code, int):
                raise TypeError("'code' is not integer")
            reason = message.get('reason') or ''
            payload = _pack_u16((code if code is not None else CLOSE_NORMAL) & 0xffff)
            if isinstance(reason, str) and reason:
                payload += reason.encode('utf-8')[:123]
            self.emit(_pack_hdr(len(payload), T_WS_CLOSE, 0, 0, self.sid) + payload)
        else:
            # Closed before accept: the handshake is denied with 403.
            head = STATUS.pack(403, 0)
            self.emit(_pack_hdr(len(head), T_HEAD, 0, 0, self.sid) + head)
            self.denied = True
        self.state = WS_CLOSED

    async def _send(self, message):
        state = self.state
        if state == WS_INIT:
            raise RuntimeError('WebSocket connect not received')
        if state == WS_CONNECT:
            raise RuntimeError('WebSocket not accepted yet')
        if state == WS_DISCONNECTED:
            raise RuntimeError('WebSocket disconnected')
        if state == WS_CLOSED:
            raise RuntimeError('WebSocket already closed')
        data = message.get('bytes')
        text = message.get('text')
        if data is not None and not isinstance(data, bytes):
            raise TypeError("'bytes' is not a byte string")
        if text is not None and not isinstance(text, str):
            raise TypeError("'text' is not a unicode string")
        if (data is None) == (text is None):
            raise ValueError("Exactly one of 'bytes' or 'text' must be non-None")
        if data is not None:
            ftype = T_WS_BINARY
        else:
            ftype = T_WS_TEXT
            data = text.encode('utf-8')
        n = len(data)
        sid = self.sid
        if n <= MAX_DATA and self.send_window >= n:
            self.send_window -= n
            self.emit(_pack_hdr(n, ftype, 0, 0, sid) + data)
            return
        off = 0
        while True:
            room = await self.window(min(MAX_DATA, n - off)) if n else 0
            if n and room == 0:
                return
            end = off + room
            self.emit(_pack_hdr(room, ftype, F_MORE if end < n else 0, 0, sid) + data[off:end])
            off = end
            if off >= n:
                return

    def done(self, ok):
        if self.finished:
            return
        if self.state == WS_ACCEPTED and not self.gone:
            code = CLOSE_NORMAL if ok else CLOSE_INTERNAL_ERROR
            self.emit(_pack_hdr(2, T_WS_CLOSE, 0, 0, self.sid) + _pack_u16(code))
        if not ok:
            self.terminal(T_ERROR)
        else:
            self.terminal(T_DATA, F_END)
        self.state = WS_CLOSED


# -- lifespan -------------------------------------------------------------------

class Lifespan:
    """The lifespan protocol of one target on one loop: startup before serving, shutdown at exit."""

    def __init__(self, worker, target):
        self.worker = worker
        self.loop = worker.loop
        self.target = target
        self.state = {}
        self.disabled = False
        self.startup_received = False
        self.startup_sent = 0       # 1: complete, 2: failed
        self.shutdown_called = False
        self.shutdown_received = False
        self.shutdown_sent = 0
        self.startup_future = None
        self.shutdown_future = None
        self.receiver = None
        self.task = None

    async def receive(self):
        if not self.startup_received:
            self.startup_received = True
            return {'type': 'lifespan.startup'}
        if self.shutdown_called and not self.shutdown_received:
            self.shutdown_received = True
            return {'type': 'lifespan.shutdown'}
        f = self.loop.create_future()
        self.receiver = f
        return await f

    async def send(self, message):
        mtype = message.get('type')
        if not isinstance(mtype, str):
            core.log('error', "asgi_lifespan_send: 'type' is not a unicode string")
            raise TypeError("'type' is not a unicode string")
        if mtype == 'lifespan.startup.complete':
            return self._sent('startup', 1)
        if mtype == 'lifespan.startup.failed':
            core.log('error', 'Application startup failed')
            text = message.get('message')
            if isinstance(text, str) and text:
                core.log('error', text)
            return self._sent('startup', 2)
        if mtype == 'lifespan.shutdown.complete':
            return self._sent('shutdown', 1)
        if mtype == 'lifespan.shutdown.failed':
            return self._sent('shutdown', 2)
        return self._invalid()

    def _invalid(self):
        core.log('warn', 'Got invalid state transition on lifespan protocol')
        self.disabled = True
        raise AssertionError('Got invalid state transition on lifespan protocol')

    def _sent(self, phase, value):
        if getattr(self, phase + '_sent'):
            return self._invalid()
        setattr(self, phase + '_sent', value)
        f = getattr(self, phase + '_future')
        if f is not None and not f.done():
            f.set_result(None)

    async def _run(self, coro):
        try:
            await coro
        except BaseException:
            core.log('info', 'ASGI Lifespan processing exception')
            core.print_exception()
        finally:
            if not self.startup_sent:
                self.disabled = True
            for f in (self.startup_future, self.shutdown_future):
                if f is not None and not f.done():
                    f.set_result(None)

    def startup(self):
        """Run the startup phase to its end; False when the application reported startup failed."""
        loop = self.loop
        self.startup_future = loop.create_future()
        scope = {'type': 'lifespan', 'asgi': _asgi_version('2.0'), 'state': self.state}
        app = self.target.app
        try:
            if self.target.legacy:
                try:
                    instance = app(scope)
                except Exception:
                    core.log('info', 'ASGI Lifespan processing exception')
                    core.print_exception()
                    self.disabled = True
                    return True
                if not callable(instance):
                    core.log('error', 'Legacy ASGI application returns not a callable')
                    return False
                coro = instance(self.receive, self.send)
            else:
                coro = app(scope, self.receive, self.send)
        except Exception:
            core.log('error', 'Python failed to call the application')
            core.print_exception()
            return False
        if not _awaitable(coro):
            core.log('error', 'Application result type is not a coroutine')
            return False
        self.task = loop.create_task(self._run(coro))
        loop.run_until_complete(self.startup_future)
        return self.startup_sent == 1 or self.disabled

    def shutdown(self):
        """Send lifespan.shutdown and wait for the application's answer (or its end)."""
        if self.disabled or self.task is None or self.task.done():
            return
        self.shutdown_called = True
        f = self.receiver
        if f is not None and not f.done():
            self.receiver = None
            self.shutdown_received = True
            f.set_result({'type': 'lifespan.shutdown'})
        if self.shutdown_sent:
            return
        self.shutdown_future = self.loop.create_future()
        try:
            self.loop.run_until_complete(self.shutdown_future)
        except Exception:
            core.print_exception()


_Task = asyncio.Task

if sys.version_info >= (3, 12):
    def _start_task(loop, coro):
        """A request's task, run at once up to its first suspension (Python 3.12+)."""
        if loop.get_task_factory() is not None:
            return loop.create_task(coro)
        return _Task(coro, loop=loop, eager_start=True)
else:
    def _start_task(loop, coro):
        """A request's task (made directly: loop.create_task adds a Python-level call)."""
        if loop.get_task_factory() is not None:
            return loop.create_task(coro)
        return _Task(coro, loop=loop)


def _refuse(stream, message, trace):
    """End `stream` unanswered (the router sends 503) after logging `message`, with the traceback when `trace`."""
    core.log('error', message, stream.sid)
    if trace:
        core.print_exception()
    stream.done(False)


def _awaitable(obj):
    return obj.__class__ is types.CoroutineType or asyncio.iscoroutine(obj) or hasattr(obj, '__await__')


# -- the event loops ------------------------------------------------------------

class Worker:
    """One thread's event loop with its lifespans and the requests it runs."""

    def __init__(self, server, index):
        self.server = server
        self.index = index
        self.loop = None
        self.lifespans = []
        self.active = 0
        self.quit_future = None
        self.started = threading.Event()
        self.ok = False
        self.thread = None

    def setup(self):
        """Create the loop and run every target's lifespan startup; sets `ok`."""
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.quit_future = self.loop.create_future()
        ok = True
        for t in self.server.targets:
            ls = Lifespan(self, t)
            self.lifespans.append(ls)
            if not ls.startup():
                ok = False
                break
        self.ok = ok
        self.started.set()
        return ok

    def run_thread(self):
        """Body of an extra thread: set up, serve until told to quit, shut down."""
        if self.setup():
            self.loop.run_until_complete(self.quit_future)
            self.shutdown()

    def quit(self):
        if not self.quit_future.done():
            self.quit_future.set_result(None)

    def shutdown(self):
        for ls in self.lifespans:
            ls.shutdown()

    def state_of(self, index):
        return self.lifespans[index].state if index < len(self.lifespans) else {}

    # requests
    def run_request(self, stream, scope, target):
        """Call the application for `stream` and run its coroutine as a task."""
        try:
            if target.legacy:
                try:
                    instance = target.app(scope)
                except Exception:
                    return _refuse(stream, 'Python failed to call legacy app stage1', True)
                if not callable(instance):
                    return _refuse(stream, 'Legacy ASGI application returns not a callable', False)
                coro = instance(stream.receive, stream.send)
            else:
                coro = target.app(scope, stream.receive, stream.send)
        except Exception:
            return _refuse(stream, 'Python failed to call the application', True)
        if not _awaitable(coro):
            return _refuse(stream, 'Application result type is not a coroutine', False)
        _start_task(self.loop, self._run(stream, coro))

    async def _run(self, stream, coro):
        try:
            await coro
        except asyncio.CancelledError:
            stream.done(False)
            return
        except BaseException:
            core.log('error', "Python failed to call 'future.result()'", stream.sid)
            core.print_exception()
            stream.done(False)
            return
        stream.done(True)


class Server:
    """All event loops of the process and the listener."""

    def __init__(self, options, targets, listener):
        self.options = options
        self.targets = targets
        self.listener = listener
        self.threads = int(options.get('threads') or 1)
        self.workers = [Worker(self, i) for i in range(self.threads)]
        self.lower = {}
        self.methods = {}
        self.addresses = {}
        self.connections = []

    def start(self, conn, sid, payload, flags):
        """A REQUEST frame: run the application on the least busy loop."""
        workers = self.workers
        w = workers[0]
        if len(workers) > 1:
            for x in workers:
                if x.active < w.active:
                    w = x
        w.active += 1
        if payload[0] & RF_WEBSOCKET:
            stream = WebSocketStream(conn, w, sid)
        else:
            stream = HttpStream(conn, w, sid, flags & F_END)
        conn.streams[sid] = stream
        if w.loop is not conn.loop:
            w.loop.call_soon_threadsafe(self.begin, w, stream, payload)
            return
        # begin(), inlined for the common case.
        targets = self.targets
        target_index = payload[2] << 8 | payload[3]
        if target_index >= len(targets):
            target_index = 0
        target = targets[target_index]
        w.run_request(stream, self.scope(payload, target, w.state_of(target_index)), target)

    def begin(self, worker, stream, payload):
        """Build the scope of a request and run the application, on `worker`'s loop."""
        targets = self.targets
        target_index = payload[2] << 8 | payload[3]
        if target_index >= len(targets):
            target_index = 0
        target = targets[target_index]
        scope = self.scope(payload, target, worker.state_of(target_index))
        worker.run_request(stream, scope, target)

    def scope(self, p, target, state):
        """The http or websocket scope of a REQUEST payload (spec/applications.md 4.3)."""
        rflags = p[0]
        nfields = p[4] << 8 | p[5]
        websocket = rflags & RF_WEBSOCKET
        # The nine strings: method, version, target, path, query, remote and local
        # address, local port, server name (unrolled: this runs for every request).
        o = 10 + (p[8] << 8 | p[9])
        method = p[10:o]
        e = o + 2 + (p[o] << 8 | p[o + 1])
        version = p[o + 2:e]
        o = e + 2 + (p[e] << 8 | p[e + 1])
        raw_target = p[e + 2:o]
        e = o + 2 + (p[o] << 8 | p[o + 1])
        path = p[o + 2:e]
        o = e + 2 + (p[e] << 8 | p[e + 1])
        query = p[e + 2:o]
        e = o + 2 + (p[o] << 8 | p[o + 1])
        remote = p[o + 2:e]
        o = e + 2 + (p[e] << 8 | p[e + 1])
        local = p[e + 2:o]
        e = o + 2 + (p[o] << 8 | p[o + 1])
        lport = p[o + 2:e]
        off = e + 2 + (p[e] << 8 | p[e + 1])
        lower = self.lower
        headers = []
        append = headers.append
        for _ in range(nfields):
            e = off + 2 + (p[off] << 8 | p[off + 1])
            raw = p[off + 2:e]
            off = e + 2 + (p[e] << 8 | p[e + 1])
            name = lower.get(raw)
            if name is None:
                name = raw.lower()
                if len(lower) < 4096:
                    lower[raw] = name
            append((name, p[e + 2:off]))
        q = raw_target.find(b'?')
        addresses = self.addresses
        client = addresses.get(remote)
        if client is None:
            client = self.address(remote, b'')
        server = addresses.get((local, lport))
        if server is None:
            server = self.address(local, lport)
        tls = rflags & RF_TLS
        scope = {
            'type': 'websocket' if websocket else 'http',
            'asgi': {'version': '3.0', 'spec_version': '2.1'},
            'http_version': '1.0' if version == b'HTTP/1.0' else '1.1',
            'scheme': ('wss' if tls else 'ws') if websocket else ('https' if tls else 'http'),
            'path': path.decode('utf-8', 'replace'),
            'raw_path': raw_target if q < 0 else raw_target[:q],
            'query_string': query,
            'client': client,
            'server': server,
            'headers': tuple(headers),
            'state': state.copy(),
        }
        if not websocket:
            m = self.methods.get(method)
            if m is None:
                m = method.decode('latin-1')
                if len(self.methods) < 64:
                    self.methods[method] = m
            scope['method'] = m
        else:
            for name, value in headers:
                if name == b'sec-websocket-protocol' and value:
                    scope['subprotocols'] = _subprotocols(value)
        prefix = target.prefix_b
        if prefix and path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == 47):
            scope['root_path'] = target.prefix
        return scope

    def address(self, addr, port):
        """The scope pair of an address and port text (b'': a client, port 0), cached
        under `addr` for clients and (addr, port) for servers."""
        key = (addr, port) if port else addr
        pair = self.addresses.get(key)
        if pair is None:
            pair = _address(addr.decode('latin-1'), int(port) if port else (0 if addr else None))
            if len(self.addresses) >= 1024:
                self.addresses.clear()
            self.addresses[key] = pair
        return pair

    def accept(self):
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.connections.append(Connection(sock, self))

    def serve(self, ready):
        """Start the loops (lifespan startup everywhere), report ready, serve until SIGTERM."""
        main = self.workers[0]
        for w in self.workers[1:]:
            w.thread = threading.Thread(target=w.run_thread, name='junction-loop-%d' % w.index, daemon=True)
            w.thread.start()
        ok = main.setup()
        for w in self.workers[1:]:
            w.started.wait()
            ok = ok and w.ok
        if not ok:
            for w in self.workers[1:]:
                if w.loop is not None and w.quit_future is not None:
                    w.loop.call_soon_threadsafe(w.quit)
            sys.exit(1)
        loop = main.loop
        self.listener.setblocking(False)
        loop.add_reader(self.listener.fileno(), self.accept)
        try:
            loop.add_signal_handler(signal.SIGTERM, main.quit)
        except (ValueError, RuntimeError):
            pass
        ready()
        core.profiled(loop.run_until_complete)(main.quit_future)
        loop.remove_reader(self.listener.fileno())
        for w in self.workers[1:]:
            w.loop.call_soon_threadsafe(w.quit)
        main.shutdown()
        for w in self.workers[1:]:
            w.thread.join()
        sys.exit(0)


def _subprotocols(value):
    """Sec-WebSocket-Protocol → tuple of names (split at commas, spaces after a comma skipped)."""
    out = []
    for part in value.decode('latin-1').split(','):
        part = part.lstrip(' ')
        if part:
            out.append(part)
    return tuple(out)


def bind(core_module):
    """Take the protocol constants and helpers of the core module as this module's globals."""
    global core
    core = core_module
    g = globals()
    for name in ('T_HELLO', 'T_REQUEST', 'T_DATA', 'T_HEAD', 'T_CREDIT', 'T_ABORT', 'T_ERROR',
                 'T_WS_ACCEPT', 'T_WS_TEXT', 'T_WS_BINARY', 'T_WS_CLOSE', 'F_END', 'F_MORE',
                 'RF_TLS', 'RF_WEBSOCKET', 'MAX_DATA', 'CREDIT_AT', '_pack_hdr', '_pack_u16', '_pack_u32',
                 'STATUS'):
        g[name] = getattr(core_module, name)


def serve(core_module, options, targets, listener, ready):
    """Entry point from junction_python.main() for ASGI applications."""
    bind(core_module)
    Server(options, targets, listener).serve(ready)
