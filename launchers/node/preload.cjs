'use strict';
/**
 * Junction's Node.js preload (`node --require .../preload.cjs app.js`, added to
 * NODE_OPTIONS for every `external` application).
 *
 * Junction starts the application with a listening Unix socket as fd 3
 * (systemd convention: LISTEN_FDS=1, LISTEN_PID=<pid>). This file makes an
 * unmodified Node application serve on it: the first `listen(...)` of any
 * net/http/https server, whatever its arguments, listens on fd 3 instead, and
 * the server reports the port it asked for. After that the process tells
 * Junction it is ready (one byte on JUNCTION_READY_FD). Later listen() calls
 * behave normally.
 *
 * It removes itself and the activation variables from process.env first, so
 * child processes of the application are not affected.
 */
const net = require('node:net');
const fs = require('node:fs');

const LISTEN_FD = 3;

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
 * Unit-style configurations load `unit-http` (`--require unit-http/loader`, or
 * `require('unit-http')` in the code). Here plain node:http already works, so
 * those names resolve to it, whether or not the real package is installed
 * (its native part cannot run under Junction).
 */
function mapUnitHttp() {
  const Module = require('node:module');
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function junctionResolve(request, ...rest) {
    if (request === 'unit-http' || request === 'unit-http/http') return 'http';
    if (request === 'unit-http/loader' || request === 'unit-http/loader.js') return __filename;
    return resolve.call(this, request, ...rest);
  };
}

function install() {
  const env = process.env;
  const active = inheritedSocket(env);
  const readyFd = Number(env.JUNCTION_READY_FD);
  cleanEnv(env, __filename);
  if (!active) return;
  mapUnitHttp();

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

  net.Server.prototype.listen = function junctionListen(...args) {
    if (taken) return listen.apply(this, args);
    taken = true;
    net.Server.prototype.listen = listen;
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    const port = requestedPort(args);
    const address = { address: '127.0.0.1', family: 'IPv4', port };
    this.address = function junctionAddress() {
      return this.listening ? { ...address } : null;
    };
    // Only Junction connects here: idle connections are its pool, so never time them out.
    if (typeof this.keepAliveTimeout === 'number') this.keepAliveTimeout = 0;
    this.once('listening', reportReady);
    return cb ? listen.call(this, { fd: LISTEN_FD }, cb) : listen.call(this, { fd: LISTEN_FD });
  };

  // Junction stops processes with SIGTERM. Without a handler of the app's own,
  // leave cleanly (exit code 0) as an app process told to quit does under Unit.
  process.on('SIGTERM', function junctionTerm() {
    if (process.listenerCount('SIGTERM') > 1) return;
    process.exit(0);
  });
}

install();
