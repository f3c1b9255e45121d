/**
 * Configuration validation and its messages (spec/control-api.md §6).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { passSegments, validateConfig, type ValidationContext } from '../../src/config/validate.ts';

const ctx: ValidationContext = {
  modules: [
    { type: 'python', version: '3.11.2' },
    { type: 'python', version: '3.12.1' },
    { type: 'php', version: '8.2.7' },
    { type: 'perl', version: '5.36.0' },
    { type: 'ruby', version: '3.1.2' },
    { type: 'java', version: '17.0.8' },
    { type: 'wasm', version: '0.1' },
    { type: 'wasm-wasi-component', version: '0.1' },
  ],
  certificates: new Set(['site', 'other']),
};

type Json = Record<string, any>;

const B = (): Json => ({
  listeners: { '127.0.0.1:9080': { pass: 'routes' } },
  routes: [{ match: { method: ['GET'] }, action: { return: 204 } }],
  applications: {},
});

const check = (config: unknown): string | null => validateConfig(config, ctx);
const ok = (config: unknown): void => assert.equal(check(config), null);
const bad = (config: unknown, detail: string): void => assert.equal(check(config), detail);

/** B with one route step whose action is `action` (and optional match). */
const withAction = (action: unknown, match?: unknown): Json =>
  ({ ...B(), routes: [{ ...(match === undefined ? {} : { match }), action }] });
const withMatch = (match: unknown): Json => withAction({ return: 200 }, match);
const withApp = (app: unknown, name = 'app'): Json => ({ ...B(), applications: { [name]: app } });
const withSettings = (settings: unknown): Json => ({ ...B(), settings });
const withListener = (name: string, listener: unknown): Json =>
  ({ ...B(), listeners: { ...B().listeners, [name]: listener } });

describe('§13 conformance rows', () => {
  it('#1/#2 default tree and state B are valid; {} is valid', () => {
    ok({ listeners: {}, routes: [], applications: {} });
    ok(B());
    ok({});
  });
  it('#17 fractional timeout', () => bad(withSettings({ http: { idle_timeout: 2.5 } }),
    'The "idle_timeout" value must be an integer number, but not a fractional number.'));
  it('#18 2.0 parsed as 2 is an integer', () => ok(withSettings({ http: { idle_timeout: 2 } })));
  it('#19 header_buffer_size is unknown', () => bad(withSettings({ http: { header_buffer_size: 4096 } }),
    'Unknown parameter "header_buffer_size".'));
  it('#20 pass to a missing application', () => bad(withListener('127.0.0.1:9081', { pass: 'applications/shop' }),
    'Request "pass" points to invalid location "applications/shop".'));
  it('#21 too many pass segments', () => bad(withListener('127.0.0.1:9081', { pass: 'routes/a/b/c' }),
    'Request "pass" value "routes/a/b/c" is invalid.'));
  it('#22 listener name without address', () => bad(withListener('9082', { pass: 'routes' }),
    'The listener address "9082" is invalid.'));
  it('#23 unknown variable in pass', () => bad(withListener('127.0.0.1:9083', { pass: 'routes$nosuch' }),
    'Unknown variable "nosuch" in the "pass" value.'));
  it('#24 routes deleted under a listener', () => bad({ listeners: B().listeners, applications: {} },
    'Request "pass" points to invalid location "routes".'));
  it('#25 two action kinds', () => {
    const d = check(withAction({ return: 301, proxy: 'http://127.0.0.1:1' }));
    assert.equal(d, 'The "action" object must have just one of "pass", "return", "share", or "proxy" options set.');
    assert.match(d!, /just one of/);
  });
  it('#26 return out of range', () => bad(withAction({ return: 1000 }),
    'The "return" value is out of allowed HTTP status code range 0-999.'));
  it('#27 spare above the default max', () => bad(withApp({ type: 'external', executable: '/srv/shop', processes: { spare: 3 } }, 'shop'),
    'The "spare" number must be less than or equal to "max".'));
  it('#28 application without type', () => bad(withApp({ executable: '/srv/shop' }, 'shop'),
    'Application must have the "type" property set.'));
  it('#29 named route with an encoded slash', () => ok({
    listeners: { '127.0.0.1:9080': { pass: 'routes/a%2Fb' } },
    routes: { 'a/b': [{ action: { return: 200 } }] },
  }));
  it('#39 unknown certificate', () => bad(withListener('127.0.0.1:9443', { pass: 'routes', tls: { certificate: 'ghost' } }),
    'Certificate "ghost" is not found.'));
});

describe('generic messages (§6.0)', () => {
  it('root type', () => {
    bad([], 'The configuration must be an object, but not an array.');
    bad(null, 'The configuration must be an object, but not a null.');
    bad('x', 'The configuration must be an object, but not a string.');
    bad(1.5, 'The configuration must be an object, but not a fractional number.');
  });
  it('type words and "either" lists', () => {
    bad({ listeners: [] }, 'The "listeners" value must be an object, but not an array.');
    bad({ routes: 1 }, 'The "routes" value must be either an array or an object, but not an integer number.');
    bad({ settings: { http: { log_route: 1 } } }, 'The "log_route" value must be a boolean, but not an integer number.');
    bad(withListener('*:80', { pass: 'routes', backlog: 'x' }),
      'The "backlog" value must be either an integer number or a fractional number, but not a string.');
    bad(withListener('*:80', { pass: 'routes', tls: { certificate: 'site', session: { tickets: 1 } } }),
      'The "tickets" value must be either a boolean, a string, or an array, but not an integer number.');
    bad(withApp({ type: 'external', executable: 1 }), 'The "executable" value must be a string, but not an integer number.');
    bad({ access_log: true }, 'The "access_log" value must be either a string or an object, but not a boolean.');
  });
  it('unknown and required members', () => {
    bad({ nope: 1 }, 'Unknown parameter "nope".');
    bad({ toString: 1 }, 'Unknown parameter "toString".');
    bad({ settings: { js_module: 'x' } }, 'JS module "x" is not found.');
    bad({ settings: { telemetry: {} } }, 'Unknown parameter "telemetry".');
    bad({ settings: { chunked_transform: true } }, 'Unknown parameter "chunked_transform".');
    bad(withApp({ type: 'external' }), 'Required parameter "executable" is missing.');
  });
});

describe('listeners (§6.2–6.4)', () => {
  it('address forms', () => {
    for (const name of ['*:80', '127.0.0.1:8080', '[::1]:80', 'unix:/tmp/a.sock', 'unix:@abstract']) {
      ok({ ...B(), listeners: { [name]: { pass: 'routes' } } });
    }
    for (const name of ['127.0.0.1', 'localhost:80', '*:0', '*:65536', 'unix:']) {
      bad({ ...B(), listeners: { [name]: { pass: 'routes' } } }, `The listener address "${name}" is invalid.`);
    }
  });
  it('value must be an object; the address is checked first', () => {
    bad({ listeners: { '*:80': 'routes' } }, 'The "*:80" value must be an object, but not a string.');
    bad({ listeners: { x: 'routes' } }, 'The listener address "x" is invalid.');
  });
  it('a listener without pass passes validation (fails at apply, §6.11)', () => ok({ listeners: { '*:80': {} } }));
  it('pass grammar and targets', () => {
    const config = (pass: string): Json => ({
      listeners: { '*:80': { pass } },
      applications: {
        app: { type: 'python', module: 'wsgi' },
        multi: { type: 'python', targets: { front: { module: 'a' }, 'a/b': { module: 'b' } } },
      },
      upstreams: { up: { servers: { '127.0.0.1:8000': {} } } },
      routes: { main: [], 'x y': [] },
    });
    for (const pass of ['applications/app', 'applications/multi', 'applications/multi/front', 'applications/multi/a%2Fb',
      'upstreams/up', 'routes/main', 'routes/x%20y', 'applications/%61pp']) {
      assert.equal(check(config(pass)), null, pass);
    }
    for (const pass of ['applications', 'applications/nope', 'applications/app/front', 'applications/multi/back',
      'upstreams', 'upstreams/up/x', 'upstreams/nope', 'routes', 'routes/nope', 'routes/main/x', 'other', 'Routes']) {
      assert.equal(check(config(pass)), `Request "pass" points to invalid location "${pass}".`, pass);
    }
    for (const pass of ['', '/routes', 'routes/', 'routes//x', 'a/b/c/d', 'routes/%zz']) {
      assert.equal(check(config(pass)), `Request "pass" value "${pass}" is invalid.`, pass);
    }
    bad({ listeners: { '*:80': { pass: 'routes/x' } }, routes: [] }, 'Request "pass" points to invalid location "routes/x".');
    bad({ listeners: { '*:80': { pass: 'routes' } }, routes: {} }, 'Request "pass" points to invalid location "routes".');
  });
  it('a templated pass skips the target check', () => {
    ok({ listeners: { '*:80': { pass: 'routes/$host' } } });
    ok({ listeners: { '*:80': { pass: '`routes/${host}`' } } });
    bad({ listeners: { '*:80': { pass: 'routes/$' } } }, 'Invalid variable at position 7 in the "pass" value.');
    bad({ listeners: { '*:80': { pass: '`routes' } } }, 'Unexpected end of template literal in the "pass" value.');
  });
  it('legacy application', () => {
    ok({ listeners: { '*:80': { application: 'app' } }, applications: { app: { type: 'external', executable: '/x' } } });
    bad({ listeners: { '*:80': { application: 'nope' } } }, 'Listening socket is assigned for a non existing application "nope".');
  });
  it('backlog range', () => {
    ok(withListener('*:80', { pass: 'routes', backlog: -1 }));
    ok(withListener('*:80', { pass: 'routes', backlog: 2147483647 }));
    bad(withListener('*:80', { pass: 'routes', backlog: -2 }), 'The "backlog" number must be equal to or greater than -1.');
    bad(withListener('*:80', { pass: 'routes', backlog: 2147483648 }), 'The "backlog" number must not exceed 2147483647.');
  });
  it('forwarded and client_ip', () => {
    ok(withListener('*:80', { pass: 'routes', forwarded: { client_ip: 'X-Forwarded-For', source: ['10.0.0.0/8'], recursive: true } }));
    ok(withListener('*:80', { pass: 'routes', forwarded: { protocol: 'X-Forwarded-Proto', source: 'unix' } }));
    bad(withListener('*:80', { pass: 'routes', forwarded: { source: '10.0.0.1' } }),
      'The "forwarded" object must have either "client_ip" or "protocol" option set.');
    bad(withListener('*:80', { pass: 'routes', forwarded: { client_ip: 'X' } }), 'Required parameter "source" is missing.');
    bad(withListener('*:80', { pass: 'routes', forwarded: { client_ip: 'X', source: 'nowhere' } }),
      'The "address" format is invalid.');
    ok(withListener('*:80', { pass: 'routes', client_ip: { header: 'X-Real-IP', source: '127.0.0.1' } }));
    bad(withListener('*:80', { pass: 'routes', client_ip: { source: '127.0.0.1' } }), 'Required parameter "header" is missing.');
  });
  it('tls', () => {
    const tls = (t: unknown): Json => withListener('*:443', { pass: 'routes', tls: t });
    ok(tls({ certificate: 'site' }));
    ok(tls({ certificate: ['site', 'other'], conf_commands: { CipherString: 'HIGH' }, session: { cache_size: 0, timeout: 1, tickets: false } }));
    bad(tls({}), 'Required parameter "certificate" is missing.');
    bad(tls({ certificate: [] }), 'The "certificate" array must contain at least one element.');
    bad(tls({ certificate: ['site', 1] }), 'The "certificate" array must contain only string values.');
    bad(tls({ certificate: ['site', 'ghost'] }), 'Certificate "ghost" is not found.');
    bad(tls({ certificate: 'site', conf_commands: { MinProtocol: 1 } }), 'The "MinProtocol" value must be a string, but not an integer number.');
    bad(tls({ certificate: 'site', session: { cache_size: -1 } }), 'The "cache_size" number must not be negative.');
    bad(tls({ certificate: 'site', session: { timeout: 0 } }), 'The "timeout" number must be greater than zero.');
    const key48 = Buffer.alloc(48, 1).toString('base64');
    const key80 = Buffer.alloc(80, 2).toString('base64');
    ok(tls({ certificate: 'site', session: { tickets: key48 } }));
    ok(tls({ certificate: 'site', session: { tickets: [key48, key80] } }));
    bad(tls({ certificate: 'site', session: { tickets: [key48, 1] } }), 'The "key" array must contain only string values.');
    bad(tls({ certificate: 'site', session: { tickets: 'not base64!' } }), 'Invalid Base64 format for the ticket key "not base64!".');
    const short = Buffer.alloc(32).toString('base64');
    bad(tls({ certificate: 'site', session: { tickets: short } }), `Invalid length 32 of the ticket key "${short}".  Must be 48 or 80 bytes.`);
  });
});

describe('routes and match (§6.5)', () => {
  it('structure', () => {
    ok({ routes: [] });
    ok({ routes: { a: [], b: [{}] } });
    ok({ routes: [{}] });
    bad({ routes: [1] }, 'The "routes" array must contain only object values.');
    bad({ routes: { a: {} } }, 'The "a" value must be an array, but not an object.');
    bad({ routes: { a: [[]] } }, 'The "routes" array must contain only object values.');
    bad({ routes: [{ nope: 1 }] }, 'Unknown parameter "nope".');
    bad({ routes: [{ match: [] }] }, 'The "match" value must be an object, but not an array.');
  });
  it('string patterns', () => {
    ok(withMatch({ method: 'GET', host: ['', '!', '*.example.com', '!*.test'], uri: ['/a*b*', '!~^/x'], query: 'a=*' }));
    bad(withMatch({ method: ['GET', 1] }), 'The "match" pattern for "method" must be strings.');
    bad(withMatch({ host: [null] }), 'The "match" pattern for "host" must be strings.');
    bad(withMatch({ uri: [1] }), 'The "match" pattern for "uri" must be a string.');
    bad(withMatch({ host: 'a**' }), 'The "match" pattern must not contain double "*" markers.');
    bad(withMatch({ host: '!**' }), 'The "match" pattern must not contain double "*" markers.');
    ok(withMatch({ host: '~[**]' }));
    bad(withMatch({ uri: '~(' }), 'Invalid regular expression: missing closing parenthesis');
    bad(withMatch({ uri: '!~a)' }), 'Invalid regular expression: unmatched closing parenthesis at offset 1');
    bad(withMatch({ uri: '/a%zz' }), 'The "match" pattern for "uri" is encoded but is invalid.');
    bad(withMatch({ query: ['a%2'] }), 'The "match" pattern for "query" is encoded but is invalid.');
    ok(withMatch({ uri: '/a%20b%2A' }));
    ok(withMatch({ host: '50%' }));
  });
  it('scheme', () => {
    ok(withMatch({ scheme: 'HTTPS' }));
    bad(withMatch({ scheme: 'ftp' }), 'The "scheme" can either be "http" or "https".');
    bad(withMatch({ scheme: ['http'] }), 'The "scheme" value must be a string, but not an array.');
  });
  it('arguments, headers, cookies', () => {
    ok(withMatch({ arguments: { a: '1', 'b%20c': ['x', '!y'] }, headers: [{ Accept: '*json*' }, {}], cookies: { sid: [] } }));
    bad(withMatch({ arguments: [1] }), 'The "match" pattern for "arguments" must be an object.');
    bad(withMatch({ arguments: { '': 'x' } }), 'The "match" pattern objects must not contain empty member names.');
    bad(withMatch({ arguments: { 'a%': 'x' } }), 'The "match" pattern for "arguments" is encoded but is invalid.');
    bad(withMatch({ arguments: { a: 1 } }), 'The "match" pattern for "arguments" must be a string.');
    bad(withMatch({ arguments: { a: '%g0' } }), 'The "match" pattern for "arguments" is encoded but is invalid.');
    bad(withMatch({ headers: ['x'] }), 'The "match" patterns for "headers" must be objects.');
    bad(withMatch({ cookies: { '': 'x' } }), 'The "match" pattern objects must not contain empty member names.');
    bad(withMatch({ headers: { X: [1] } }), 'The "match" pattern for "headers" must be strings.');
    bad(withMatch({ cookies: { a: 'b**' } }), 'The "match" pattern must not contain double "*" markers.');
    bad(withMatch({ headers: 'x' }), 'The "headers" value must be either an array or an object, but not a string.');
  });
  it('source and destination', () => {
    ok(withMatch({ source: ['10.0.0.0/8', '!10.0.0.1', 'unix'], destination: '*:80-81' }));
    ok(withMatch({ source: [] }));
    bad(withMatch({ source: '10.0.0.2-10.0.0.1' }), 'The "address" range is overlapping.');
    bad(withMatch({ destination: ['*:99999'] }), 'The "address" port an invalid port.');
    bad(withMatch({ source: [1] }), 'The "match" pattern for "address" must be a string.');
  });
  it('if', () => {
    ok(withMatch({ if: '$arg_debug' }));
    ok(withMatch({ if: '!`${host == "a"}`' }));
    ok(withMatch({ if: '' }));
    bad(withMatch({ if: '!$nope' }), 'Unknown variable "nope" in the "if" value.');
  });
});

describe('actions (§6.5)', () => {
  it('exactly one kind', () => {
    bad(withAction({}), 'The "action" object must have either "pass", "return", "share", or "proxy" option set.');
    bad(withAction({ rewrite: '/x' }), 'The "action" object must have either "pass", "return", "share", or "proxy" option set.');
    bad(withAction({ pass: 'routes', share: '/www' }),
      'The "action" object must have just one of "pass", "return", "share", or "proxy" options set.');
  });
  it('per-kind members', () => {
    bad(withAction({ return: 200, index: 'x' }), 'Unknown parameter "index".');
    bad(withAction({ proxy: 'http://127.0.0.1:1', location: '/x' }), 'Unknown parameter "location".');
    bad(withAction({ pass: 'routes', fallback: { return: 404 } }), 'Unknown parameter "fallback".');
  });
  it('return and location', () => {
    ok(withAction({ return: 0 }));
    ok(withAction({ return: 301, location: 'https://$host$request_uri' }));
    bad(withAction({ return: -1 }), 'The "return" value is out of allowed HTTP status code range 0-999.');
    bad(withAction({ return: 200.5 }), 'The "return" value must be an integer number, but not a fractional number.');
    bad(withAction({ return: 301, location: '$nope' }), 'Unknown variable "nope" in the "location" value.');
    bad(withAction({ return: 301, location: 1 }), 'The "location" value must be a string, but not an integer number.');
  });
  it('share and its options; fallback is validated recursively', () => {
    ok(withAction({
      share: ['/www$uri', '/static/'], index: 'index.htm', types: ['text/*', '!~^image/'],
      chroot: '/www/$host', follow_symlinks: false, traverse_mounts: true,
      fallback: { share: '/b', fallback: { proxy: 'http://[::1]:80' } },
    }));
    bad(withAction({ share: [] }), 'The "share" array must contain at least one element.');
    bad(withAction({ share: ['/a', 1] }), 'The "share" array must contain only string values.');
    bad(withAction({ share: '/www$urx' }), 'Unknown variable "urx" in the "share" value.');
    bad(withAction({ share: ['/a', '/b$'] }), 'Invalid variable at position 2 in the "share" value.');
    bad(withAction({ share: '/a', types: 't**' }), 'The "match" pattern must not contain double "*" markers.');
    bad(withAction({ share: '/a', types: [1] }), 'The "match" pattern for "types" must be strings.');
    bad(withAction({ share: '/a', chroot: '$x' }), 'Unknown variable "x" in the "chroot" value.');
    bad(withAction({ share: '/a', fallback: { share: '/b', fallback: { return: 5000 } } }),
      'The "return" value is out of allowed HTTP status code range 0-999.');
    bad(withAction({ share: '/a', fallback: {} }),
      'The "action" object must have either "pass", "return", "share", or "proxy" option set.');
    bad(withAction({ share: '/a', index: ['x'] }), 'The "index" value must be a string, but not an array.');
  });
  it('proxy', () => {
    ok(withAction({ proxy: 'http://127.0.0.1:8000' }));
    ok(withAction({ proxy: 'http://unix:/tmp/app.sock' }));
    ok(withAction({ proxy: 'http://[::1]:8000' }));
    bad(withAction({ proxy: 'http://localhost:8000' }), 'The "proxy" address is invalid "localhost:8000"');
    bad(withAction({ proxy: 'https://127.0.0.1:8000' }), 'The "proxy" address is invalid "https://127.0.0.1:8000"');
    bad(withAction({ proxy: 'http://127.0.0.1' }), 'The "proxy" address is invalid "127.0.0.1"');
    bad(withAction({ proxy: 'http://$host:80' }), 'The "proxy" address is invalid "$host:80"');
  });
  it('rewrite and response_headers', () => {
    ok(withAction({ return: 200, rewrite: '/new$uri', response_headers: { 'X-A': 'a', 'X-Uri': '$uri', Server: null } }));
    bad(withAction({ return: 200, rewrite: '$nope' }), 'Unknown variable "nope" in the "rewrite" value.');
    bad(withAction({ return: 200, response_headers: { '': 'x' } }), 'The response header name must not be empty.');
    bad(withAction({ return: 200, response_headers: { 'Content-Length': '1' } }),
      'The "Content-Length" response header value is not supported');
    bad(withAction({ return: 200, response_headers: { 'X-A': 1 } }), 'The "X-A" response header value must either be a string or a null');
    bad(withAction({ return: 200, response_headers: { 'X-A': '$nope' } }), 'Unknown variable "nope" in the "X-A" value.');
    bad(withAction({ return: 200, response_headers: { 'X A': 'x' } }), 'The response header name "X A" is not a valid HTTP field name.');
    bad(withAction({ return: 200, response_headers: { 'X-A': 'a\r\nB: c' } }),
      'The "X-A" response header value must not contain control characters.');
    ok(withAction({ return: 200, response_headers: { 'X-A': 'a\tb' } }));
    bad(withAction({ return: 200, response_headers: [] }), 'The "response_headers" value must be an object, but not an array.');
  });
});

describe('applications (§6.6, applications.md §3)', () => {
  it('type and module lookup', () => {
    for (const type of ['external', 'go', 'python', 'python 3', 'python3.12', 'python 3.11.2', 'python ', 'php 8', 'perl',
      'ruby3', 'java 17', 'wasm', 'wasm-wasi-component']) {
      const app = type.startsWith('python') ? { type, module: 'm' }
        : type.startsWith('php') ? { type, root: '/www' }
          : type.startsWith('perl') || type.startsWith('ruby') ? { type, script: 's' }
            : type.startsWith('java') ? { type, webapp: 'w' }
              : type === 'wasm' ? { type, module: 'm', request_handler: 'r', malloc_handler: 'm', free_handler: 'f' }
                : type === 'wasm-wasi-component' ? { type, component: 'c' } : { type, executable: '/x' };
      assert.equal(check(withApp(app)), null, type);
    }
    for (const type of ['python 9', 'python 3.1', 'python3.1', 'external 1', 'go1', 'node', 'Python', '']) {
      bad(withApp({ type, module: 'm' }), `The module to run "${type}" is not found among the available application modules.`);
    }
    bad(withApp({ type: 3 }), 'The "type" value must be a string, but not an integer number.');
    bad(withApp('x'), 'The "app" value must be an object, but not a string.');
  });
  it('common members', () => {
    ok(withApp({
      type: 'external', executable: '/x', arguments: ['-v'], user: 'nobody', group: 'nogroup', working_directory: '/',
      environment: { A: 'b' }, limits: { timeout: 10, requests: 100, shm: 1048576 }, processes: { max: 4, spare: 1, idle_timeout: 20 },
      stdout: '/dev/null', stderr: 'err.log',
      isolation: {
        namespaces: { credential: true, pid: true, network: false, mount: true, uname: true, cgroup: false },
        uidmap: [{ container: 0, host: 1000, size: 1 }], gidmap: [{ container: 0, host: 1000, size: 1 }],
        rootfs: '/var/app', automount: { language_deps: false, tmpfs: true, procfs: true }, new_privs: false,
        cgroup: { path: 'unit/app' },
      },
    }));
    bad(withApp({ type: 'external', executable: '/x', nope: 1 }), 'Unknown parameter "nope".');
    bad(withApp({ type: 'external', executable: '/x', module: 'x' }), 'Unknown parameter "module".');
    bad(withApp({ type: 'external', executable: '/x', limits: { start_timeout: 1 } }), 'Unknown parameter "start_timeout".');
    bad(withApp({ type: 'external', executable: '/x', limits: { timeout: 1.5 } }),
      'The "timeout" value must be an integer number, but not a fractional number.');
  });
  it('processes', () => {
    const app = (processes: unknown): Json => withApp({ type: 'external', executable: '/x', processes });
    ok(app(1));
    ok(app({}));
    ok(app({ spare: 0, max: 8, idle_timeout: 1 }));
    bad(app(0), 'The "processes" number must be equal to or greater than 1.');
    bad(app(2147483648), 'The "processes" number must not exceed 2147483647.');
    bad(app({ spare: 2 }), 'The "spare" number must be less than or equal to "max".');
    bad(app({ spare: -1 }), 'The "spare" number must not be negative.');
    bad(app({ max: 0 }), 'The "max" number must be equal to or greater than 1.');
    bad(app({ idle_timeout: -1 }), 'The "idle_timeout" number must not be negative.');
    bad(app({ idle_timeout: 2147484 }), 'The "idle_timeout" number must not exceed 2147483.');
    bad(app({ extra: 1 }), 'Unknown parameter "extra".');
    bad(app('1'), 'The "processes" value must be either an integer number or an object, but not a string.');
    bad(app(1.5), 'The "processes" value must be either an integer number or an object, but not a fractional number.');
  });
  it('environment and arguments', () => {
    const app = (extra: Json): Json => withApp({ type: 'external', executable: '/x', ...extra });
    bad(app({ environment: { '': 'x' } }), 'The environment name must not be empty.');
    bad(app({ environment: { 'A\u0000': 'x' } }), 'The environment name must not contain null character.');
    bad(app({ environment: { 'A=B': 'x' } }), 'The environment name must not contain \'=\' character.');
    bad(app({ environment: { A: 1 } }), 'The "A" environment value must be a string.');
    bad(app({ environment: { A: 'x\u0000' } }), 'The "A" environment value must not contain null character.');
    bad(app({ arguments: 'x' }), 'The "arguments" value must be an array, but not a string.');
    bad(app({ arguments: [1] }), 'The "arguments" array must contain only string values.');
    bad(app({ arguments: ['a\u0000'] }), 'The "arguments" array must not contain strings with null character.');
  });
  it('isolation', () => {
    const app = (isolation: unknown): Json => withApp({ type: 'external', executable: '/x', isolation });
    bad(app({ namespaces: { ipc: true } }), 'Unknown parameter "ipc".');
    bad(app({ uidmap: [1] }), 'The "uidmap" array must contain only object values.');
    bad(app({ gidmap: [{ container: 0, host: 0 }] }), 'Required parameter "size" is missing.');
    bad(app({ cgroup: {} }), 'Required parameter "path" is missing.');
    bad(app({ cgroup: { path: '' } }), 'The cgroup path "" is invalid.');
    bad(app({ cgroup: { path: 'a/../b' } }), 'The cgroup path "a/../b" is invalid.');
    bad(app({ cgroup: { path: '..' } }), 'The cgroup path ".." is invalid.');
    const long = 'a'.repeat(4081);
    bad(app({ cgroup: { path: long } }), `The cgroup path "${long}" is too long.`);
  });
  it('python', () => {
    ok(withApp({ type: 'python', module: 'wsgi', callable: 'app', factory: true, prefix: '/api', home: '/venv',
      path: ['/a', '/b'], protocol: 'asgi', threads: 4, thread_stack_size: 65536 }));
    ok(withApp({ type: 'python', path: '/a', targets: { a: { module: 'x', prefix: '/a' }, b: { module: 'y', callable: 'z' } } }));
    bad(withApp({ type: 'python' }), 'Required parameter "module" is missing.');
    bad(withApp({ type: 'python', module: 'm', prefix: 'api' }), 'The "prefix" must be a string beginning with "/".');
    bad(withApp({ type: 'python', module: 'm', protocol: 'http' }), 'The "protocol" can either be "wsgi" or "asgi".');
    bad(withApp({ type: 'python', module: 'm', threads: 0 }), 'The "threads" number must be equal to or greater than 1.');
    bad(withApp({ type: 'python', module: 'm', thread_stack_size: 4096 }),
      'The "thread_stack_size" number must be equal to or greater than 16384.');
    bad(withApp({ type: 'python', module: 'm', thread_stack_size: 20000 }),
      'The "thread_stack_size" number must be a multiple of the system page size (4096).');
    bad(withApp({ type: 'python', module: 'm', path: ['/a', 2] }), 'The "path" array must contain only string values.');
    bad(withApp({ type: 'python', module: 'm', targets: {} }), 'The "module" option is mutually exclusive with the "targets" object.');
    bad(withApp({ type: 'python', prefix: '/x', targets: {} }), 'The "prefix" option is mutually exclusive with the "targets" object.');
    bad(withApp({ type: 'python', targets: { '': { module: 'x' } } }), 'The target name must not be empty.');
    bad(withApp({ type: 'python', targets: { a: 'x' } }), 'The "a" target must be an object.');
    bad(withApp({ type: 'python', targets: { a: {} } }), 'Required parameter "module" is missing.');
    bad(withApp({ type: 'python', targets: { a: { module: 'x', root: '/' } } }), 'Unknown parameter "root".');
    const many = Object.fromEntries(Array.from({ length: 255 }, (_, i) => [`t${i}`, { module: 'x' }]));
    bad(withApp({ type: 'python', targets: many }), 'The "targets" object must not contain more than 254 members.');
  });
  it('php', () => {
    ok(withApp({ type: 'php', root: '/www', script: 'index.php', index: 'i.php',
      options: { file: '/php.ini', admin: { memory_limit: '256M' }, user: { display_errors: '0' } } }));
    ok(withApp({ type: 'php', targets: { a: { root: '/a' }, b: { root: '/b', script: 'x.php', index: 'y.php' } } }));
    bad(withApp({ type: 'php' }), 'Required parameter "root" is missing.');
    bad(withApp({ type: 'php', root: 5, targets: {} }), 'The "root" option is mutually exclusive with the "targets" object.');
    bad(withApp({ type: 'php', root: '/w', options: { admin: { '': 'x' } } }), 'The PHP option name must not be empty.');
    bad(withApp({ type: 'php', root: '/w', options: { user: { a: 1 } } }), 'The "a" PHP option must be a string.');
    bad(withApp({ type: 'php', root: '/w', options: { other: {} } }), 'Unknown parameter "other".');
  });
  it('perl, ruby, java, wasm', () => {
    ok(withApp({ type: 'perl', script: '/a.psgi', threads: 2, thread_stack_size: 16384 }));
    bad(withApp({ type: 'perl' }), 'Required parameter "script" is missing.');
    ok(withApp({ type: 'ruby', script: '/config.ru', threads: 2, hooks: '/hooks.rb' }));
    bad(withApp({ type: 'ruby', script: 's', thread_stack_size: 16384 }), 'Unknown parameter "thread_stack_size".');
    ok(withApp({ type: 'java', webapp: '/a.war', classpath: ['/lib'], options: ['-Dx=y'], unit_jars: '/jars', threads: 1 }));
    bad(withApp({ type: 'java', webapp: 'w', classpath: [1] }), 'The "classpath" array must contain only string values.');
    bad(withApp({ type: 'java', webapp: 'w', options: ['\u0000'] }), 'The "options" array must not contain strings with null character.');
    bad(withApp({ type: 'wasm', module: 'm', request_handler: 'r', malloc_handler: 'm' }), 'Required parameter "free_handler" is missing.');
    ok(withApp({ type: 'wasm-wasi-component', component: 'c', access: { filesystem: ['/tmp'] } }));
    bad(withApp({ type: 'wasm-wasi-component', component: 'c', access: { network: [] } }), 'Unknown parameter "network".');
  });
});

describe('upstreams (§6.7)', () => {
  const up = (u: unknown): Json => ({ upstreams: { u } });
  it('servers and weights', () => {
    ok(up({ servers: { '127.0.0.1:8001': {}, '[::1]:8002': { weight: 0.5 }, 'unix:/tmp/s': { weight: 1000000 } } }));
    ok(up({ servers: {} }));
    bad(up({}), 'The "u" upstream must contain "servers" object value.');
    bad(up([]), 'The "u" value must be an object, but not an array.');
    bad(up({ servers: { 'localhost:80': {} } }), 'The "localhost:80" is not valid server address.');
    bad(up({ servers: { '127.0.0.1:80': 1 } }), 'The "127.0.0.1:80" value must be an object, but not an integer number.');
    bad(up({ servers: { '127.0.0.1:80': { weight: -1 } } }), 'The "weight" number must be positive.');
    bad(up({ servers: { '127.0.0.1:80': { weight: 1000001 } } }), 'The "weight" number must not exceed 1,000,000');
    bad(up({ servers: { '127.0.0.1:80': { max_fails: 1 } } }), 'Unknown parameter "max_fails".');
  });
});

describe('access_log (§6.8)', () => {
  it('string and object forms', () => {
    ok({ access_log: '/var/log/access.log' });
    ok({ access_log: { path: '/a.log', format: '$remote_addr "$request_line"', if: '!$arg_nolog' } });
    ok({ access_log: { path: '/a.log', format: { ip: '$remote_addr', js: '`${uri}`', n: 'x' } } });
    bad({ access_log: {} }, 'The "path" string must not be empty.');
    bad({ access_log: { path: '' } }, 'The "path" string must not be empty.');
    bad({ access_log: { path: '/a', format: '$nope' } }, 'Unknown variable "nope" in the "format" value.');
    bad({ access_log: { path: '/a', format: { ip: '$nope' } } }, 'Unknown variable "nope" in the "ip" value.');
    bad({ access_log: { path: '/a', format: { '': 'x' } } }, 'In the access log format, the name must not be empty.');
    bad({ access_log: { path: '/a', format: { a: 1 } } }, 'In the access log format, the value must be a string.');
    bad({ access_log: { path: '/a', if: '$nope' } }, 'Unknown variable "nope" in the "if" value.');
    bad({ access_log: { path: '/a', rotate: 1 } }, 'Unknown parameter "rotate".');
  });
});

describe('settings (§6.9)', () => {
  it('http integers, booleans and strings', () => {
    ok(withSettings({
      listen_threads: 4,
      http: {
        header_read_timeout: 30, body_read_timeout: 30, send_timeout: 30, idle_timeout: -5,
        large_header_buffer_size: 8192, large_header_buffers: 4, body_buffer_size: 16384, max_body_size: -1,
        body_temp_path: '/tmp', discard_unsafe_fields: false, log_route: true, server_version: false,
        chunked_transform: true, websocket: { read_timeout: 60, keepalive_interval: 30, max_frame_size: 1048576 },
      },
    }));
    bad(withSettings({ listen_threads: 0 }), 'The "listen_threads" number must be equal to or greater than 1.');
    bad(withSettings({ listen_threads: 2147483648 }), 'The "listen_threads" number must not exceed 2147483647.');
    bad(withSettings({ http: { send_timeout: '30' } }), 'The "send_timeout" value must be an integer number, but not a string.');
    bad(withSettings({ http: { server_version: 'yes' } }), 'The "server_version" value must be a boolean, but not a string.');
    bad(withSettings({ http: { websocket: { ping: 1 } } }), 'Unknown parameter "ping".');
  });
  it('static.mime_types', () => {
    ok(withSettings({ http: { static: { mime_types: { 'text/x-a': '.a', 'text/x-b': ['.b', 'README'] } } } }));
    bad(withSettings({ http: { static: { mime_types: { 'text/x': 1 } } } }),
      'The "text/x" value must be either a string or an array, but not an integer number.');
    bad(withSettings({ http: { static: { mime_types: { 'text/x': ['.a', 2] } } } }),
      'The "text/x" MIME type array must contain only strings.');
    bad(withSettings({ http: { static: { mime_types: { 'text/x': '' } } } }), 'An empty file extension for the "text/x" MIME type.');
    bad(withSettings({ http: { static: { mime_types: { 'text/x': '.a', 'text/y': ['.b', '.A'] } } } }),
      'The ".A" file extension has been declared for "text/x" and "text/y" MIME types at the same time.');
    bad(withSettings({ http: { static: { types: {} } } }), 'Unknown parameter "types".');
  });
  it('compression', () => {
    ok(withSettings({ http: { compression: { types: ['text/*', '!text/x'], compressors: [{ encoding: 'gzip', level: 3, min_length: 2048 }, { encoding: 'br' }, { encoding: 'deflate' }, { encoding: 'identity' }] } } }));
    ok(withSettings({ http: { compression: { compressors: { encoding: 'gzip' } } } }));
    bad(withSettings({ http: { compression: { compressors: [{}] } } }), 'Required parameter "encoding" is missing.');
    bad(withSettings({ http: { compression: { compressors: [{ encoding: 'lzma' }] } } }), '"lzma" is not a supported compressor.');
    bad(withSettings({ http: { compression: { compressors: [{ encoding: 'GZIP' }] } } }), '"GZIP" is not a supported compressor.');
    bad(withSettings({ http: { compression: { compressors: ['gzip'] } } }), 'The "compressors" array must contain only object values.');
    bad(withSettings({ http: { compression: { types: 'a**' } } }), 'The "match" pattern must not contain double "*" markers.');
    bad(withSettings({ http: { compression: { compressors: [{ encoding: 'gzip', level: 'max' }] } } }),
      'The "level" value must be an integer number, but not a string.');
  });
  it('js_module names uploaded modules (string or array)', () => {
    const withModules = (config: unknown): string | null => validateConfig(config, { ...ctx, jsModules: new Set(['http', 'util']) });
    assert.equal(withModules(withSettings({ js_module: 'http' })), null);
    assert.equal(withModules(withSettings({ js_module: ['http', 'util'] })), null);
    assert.equal(withModules(withSettings({ js_module: ['http', 'nope'] })), 'JS module "nope" is not found.');
    assert.equal(withModules(withSettings({ js_module: [1] })), 'The "js_module" array must contain only string values.');
    assert.equal(withModules(withSettings({ js_module: 1 })),
      'The "js_module" value must be either a string or an array, but not an integer number.');
  });
});

describe('passSegments', () => {
  it('splits and decodes', () => {
    assert.deepEqual(passSegments('routes'), ['routes']);
    assert.deepEqual(passSegments('routes/a%2Fb'), ['routes', 'a/b']);
    assert.deepEqual(passSegments('applications/caf%C3%A9/t'), ['applications', 'caf\u00e9', 't']);
    assert.equal(passSegments('a/b/c/d'), null);
    assert.equal(passSegments('a//b'), null);
    assert.equal(passSegments(''), null);
    assert.equal(passSegments('a/%4'), null);
  });
});
