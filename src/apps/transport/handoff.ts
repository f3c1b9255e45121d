/**
 * The connection channel between the router and one Node application process:
 * a Unix stream socket over which the router hands whole client connections
 * to the process (SCM_RIGHTS), and the process hands idle ones back and
 * reports its counters (docs/external-apps.md, "Connection hand-off").
 *
 * The process end is Node's own IPC channel (`NODE_CHANNEL_FD=5`, JSON
 * serialisation): the application's Node receives connections as
 * `process.on('message', (msg, socket))`, which the preload passes to the
 * application's server. The router end speaks the same wire format — JSON
 * lines, a descriptor travelling with `{"cmd":"NODE_HANDLE","type":"net.Socket","msg":…}`,
 * acknowledged by `{"cmd":"NODE_HANDLE_ACK"}` — on a pipe handle of Node's
 * own binding opened in IPC mode, since Node offers no public way to pass
 * descriptors other than to a child process it forked itself.
 *
 * How the two ends meet: the router connects to main's rendezvous socket and
 * writes a token line; main spawns the application with that connection as
 * fd 5 (the spawn request names the token). Nothing else passes through main.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { AppHandoff } from '../types.ts';

/** Node's stream and pipe bindings (the same ones net and child_process use). */
interface StreamHandle {
  readStart(): number;
  readStop(): number;
  close(cb?: () => void): void;
  writeUtf8String(req: object, data: string, handle?: object): number;
  onread: (buf: ArrayBuffer | undefined) => void;
  pendingHandle?: object | null;
}
interface PipeHandle extends StreamHandle {
  connect(req: object, path: string): number;
}
interface WriteReq { handle: object; oncomplete: (status: number) => void; async: boolean; [k: string]: unknown }
interface Bindings {
  Pipe: new (type: number) => PipeHandle;
  PipeConnectWrap: new () => { oncomplete: (status: number) => void };
  pipeIpc: number;
  WriteWrap: new () => WriteReq;
  state: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

let bindings: Bindings | undefined;

function load(): Bindings {
  if (bindings) return bindings;
  const binding = (process as unknown as { binding(name: string): any }).binding;
  const pipe = binding('pipe_wrap');
  const stream = binding('stream_wrap');
  bindings = {
    Pipe: pipe.Pipe,
    PipeConnectWrap: pipe.PipeConnectWrap,
    pipeIpc: pipe.constants.IPC,
    WriteWrap: stream.WriteWrap,
    state: stream.streamBaseState,
    kReadBytesOrError: stream.kReadBytesOrError,
    kArrayBufferOffset: stream.kArrayBufferOffset,
    kLastWriteWasAsync: stream.kLastWriteWasAsync,
  };
  return bindings;
}

const ACK = '{"cmd":"NODE_HANDLE_ACK"}\n';

/** A net.Socket around a connection handle (as Node makes for a received one). */
function socketOf(handle: object): net.Socket {
  return new net.Socket({ handle, readable: true, writable: true } as unknown as net.SocketConstructorOpts);
}

/** Socket internals used to take the descriptor out of an accepted connection. */
type SocketWithHandle = net.Socket & { _handle: StreamHandle | null };

/** A message from the process: its text, and the connection it carries, if any. */
export type ChannelListener = (msg: Record<string, unknown>, socket?: net.Socket) => void;

/** The router end of a connection channel. */
export class HandoffChannel {
  readonly token: string;
  readonly #pipe: PipeHandle;
  #buf = '';
  #closed = false;
  #onMessage: ChannelListener = () => {};
  #onClose: () => void = () => {};

  private constructor(pipe: PipeHandle, token: string) {
    this.#pipe = pipe;
    this.token = token;
  }

  /**
   * Connect to main's rendezvous socket at `path` and introduce the channel
   * with a fresh token (to be named in the spawn request).
   * Rejects when main does not answer.
   */
  static connect(path: string): Promise<HandoffChannel> {
    return new Promise((resolve, reject) => {
      // Node's bindings are looked up here, so that a Node without them only means no hand-off.
      const b = load();
      const pipe = new b.Pipe(b.pipeIpc);
      const token = randomBytes(12).toString('hex');
      const req = new b.PipeConnectWrap();
      req.oncomplete = (status: number) => {
        if (status < 0) {
          pipe.close();
          reject(new Error(`connect(unix:${path}) failed (${status})`));
          return;
        }
        const ch = new HandoffChannel(pipe, token);
        if (!ch.#write(`${token}\n`)) {
          ch.close();
          reject(new Error(`write(unix:${path}) failed`));
          return;
        }
        pipe.onread = (buf) => ch.#read(buf);
        pipe.readStart();
        resolve(ch);
      };
      const err = pipe.connect(req, path);
      if (err < 0) {
        pipe.close();
        reject(new Error(`connect(unix:${path}) failed (${err})`));
      }
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Receive the process's messages (counters, connections given back). */
  onMessage(fn: ChannelListener): void {
    this.#onMessage = fn;
  }

  /** Called once when the process end closes (the process exited). */
  onClose(fn: () => void): void {
    this.#onClose = fn;
  }

  /**
   * Hand the accepted connection `socket` over with `msg`. Nothing may have
   * been read from it. The router's copy is detached from `socket` at once
   * (the socket is destroyed) and closed when the kernel took the descriptor.
   * @returns false when the channel cannot take it (the socket is untouched).
   */
  send(socket: net.Socket, msg: object): boolean {
    const handle = (socket as SocketWithHandle)._handle;
    if (this.#closed || handle === null || handle === undefined) return false;
    handle.readStop();
    if (!this.sendHandle(handle, msg)) {
      handle.readStart();
      return false;
    }
    (socket as SocketWithHandle)._handle = null;
    socket.destroy();
    return true;
  }

  /**
   * Send a raw connection handle (not reading) with `msg`; the handle is
   * closed once the kernel took the descriptor. @returns false when the
   * channel cannot take it (the handle is untouched).
   */
  sendHandle(handle: StreamHandle, msg: object): boolean {
    if (this.#closed) return false;
    const b = load();
    const req = new b.WriteWrap();
    req.handle = this.#pipe;
    req.async = false;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      handle.close();
    };
    req.oncomplete = release;
    const err = this.#pipe.writeUtf8String(req, JSON.stringify({ cmd: 'NODE_HANDLE', type: 'net.Socket', msg }) + '\n', handle);
    if (err !== 0) return false;
    if (!b.state[b.kLastWriteWasAsync]) release();
    return true;
  }

  /** Close the router end; the process sees the channel end. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pipe.onread = () => {};
    this.#pipe.close();
    this.#onClose();
  }

  #write(text: string): boolean {
    const b = load();
    const req = new b.WriteWrap();
    req.handle = this.#pipe;
    req.oncomplete = () => {};
    req.async = false;
    return this.#pipe.writeUtf8String(req, text) === 0;
  }

  #read(buf: ArrayBuffer | undefined): void {
    const b = load();
    const n = b.state[b.kReadBytesOrError];
    if (n < 0 || buf === undefined) {
      this.close();
      return;
    }
    let handle = this.#pipe.pendingHandle ?? null;
    this.#pipe.pendingHandle = null;
    this.#buf += Buffer.from(buf, b.state[b.kArrayBufferOffset], n).toString('utf8');
    let nl: number;
    while ((nl = this.#buf.indexOf('\n')) >= 0) {
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      let msg: Record<string, unknown>;
      try { msg = JSON.parse(line) as Record<string, unknown>; } catch { continue; }
      if (msg === null || typeof msg !== 'object') continue;
      if (msg.cmd === 'NODE_HANDLE_ACK' || msg.cmd === 'NODE_HANDLE_NACK') continue;
      if (msg.cmd === 'NODE_HANDLE') {
        // At most one descriptor per read: it belongs to this message.
        this.#write(ACK);
        const h = handle;
        handle = null;
        const inner = (msg.msg ?? {}) as Record<string, unknown>;
        if (h === null) { this.#onMessage(inner); continue; }
        const socket = socketOf(h);
        this.#onMessage(inner, socket);
        continue;
      }
      if (typeof msg.cmd === 'string' && msg.cmd.startsWith('NODE_')) continue;
      this.#onMessage(msg);
    }
    if (this.#buf.length > 1 << 20) this.close();
  }
}

const kRefused = Symbol('junction.handoffRefused');

/**
 * A connection taken out of the router's hands while it waits for a process
 * to be ready (nothing is read from it meanwhile).
 */
export class HeldConnection {
  readonly h: AppHandoff;
  readonly #handle: StreamHandle;

  private constructor(h: AppHandoff, handle: StreamHandle) {
    this.h = h;
    this.#handle = handle;
  }

  /** Detach the descriptor of `h.socket` (the socket object is destroyed); null when it has none. */
  static hold(h: AppHandoff): HeldConnection | null {
    const socket = h.socket as SocketWithHandle;
    const handle = socket._handle;
    if (handle === null || handle === undefined) return null;
    handle.readStop();
    socket._handle = null;
    socket.destroy();
    return new HeldConnection(h, handle);
  }

  /** Whether `socket` came back from refuse() (the router must serve it). */
  static refused(socket: net.Socket): boolean {
    return (socket as unknown as Record<symbol, unknown>)[kRefused] === true;
  }

  /** The offer again, with a new socket object for the connection. */
  release(): AppHandoff {
    return { ...this.h, socket: socketOf(this.#handle) };
  }

  /** Give the connection back to its listener, marked so that it is not offered again. */
  refuse(): void {
    const socket = socketOf(this.#handle);
    (socket as unknown as Record<symbol, unknown>)[kRefused] = true;
    this.h.reinject(socket);
  }
}
