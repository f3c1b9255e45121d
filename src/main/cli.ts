/**
 * Entry of the `junction` command: parses unitd's options, daemonizes unless
 * `--no-daemon`, and runs main. The daemonizing parent exits 0 only once the
 * control socket accepts requests, so `junction && curl --unix-socket …` works.
 */
import { spawn } from 'node:child_process';
import { Main } from './main.ts';
import { parseArgs, UsageError, type Options } from '../runtime/options.ts';

const DAEMON_CHILD = 'JUNCTION_DAEMON_CHILD';

function fail(message: string): never {
  process.stderr.write(message.endsWith('\n') ? message : message + '\n');
  process.exit(1);
}

const argv = process.argv.slice(2);
let parsed;
try {
  parsed = parseArgs(argv, 'junction');
} catch (e) {
  if (e instanceof UsageError) fail(e.message);
  throw e;
}
if ('help' in parsed) { process.stdout.write(parsed.help); process.exit(0); }
if ('version' in parsed) { process.stderr.write(parsed.version); process.exit(0); }
const options: Options = parsed.run;

if (options.daemon && !process.env[DAEMON_CHILD]) {
  // Parent: start the daemon in its own session and wait for its word.
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, [DAEMON_CHILD]: '1' },
  });
  child.on('message', (m: { ready?: boolean; error?: string }) => {
    if (m.ready) { child.disconnect(); child.unref(); process.exit(0); }
    if (m.error) fail(m.error);
  });
  child.on('exit', (code) => fail(`junction exited during startup (code ${code})`));
} else {
  if (process.env[DAEMON_CHILD]) {
    delete process.env[DAEMON_CHILD];
    process.umask(0o022);
  }
  const main = new Main(options, ['junction', ...argv]);
  const tell = (m: object) => { if (process.send && process.connected) process.send(m); };
  main.start(() => {
    tell({ ready: true });
    if (process.connected) process.disconnect();
  }).catch((e: Error) => {
    main.cleanup();
    tell({ error: e.message });
    fail(e.message);
  });
}
