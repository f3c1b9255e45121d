/**
 * A real PHP application through the php type: Debian's Adminer on SQLite
 * (packages `adminer`, `php-sqlite3`). Logs in (session cookies, a POST and
 * a redirect), creates a table with an SQL command (CSRF token round trip),
 * reads the rows back, and fetches one of its static files.
 * Skipped when the packages are not installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PhpServer, FIXTURES, tempDir, type Served } from './php-harness.ts';

const installed = fs.existsSync('/usr/share/adminer/adminer.php')
  && fs.readdirSync('/etc/php').some((v) => fs.existsSync(`/etc/php/${v}/mods-available/sqlite3.ini`));

let tmp: string;
let php: PhpServer;
const jar = new Map<string, string>();

function keepCookies(r: Served): void {
  for (const c of r.headers['set-cookie'] ?? []) {
    const [pair] = c.split(';');
    const eq = pair.indexOf('=');
    jar.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
}

async function go(target: string, form?: Record<string, string>): Promise<Served> {
  const headers: Record<string, string> = { Cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
  let body: string | undefined;
  if (form) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const r = await php.request(target, { method: form ? 'POST' : 'GET', headers, body });
  keepCookies(r);
  return r;
}

before(async () => {
  if (!installed) return;
  tmp = tempDir();
  fs.mkdirSync(path.join(tmp, 'sessions'));
  php = await new PhpServer({
    type: 'php', root: path.join(FIXTURES, 'adminer'),
    options: { admin: { 'session.save_path': path.join(tmp, 'sessions') } },
  }, tmp).start();
});

after(async () => {
  await php?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('Adminer: log in to SQLite, create a table, read it back', { skip: !installed && 'adminer or php-sqlite3 not installed' }, async () => {
  // An empty file is an empty SQLite database (Adminer answers 404 for a missing one).
  const db = path.join(tmp, 'test.sqlite');
  fs.writeFileSync(db, '');
  let r = await go('/?sqlite=');
  assert.equal(r.status, 200);
  assert.match(r.text, /<title>Login - Adminer<\/title>/);

  r = await go('/?sqlite=', {
    'auth[driver]': 'sqlite', 'auth[server]': '', 'auth[username]': '', 'auth[password]': 'junction', 'auth[db]': db,
  });
  assert.equal(r.status, 302, r.text.slice(0, 500));
  // Adminer redirects to a relative `?…` location: resolve it against the login URL.
  const location = new URL(r.headers.location!, 'http://localhost/?sqlite=');
  const home = location.pathname + location.search;
  assert.ok(home.includes(encodeURIComponent(db)), home);

  r = await go(home);
  assert.equal(r.status, 200, r.text.slice(0, 3000));
  assert.match(r.text, /SQLite 3/);
  const token = /name=['"]token['"] value=['"]([^'"]+)/.exec(r.text)?.[1];
  assert.ok(token, 'CSRF token on the page');

  const sqlPage = `${home}&sql=`;
  r = await go(sqlPage, {
    query: "CREATE TABLE pets (name TEXT); INSERT INTO pets VALUES ('Rex'), ('Tom');", token: token!,
  });
  assert.equal(r.status, 200);
  assert.match(r.text, /Query executed OK/);
  assert.ok(fs.statSync(db).size > 0);

  r = await go(`${home}&select=pets`);
  assert.equal(r.status, 200);
  assert.match(r.text, />Rex</);
  assert.match(r.text, />Tom</);

  r = await go('/?file=default.css&version=4.8.1');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/css/);
  assert.ok(r.body.length > 1000);
});
