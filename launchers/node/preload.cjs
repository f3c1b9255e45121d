'use strict';
/**
 * Junction's Node.js preload (`node --require .../preload.cjs app.js`, added to
 * NODE_OPTIONS for every `external` application).
 *
 * Junction starts the application with a listening Unix socket as fd 3
 * (systemd convention: LISTEN_FDS=1, LISTEN_PID=<pid>). This file makes an
 * unmodified Node application serve on it:
 *
 * - The first `listen(...)` of any net/http/https server, whatever its
 *   arguments, listens on fd 3 instead, and the server reports the port it
 *   asked for. Then the process tells Junction it is ready (one byte on
 *   JUNCTION_READY_FD). Later listen() calls behave normally. An https server
 *   serves plain HTTP there: Junction's listener is where TLS ends.
 * - Requests the router proxies carry the client's address in the
 *   `Junction-Client` field (only the router sets it; a client's copy never
 *   gets here). The field is taken off the request, and `req.socket`
 *   reports that client: remoteAddress, remotePort, remoteFamily,
 *   localAddress, localPort, and `encrypted` for https listeners.
 * - With a connection channel (NODE_CHANNEL_FD, Node's IPC channel) the router
 *   may hand whole client connections over: they are served by the same
 *   server, with Junction's `Server` field, idle timeout and body size limit,
 *   and their counters are reported back. The channel is Junction's alone:
 *   this file takes it over from Node, so the application sees no IPC
 *   channel (`process.send`, `process.channel` and `process.connected` are
 *   unset, and no 'message' or 'disconnect' event reaches it).
 *   When told to quit (SIGTERM), the process gives its idle client
 *   connections back to the router, lets busy ones finish their request (as
 *   long as it takes: the router, which cannot see those requests, is told
 *   how many are running), and exits when none is left. When it exits
 *   otherwise (process.exit(), an uncaught exception), idle connections still
 *   go back to the router, a request with no response yet gets a 503, and
 *   upgraded connections and responses under way are closed.
 * - `unit-http` (Unit's Node module: `require('unit-http')`,
 *   `--require unit-http/loader`, `--loader unit-http/loader.mjs`) resolves to
 *   node:http and to this file, for CommonJS and ES modules alike.
 *
 * It removes itself and the activation variables from process.env first, so
 * child processes of the application are not affected.
 */
const net = require('node:net');
const fs = require('node:fs');
const { StringDecoder } = require('node:string_decoder');
const http = require('node:http');
const https = require('node:https');

const LISTEN_FD = 3;
const CLIENT_FIELD = 'junction-client';
/** How often counters of handed-over connections are reported, ms. */
const STATS_INTERVAL = 100;

const kRouter = Symbol('junction.router');
const kPeer = Symbol('junction.peer');
const kDirect = Symbol('junction.direct');

function cleanEnv(env, self) {
  const opts = env.NODE_OPTIONS;
  if (opts !== undefined) {
    const rest = opts
      .replace(`--require "${self}"`, '')
      .replace(`--require ${self}`, '')
      .replace(/\s+/g, ' ')
      .trim();
    if (rest) env.NODE_OPTIONS = rest;
    else delete env.NODE_OPTIONS;
  }
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  delete env.JUNCTION_READY_FD;
}

function inheritedSocket(env) {
  if (env.LISTEN_FDS !== '1' || env.LISTEN_PID !== String(process.pid)) return false;
  try {
    return fs.fstatSync(LISTEN_FD).isSocket();
  } catch {
    return false;
  }
}

/** The port an application asked for, in any of listen()'s forms; 80 when none. */
function requestedPort(args) {
  let a = args[0];
  if (a !== null && typeof a === 'object' && !Array.isArray(a)) a = a.port;
  if (typeof a === 'number' && Number.isInteger(a) && a >= 0) return a;
  if (typeof a === 'string' && /^\d+$/.test(a)) return Number(a);
  return 80;
}

/**
 * Unit-style applications load `unit-http` (`--require unit-http/loader`,
 * `--loader unit-http/loader.mjs`, or `require('unit-http')` /
 * `import 'unit-http'` in the code). Here plain node:http already works, so
 * those names resolve to it, whether or not the real package is installed
 * (its native part cannot run under Junction).
 */
function mapUnitHttp() {
  const Module = require('node:module');
  const target = (name) => {
    if (name === 'unit-http' || name === 'unit-http/http') return 'node:http';
    if (name === 'unit-http/loader' || name === 'unit-http/loader.js' || name === 'unit-http/loader.mjs') return __filename;
    return undefined;
  };
  if (typeof Module.registerHooks === 'function') {
    const { pathToFileURL } = require('node:url');
    Module.registerHooks({
      resolve(specifier, context, next) {
        const t = target(specifier);
        if (t === undefined) return next(specifier, context);
        return { url: t.startsWith('node:') ? t : pathToFileURL(t).href, shortCircuit: true };
      },
    });
    return;
  }
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function junctionResolve(request, ...rest) {
    const t = target(request);
    if (t !== undefined) return t.startsWith('node:') ? t.slice(5) : t;
    return resolve.call(this, request, ...rest);
  };
}

/** Unit's error page for `status` (spec/router.md §2.9). */
function errorPage(status) {
  return `<!DOCTYPE html><title>Error ${status}</title><p>Error ${status}.\r\n`;
}

// ---------------------------------------------------------------------------
// The client's address on proxied requests

/** Own symbol of IncomingMessage under which node:http caches `headers`. */
let kHeaders;
let kHeadersDistinct;
/** ... and the number of rawHeaders entries it builds them from. */
let kHeadersCount;
function headerSymbols() {
  if (kHeaders !== undefined) return;
  const m = new http.IncomingMessage(null);
  void m.headers;
  void m.headersDistinct;
  for (const s of Object.getOwnPropertySymbols(m)) {
    if (s.description === 'kHeaders') kHeaders = s;
    else if (s.description === 'kHeadersDistinct') kHeadersDistinct = s;
    else if (s.description === 'kHeadersCount') kHeadersCount = s;
  }
  kHeaders ??= null;
  kHeadersDistinct ??= null;
  kHeadersCount ??= null;
}

/** Remove `Junction-Client` from `req`; returns its value, or undefined. */
function takeClientField(req) {
  const raw = req.rawHeaders;
  let i = raw.length - 2;
  // The router puts it last.
  if (i < 0 || raw[i].length !== CLIENT_FIELD.length || raw[i].toLowerCase() !== CLIENT_FIELD) {
    for (i = 0; i < raw.length; i += 2) {
      if (raw[i].length === CLIENT_FIELD.length && raw[i].toLowerCase() === CLIENT_FIELD) break;
    }
    if (i >= raw.length) return undefined;
  }
  const value = raw[i + 1];
  raw.splice(i, 2);
  headerSymbols();
  if (kHeadersCount && typeof req[kHeadersCount] === 'number') req[kHeadersCount] -= 2;
  if (kHeaders && req[kHeaders]) delete req[kHeaders][CLIENT_FIELD];
  if (kHeadersDistinct && req[kHeadersDistinct]) delete req[kHeadersDistinct][CLIENT_FIELD];
  return value;
}

function untoken(s) {
  if (s === '-') return undefined;
  return s.indexOf('%') < 0 ? s : s.replace(/%20/g, ' ').replace(/%25/g, '%');
}

function family(address) {
  if (address === undefined || address.startsWith('unix:')) return undefined;
  return address.includes(':') ? 'IPv6' : 'IPv4';
}

const peerProperties = {
  remoteAddress: { configurable: true, enumerable: false, get() { return this[kPeer].remoteAddress; } },
  remotePort: { configurable: true, enumerable: false, get() { return this[kPeer].remotePort; } },
  remoteFamily: { configurable: true, enumerable: false, get() { return this[kPeer].remoteFamily; } },
  localAddress: { configurable: true, enumerable: false, get() { return this[kPeer].localAddress; } },
  localPort: { configurable: true, enumerable: false, get() { return this[kPeer].localPort; } },
  encrypted: { configurable: true, enumerable: false, get() { return this[kPeer].encrypted; } },
};

/** Make `socket` report the client named by a `Junction-Client` value. */
function setPeer(socket, value) {
  const t = value.split(' ');
  const remoteAddress = untoken(t[0] ?? '-');
  const localAddress = untoken(t[2] ?? '-');
  const peer = {
    remoteAddress,
    remotePort: Number(t[1]) || undefined,
    remoteFamily: family(remoteAddress),
    localAddress,
    localPort: Number(t[3]) || undefined,
    encrypted: t[4] === 'https' ? true : undefined,
  };
  if (socket[kPeer] === undefined) Object.defineProperties(socket, peerProperties);
  socket[kPeer] = peer;
}

// ---------------------------------------------------------------------------
// The connection channel

/**
 * The router's connection channel (Node's IPC channel on NODE_CHANNEL_FD),
 * taken over from Node by takeChannel(): its pipe handle; null when there is
 * none, or once it ended.
 */
let channel = null;
/** Node's stream binding: WriteWrap, and the results of the last read and write. */
let streamWrap = null;
const channelDecoder = new StringDecoder('utf8');
/** Text read from the channel, not yet a whole line. */
let channelText = '';
/** A descriptor received, for the next NODE_HANDLE line. */
let channelHandle = null;

function noop() {}

/**
 * Take the connection channel over from Node. From then on only this file
 * reads and writes it, and the application sees no IPC channel:
 * `process.send`, `process.disconnect`, `process.channel` and
 * `process.connected` are unset, and no 'message' or 'disconnect' event
 * comes from it (it is Junction's, not a parent's the application could
 * talk to, nor one it could close).
 * @returns false when there is no channel, or when Node's handles needed to
 *   use it are missing (the channel is then closed: the router proxies).
 */
function takeChannel() {
  if (process.channel == null) return false;
  const sym = Object.getOwnPropertySymbols(process).find((x) => x.description === 'kChannelHandle');
  const pipe = sym === undefined ? undefined : process[sym];
  const b = streamBinding();
  if (pipe == null || typeof pipe !== 'object' || typeof pipe.writeUtf8String !== 'function' ||
    b === null || typeof b.WriteWrap !== 'function') {
    try { process.disconnect(); } catch { /* already closed */ }
    return false;
  }
  streamWrap = b;
  channel = pipe;
  try { process.channel.unref(); } catch { /* no ref counting */ }
  pipe.unref();
  pipe.onread = onChannelRead;
  process[sym] = null;
  for (const name of ['send', '_send', 'disconnect', '_disconnect', 'connected', 'channel', '_channel', '_handleQueue', '_pendingMessage']) {
    try { delete process[name]; } catch { /* kept */ }
  }
  // Node's own listeners for the channel: its protocol messages, and keeping
  // the process alive while the application listens for 'message'.
  for (const l of process.listeners('internalMessage')) process.removeListener('internalMessage', l);
  for (const l of process.listeners('newListener')) if (l.name === 'onNewListener') process.removeListener('newListener', l);
  for (const l of process.listeners('removeListener')) if (l.name === 'onRemoveListener') process.removeListener('removeListener', l);
  return true;
}

/**
 * Node's stream binding (what node:net itself writes with), or null. Its
 * deprecation warning (with --pending-deprecation) is not the application's.
 */
function streamBinding() {
  const had = Object.prototype.hasOwnProperty.call(process, 'noDeprecation');
  const was = process.noDeprecation;
  process.noDeprecation = true;
  try {
    return process.binding('stream_wrap');
  } catch {
    return null;
  } finally {
    if (had) process.noDeprecation = was;
    else delete process.noDeprecation;
  }
}

/** Data, or the end, read from the channel (Node's JSON lines, a descriptor with NODE_HANDLE). */
function onChannelRead(buf) {
  const b = streamWrap;
  const n = b.streamBaseState[b.kReadBytesOrError];
  if (buf === undefined || n < 0) {
    channelEnded();
    return;
  }
  const h = channel.pendingHandle;
  if (h != null) {
    channel.pendingHandle = null;
    if (channelHandle !== null) closeLater(channelHandle);
    channelHandle = h;
  }
  channelText += channelDecoder.write(Buffer.from(buf, b.streamBaseState[b.kArrayBufferOffset], n));
  let nl;
  while (channel !== null && (nl = channelText.indexOf('\n')) >= 0) {
    const line = channelText.slice(0, nl);
    channelText = channelText.slice(nl + 1);
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      continue;
    }
    if (msg !== null && typeof msg === 'object') fromRouter(msg);
  }
}

/** A message of the router: a connection handed over, or the acknowledgement of one given back. */
function fromRouter(msg) {
  if (msg.cmd === 'NODE_HANDLE') {
    const h = channelHandle;
    channelHandle = null;
    if (h === null) {
      channelWrite('{"cmd":"NODE_HANDLE_NACK"}\n');
      return;
    }
    // The connection is this process's from now on.
    channelWrite('{"cmd":"NODE_HANDLE_ACK"}\n');
    const socket = new net.Socket({ handle: h, readable: true, writable: true });
    const inner = msg.msg;
    if (inner !== null && typeof inner === 'object' && inner.junction === 'conn') adopt(inner, socket);
    else socket.destroy();
    return;
  }
  if (msg.cmd === 'NODE_HANDLE_ACK' || msg.cmd === 'NODE_HANDLE_NACK') backAcknowledged(msg.cmd === 'NODE_HANDLE_ACK');
}

/**
 * Write the line `text` to the channel, with the descriptor of `handle` if
 * given. @returns true when written: handed to libuv, or with `now`, taken
 * by the kernel in this call (what an exiting process needs).
 */
function channelWrite(text, handle, now = false) {
  if (channel === null) return false;
  const b = streamWrap;
  const req = new b.WriteWrap();
  req.handle = channel;
  req.oncomplete = noop;
  req.async = false;
  let err;
  try {
    err = handle === undefined ? channel.writeUtf8String(req, text) : channel.writeUtf8String(req, text, handle);
  } catch {
    return false;
  }
  return err === 0 && !(now && b.streamBaseState[b.kLastWriteWasAsync]);
}

/** Close `handle` once the current callbacks are done with it (an HTTP parser lets go of it on 'close'). */
function closeLater(handle) {
  setImmediate(() => handle.close());
}

/** The channel ended (the router is gone): what was on its way back closes. */
function channelEnded() {
  if (channel === null) return;
  const pipe = channel;
  channel = null;
  pipe.onread = noop;
  try { pipe.close(); } catch { /* closed */ }
  if (channelHandle !== null) closeLater(channelHandle);
  channelHandle = null;
  if (backSent !== null) closeLater(backSent.handle);
  backSent = null;
  for (const e of backQueue.splice(0)) closeLater(e.handle);
}

/** Connections to give back to the router, sent one at a time: Node's protocol waits for each acknowledgement. */
const backQueue = [];
/** The connection given back last, until the router acknowledges it. */
let backSent = null;

/** The channel line giving a connection of listener `l` back. */
function backLine(l) {
  return `${JSON.stringify({ cmd: 'NODE_HANDLE', type: 'net.Socket', msg: { junction: 'back', l } })}\n`;
}

/** Connections on their way back to the router. */
function backPending() {
  return backQueue.length + (backSent === null ? 0 : 1);
}

/** Send the descriptor `handle` (detached from its socket) back to the router, for listener `l`. */
function sendBack(handle, l) {
  backQueue.push({ handle, line: backLine(l), tries: 0 });
  nextBack();
}

function nextBack() {
  while (backSent === null && backQueue.length > 0) {
    const e = backQueue.shift();
    if (channelWrite(e.line, e.handle)) backSent = e;
    else closeLater(e.handle);
  }
}

/** The router got the connection given back last (`taken`), or asks for it again. */
function backAcknowledged(taken) {
  const e = backSent;
  if (e === null) return;
  backSent = null;
  if (!taken && ++e.tries <= 3) backQueue.unshift(e);
  else closeLater(e.handle);
  nextBack();
}

// ---------------------------------------------------------------------------
// Connections handed over by the router

/** Client connections being served here, handed over by the router. */
const direct = new Set();
/** Connections from the router on fd 3. */
const routerSockets = new Set();
let quitting = false;
let stats = { r: 0, c: 0 };
/**
 * Requests under way and upgraded connections on handed-over connections:
 * reported with the counters, so that the router, which cannot see them,
 * lets a quitting process finish them.
 */
let busyNow = 0;
/** The number last reported. */
let busySent = 0;
let statsTimer = null;
/** The server listening on fd 3. */
let mainServer = null;

function reportStats() {
  if (statsTimer !== null) {
    clearTimeout(statsTimer);
    statsTimer = null;
  }
  if (stats.r === 0 && stats.c === 0 && busyNow === busySent) return;
  const s = stats;
  stats = { r: 0, c: 0 };
  busySent = busyNow;
  channelWrite(`{"junction":"stats","r":${s.r},"c":${s.c},"b":${busyNow}}\n`);
}

function countStats() {
  if (statsTimer === null) {
    statsTimer = setTimeout(reportStats, STATS_INTERVAL);
    statsTimer.unref();
  }
}

function onDirectClose() {
  if (!direct.delete(this)) return;
  if (this[kDirect].upgraded) busyNow--;
  stats.c++;
  countStats();
  if (quitting) exitWhenDrained();
}

let idleTimer = null;

/**
 * settings.http.idle_timeout of handed-over connections: one coarse timer for
 * all of them (cheaper than re-arming a timer per socket and request) closes
 * those idle longer than that between requests, as the router would.
 */
function watchIdle(ms) {
  if (idleTimer !== null) return;
  idleTimer = setInterval(closeIdleTooLong, Math.max(100, Math.min(1000, Math.floor(ms / 4))));
  idleTimer.unref();
}

function closeIdleTooLong() {
  const now = Date.now();
  for (const s of direct) {
    const d = s[kDirect];
    if (d.busy === 0 && !d.upgraded && d.idle > 0 && now - d.last >= d.idle) s.destroy();
  }
  if (direct.size === 0) {
    clearInterval(idleTimer);
    idleTimer = null;
  }
}

/** A connection the router handed over: serve it with the server on fd 3. */
function adopt(msg, socket) {
  if (mainServer === null) {
    socket.destroy();
    return;
  }
  const d = {
    l: msg.l, server: String(msg.server ?? ''), idle: Number(msg.idle) || 0, max: Number(msg.max) || 0,
    busy: 0, req: undefined, last: Date.now(), upgraded: false,
  };
  socket[kDirect] = d;
  direct.add(socket);
  socket.setNoDelay(true);
  socket.on('close', onDirectClose);
  if (d.idle > 0) watchIdle(d.idle);
  if (quitting) {
    giveBack.call(socket);
    return;
  }
  if (!(mainServer instanceof http.Server) && !(mainServer instanceof https.Server)) {
    // A server of its own protocol handling (node:net): where one request ends
    // is unknown here, so connections could not be given back safely. Decline.
    if (!declined) {
      declined = true;
      channelWrite('{"junction":"decline"}\n');
    }
    giveBack.call(socket);
    return;
  }
  mainServer.emit('connection', socket);
}

let declined = false;

/**
 * Give the idle connection `this` back to the router (the process is
 * quitting): nothing more is read here, the descriptor goes back over the
 * channel and the router serves what the client sends next.
 */
function giveBack() {
  const socket = this;
  if (Object.prototype.hasOwnProperty.call(socket, 'destroy')) delete socket.destroy;
  const d = socket[kDirect];
  const handle = socket._handle;
  if (!direct.has(socket) || channel === null || handle == null) {
    socket.destroy();
    return;
  }
  direct.delete(socket);
  stats.c++;
  countStats();
  // The descriptor is the router's now: the socket lets go of it (as Node's
  // own process.send() of a socket does) and closes without closing it.
  handle.readStop();
  handle.onread = noop;
  socket._handle = null;
  socket.destroy();
  sendBack(handle, d.l);
}

/** Read nothing more on the connection of `req` once `req` is in: its response is the last here. */
function stopAfter(req) {
  if (req.complete) stopReading.call(req);
  else req.once('end', stopReading);
}

function stopReading() {
  this.socket?._handle?.readStop();
}

/** Quitting: busy handed-over connections read no next request (they go back after this response). */
function stopBusy() {
  for (const s of direct) {
    const d = s[kDirect];
    if (d.busy > 0 && d.req !== undefined) stopAfter(d.req);
  }
}

/** Run `fn` with handed-over connections given back where node:http would destroy them. */
function withGiveBack(fn) {
  const list = [...direct];
  for (const s of list) s.destroy = giveBack;
  try {
    fn();
  } finally {
    for (const s of list) if (s.destroy === giveBack) delete s.destroy;
  }
}

/**
 * Quitting: give every idle handed-over connection back to the router and
 * close idle router connections; busy ones are handled after their response.
 */
function closeIdle() {
  if (mainServer === null) return;
  if (typeof mainServer.closeIdleConnections !== 'function') {
    for (const s of [...direct]) if (s[kDirect].busy === 0 && !s[kDirect].upgraded) giveBack.call(s);
    return;
  }
  // node:http knows which connections are between requests (nothing of a next
  // one read): closeIdleConnections() destroys exactly those; handed-over ones
  // are given back instead.
  withGiveBack(() => mainServer.closeIdleConnections());
}

let exitTimer = null;
function exitWhenDrained() {
  if (exitTimer !== null) return;
  const check = () => {
    closeIdle();
    if (direct.size > 0 || routerSockets.size > 0 || backPending() > 0) return;
    clearInterval(exitTimer);
    reportStats();
    // Let the last report reach the router.
    setImmediate(() => process.exit(0));
  };
  exitTimer = setInterval(check, 20);
  check();
}

/** A response on a handed-over connection is done (finished, or the client went away). */
function onDirectDone() {
  const d = this.req?.socket?.[kDirect];
  if (d === undefined) return;
  d.busy--;
  busyNow--;
  d.last = Date.now();
  countStats();
  if (quitting) setImmediate(closeIdle);
}

/**
 * A request of a handed-over connection: no client may pass `Junction-Client`;
 * Junction's body size limit and Server field apply.
 * @returns false when it was answered here (413).
 */
function directRequest(req, res, d) {
  takeClientField(req);
  stats.r++;
  countStats();
  if (d.max > 0 && Number(req.headers['content-length']) > d.max) {
    const body = errorPage(413);
    res.shouldKeepAlive = false;
    res.writeHead(413, { 'Content-Type': 'text/html', 'Content-Length': body.length, Server: d.server, Connection: 'close' });
    res.end(body);
    return false;
  }
  d.busy++;
  busyNow++;
  d.req = req;
  if (quitting) stopAfter(req);
  // 'close' follows every response, finished or not.
  res.once('close', onDirectDone);
  if (d.server !== '') res.setHeader('Server', d.server);
  return true;
}

/**
 * An upgrade on a handed-over connection (the application's server has an
 * 'upgrade' listener): the connection is the application's until it
 * closes, busy all along; the response head the application writes gets
 * Junction's Server field, as on the router's path.
 */
function directUpgrade(req, socket, d) {
  takeClientField(req);
  stats.r++;
  d.upgraded = true;
  busyNow++;
  countStats();
  if (d.server !== '' && socket === req.socket) serverOnUpgrade(socket, d.server);
}

/**
 * Add `Server: server` to the response head an application writes itself
 * on an upgraded connection, unless it has one: its first write (or end) is
 * looked at, then the socket is left alone.
 */
function serverOnUpgrade(socket, server) {
  const write = function junctionUpgradeWrite(chunk, ...rest) {
    restore();
    return socket.write(withServer(chunk, server), ...rest);
  };
  const end = function junctionUpgradeEnd(chunk, ...rest) {
    restore();
    return socket.end(typeof chunk === 'function' ? chunk : withServer(chunk, server), ...rest);
  };
  function restore() {
    if (socket.write === write) delete socket.write;
    if (socket.end === end) delete socket.end;
  }
  socket.write = write;
  socket.end = end;
}

/** `chunk` with `Server: server` in it when it is a whole response head without one; else `chunk`. */
function withServer(chunk, server) {
  if (typeof chunk === 'string') {
    if (!chunk.startsWith('HTTP/')) return chunk;
    const end = chunk.indexOf('\r\n\r\n');
    if (end < 0 || /\r\nserver:/i.test(chunk.slice(0, end + 2))) return chunk;
    return `${chunk.slice(0, end + 2)}Server: ${server}\r\n${chunk.slice(end + 2)}`;
  }
  if (chunk instanceof Uint8Array) {
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0 || buf.toString('latin1', 0, 5) !== 'HTTP/' || /\r\nserver:/i.test(buf.toString('latin1', 0, end + 2))) return chunk;
    return Buffer.concat([buf.subarray(0, end + 2), Buffer.from(`Server: ${server}\r\n`, 'latin1'), buf.subarray(end + 2)]);
  }
  return chunk;
}

/**
 * `Expect: 100-continue` on a handed-over connection: node:http answers
 * `100 Continue` itself before the request is seen (when the application has
 * no 'checkContinue' listener); a body over Junction's limit must get its 413
 * without being invited first (as on the router's path).
 */
function patchWriteContinue(proto) {
  const writeContinue = proto.writeContinue;
  proto.writeContinue = function junctionWriteContinue(cb) {
    const d = this.socket?.[kDirect];
    if (d !== undefined && d.max > 0 && Number(this.req?.headers['content-length']) > d.max) return;
    return writeContinue.call(this, cb);
  };
}

/** Look at every request and upgrade of every http/https server before the application does. */
function patchEmit(proto) {
  const emit = proto.emit;
  proto.emit = function junctionEmit(event, a, b, c) {
    if (event === 'request' || event === 'upgrade' || event === 'checkContinue') {
      const socket = a.socket;
      if (socket !== null && socket !== undefined) {
        if (socket[kRouter] === true) {
          const value = takeClientField(a);
          if (value !== undefined) setPeer(socket, value);
        } else if (socket[kDirect] !== undefined) {
          if (event === 'upgrade') directUpgrade(a, b, socket[kDirect]);
          else if (!directRequest(a, b, socket[kDirect])) return true;
        }
      }
    }
    return emit.call(this, event, a, b, c);
  };
}

/**
 * The process is exiting without having drained (process.exit() by the
 * application, an uncaught exception): only synchronous work is possible.
 * The router is told that this process takes no more connections; the
 * handed-over connections node:http has between requests, and those already
 * on their way back, go back to it (the descriptor is on its way before the
 * process is gone, or the connection closes with it); a request without any
 * of its response yet gets Unit's 503 with `Connection: close`; a response
 * already begun is cut short, and an upgraded connection just closes.
 */
function onExit() {
  if (channel === null || mainServer === null || (direct.size === 0 && backPending() === 0)) return;
  channelWrite('{"junction":"exiting"}\n', undefined, true);
  for (const e of backQueue.splice(0)) channelWrite(e.line, e.handle, true);
  const idle = new Set();
  const list = [...direct];
  if (typeof mainServer.closeIdleConnections === 'function') {
    const collect = function collectIdle() { idle.add(this); return this; };
    for (const s of list) s.destroy = collect;
    try {
      mainServer.closeIdleConnections();
    } catch {
      /* nothing more can be known */
    } finally {
      for (const s of list) if (s.destroy === collect) delete s.destroy;
    }
  } else {
    for (const s of list) if (s[kDirect].busy === 0 && !s[kDirect].upgraded) idle.add(s);
  }
  for (const s of list) {
    const handle = s._handle;
    if (handle == null) continue;
    const d = s[kDirect];
    if (idle.has(s)) {
      channelWrite(backLine(d.l), handle, true);
      continue;
    }
    if (d.upgraded) continue;
    const res = s._httpMessage;
    if ((res != null && res.headersSent) || s.writableLength > 0 || typeof handle.fd !== 'number' || handle.fd < 0) continue;
    const body = errorPage(503);
    const server = d.server === '' ? '' : `Server: ${d.server}\r\n`;
    try {
      fs.writeSync(handle.fd, `HTTP/1.1 503 Service Unavailable\r\n${server}Date: ${new Date().toUTCString()}\r\n` +
        `Content-Type: text/html\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    } catch {
      /* the client is gone, or its buffer is full: it sees the connection close */
    }
  }
}

// ---------------------------------------------------------------------------

function install() {
  const env = process.env;
  const active = inheritedSocket(env);
  const readyFd = Number(env.JUNCTION_READY_FD);
  cleanEnv(env, __filename);
  if (!active) return;
  mapUnitHttp();
  patchEmit(http.Server.prototype);
  patchEmit(https.Server.prototype);
  patchWriteContinue(http.ServerResponse.prototype);

  const listen = net.Server.prototype.listen;
  let taken = false;

  function reportReady() {
    if (!Number.isInteger(readyFd) || readyFd < 0) return;
    try {
      fs.writeSync(readyFd, 'R');
    } catch {
      /* Junction is gone; nothing to tell */
    }
    try {
      fs.closeSync(readyFd);
    } catch {
      /* already closed */
    }
  }

  function markRouter(socket) {
    socket[kRouter] = true;
    routerSockets.add(socket);
    socket.once('close', () => routerSockets.delete(socket));
  }

  net.Server.prototype.listen = function junctionListen(...args) {
    if (taken) return listen.apply(this, args);
    taken = true;
    net.Server.prototype.listen = listen;
    mainServer = this;
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    const port = requestedPort(args);
    const address = { address: '127.0.0.1', family: 'IPv4', port };
    this.address = function junctionAddress() {
      return this.listening ? { ...address } : null;
    };
    if (this instanceof https.Server) {
      // Junction's listener ends TLS: connections here speak plain HTTP.
      for (const l of this.listeners('connection')) {
        if (l.name === 'tlsConnectionListener') this.removeListener('connection', l);
      }
      this.on('connection', function plainConnection(socket) { this.emit('secureConnection', socket); });
    }
    this.prependListener('connection', (socket) => { if (socket[kDirect] === undefined) markRouter(socket); });
    // Only Junction connects here: idle connections are its pool, so never time them out.
    if (typeof this.keepAliveTimeout === 'number') this.keepAliveTimeout = 0;
    this.once('listening', reportReady);
    return cb ? listen.call(this, { fd: LISTEN_FD }, cb) : listen.call(this, { fd: LISTEN_FD });
  };

  // The router's connection channel: whole client connections arrive there.
  if (takeChannel()) process.on('exit', onExit);

  // Junction stops processes with SIGTERM: give handed-over connections back,
  // let requests in progress finish, then leave with exit code 0 (as an app
  // process told to quit does under Unit) — unless the app handles SIGTERM itself.
  process.on('SIGTERM', function junctionTerm() {
    quitting = true;
    stopBusy();
    // The router learns at once how many requests it must let finish.
    reportStats();
    closeIdle();
    if (mainServer !== null && mainServer.listening) withGiveBack(() => mainServer.close());
    if (process.listenerCount('SIGTERM') > 1) return;
    exitWhenDrained();
  });
}

install();
