"""Junction's Python launcher: runs a WSGI application in a Junction
application process.

Started by Junction as ``python junction_python.py`` with a listening Unix
socket on fd 3 (LISTEN_FDS), the application options as JSON in
JUNCTION_PYTHON_OPTIONS and a readiness fd in JUNCTION_READY_FD. It speaks the
Junction application protocol (docs/app-protocol.md) with the router and
gives the application the environment Unit 1.35 gives it
(spec/applications.md section 3.2 and 4.2).

Standard library only; Python 3.9 or later.
"""

import collections
import importlib
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
F_END = 1
RF_TLS = 1

HDR = struct.Struct('!IBBHI')
HDR_SIZE = HDR.size
U16 = struct.Struct('!H')
U32 = struct.Struct('!I')
REQ_FIXED = struct.Struct('!BBHHH')
HELLO = struct.Struct('!HHIHHI')

# Request body bytes the launcher buffers per stream before the router waits for CREDIT.
WINDOW = 1 << 20
CREDIT_AT = WINDOW >> 2
MAX_DATA = 1 << 16
LISTEN_FD = 3

_pack_hdr = HDR.pack


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


class AppError(Exception):
    """A request failure already reported in the log."""


# -- connection ---------------------------------------------------------------

class Connection:
    """One router connection.

    With one thread the connection's own thread runs the application between
    reads (no hand-off between threads; waits for body bytes or window read
    the socket directly). With several, it only demultiplexes frames and the
    worker threads run the application.
    """

    def __init__(self, sock, launcher):
        self.sock = sock
        self.launcher = launcher
        self.wlock = threading.Lock()
        self.streams = {}
        self.closed = False
        self.peer_window = WINDOW
        self.inline = launcher.threads == 1
        self.pending = collections.deque()
        self.buf = b''

    def send(self, data):
        if self.closed:
            return False
        with self.wlock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def sendv(self, parts):
        """Send several buffers in one system call, without joining them first."""
        if self.closed:
            return False
        with self.wlock:
            try:
                sent = self.sock.sendmsg(parts)
                total = 0
                for p in parts:
                    total += len(p)
                if sent < total:
                    self.sock.sendall(b''.join(parts)[sent:])
                return True
            except OSError:
                self.closed = True
                return False

    def run(self):
        launcher = self.launcher
        pending = self.pending
        try:
            self.send(HELLO_FRAME(launcher.threads))
            while True:
                while pending:
                    launcher.run_request(pending.popleft())
                if not self.pump():
                    break
        except OSError:
            pass
        finally:
            self.shut()

    def shut(self):
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

    def pump(self):
        """Read once from the socket and act on every complete frame; False at the end."""
        try:
            chunk = self.sock.recv(262144)
        except OSError:
            chunk = b''
        if not chunk:
            self.shut()
            return False
        buf = self.buf + chunk if self.buf else chunk
        off = 0
        n = len(buf)
        streams = self.streams
        while n - off >= HDR_SIZE:
            length, ftype, flags, _, sid = HDR.unpack_from(buf, off)
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
                version, _, _, _, _, window = HELLO.unpack_from(payload)
                if version != PROTOCOL_VERSION:
                    log('alert', 'unsupported application protocol version %d' % version)
                    self.shut()
                    return False
                self.peer_window = window
        self.buf = buf[off:] if off < n else b''
        return True


def HELLO_FRAME(slots):
    return _pack_hdr(HELLO.size, T_HELLO, 0, 0, 0) + HELLO.pack(PROTOCOL_VERSION, 0, os.getpid(), slots, 0, WINDOW)


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
        self.cond = threading.Condition(threading.Lock())
        self.send_window = conn.peer_window
        self.consumed = 0
        self.finished = False

    # reader thread side
    def feed(self, data, end):
        with self.cond:
            if data:
                self.chunks.append(data)
            if end:
                self.eof = True
            self.cond.notify_all()

    def credit(self, n):
        with self.cond:
            self.send_window += n
            self.cond.notify_all()

    def abort(self):
        with self.cond:
            self.aborted = True
            self.cond.notify_all()

    # worker side
    def next_chunk(self):
        """The next body chunk, b'' at the end (or when the client is gone)."""
        if self.conn.inline:
            while not self.chunks and not self.eof and not self.aborted:
                if not self.conn.pump():
                    break
            if not self.chunks:
                return b''
            data = self.chunks.popleft()
        else:
            with self.cond:
                while not self.chunks and not self.eof and not self.aborted:
                    self.cond.wait()
                if self.chunks:
                    data = self.chunks.popleft()
                else:
                    return b''
        self.consumed += len(data)
        if self.consumed >= CREDIT_AT and not self.eof:
            n = self.consumed
            self.consumed = 0
            self.conn.send(_pack_hdr(4, T_CREDIT, 0, 0, self.sid) + U32.pack(n))
        return data

    def send_frames(self, frames):
        if not self.aborted:
            self.conn.send(frames)

    def send_body(self, data, head=b'', end=False):
        """DATA frames for `data` within the window; `head` (a HEAD frame) goes first."""
        sid = self.sid
        n = len(data)
        if n == 0:
            self.send_frames(head + _pack_hdr(0, T_DATA, F_END if end else 0, 0, sid) if end else head)
            return
        off = 0
        conn = self.conn
        while off < n:
            if conn.inline:
                while self.send_window <= 0 and not self.aborted and not conn.closed:
                    conn.pump()
                if self.aborted or conn.closed:
                    raise ClientGone()
                room = min(self.send_window, MAX_DATA, n - off)
                self.send_window -= room
            else:
                with self.cond:
                    while self.send_window <= 0 and not self.aborted and not conn.closed:
                        self.cond.wait(1.0)
                    if self.aborted or conn.closed:
                        raise ClientGone()
                    room = min(self.send_window, MAX_DATA, n - off)
                    self.send_window -= room
            last = end and off + room == n
            frame = _pack_hdr(room, T_DATA, F_END if last else 0, 0, sid)
            if room > 8192:
                part = memoryview(data)[off:off + room] if room != n else data
                conn.sendv([head, frame, part] if head else [frame, part])
            else:
                conn.send(head + frame + (data[off:off + room] if room != n else data))
            head = b''
            off += room

    def terminal(self, ftype, flags=0, payload=b''):
        """The one terminal frame of the stream (also after ABORT)."""
        if self.finished:
            return
        self.finished = True
        self.conn.streams.pop(self.sid, None)
        if ftype:  # 0: the END flag went out with the last DATA frame already
            self.conn.send(_pack_hdr(len(payload), ftype, flags, 0, self.sid) + payload)


class ClientGone(Exception):
    """The router aborted the stream."""


def parse_request(p):
    """Decode a REQUEST payload: (flags, target, [9 metadata bytes], [(name, value) bytes])."""
    rflags, _, target, nfields, _ = REQ_FIXED.unpack_from(p, 0)
    off = 8
    meta = []
    for _ in range(9):
        (ln,) = U16.unpack_from(p, off)
        off += 2
        meta.append(p[off:off + ln])
        off += ln
    fields = []
    for _ in range(nfields):
        (ln,) = U16.unpack_from(p, off)
        off += 2
        name = p[off:off + ln]
        off += ln
        (ln,) = U16.unpack_from(p, off)
        off += 2
        fields.append((name, p[off:off + ln]))
        off += ln
    return rflags, target, meta, fields


# -- WSGI ---------------------------------------------------------------------

class Input:
    """wsgi.input: the request body as a stream (read, readline, readlines, iteration)."""

    __slots__ = ('_req', '_buf', '_live')

    def __init__(self, req):
        self._req = req
        self._buf = b''
        self._live = True

    def _check(self):
        if not self._live:
            raise RuntimeError('wsgi.input used outside of its request')

    def _fill(self):
        data = self._req.next_chunk()
        if data:
            self._buf += data
        return bool(data)

    def read(self, size=-1):
        self._check()
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError('read() argument must be an integer')
        if size < -1:
            raise ValueError('read length must be non-negative or -1')
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
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size=-1):
        self._check()
        if size is None:
            size = -1
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError('readline() argument must be an integer')
        if size == 0:
            return b''
        start = 0
        while True:
            i = self._buf.find(b'\n', start)
            if i >= 0:
                end = i + 1
                break
            if 0 < size <= len(self._buf):
                end = size
                break
            start = len(self._buf)
            if not self._fill():
                end = len(self._buf)
                break
        if 0 < size < end:
            end = size
        line, self._buf = self._buf[:end], self._buf[end:]
        return line

    def readlines(self, hint=-1):
        self._check()
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
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _latin1(value, what):
    if isinstance(value, str):
        return value.encode('latin-1')
    if isinstance(value, bytes):
        return value
    raise TypeError('%s must be a str or bytes object, not %s' % (what, type(value).__name__))


class Response:
    """start_response() and the response side of one stream."""

    __slots__ = ('req', 'head', 'head_sent', 'length', 'sent', 'ended')

    def __init__(self, req):
        self.req = req
        self.head = None        # encoded HEAD frame waiting to go out
        self.head_sent = False
        self.length = None      # Content-Length set by the application
        self.sent = 0
        self.ended = False      # the END frame went out with the last chunk

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.head_sent:
            raise RuntimeError('start_response() called again after the response head was sent')
        status_b = _latin1(status, 'status')
        try:
            code = int(status_b.split(b' ', 1)[0])
        except ValueError:
            raise TypeError('status must start with a numeric code: %r' % (status,))
        if not isinstance(headers, list):
            raise TypeError('response headers must be a list')
        parts = []
        length = None
        for h in headers:
            if not isinstance(h, tuple) or len(h) != 2:
                raise TypeError('each response header must be a 2-tuple')
            name = _latin1(h[0], 'header name')
            value = _latin1(h[1], 'header value')
            if len(name) == 14 and name.lower() == b'content-length':
                try:
                    length = int(value)
                except ValueError:
                    length = None
            parts.append(U16.pack(len(name)))
            parts.append(name)
            parts.append(U16.pack(len(value)))
            parts.append(value)
        body = struct.pack('!HH', code, len(headers)) + b''.join(parts)
        self.head = body
        self.length = length
        if length == 0:
            self._flush_head(end=False)
        return self.write

    def _head_frame(self, end):
        body = self.head
        return _pack_hdr(len(body), T_HEAD, F_END if end else 0, 0, self.req.sid) + body

    def _flush_head(self, end):
        self.req.send_frames(self._head_frame(end))
        self.head_sent = True

    def write(self, data, last=False):
        """The write() callable of start_response, and the body path of the iterable;
        `last`: no more body follows (the END flag rides on this chunk)."""
        if not isinstance(data, bytes):
            raise TypeError('write() argument must be a bytes object')
        if not data or self.ended:
            return
        if self.head is None:
            raise RuntimeError('response body before start_response()')
        if self.length is not None:
            # PEP 3333: never more than the Content-Length the application announced.
            room = self.length - self.sent
            if len(data) >= room:
                if room <= 0:
                    return
                data = data[:room]
                last = True
        head = b''
        if not self.head_sent:
            head = self._head_frame(False)
            self.head_sent = True
        self.sent += len(data)
        if last:
            self.ended = True
        self.req.send_body(data, head, last)

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
    """One WSGI callable with its prefix."""

    __slots__ = ('app', 'prefix')

    def __init__(self, app, prefix):
        self.app = app
        self.prefix = prefix


class Launcher:
    def __init__(self, options):
        self.options = options
        self.threads = int(options.get('threads') or 1)
        self.work = queue.SimpleQueue()
        self.targets = []
        self.header_keys = {}
        self.base_environ = {
            'SERVER_SOFTWARE': SERVER_SOFTWARE,
            'wsgi.version': (1, 0),
            'wsgi.multithread': self.threads > 1,
            'wsgi.multiprocess': True,
            'wsgi.run_once': False,
            'wsgi.errors': sys.stderr,
        }

    # start-up
    def load(self):
        targets = self.options.get('targets')
        if not targets:
            targets = [self.options]
        for t in targets:
            self.targets.append(Target(load_callable(t), normalise_prefix(t.get('prefix'))))

    def serve(self, listener):
        size = self.options.get('thread_stack_size')
        if size:
            threading.stack_size(int(size))
        if self.threads > 1:
            for i in range(self.threads):
                threading.Thread(target=self.worker, name='junction-worker-%d' % i, daemon=True).start()
        while True:
            try:
                sock, _ = listener.accept()
            except InterruptedError:
                continue
            conn = Connection(sock, self)
            threading.Thread(target=conn.run, name='junction-reader', daemon=True).start()

    # requests
    def worker(self):
        get = self.work.get
        run = self.run_request
        while True:
            run(get())

    def run_request(self, req):
        try:
            self.handle(req)
        except Exception:
            traceback.print_exc()
            log('error', 'Python failed to call the application', req.sid)
            req.terminal(T_ERROR)
        req.payload = None

    def environ(self, req):
        rflags, target_index, meta, fields = parse_request(req.payload)
        method, version, target, path, query, remote, laddr, lport, sname = meta
        env = self.base_environ.copy()
        env['REQUEST_METHOD'] = method.decode('latin-1')
        env['SERVER_PROTOCOL'] = version.decode('latin-1')
        env['REQUEST_URI'] = target.decode('latin-1')
        env['QUERY_STRING'] = query.decode('latin-1')
        env['REMOTE_ADDR'] = remote.decode('latin-1')
        env['SERVER_ADDR'] = laddr.decode('latin-1')
        env['SERVER_PORT'] = lport.decode('latin-1')
        env['SERVER_NAME'] = sname.decode('latin-1')
        env['wsgi.url_scheme'] = 'https' if rflags & RF_TLS else 'http'
        # PEP 3333: the path's bytes as a native (Latin-1) string.
        path_s = path.decode('latin-1')
        t = self.targets[target_index] if target_index < len(self.targets) else self.targets[0]
        prefix = t.prefix
        if prefix and (path_s == prefix or path_s.startswith(prefix + '/')):
            env['SCRIPT_NAME'] = prefix
            env['PATH_INFO'] = path_s[len(prefix):]
        else:
            env['PATH_INFO'] = path_s
        keys = self.header_keys
        for name, value in fields:
            key = keys.get(name)
            if key is None:
                key = 'HTTP_' + name.decode('latin-1').upper().replace('-', '_')
                if len(keys) < 4096:
                    keys[name] = key
            v = value.decode('latin-1')
            if key in env:
                env[key] = env[key] + ', ' + v
            else:
                env[key] = v
        if 'HTTP_CONTENT_TYPE' in env:
            env['CONTENT_TYPE'] = env['HTTP_CONTENT_TYPE']
        if 'HTTP_CONTENT_LENGTH' in env:
            env['CONTENT_LENGTH'] = env['HTTP_CONTENT_LENGTH']
        return env, t

    def handle(self, req):
        env, target = self.environ(req)
        inp = Input(req)
        env['wsgi.input'] = inp
        resp = Response(req)
        ok = False
        try:
            result = target.app(env, resp.start_response)
            try:
                if isinstance(result, bytes):
                    resp.write(result, True)
                elif type(result) is list or type(result) is tuple:
                    # Known length: the last chunk carries END (one write for small responses).
                    last = len(result) - 1
                    for i, chunk in enumerate(result):
                        if not isinstance(chunk, bytes):
                            log('error', 'the application returned not a bytestring object', req.sid)
                            raise AppError()
                        resp.write(chunk, i == last)
                        if resp.ended or req.aborted:
                            break
                else:
                    try:
                        it = iter(result)
                    except TypeError:
                        log('error', 'the application returned not an iterable object', req.sid)
                        raise AppError()
                    for chunk in it:
                        if not isinstance(chunk, bytes):
                            log('error', 'the application returned not a bytestring object', req.sid)
                            raise AppError()
                        resp.write(chunk)
                        if resp.ended or req.aborted:
                            break
            finally:
                close = getattr(result, 'close', None)
                if close is not None:
                    close()
            ok = True
        except ClientGone:
            pass
        except AppError:
            pass
        except Exception:
            traceback.print_exc()
            log('error', 'Python failed to call the application', req.sid)
        finally:
            inp._live = False
        if ok:
            resp.complete()
        else:
            req.terminal(T_ERROR)


def normalise_prefix(prefix):
    if not prefix:
        return ''
    if prefix.endswith('/'):
        prefix = prefix[:-1]
    return prefix


def load_callable(t):
    module_name = t.get('module')
    name = t.get('callable') or 'application'
    try:
        module = importlib.import_module(module_name)
    except BaseException:
        traceback.print_exc()
        log('alert', 'Python failed to import module "%s"' % module_name)
        sys.exit(1)
    app = getattr(module, name, None)
    if app is None:
        log('alert', 'Python failed to get "%s" from module "%s"' % (name, module_name))
        sys.exit(1)
    if t.get('factory'):
        if not callable(app):
            log('alert', 'factory "%s" in module "%s" can not be called to fetch callable' % (name, module_name))
            sys.exit(1)
        try:
            app = app()
        except BaseException:
            traceback.print_exc()
            log('alert', 'Python failed to call the factory "%s" of module "%s"' % (name, module_name))
            sys.exit(1)
    if not callable(app):
        log('alert', '"%s" in module "%s" is not a callable object' % (name, module_name))
        sys.exit(1)
    if is_asgi(app, t.get('protocol')):
        log('alert', 'ASGI applications are not supported yet ("%s" in module "%s")' % (name, module_name))
        sys.exit(1)
    return app


def is_asgi(app, protocol):
    """Unit's detection: a coroutine function (ASGI 3) or a 1-parameter callable (ASGI 2)."""
    if protocol == 'wsgi':
        return False
    if protocol == 'asgi':
        return True
    func = app
    if not inspect.isfunction(func) and not inspect.ismethod(func):
        call = getattr(app, '__call__', None)
        if call is None or inspect.isbuiltin(call):
            return False
        func = call
    if inspect.iscoroutinefunction(func):
        return True
    try:
        params = [p for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


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
        log('alert', 'no listening socket inherited (LISTEN_FDS/LISTEN_PID)')
        sys.exit(1)
    listener = socket.socket(fileno=LISTEN_FD)

    launcher = Launcher(options)
    launcher.load()

    if ready_fd is not None:
        fd = int(ready_fd)
        try:
            os.write(fd, b'R')
        finally:
            os.close(fd)
    try:
        launcher.serve(listener)
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
