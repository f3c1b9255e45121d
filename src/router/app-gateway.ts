/**
 * Applications when several routers run (main/routers.ts): router 0 owns
 * every application process pool; the other routers hand it their requests
 * for applications over a Unix socket in main's run directory, so that each
 * application has exactly one pool whichever router accepted the client.
 *
 * On that socket a forwarded request is HTTP/1.1 with the request metadata in
 * front of the client's own fields, always in the same places (so nothing a
 * client sends can stand for it):
 *
 *   METHOD <raw target> HTTP/1.1
 *   Junction-App: <app> [<target>]
 *   Junction-Request: <version> <tls> <remote addr> <local addr> <local port> <server name> <path> <query> <remote port>
 *   [Junction-Tunnel: 1]                  a WebSocket handshake: the connection becomes the tunnel
 *   <the client's fields, in order>
 *
 * (values percent-encoded behind a `_`). Router 0 gives the application an
 * AppRequest made of that request and its response, which the forwarding
 * router relays to the client as it would a local application's answer: its
 * own header block (Server, Date, response_headers, compression), access log
 * and counters. `fail(status)` of the application side comes back as a
 * response with the reason phrase `Junction-Fail` and becomes the forwarding
 * router's error page. Connections to router 0 are kept alive and reused
 * (upstream-http.ts, without Unit's proxy timeouts: the application's own
 * `limits.timeout` applies on router 0).
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Socket } from 'node:net';
import type {
  AppManagerLike, AppRequest, AppStatus, AppTarget, AppTransaction, AppUpgrade,
} from '../apps/types.ts';
import { writeRawError } from '../apps/exchange.ts';
import type { Logger } from '../runtime/log.ts';
import type { Request } from './request.ts';
import { ResponseRelay, UpstreamPool, type UpstreamConnection } from './upstream-http.ts';

/** Reason phrase of router 0's answer "send your error page with this status". */
const FAIL_REASON = 'Junction-Fail';
/** Fields of the gateway hop, not the application's. */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);

/**
 * For each application, its targets ('' for a pass without one): whether
 * they take WebSocket upgrades (`upgrade`), and whether router 0 hands their
 * connections to the application's processes whole (`whole`, AppTarget.wholeConnections).
 */
export type AppTargetsInfo = Record<string, Record<string, { upgrade: boolean; whole: boolean }>>;

/** What one prepared target offers the other routers. */
function targetInfo(t: AppTarget): { upgrade: boolean; whole: boolean } {
  return { upgrade: t.upgrade !== undefined, whole: t.wholeConnections === true };
}

const enc = (v: string): string => '_' + encodeURIComponent(v);
const dec = (v: string | undefined): string => (v === undefined || v.length < 1 ? '' : decodeURIComponent(v.slice(1)));

/** What router 0's prepared applications offer, for the other routers to compile against. */
export function describeTargets(tx: AppTransaction, applications: Record<string, unknown>): AppTargetsInfo {
  const out: AppTargetsInfo = {};
  for (const name of Object.keys(applications ?? {})) {
    const targets: Record<string, { upgrade: boolean; whole: boolean }> = {};
    const dflt = tx.target(name);
    if (dflt !== undefined) targets[''] = targetInfo(dflt);
    const conf = (applications[name] as Record<string, unknown> | null)?.targets;
    if (conf !== null && typeof conf === 'object') {
      for (const t of Object.keys(conf)) {
        const at = tx.target(name, t);
        if (at !== undefined) targets[t] = targetInfo(at);
      }
    }
    out[name] = targets;
  }
  return out;
}

/** The metadata fields of a forwarded request (see the module comment). */
function metaFields(app: string, u: Omit<AppRequest, 'res' | 'fail'>, tunnel: boolean): string {
  return `Junction-App: ${app}\r\nJunction-Request: ${u.req.httpVersion === '1.0' ? '1.0' : '1.1'} ${u.tls ? 1 : 0} ` +
    `${enc(u.remoteAddr)} ${enc(u.localAddr)} ${enc(u.localPort)} ${enc(u.serverName)} ${enc(u.path)} ${enc(u.query)} ` +
    `${u.remotePort ?? 0}\r\n` +
    (tunnel ? 'Junction-Tunnel: 1\r\n' : '');
}

function fieldsText(raw: readonly string[]): string {
  let out = '';
  for (let i = 0; i < raw.length; i += 2) out += raw[i] + ': ' + raw[i + 1] + '\r\n';
  return out;
}

// ---------------------------------------------------------------- router 0

/** A forwarded request as the application sees it. */
class ForwardedRequest implements AppRequest {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  target: string;
  path: string;
  query: string;
  remoteAddr: string;
  remotePort: number;
  localAddr: string;
  localPort: string;
  serverName: string;
  tls: boolean;
  rawHeaders: string[];

  constructor(req: http.IncomingMessage, res: http.ServerResponse, m: string[], fields: string[]) {
    this.req = req;
    this.res = res;
    this.target = req.url ?? '/';
    this.tls = m[1] === '1';
    this.remoteAddr = dec(m[2]);
    this.localAddr = dec(m[3]);
    this.localPort = dec(m[4]);
    this.serverName = dec(m[5]);
    this.path = dec(m[6]);
    this.query = dec(m[7]);
    this.remotePort = Number(m[8]) || 0;
    this.rawHeaders = fields;
  }

  /** Have the forwarding router send its error page (or close, once the header is out). */
  fail(status: number): void {
    const res = this.res;
    if (res.headersSent || res.writableEnded) {
      res.destroy();
      return;
    }
    for (const n of res.getHeaderNames()) res.removeHeader(n);
    res.writeHead(status, FAIL_REASON, { 'Content-Length': '0' });
    res.end();
  }
}

/** The request's metadata, or null when it is not a forwarded request. */
function metadata(req: http.IncomingMessage, tunnel: boolean): { app: string; target: string | undefined; m: string[]; fields: string[] } | null {
  const h = req.rawHeaders;
  if (h[0] !== 'Junction-App' || h[2] !== 'Junction-Request') return null;
  if (tunnel !== (h[4] === 'Junction-Tunnel')) return null;
  const a = h[1].split(' ');
  const m = h[3].split(' ');
  const version = m[0] === '1.0' ? '1.0' : '1.1';
  req.httpVersion = version;
  req.httpVersionMajor = 1;
  req.httpVersionMinor = version === '1.0' ? 0 : 1;
  return { app: dec(a[0]), target: a.length > 1 ? dec(a[1]) : undefined, m, fields: h.slice(tunnel ? 6 : 4) };
}

/** Router 0's socket for the other routers' application requests. */
export class AppGateway {
  readonly server: http.Server;
  private readonly apps: AppManagerLike;
  private readonly log: Logger;

  constructor(apps: AppManagerLike, log: Logger) {
    this.apps = apps;
    this.log = log;
    this.server = http.createServer({
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      keepAliveTimeout: 0,
      headersTimeout: 0,
      requestTimeout: 0,
      maxHeaderSize: 1024 * 1024,
      // Only the routers' tunnels are upgrades; a client's own Upgrade field is just a field.
      shouldUpgradeCallback: (req: http.IncomingMessage) => req.rawHeaders[4] === 'Junction-Tunnel',
    });
    this.server.maxHeadersCount = 0;
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => this.onTunnel(req, socket, head));
    this.server.on('clientError', (_e: Error, socket: Socket) => socket.destroy());
  }

  /** Listen on `path` (a stale socket file is replaced; mode 0600). */
  listen(path: string): Promise<void> {
    try { fs.unlinkSync(path); } catch { /* none */ }
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => {
        this.server.off('error', reject);
        try { fs.chmodSync(path, 0o600); } catch { /* best effort */ }
        resolve();
      });
    });
  }

  close(): void {
    this.server.close();
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const meta = metadata(req, false);
    if (meta === null) {
      res.destroy();
      return;
    }
    res.sendDate = false;
    const ar = new ForwardedRequest(req, res, meta.m, meta.fields);
    const t = this.apps.target(meta.app, meta.target);
    if (t === undefined) {
      ar.fail(503);
      return;
    }
    try {
      t.serve(ar);
    } catch (e) {
      this.log.error(`request failed: ${(e as Error).message}`);
      ar.fail(500);
    }
  }

  private onTunnel(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    const meta = metadata(req, true);
    const t = meta === null ? undefined : this.apps.target(meta.app, meta.target);
    if (meta === null || t?.upgrade === undefined) {
      writeRawError(socket, 503);
      return;
    }
    const r = new ForwardedRequest(req, undefined as unknown as http.ServerResponse, meta.m, meta.fields);
    const u: AppUpgrade = {
      req, socket, head,
      target: r.target, path: r.path, query: r.query, remoteAddr: r.remoteAddr, remotePort: r.remotePort, localAddr: r.localAddr,
      localPort: r.localPort, serverName: r.serverName, tls: r.tls, rawHeaders: r.rawHeaders,
    };
    t.upgrade(u);
  }
}

// ---------------------------------------------------------- other routers

/** A request relayed through router 0 on a gateway connection. */
class Relay extends ResponseRelay {
  readonly target: RemoteTarget;

  constructor(r: Request, target: RemoteTarget, head: string) {
    super(r, head);
    this.target = target;
  }

  protected connection(): UpstreamConnection {
    return this.target.apps.pool.acquire();
  }

  protected hop(): ReadonlySet<string> {
    return HOP;
  }

  /** Router 0's "send your error page" answer. */
  protected special(status: number, reason: string): boolean {
    if (reason !== FAIL_REASON) return false;
    this.r.fail(status);
    return true;
  }

  protected failed(e: Error): void {
    this.r.conn.log.error(`application request to router 0 failed (${(e as NodeJS.ErrnoException).code ?? e.message})`);
    this.r.fail(503);
  }
}

/** An application target served by router 0. */
class RemoteTarget implements AppTarget {
  readonly apps: RemoteApps;
  /** `Junction-App` value. */
  readonly app: string;
  /** Router 0 hands the application's connections over whole (listener.ts leaves such listeners to it). */
  readonly wholeConnections: 'primary' | undefined;

  constructor(apps: RemoteApps, name: string, target: string | undefined, whole = false) {
    this.apps = apps;
    this.app = target === undefined ? enc(name) : `${enc(name)} ${enc(target)}`;
    this.wholeConnections = whole ? 'primary' : undefined;
  }

  serve(ar: AppRequest): void {
    const r = ar as Request;
    const head = `${r.method} ${r.target} HTTP/1.1\r\n${metaFields(this.app, r, false)}${fieldsText(r.rawHeaders)}\r\n`;
    new Relay(r, this, head).start();
  }
}

/** A target that takes WebSocket upgrades: the client connection is tunnelled to router 0. */
class RemoteUpgradeTarget extends RemoteTarget {
  upgrade(u: AppUpgrade): void {
    const client = u.socket as Socket;
    const gw = net.connect(this.apps.path);
    let answered = false;
    gw.write(`${u.req.method} ${u.target} HTTP/1.1\r\n${metaFields(this.app, u, true)}${fieldsText(u.rawHeaders)}\r\n`, 'latin1');
    if (u.head.length > 0) gw.write(u.head);
    gw.once('data', () => { answered = true; });
    gw.pipe(client);
    client.pipe(gw);
    gw.on('error', (e: NodeJS.ErrnoException) => {
      if (!answered) {
        this.apps.log.error(`application request to router 0 failed (${e.code ?? e.message})`);
        writeRawError(client, 503);
      } else {
        client.destroy();
      }
    });
    client.on('error', () => gw.destroy());
    client.on('close', () => gw.destroy());
  }
}

/**
 * The application manager of a router other than router 0: targets named by
 * router 0's prepared configuration, each sending its requests there.
 */
export class RemoteApps implements AppManagerLike {
  readonly path: string;
  readonly pool: UpstreamPool;
  readonly log: Logger;
  /** What router 0 offers for the configuration being prepared. */
  private next: AppTargetsInfo = {};
  private current = new Map<string, RemoteTarget>();

  constructor(path: string, log: Logger) {
    this.path = path;
    this.log = log;
    this.pool = new UpstreamPool({ kind: 'unix', path, abstract: false }, false, 1024 * 1024);
  }

  /** Router 0's targets for the next prepare(). */
  offer(info: AppTargetsInfo | undefined): void {
    this.next = info ?? {};
  }

  async prepare(): Promise<AppTransaction> {
    const targets = new Map<string, RemoteTarget>();
    for (const [name, ts] of Object.entries(this.next)) {
      for (const [t, info] of Object.entries(ts)) {
        const T = info.upgrade ? RemoteUpgradeTarget : RemoteTarget;
        targets.set(`${name}\0${t}`, new T(this, name, t === '' ? undefined : t, info.whole));
      }
    }
    return {
      target: (name: string, target?: string) => targets.get(`${name}\0${target ?? ''}`),
      commit: () => { this.current = targets; },
      abort: () => {},
    };
  }

  target(name: string, target?: string): AppTarget | undefined {
    return this.current.get(`${name}\0${target ?? ''}`);
  }

  /** Router 0 reports the applications. */
  status(): Record<string, AppStatus> {
    return {};
  }

  async restart(): Promise<void> {
    throw new Error('applications are restarted by router 0');
  }

  processExited(): void { /* router 0's processes */ }

  async shutdown(): Promise<void> { /* nothing of its own */ }
}
