/**
 * The harness's options, from flags or from BENCH_* environment variables
 * (flags win); USAGE lists them with their defaults.
 */

/** Parsed options: seconds, counts, the selected scenario ids (null = all) and switches. */
export interface Options {
  duration: number;
  warmup: number;
  connections: number;
  threads: number;
  rounds: number;
  scenarios: string[] | null;
  install: boolean;
  pin: boolean;
  json: string;
  markdown: boolean;
  list: boolean;
  help: boolean;
}

/** A usage error: the message is printed with the usage text. */
export class UsageError extends Error {}

/** The help text of `npm run bench -- --help`. */
export const USAGE = `usage: npm run bench -- [options]
  --duration S       seconds of measurement per server (BENCH_DURATION, 10)
  --warmup S         seconds of warm-up load, not measured (BENCH_WARMUP, 3)
  --connections N    concurrent connections, wrk -c (BENCH_CONNECTIONS, 50)
  --threads N        wrk threads, wrk -t (BENCH_THREADS, 1)
  --rounds N         measurements per server, taken in turns; the median is kept (BENCH_ROUNDS, 1)
  --scenarios LIST   comma-separated scenario ids (BENCH_SCENARIOS, all)
  --no-install       do not install missing tools with apt-get (BENCH_INSTALL=0)
  --no-pin           do not pin wrk and the servers to separate CPUs (BENCH_PIN=0)
  --json FILE        also write the results as JSON (BENCH_JSON)
  --markdown         print the tables as Markdown (BENCH_MARKDOWN=1)
  --list             list the scenarios and exit
`;

function positive(name: string, v: string, min = 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${name} must be an integer ≥ ${min}, not "${v}"`);
  return n;
}

const off = (v: string | undefined) => v !== undefined && /^(0|false|no|off)$/i.test(v);
const on = (v: string | undefined) => v !== undefined && !off(v) && v !== '';

/** Parse `argv` (without node and the script) over the environment `env`. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): Options {
  const o: Options = {
    duration: positive('BENCH_DURATION', env.BENCH_DURATION ?? '10'),
    warmup: positive('BENCH_WARMUP', env.BENCH_WARMUP ?? '3', 0),
    connections: positive('BENCH_CONNECTIONS', env.BENCH_CONNECTIONS ?? '50'),
    threads: positive('BENCH_THREADS', env.BENCH_THREADS ?? '1'),
    rounds: positive('BENCH_ROUNDS', env.BENCH_ROUNDS ?? '1'),
    scenarios: env.BENCH_SCENARIOS ? env.BENCH_SCENARIOS.split(',').map((s) => s.trim()).filter(Boolean) : null,
    install: !off(env.BENCH_INSTALL),
    pin: !off(env.BENCH_PIN),
    json: env.BENCH_JSON ?? '',
    markdown: on(env.BENCH_MARKDOWN),
    list: false,
    help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--duration': o.duration = positive(flag, value()); break;
      case '--warmup': o.warmup = positive(flag, value(), 0); break;
      case '--connections': o.connections = positive(flag, value()); break;
      case '--threads': o.threads = positive(flag, value()); break;
      case '--rounds': o.rounds = positive(flag, value()); break;
      case '--scenarios': o.scenarios = value().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--no-install': o.install = false; break;
      case '--no-pin': o.pin = false; break;
      case '--json': o.json = value(); break;
      case '--markdown': o.markdown = true; break;
      case '--list': o.list = true; break;
      case '-h': case '--help': o.help = true; break;
      default: throw new UsageError(`unknown option ${argv[i]}`);
    }
  }
  if (o.connections < o.threads) throw new UsageError('--connections must be at least --threads');
  return o;
}
