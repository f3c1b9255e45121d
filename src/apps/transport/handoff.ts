/**
 * The connection channel between the router and one Node application process:
 * a Unix stream socket over which the router hands whole client connections
 * to the process (SCM_RIGHTS), and the process hands idle ones back and
 * reports its counters (docs/external-apps.md, "Connection hand-off").
 *
 * The process end is Node's own IPC channel (`NODE_CHANNEL_FD=5`, JSON
 * serialisation), which the preload takes over from Node at start-up (the
 * application sees no IPC channel): it reads the connections itself and
 * passes them to the application's server. Both ends speak Node's wire
 * format — JSON lines, a descriptor travelling with
 * `{"cmd":"NODE_HANDLE","type":"net.Socket","msg":…}`, acknowledged by
 * `{"cmd":"NODE_HANDLE_ACK"}` — on pipe handles of Node's own binding in IPC
 * mode, since Node offers no public way to pass descriptors other than
 * between a child process and the parent that forked it.
 *
 * How the two ends meet: the router connects to main's rendezvous socket and
 * writes a token line; main spawns the application with that connection as
 * fd 5 (the spawn request names the token). Nothing else passes through main.
 *
 * A connection is the router's until the process acknowledges it: the router
 * keeps its own descriptor of each connection it sent until the matching
 * NODE_HANDLE_ACK arrives (acknowledgements come in sending order; Node sends
 * one as soon as it has the descriptor, before the application sees it). When
 * the channel ends first — the process exited, was killed, or never read it —
 * or the process answers NODE_HANDLE_NACK, the connection comes back through
 * onReclaim() untouched (nothing was read from it) and the router serves it.
 * The process is the only holder of its channel end (main closes its copy at
 * spawn, the shell and setpriv exec, Node marks it close-on-exec), so the
 * channel ends exactly when the process does.
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

function noop(): void {}

/**
 * A net.Socket around a connection handle (as Node makes for a received
 * one), reading. The handle may come from another socket that stopped
 * reading it directly: its `reading` mark (net's own) is reset so that the
 * new socket starts reading again.
 */
function socketOf(handle: object): net.Socket {
  (handle as { reading?: boolean }).reading = false;
  return new net.Socket({ handle, readable: true, writable: true } as unknown as net.SocketConstructorOpts);
}

/** Socket internals used to take the descriptor out of an accepted connection. */
type SocketWithHandle = net.Socket & { _handle: StreamHandle | null };

/** A message from the process: its text, and the connection it carries, if any. */
export type ChannelListener = (msg: Record<string, unknown>, socket?: net.Socket) => void;

/** A connection sent and not yet acknowledged: the router's descriptor and the message it went with. */
interface Unacked { handle: StreamHandle; msg: object }

/**
 * Called with each connection the process did not take (see the module
 * comment): a fresh socket for it and the message it was sent with.
 */
export type ReclaimListener = (socket: net.Socket, msg: Record<string, unknown>) => void;

/** The router end of a connection channel. */
export class HandoffChannel {
  readonly token: string;
  readonly #pipe: PipeHandle;
  #buf = '';
  #closed = false;
  #onMessage: ChannelListener = () => {};
  #onClose: () => void = () => {};
  #onReclaim: ReclaimListener = (socket) => { socket.destroy(); };
  /** Connections sent and not acknowledged yet, oldest first (from #unackedHead). */
  #unacked: (Unacked | undefined)[] = [];
  #unackedHead = 0;
  #closeTimer: NodeJS.Timeout | null = null;

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

  /** Called once when the process end closes (the process exited), after the reclaims. */
  onClose(fn: () => void): void {
    this.#onClose = fn;
  }

  /** Receive the connections the process did not take (default: closed). */
  onReclaim(fn: ReclaimListener): void {
    this.#onReclaim = fn;
  }

  /**
   * Hand the accepted connection `socket` over with `msg`. Nothing may have
   * been read from it. The router's copy is detached from `socket` at once
   * (the socket is destroyed) and kept, not reading, until the process
   * acknowledges the connection; if it never does, onReclaim() gets it back.
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
   * Send a raw connection handle (not reading) with `msg`; the handle stays
   * open until the process acknowledges it (then it is closed) or the channel
   * ends (then onReclaim() gets it). @returns false when the channel cannot
   * take it (the handle is untouched).
   */
  sendHandle(handle: StreamHandle, msg: object): boolean {
    if (this.#closed) return false;
    const b = load();
    const req = new b.WriteWrap();
    req.handle = this.#pipe;
    req.async = false;
    req.oncomplete = noop;
    const err = this.#pipe.writeUtf8String(req, JSON.stringify({ cmd: 'NODE_HANDLE', type: 'net.Socket', msg }) + '\n', handle);
    if (err !== 0) return false;
    this.#unacked.push({ handle, msg });
    return true;
  }

  /**
   * Close the router end; the process sees the channel end. Connections not
   * acknowledged yet are reclaimed (onReclaim), then onClose() is called.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#closeTimer !== null) { clearTimeout(this.#closeTimer); this.#closeTimer = null; }
    this.#pipe.onread = () => {};
    this.#pipe.close();
    const left = this.#unacked;
    const head = this.#unackedHead;
    this.#unacked = [];
    this.#unackedHead = 0;
    for (let i = head; i < left.length; i++) this.#reclaim(left[i]!);
    this.#onClose();
  }

  /**
   * The process is known to be gone (main reported its exit): close the
   * channel if its end has not been seen yet within `ms` (what the process
   * wrote before it died is read first).
   */
  closeSoon(ms: number): void {
    if (this.#closed || this.#closeTimer !== null) return;
    this.#closeTimer = setTimeout(() => { this.#closeTimer = null; this.close(); }, ms);
    this.#closeTimer.unref();
  }

  /** The oldest connection sent was taken (`taken`) or refused by the process. */
  #acknowledged(taken: boolean): void {
    if (this.#unackedHead >= this.#unacked.length) return;
    const u = this.#unacked[this.#unackedHead]!;
    this.#unacked[this.#unackedHead++] = undefined;
    if (this.#unackedHead === this.#unacked.length) {
      this.#unacked = [];
      this.#unackedHead = 0;
    } else if (this.#unackedHead > 1024 && this.#unackedHead * 2 > this.#unacked.length) {
      this.#unacked = this.#unacked.slice(this.#unackedHead);
      this.#unackedHead = 0;
    }
    if (taken) u.handle.close();
    else this.#reclaim(u);
  }

  #reclaim(u: Unacked): void {
    const socket = socketOf(u.handle);
    try {
      this.#onReclaim(socket, u.msg as Record<string, unknown>);
    } catch {
      socket.destroy();
    }
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
      if (msg.cmd === 'NODE_HANDLE_ACK' || msg.cmd === 'NODE_HANDLE_NACK') {
        this.#acknowledged(msg.cmd === 'NODE_HANDLE_ACK');
        continue;
      }
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
 * Mark `socket` as a connection the router serves itself: a listener does
 * not offer it to an application again. @returns `socket`.
 */
export function markRefused(socket: net.Socket): net.Socket {
  (socket as unknown as Record<symbol, unknown>)[kRefused] = true;
  return socket;
}

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
    this.h.reinject(markRefused(socketOf(this.#handle)));
  }
}
