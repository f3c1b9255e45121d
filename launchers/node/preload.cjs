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
 *   and their counters are reported back. When told to quit (SIGTERM), the
 *   process gives its idle client connections back to the router, lets busy
 *   ones finish their request, and exits when none is left. When it exits
 *   otherwise (process.exit(), an uncaught exception), idle connections still
 *   go back to the router, and a request with no response yet gets a 503.
 * - `unit-http` (Unit's Node module: `require('unit-http')`,
 *   `--require unit-http/loader`, `--loader unit-http/loader.mjs`) resolves to
 *   node:http and to this file, for CommonJS and ES modules alike.
 *
 * It removes itself and the activation variables from process.env first, so
 * child processes of the application are not affected.
 */
const net = require('node:net');
const fs = require('node:fs');
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
// Connections handed over by the router

/** Client connections being served here, handed over by the router. */
const direct = new Set();
/** Connections from the router on fd 3. */
const routerSockets = new Set();
let quitting = false;
/** Connections on their way back to the router (Node sends one descriptor at a time). */
let inTransit = 0;
let stats = { r: 0, c: 0 };
let statsTimer = null;
/** The server listening on fd 3. */
let mainServer = null;

function reportStats() {
  statsTimer = null;
  if (stats.r === 0 && stats.c === 0) return;
  const s = stats;
  stats = { r: 0, c: 0 };
  if (!process.connected) return;
  try {
    process.send({ junction: 'stats', r: s.r, c: s.c });
  } catch {
    /* the router is gone */
  }
}

function countStats() {
  if (statsTimer === null) {
    statsTimer = setTimeout(reportStats, STATS_INTERVAL);
    statsTimer.unref();
  }
}

function onDirectClose() {
  if (!direct.delete(this)) return;
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
    if (d.busy === 0 && d.idle > 0 && now - d.last >= d.idle) s.destroy();
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
    busy: 0, req: undefined, last: Date.now(),
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
      try { process.send({ junction: 'decline' }); } catch { /* the router is gone */ }
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
  if (!direct.has(socket) || !process.connected || socket._handle == null) {
    socket.destroy();
    return;
  }
  direct.delete(socket);
  stats.c++;
  countStats();
  socket._handle.readStop();
  // Not a connection of a net.Server of ours: no cluster bookkeeping.
  socket.server = null;
  // Handles go out one at a time (each waits for the router's acknowledgement):
  // until its descriptor is on its way, nothing may close the socket.
  socket.destroy = returning;
  inTransit++;
  const sent = () => {
    inTransit--;
    delete socket.destroy;
    socket.destroy();
    if (quitting) exitWhenDrained();
  };
  try {
    process.send({ junction: 'back', l: d.l }, socket, { keepOpen: false }, sent);
  } catch {
    sent();
  }
}

/** destroy() of a connection on its way back to the router: not now. */
function returning() {
  return this;
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
    for (const s of [...direct]) if (s[kDirect].busy === 0) giveBack.call(s);
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
    if (direct.size > 0 || routerSockets.size > 0 || inTransit > 0) return;
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
  d.last = Date.now();
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
  if (res === undefined) return true;
  if (d.max > 0 && Number(req.headers['content-length']) > d.max) {
    const body = errorPage(413);
    res.shouldKeepAlive = false;
    res.writeHead(413, { 'Content-Type': 'text/html', 'Content-Length': body.length, Server: d.server, Connection: 'close' });
    res.end(body);
    return false;
  }
  d.busy++;
  d.req = req;
  if (quitting) stopAfter(req);
  // 'close' follows every response, finished or not.
  res.once('close', onDirectDone);
  if (d.server !== '') res.setHeader('Server', d.server);
  return true;
}

/** Look at every request and upgrade of every http/https server before the application does. */
function patchEmit(proto) {
  const emit = proto.emit;
  proto.emit = function junctionEmit(event, a, b, c) {
    if (event === 'request' || event === 'upgrade') {
      const socket = a.socket;
      if (socket !== null && socket !== undefined) {
        if (socket[kRouter] === true) {
          const value = takeClientField(a);
          if (value !== undefined) setPeer(socket, value);
        } else if (socket[kDirect] !== undefined) {
          if (!directRequest(a, event === 'request' ? b : undefined, socket[kDirect])) return true;
        }
      }
    }
    return emit.call(this, event, a, b, c);
  };
}

/** The IPC channel's pipe handle (Node keeps it on `process` under a symbol), or null. */
function channelHandle() {
  const sym = Object.getOwnPropertySymbols(process).find((x) => x.description === 'kChannelHandle');
  const pipe = sym === undefined ? undefined : process[sym];
  return pipe !== null && typeof pipe === 'object' && typeof pipe.writeUtf8String === 'function' ? pipe : null;
}

/**
 * A function writing a line (and optionally a handle's descriptor) to the
 * channel now, in this call: true when the kernel took it. Node's own
 * process.send() queues handles behind acknowledgements, which an exiting
 * process never gets; libuv writes at once when nothing is queued.
 */
function syncChannelWriter() {
  const pipe = channelHandle();
  if (pipe === null || !process.connected) return null;
  let b;
  try {
    b = process.binding('stream_wrap');
  } catch {
    return null;
  }
  return (text, handle) => {
    const req = new b.WriteWrap();
    req.handle = pipe;
    req.oncomplete = () => {};
    req.async = false;
    let err;
    try {
      err = handle === undefined ? pipe.writeUtf8String(req, text) : pipe.writeUtf8String(req, text, handle);
    } catch {
      return false;
    }
    return err === 0 && !b.streamBaseState[b.kLastWriteWasAsync];
  };
}

/**
 * The process is exiting without having drained (process.exit() by the
 * application, an uncaught exception): only synchronous work is possible.
 * The router is told that this process takes no more connections; the
 * handed-over connections node:http has between requests go back to it (the
 * descriptor is on its way before the process is gone, or the connection
 * closes with it); a request without any of its response yet gets Unit's 503
 * with `Connection: close`; a response already begun is cut short.
 */
function onExit() {
  if (direct.size === 0 || mainServer === null) return;
  const write = syncChannelWriter();
  if (write !== null) write('{"junction":"exiting"}\n');
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
    for (const s of list) if (s[kDirect].busy === 0) idle.add(s);
  }
  for (const s of list) {
    const handle = s._handle;
    if (handle == null) continue;
    const d = s[kDirect];
    if (idle.has(s)) {
      if (write !== null) write(`${JSON.stringify({ cmd: 'NODE_HANDLE', type: 'net.Socket', msg: { junction: 'back', l: d.l } })}\n`, handle);
      continue;
    }
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

  if (process.channel) {
    // The router's connection channel: whole client connections arrive here.
    process.on('message', (msg, socket) => {
      if (msg !== null && typeof msg === 'object' && msg.junction === 'conn' && socket) adopt(msg, socket);
    });
    process.channel.unref();
    process.on('exit', onExit);
  }

  // Junction stops processes with SIGTERM: give handed-over connections back,
  // let requests in progress finish, then leave with exit code 0 (as an app
  // process told to quit does under Unit) — unless the app handles SIGTERM itself.
  process.on('SIGTERM', function junctionTerm() {
    quitting = true;
    stopBusy();
    closeIdle();
    if (mainServer !== null && mainServer.listening) withGiveBack(() => mainServer.close());
    if (process.listenerCount('SIGTERM') > 1) return;
    exitWhenDrained();
  });
}

install();
