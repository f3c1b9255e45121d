"""Junction's Python launcher: runs a WSGI or ASGI application in a Junction
application process.

Started by Junction as ``python junction_python.py`` with a listening Unix
socket on fd 3 (LISTEN_FDS), the application options as JSON in
JUNCTION_PYTHON_OPTIONS and a readiness fd in JUNCTION_READY_FD. It speaks the
Junction application protocol (docs/app-protocol.md) with the router and
gives the application what Unit 1.35 gives it (spec/applications.md sections
3.2, 4.2 and 4.3). ASGI lives in the sibling file junction_asgi.py, loaded
only for ASGI applications.

WSGI with one thread (the default) runs the application on the thread that
reads the connection: requests the router pipelines are parsed from one read,
served in order, and their responses leave in one write. With `threads` > 1,
a reader thread hands requests to a pool of worker threads.

Standard library only; Python 3.9 or later.
"""

import collections
import importlib
import importlib.util
import inspect
import json
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
import traceback

PROTOCOL_VERSION = 1
SERVER_SOFTWARE = 'Unit/1.35.0'

T_HELLO, T_REQUEST, T_DATA, T_HEAD, T_CREDIT, T_ABORT, T_ERROR = 1, 2, 3, 4, 5, 6, 7
T_WS_ACCEPT, T_WS_TEXT, T_WS_BINARY, T_WS_CLOSE = 16, 17, 18, 19
F_END = 1
F_MORE = 2
RF_TLS = 1
RF_WEBSOCKET = 2
FEATURE_WEBSOCKET = 1

HDR = struct.Struct('!IBBHI')
HDR_SIZE = HDR.size
U16 = struct.Struct('!H')
U32 = struct.Struct('!I')
STATUS = struct.Struct('!HH')
REQ_FIXED = struct.Struct('!BBHHH')
HELLO = struct.Struct('!HHIHHI')
HELLO_EXT = struct.Struct('!II')

# Body bytes the launcher accepts per stream before the router waits for CREDIT.
WINDOW = 1 << 20
CREDIT_AT = WINDOW >> 2
# Largest body payload in one frame.
MAX_DATA = 1 << 16
# Requests the router may send beyond those being served, per thread (WSGI).
QUEUE_PER_THREAD = 64
# Unsent output that is written at once instead of waiting for the end of a batch.
FLUSH_AT = 1 << 18
# Batching responses stops when requests take this long on average (seconds)...
SLOW_REQUEST = 0.0001
# ... or when the oldest unsent response waits this long.
BATCH_TIME = 0.0002
# After a request this long, frames that arrived meanwhile are read before the next one.
LOOK_AGAIN = 0.001
LISTEN_FD = 3

_pack_hdr = HDR.pack
_pack_u16 = U16.pack
_pack_u32 = U32.pack


# -- logging in Unit's format -------------------------------------------------

def log(level, message, stream=None):
    """Write one error-log line: `YYYY/MM/DD HH:MM:SS [level] pid#tid [unit] [#N: ]message`."""
    prefix = '#%d: ' % stream if stream is not None else ''
    line = '%s [%s] %d#%d [unit] %s%s\n' % (
        time.strftime('%Y/%m/%d %H:%M:%S'), level, os.getpid(),
        threading.get_native_id(), prefix, message)
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except Exception:
        pass


def print_exception():
    """The current exception's traceback on stderr (the log), as Unit prints it."""
    try:
        traceback.print_exc()
        sys.stderr.flush()
    except Exception:
        pass


class AppError(Exception):
    """A request failure already reported in the log."""


class ClientGone(Exception):
    """The router aborted the stream."""


# -- frames -------------------------------------------------------------------

def hello_frame(slots, queue_size, features):
    """The launcher's HELLO: its slots, how many more requests it queues, its features."""
    payload = HELLO.pack(PROTOCOL_VERSION, 0, os.getpid(), slots, 0, WINDOW) + HELLO_EXT.pack(queue_size, features)
    return _pack_hdr(len(payload), T_HELLO, 0, 0, 0) + payload


def read_strings(p, off, count):
    """`count` u16-length-prefixed byte strings of `p` from `off`."""
    out = []
    append = out.append
    for _ in range(count):
        ln = p[off] << 8 | p[off + 1]
        off += 2
        append(p[off:off + ln])
        off += ln
    return out


def parse_request(p):
    """Decode a REQUEST payload: (request flags, target index, strings).

    strings: method, version, target, path, query, remote address, server
    address, server port, server name, then name, value, name, value, …
    (all bytes as received).
    """
    rflags, _, target, nfields, _ = REQ_FIXED.unpack_from(p, 0)
    return rflags, target, read_strings(p, 8, 9 + 2 * nfields)


def encode_fields(fields):
    """u16-length-prefixed name/value pairs of `fields` (bytes), concatenated."""
    parts = []
    for name, value in fields:
        parts.append(_pack_u16(len(name)))
        parts.append(name)
        parts.append(_pack_u16(len(value)))
        parts.append(value)
    return b''.join(parts)


def frame(ftype, flags, sid, payload=b''):
    """One frame."""
    return _pack_hdr(len(payload), ftype, flags, 0, sid) + payload


def sendv(sock, parts):
    """Send all of `parts` (bytes-like objects) with as few system calls as possible."""
    if len(parts) == 1:
        sock.sendall(parts[0])
        return
    total = 0
    for p in parts:
        total += len(p)
    if total <= 65536:
        sock.sendall(b''.join(parts))
        return
    views = [memoryview(p).cast('B') for p in parts if len(p)]
    while views:
        sent = sock.sendmsg(views[:512])
        while sent:
            n = views[0].nbytes
            if sent >= n:
                sent -= n
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


# -- one router connection, blocking I/O (WSGI) -------------------------------

class Connection:
    """One router connection served by blocking threads.

    One thread (`inline`): the connection's own thread reads frames and runs
    the application between reads; output is collected in `out` and written
    when the thread is about to wait for input, when a streamed chunk must
    leave, or when it grows large — so the responses to requests that arrived
    together leave together. Waits for body bytes or window read the socket
    directly.

    Several threads: a reader thread demultiplexes frames and worker threads
    run the application; writers combine their output under a lock (one
    writes what the others queued meanwhile).
    """

    def __init__(self, sock, launcher):
        self.sock = sock
        self.launcher = launcher
        self.streams = {}
        self.closed = False
        self.peer_window = WINDOW
        self.inline = launcher.threads == 1
        self.pending = collections.deque()
        self.buf = b''
        self.out = []
        self.out_bytes = 0
        self.flushed_at = 0.0
        self.olock = threading.Lock()
        self.sending = False

    # output
    def emit(self, data):
        """Queue `data` (whole frames) for the router (inline) or send it (threads)."""
        if self.inline:
            self.out.append(data)
            self.out_bytes += len(data)
            if self.out_bytes >= FLUSH_AT:
                self.flush()
            return
        self.emitv((data,))

    def emitv(self, parts):
        """emit() of a frame in several parts (header, payload): they stay together."""
        if self.inline:
            for data in parts:
                self.out.append(data)
                self.out_bytes += len(data)
            if self.out_bytes >= FLUSH_AT:
                self.flush()
            return
        if self.closed:
            return
        with self.olock:
            self.out.extend(parts)
            if self.sending:
                return
            self.sending = True
        while True:
            with self.olock:
                parts = self.out
                if not parts or self.closed:
                    self.sending = False
                    return
                self.out = []
            try:
                sendv(self.sock, parts)
            except OSError:
                with self.olock:
                    self.closed = True
                    self.sending = False
                    self.out = []
                return

    def flush(self):
        """Write the queued output now (inline mode; with threads output is never held)."""
        out = self.out
        if not out or not self.inline:
            return
        self.out = []
        self.out_bytes = 0
        self.flushed_at = time.perf_counter()
        if self.closed:
            return
        try:
            sendv(self.sock, out)
        except OSError:
            self.closed = True

    # input
    def run(self):
        """Serve the connection until the router closes it."""
        launcher = self.launcher
        try:
            self.emit(hello_frame(launcher.threads, launcher.threads * QUEUE_PER_THREAD, 0))
            if self.inline:
                self.serve_inline()
            else:
                while self.pump():
                    pass
        except OSError:
            pass
        finally:
            self.shut()

    def serve_inline(self):
        """Serve requests in arrival order on this thread, batching their output.

        Responses of requests that arrived together leave together, as long as
        requests are fast: queued output is written before the next request
        runs once the requests take long on average (then a batch would only
        delay the earlier responses) or the batch is older than BATCH_TIME.
        """
        pending = self.pending
        run = self.launcher.run_request
        clock = time.perf_counter
        average = 0.0
        while True:
            while pending:
                req = pending.popleft()
                start = clock()
                if self.out and (average > SLOW_REQUEST or start - self.flushed_at > BATCH_TIME):
                    self.flush()
                run(req)
                took = clock() - start
                average += (took - average) * 0.125
                if took > LOOK_AGAIN and pending:
                    # Frames that came meanwhile (an ABORT of a queued request) are read first.
                    if not self.pump(False):
                        return
            if not self.pump():
                break

    def shut(self):
        """The connection is over: every stream still open is aborted."""
        if self.closed and not self.streams:
            return
        self.closed = True
        for req in list(self.streams.values()):
            req.abort()
        self.streams.clear()
        try:
            self.sock.close()
        except OSError:
            pass

    def pump(self, block=True):
        """Write what is queued, read once (without waiting unless `block`) and act on
        every complete frame; False at the end of the connection."""
        if self.out:
            self.flush()
        try:
            chunk = self.sock.recv(262144) if block else self.sock.recv(262144, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            chunk = b''
        if not chunk:
            self.shut()
            return False
        buf = self.buf + chunk if self.buf else chunk
        off = 0
        n = len(buf)
        streams = self.streams
        unpack = HDR.unpack_from
        while n - off >= HDR_SIZE:
            length, ftype, flags, _, sid = unpack(buf, off)
            end = off + HDR_SIZE + length
            if end > n:
                break
            payload = buf[off + HDR_SIZE:end]
            off = end
            if ftype == T_REQUEST:
                req = Request(self, sid, payload, flags & F_END)
                streams[sid] = req
                if self.inline:
                    self.pending.append(req)
                else:
                    self.launcher.work.put(req)
            elif ftype == T_DATA:
                req = streams.get(sid)
                if req is not None:
                    req.feed(payload, flags & F_END)
            elif ftype == T_CREDIT:
                req = streams.get(sid)
                if req is not None and len(payload) >= 4:
                    req.credit(U32.unpack_from(payload)[0])
            elif ftype == T_ABORT:
                req = streams.get(sid)
                if req is not None:
                    req.abort()
            elif ftype == T_HELLO and sid == 0:
                version = U16.unpack_from(payload)[0]
                if version != PROTOCOL_VERSION:
                    log('alert', 'unsupported application protocol version %d' % version)
                    self.shut()
                    return False
                self.peer_window = U32.unpack_from(payload, 12)[0]
        self.buf = buf[off:] if off < n else b''
        return True


# -- one request --------------------------------------------------------------

class Request:
    """A stream: request metadata, the body as it arrives, the response window."""

    __slots__ = ('conn', 'sid', 'payload', 'chunks', 'eof', 'aborted', 'cond',
                 'send_window', 'consumed', 'finished')

    def __init__(self, conn, sid, payload, no_body):
        self.conn = conn
        self.sid = sid
        self.payload = payload
        self.chunks = collections.deque()
        self.eof = bool(no_body)
        self.aborted = False
        self.cond = None if conn.inline else threading.Condition(threading.Lock())
        self.send_window = conn.peer_window
        self.consumed = 0
        self.finished = False

    # reader side
    def feed(self, data, end):
        cond = self.cond
        if cond is None:
            if data:
                self.chunks.append(data)
            if end:
                self.eof = True
            return
        with cond:
            if data:
                self.chunks.append(data)
            if end:
                self.eof = True
            cond.notify_all()

    def credit(self, n):
        cond = self.cond
        if cond is None:
            self.send_window += n
            return
        with cond:
            self.send_window += n
            cond.notify_all()

    def abort(self):
        cond = self.cond
        if cond is None:
            self.aborted = True
            return
        with cond:
            self.aborted = True
            cond.notify_all()

    # application side
    def next_chunk(self):
        """The next body chunk, b'' at the end (or when the client is gone)."""
        cond = self.cond
        if cond is None:
            conn = self.conn
            while not self.chunks and not self.eof and not self.aborted:
                if not conn.pump():
                    break
            if not self.chunks:
                return b''
            data = self.chunks.popleft()
        else:
            with cond:
                while not self.chunks and not self.eof and not self.aborted:
                    cond.wait()
                if not self.chunks:
                    return b''
                data = self.chunks.popleft()
        self.consumed += len(data)
        if self.consumed >= CREDIT_AT and not self.eof:
            n = self.consumed
            self.consumed = 0
            self.conn.emit(_pack_hdr(4, T_CREDIT, 0, 0, self.sid) + _pack_u32(n))
        return data

    def take_window(self, want):
        """Wait for response window; how many of `want` body bytes may go now. Raises ClientGone."""
        conn = self.conn
        cond = self.cond
        if cond is None:
            while self.send_window <= 0 and not self.aborted and not conn.closed:
                if not conn.pump():
                    break
            if self.aborted or conn.closed:
                raise ClientGone()
            room = min(self.send_window, want)
            self.send_window -= room
            return room
        with cond:
            while self.send_window <= 0 and not self.aborted and not conn.closed:
                cond.wait(1.0)
            if self.aborted or conn.closed:
                raise ClientGone()
            room = min(self.send_window, want)
            self.send_window -= room
            return room

    def terminal(self, ftype, flags=0, payload=b''):
        """The one terminal frame of the stream (also after ABORT); ftype 0: it went out already."""
        if self.finished:
            return
        self.finished = True
        self.conn.streams.pop(self.sid, None)
        if ftype:
            self.conn.emit(_pack_hdr(len(payload), ftype, flags, 0, self.sid) + payload)


# -- WSGI ---------------------------------------------------------------------

def _size_arg(size, what):
    """An integer argument of read()/readline() (anything with __index__), as Unit takes it."""
    if isinstance(size, int):
        return size
    try:
        return size.__index__()
    except AttributeError:
        raise TypeError("'%s' object cannot be interpreted as an integer" % type(size).__name__)


class Input:
    """wsgi.input: the request body as a stream (read, readline, readlines, iteration)."""

    __slots__ = ('_req', '_buf', '_live')

    def __init__(self, req):
        self._req = req
        self._buf = b''
        self._live = True

    def _check(self, what):
        if not self._live:
            raise RuntimeError('wsgi.input.%s() is called outside of WSGI request processing' % what)

    def _fill(self):
        data = self._req.next_chunk()
        if data:
            self._buf = self._buf + data if self._buf else data
        return bool(data)

    def read(self, *args):
        self._check('read')
        if len(args) > 1:
            raise TypeError('invalid number of arguments')
        size = _size_arg(args[0], 'size') if args else -1
        if size < -1:
            raise ValueError('the read body size cannot be zero or less')
        if size == -1:
            parts = [self._buf]
            self._buf = b''
            while True:
                data = self._req.next_chunk()
                if not data:
                    break
                parts.append(data)
            return b''.join(parts)
        while len(self._buf) < size and self._fill():
            pass
        buf = self._buf
        if len(buf) <= size:
            self._buf = b''
            return buf
        self._buf = buf[size:]
        return buf[:size]

    def readline(self, *args):
        self._check('readline')
        if len(args) > 1:
            raise TypeError('invalid number of arguments')
        size = -1
        if args and args[0] is not None:
            size = _size_arg(args[0], 'size')
            if size == 0:
                return b''
            if size < -1:
                raise ValueError('the read line size cannot be zero or less')
        start = 0
        while True:
            buf = self._buf
            i = buf.find(b'\n', start)
            if i >= 0:
                end = i + 1
                break
            if 0 < size <= len(buf):
                end = size
                break
            start = len(buf)
            if not self._fill():
                end = len(self._buf)
                break
        if 0 < size < end:
            end = size
        buf = self._buf
        self._buf = buf[end:]
        return buf[:end]

    def readlines(self, *args):
        self._check('readlines')
        hint = args[0] if args and args[0] is not None else -1
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        self._check('next')
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _latin1(value, what):
    if isinstance(value, str):
        return value.encode('latin-1')
    if isinstance(value, bytes):
        return bytes(value)
    raise TypeError(what)


# (name, value) → (encoded field, Content-Length value or -2 when not Content-Length);
# status → packed code. Most responses repeat the same fields; cleared when full.
_FIELD_CACHE = {}
_STATUS_CACHE = {}
_CACHE_SIZE = 1024


def _status_code(status):
    """The packed status code of a start_response() status (str or bytes), cached."""
    if not isinstance(status, (str, bytes)):
        raise TypeError('failed to write first argument (not a string?)')
    status_b = _latin1(status, 'status is not a string')
    sp = status_b.find(b' ')
    code_b = status_b[:sp] if sp >= 0 else status_b
    if not code_b.isdigit():
        raise TypeError('failed to parse status code')
    code = _pack_u16(int(code_b) & 0xffff)
    if len(_STATUS_CACHE) >= 256:
        _STATUS_CACHE.clear()
    _STATUS_CACHE[status] = code
    return code


def _encode_field(h, i, sid):
    """Encode one response header tuple for a HEAD frame (TypeError as Unit raises them)."""
    if not isinstance(h, tuple):
        raise TypeError('the response headers must be a list of tuples')
    if len(h) != 2:
        raise TypeError('each header must be a tuple of two items')
    name = _latin1(h[0], 'header #%d name is not a string' % i)
    value = _latin1(h[1], 'header #%d value is not a string' % i)
    length = -2
    if len(name) == 14 and name.lower() == b'content-length':
        try:
            length = int(value)
            if length < 0:
                raise ValueError()
        except ValueError:
            log('error', 'failed to parse Content-Length value %s' % value.decode('latin-1'), sid)
            length = -1
    enc = (_pack_u16(len(name)) + name + _pack_u16(len(value)) + value, length)
    try:
        if len(_FIELD_CACHE) >= _CACHE_SIZE:
            _FIELD_CACHE.clear()
        _FIELD_CACHE[h] = enc
    except TypeError:
        pass  # not hashable
    return enc


class Response:
    """start_response(), write() and the response side of one WSGI stream.

    The head waits for the first non-empty body chunk or the end of the
    response (PEP 3333), except with `Content-Length: 0`. Body bytes beyond
    an announced Content-Length are an error (`content length N exceeded`).
    """

    __slots__ = ('req', 'head', 'head_sent', 'length', 'sent', 'ended', 'live')

    def __init__(self, req):
        self.req = req
        self.head = None        # HEAD payload (status and fields) not yet sent
        self.head_sent = False
        self.length = -1        # Content-Length set by the application, -1 for none
        self.sent = 0
        self.ended = False      # the END flag went out with the last chunk
        self.live = True

    def start_response(self, status, headers, exc_info=None):
        if not self.live:
            raise RuntimeError('start_response() is called outside of WSGI request processing')
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.head_sent:
            raise RuntimeError('failed to allocate response object')
        code = _STATUS_CACHE.get(status)
        if code is None:
            code = _status_code(status)
        if type(headers) is not list:
            if not isinstance(headers, list):
                raise TypeError('the second argument is not a response headers list')
        cache = _FIELD_CACHE
        parts = []
        length = -1
        for h in headers:
            enc = cache.get(h) if type(h) is tuple else None
            if enc is None:
                enc = _encode_field(h, len(parts), self.req.sid)
            parts.append(enc[0])
            if enc[1] >= -1:
                length = enc[1]
        self.head = code + _pack_u16(len(parts)) + b''.join(parts)
        self.length = length
        if length == 0:
            req = self.req
            req.conn.emit(_pack_hdr(len(self.head), T_HEAD, 0, 0, req.sid) + self.head)
            self.head_sent = True
        return self.write

    def write(self, data):
        """The write() callable returned by start_response()."""
        if not isinstance(data, bytes):
            raise TypeError('the argument is not a bytes')
        if not self.body(data, False):
            raise RuntimeError('failed to write response value')
        self.req.conn.flush()

    def body(self, data, last):
        """Send `data` (non-empty); `last`: the END flag rides on it. False after logging an error."""
        n = len(data)
        if n == 0:
            return True
        req = self.req
        if req.aborted:
            raise ClientGone()
        if self.head is None:
            log('error', 'the application wrote the response body before start_response()', req.sid)
            return False
        if self.length >= 0:
            room = self.length - self.sent
            if n > room:
                log('error', 'content length %d exceeded' % self.length, req.sid)
                return False
            if n == room:
                last = True
        self.sent += n
        conn = req.conn
        sid = req.sid
        if not self.head_sent:
            self.head_sent = True
            head = self.head
            if n <= MAX_DATA and req.send_window >= n:
                # The whole response (or its first part) in one frame: HEAD payload + body.
                req.send_window -= n
                if last:
                    self.ended = True
                conn.emit(_pack_hdr(len(head) + n, T_HEAD, F_END if last else 0, 0, sid) + head + data)
                return True
            conn.emit(_pack_hdr(len(head), T_HEAD, 0, 0, sid) + head)
        if last:
            self.ended = True
        if n <= MAX_DATA and req.send_window >= n:
            req.send_window -= n
            conn.emit(_pack_hdr(n, T_DATA, F_END if last else 0, 0, sid) + data)
            return True
        view = memoryview(data)
        off = 0
        while off < n:
            room = req.take_window(min(MAX_DATA, n - off))
            end = off + room
            conn.emitv((_pack_hdr(room, T_DATA, F_END if last and end == n else 0, 0, sid), view[off:end]))
            off = end
        return True

    def complete(self):
        """Terminal frame of a successful response."""
        req = self.req
        if self.ended:
            req.terminal(0)
        elif req.aborted:
            req.terminal(T_ERROR)
        elif self.head is None:
            # Nothing at all: the router answers 200 text/plain, empty.
            req.terminal(T_DATA, F_END)
        elif not self.head_sent:
            self.head_sent = True
            req.terminal(T_HEAD, F_END, self.head)
        else:
            req.terminal(T_DATA, F_END)


class Target:
    """One application callable with its prefix (a `targets` entry, or the application itself)."""

    __slots__ = ('app', 'prefix', 'prefix_b', 'legacy', 'name')

    def __init__(self, app, prefix, name):
        self.app = app
        self.prefix = prefix
        self.prefix_b = prefix.encode('latin-1')
        self.legacy = False
        self.name = name


# The REQUEST strings in order, as environ keys (the path is split by the prefix after).
_ENV_KEYS = ('REQUEST_METHOD', 'SERVER_PROTOCOL', 'REQUEST_URI', 'PATH_INFO', 'QUERY_STRING',
             'REMOTE_ADDR', 'SERVER_ADDR', 'SERVER_PORT', 'SERVER_NAME')


class WsgiLauncher:
    """Serves WSGI targets on the connections the router opens."""

    def __init__(self, options, targets):
        self.options = options
        self.targets = targets
        self.threads = int(options.get('threads') or 1)
        self.work = queue.SimpleQueue()
        self.header_keys = {}
        self.base_environ = {
            'SERVER_SOFTWARE': SERVER_SOFTWARE,
            'wsgi.version': (1, 0),
            'wsgi.multithread': self.threads > 1,
            'wsgi.multiprocess': True,
            'wsgi.run_once': False,
            'wsgi.errors': sys.stderr,
        }

    def serve(self, listener, ready):
        """Start the worker threads, report ready, accept connections forever."""
        if self.threads > 1:
            for i in range(self.threads):
                threading.Thread(target=self.worker, name='junction-worker-%d' % i, daemon=True).start()
        ready()
        while True:
            try:
                sock, _ = listener.accept()
            except InterruptedError:
                continue
            conn = Connection(sock, self)
            threading.Thread(target=profiled(conn.run), name='junction-connection', daemon=True).start()

    def worker(self):
        get = self.work.get
        run = self.run_request
        while True:
            run(get())

    def run_request(self, req):
        try:
            if req.aborted:
                # The client left before the request was taken: it is not run.
                req.terminal(T_ERROR)
            else:
                self.handle(req)
        except Exception:
            log('error', 'Python failed to call the application', req.sid)
            print_exception()
            req.terminal(T_ERROR)
        req.payload = None

    def environ(self, req):
        """The environ of `req` (spec/applications.md 4.2) and its target.

        The payload is decoded as Latin-1 once; its strings are sliced from
        that text (PEP 3333 native strings are the bytes as Latin-1).
        """
        p = req.payload
        t = p.decode('latin-1')
        rflags = p[0]
        target_index = p[2] << 8 | p[3]
        nfields = p[4] << 8 | p[5]
        targets = self.targets
        target = targets[target_index] if target_index < len(targets) else targets[0]
        env = self.base_environ.copy()
        off = 8
        for key in _ENV_KEYS:
            ln = p[off] << 8 | p[off + 1]
            off += 2
            env[key] = t[off:off + ln]
            off += ln
        # PEP 3333: the path's bytes as a native (Latin-1) string.
        path = env['PATH_INFO']
        prefix = target.prefix
        if prefix and path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == '/'):
            env['SCRIPT_NAME'] = prefix
            env['PATH_INFO'] = path[len(prefix):]
        env['wsgi.url_scheme'] = 'https' if rflags & RF_TLS else 'http'
        if nfields:
            keys = self.header_keys
            for _ in range(nfields):
                ln = p[off] << 8 | p[off + 1]
                off += 2
                name = t[off:off + ln]
                off += ln
                ln = p[off] << 8 | p[off + 1]
                off += 2
                value = t[off:off + ln]
                off += ln
                key = keys.get(name)
                if key is None:
                    key = 'HTTP_' + name.upper().replace('-', '_')
                    if len(keys) < 4096:
                        keys[name] = key
                if key in env:
                    env[key] = env[key] + ', ' + value
                else:
                    env[key] = value
            if 'HTTP_CONTENT_LENGTH' in env:
                env['CONTENT_LENGTH'] = env['HTTP_CONTENT_LENGTH']
            if 'HTTP_CONTENT_TYPE' in env:
                env['CONTENT_TYPE'] = env['HTTP_CONTENT_TYPE']
        return env, target

    def handle(self, req):
        env, target = self.environ(req)
        inp = Input(req)
        env['wsgi.input'] = inp
        resp = Response(req)
        sid = req.sid
        ok = True
        try:
            try:
                result = target.app(env, resp.start_response)
            except ClientGone:
                raise
            except Exception:
                log('error', 'Python failed to call the application', sid)
                print_exception()
                raise AppError()
            try:
                if isinstance(result, bytes):
                    ok = resp.body(result, True)
                elif type(result) is list or type(result) is tuple:
                    # Known length: the last chunk carries END (one frame for small responses).
                    last = len(result) - 1
                    for i, chunk in enumerate(result):
                        if not isinstance(chunk, bytes):
                            log('error', 'the application returned not a bytestring object', sid)
                            ok = False
                            break
                        if not resp.body(chunk, i == last):
                            ok = False
                            break
                        if resp.ended:
                            break
                else:
                    try:
                        it = iter(result)
                    except TypeError:
                        log('error', 'the application returned not an iterable object', sid)
                        print_exception()
                        ok = False
                        it = None
                    flush = req.conn.flush
                    while it is not None and not resp.ended:
                        try:
                            chunk = next(it)
                        except StopIteration:
                            break
                        except ClientGone:
                            raise
                        except Exception:
                            log('error', 'Python failed to iterate over the application response object', sid)
                            print_exception()
                            ok = False
                            break
                        if not isinstance(chunk, bytes):
                            log('error', 'the application returned not a bytestring object', sid)
                            ok = False
                            break
                        if not resp.body(chunk, False):
                            ok = False
                            break
                        # A streamed chunk leaves now: the next one may take its time.
                        flush()
            finally:
                close = getattr(result, 'close', None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log('error', 'Python failed to call the close() method of the application response', sid)
                        print_exception()
        except (ClientGone, AppError):
            ok = False
        finally:
            inp._live = False
            resp.live = False
        if ok:
            resp.complete()
        else:
            req.terminal(T_ERROR)


# -- loading the application --------------------------------------------------

def normalise_prefix(prefix):
    """Unit's prefix rule: one trailing `/` dropped; `/` means no prefix."""
    if not prefix:
        return ''
    if prefix.endswith('/'):
        prefix = prefix[:-1]
    return prefix


def fail_start(message):
    """Log an alert and exit with status 1: the process failed to start."""
    log('alert', message)
    sys.exit(1)


def load_callable(t):
    """Import the target's module and get its callable (calling the factory)."""
    module_name = t.get('module')
    name = t.get('callable') or 'application'
    try:
        module = importlib.import_module(module_name)
    except BaseException:
        print_exception()
        fail_start('Python failed to import module "%s"' % module_name)
    app = getattr(module, name, None)
    if app is None:
        fail_start('Python failed to get "%s" from module "%s"' % (name, module_name))
    if t.get('factory'):
        if not callable(app):
            fail_start('factory "%s" in module "%s" can not be called to fetch callable' % (name, module_name))
        try:
            app = app()
        except BaseException:
            print_exception()
            fail_start('Python failed to call the factory "%s" of module "%s"' % (name, module_name))
    if not callable(app):
        fail_start('"%s" in module "%s" is not a callable object' % (name, module_name))
    return app


def _code_function(app):
    """The function whose code object decides the protocol (Unit looks at `__call__` of objects)."""
    if inspect.isfunction(app):
        return app
    if inspect.ismethod(app):
        return app.__func__
    call = getattr(app, '__call__', None)
    if call is None:
        return None
    if inspect.isfunction(call):
        return call
    if inspect.ismethod(call):
        return call.__func__
    return None


def _legacy_class(app):
    """A class constructed with the scope alone (`__init__(self, scope)`): ASGI 2 as a class."""
    if not inspect.isclass(app):
        return False
    init = getattr(app, '__init__', None)
    code = getattr(init, '__code__', None)
    return code is not None and code.co_argcount == 2


def is_asgi(app):
    """Unit's detection: a coroutine function is ASGI 3; a plain function of exactly
    one argument is legacy ASGI 2 (bound methods count their `self`, as in Unit).
    A class whose constructor takes only the scope is legacy ASGI 2 too."""
    if _legacy_class(app):
        return True
    func = _code_function(app)
    if func is None:
        return False
    code = getattr(func, '__code__', None)
    if code is None:
        return False
    return bool(code.co_flags & inspect.CO_COROUTINE) or code.co_argcount == 1


def is_legacy_asgi(app):
    """An ASGI callable that is not a coroutine function: `app(scope)` returns the coroutine maker."""
    if _legacy_class(app):
        return True
    func = _code_function(app)
    if func is None:
        return not inspect.iscoroutinefunction(app)
    code = getattr(func, '__code__', None)
    return code is None or not (code.co_flags & inspect.CO_COROUTINE)


def load_targets(options):
    """The application's targets, in order, and the protocol: 'wsgi' or 'asgi'."""
    confs = options.get('targets') or [options]
    protocol = options.get('protocol') or confs[0].get('protocol')
    targets = []
    kinds = set()
    for i, t in enumerate(confs):
        app = load_callable(t)
        target = Target(app, normalise_prefix(t.get('prefix')), t.get('name') or str(i))
        if protocol == 'asgi' or (protocol is None and is_asgi(app)):
            kinds.add('asgi')
            target.legacy = is_legacy_asgi(app)
        else:
            kinds.add('wsgi')
        targets.append(target)
    if len(kinds) > 1:
        fail_start('A mix of ASGI & WSGI targets is forbidden, '
                   'specify protocol in config if incorrect')
    return targets, kinds.pop()


_profiles = []


def profiled(fn):
    """`fn` run under cProfile when JUNCTION_PYTHON_PROFILE names a file prefix
    (a developer aid: each profiled thread dumps `<prefix>.<pid>.<n>` at exit)."""
    prefix = os.environ.get('JUNCTION_PYTHON_PROFILE')
    if not prefix:
        return fn
    import atexit
    import cProfile

    def dump():
        for i, prof in enumerate(_profiles):
            try:
                prof.dump_stats('%s.%d.%d' % (prefix, os.getpid(), i))
            except Exception as e:
                log('warn', 'profile not written: %r' % e)

    if not _profiles:
        atexit.register(dump)

    def run(*args, **kwargs):
        prof = cProfile.Profile()
        _profiles.append(prof)
        return prof.runcall(fn, *args, **kwargs)
    return run


def die_with_parent():
    """Get SIGTERM when the process that started us (Junction's main) dies, so a
    crashed Junction leaves no orphans (Linux only; best effort)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


def load_sibling(name):
    """Import launchers/python/<name>.py by path (the directory is not on sys.path)."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location('_junction_' + name, os.path.join(here, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main():
    env = os.environ
    options = json.loads(env.pop('JUNCTION_PYTHON_OPTIONS', '{}'))
    ready_fd = env.pop('JUNCTION_READY_FD', None)
    listen_pid = env.pop('LISTEN_PID', None)
    listen_fds = env.pop('LISTEN_FDS', None)
    env.pop('LISTEN_FDNAMES', None)

    # Junction stops processes with SIGTERM: leave through SystemExit so atexit runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    die_with_parent()
    # Ctrl-C at a terminal reaches the whole process group; main decides for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    sys.argv = ['unit']
    # The embedded interpreter of Unit has no script directory on sys.path.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or '.') == here:
        del sys.path[0]
    paths = options.get('path')
    if isinstance(paths, str):
        paths = [paths]
    for p in reversed(paths or []):
        sys.path.insert(0, p)

    if listen_fds != '1' or listen_pid != str(os.getpid()):
        fail_start('no listening socket inherited (LISTEN_FDS/LISTEN_PID)')
    listener = socket.socket(fileno=LISTEN_FD)

    size = options.get('thread_stack_size')
    if size:
        try:
            threading.stack_size(int(size))
        except (ValueError, RuntimeError) as e:
            fail_start('thread_stack_size %s: %s' % (size, e))

    targets, protocol = load_targets(options)

    def ready():
        if ready_fd is not None:
            fd = int(ready_fd)
            try:
                os.write(fd, b'R')
            finally:
                os.close(fd)

    if protocol == 'asgi':
        asgi = load_sibling('junction_asgi')
        asgi.serve(sys.modules[__name__], options, targets, listener, ready)
    else:
        WsgiLauncher(options, targets).serve(listener, ready)


if __name__ == '__main__':
    main()
