/**
 * `junction: router` process entry: wires the Router and the application
 * manager to main over IPC (listener sockets, application processes) and
 * answers the controller's requests relayed by main.
 *
 * With several routers (main/routers.ts) router 0 runs the application
 * manager and serves the others' application requests on its gateway
 * socket; the others reach applications through it (app-gateway.ts).
 */
import { Channel } from '../ipc/channel.ts';
import { log } from '../runtime/log.ts';
import type { ChildSettings } from '../main/main.ts';
import type { AppHost, AppSpawnResult, AppSpawnSpec } from '../apps/types.ts';
import { AppManager } from '../apps/manager.ts';
import type { AppManagerLike } from '../apps/types.ts';
import { Router, type PreparedConfig } from './router.ts';
import { AppGateway, RemoteApps, type AppTargetsInfo } from './app-gateway.ts';
import type { RouterHost } from './host.ts';
import { dropPrivileges } from '../runtime/privileges.ts';

process.title = 'junction: router';
const settings = JSON.parse(process.env.JUNCTION_SETTINGS ?? '{}') as ChildSettings;
delete process.env.JUNCTION_SETTINGS;
// Started by a root main: serve as --user/--group (shares are read with that user's rights).
if (settings.user !== undefined) dropPrivileges(settings.user, settings.group);
const main = new Channel(process);

const appHost: AppHost = {
  async spawn(spec: AppSpawnSpec): Promise<AppSpawnResult> {
    return (await main.request<AppSpawnResult>('spawn', spec)).data;
  },
  kill(pid: number, signal?: NodeJS.Signals): void {
    main.notify('kill', { pid, signal });
  },
  channelPath: settings.channels,
};

const host: RouterHost = {
  log,
  async listen(address: string): Promise<unknown> {
    const { handle } = await main.request('listen', { address });
    return handle;
  },
  release(address: string): void {
    main.notify('release', { address });
  },
  apps: appHost,
  tmpdir: settings.tmpdir,
};

const index = settings.router?.index ?? 0;
if (index > 0) process.title = `junction: router #${index}`;
const remote = index > 0 ? new RemoteApps(settings.router!.gateway, log) : null;
const apps: AppManagerLike = remote ?? new AppManager(appHost, log, {
  modules: settings.modules,
  noDaemon: settings.noDaemon,
  user: settings.user,
  group: settings.group,
});
if (remote === null && settings.router !== undefined) {
  await new AppGateway(apps, log).listen(settings.router.gateway);
}
const router = new Router(host, apps);
log.info('router started');

/**
 * The controller's apply message: the configuration, the uploaded JS modules
 * (name → source) and the certificate bundles listeners use (name → PEM).
 */
interface ApplyMessage { config: Record<string, unknown>; jsModules?: Record<string, string>; certificates?: Record<string, string> }

main.handle('apply', async ({ config, jsModules, certificates }: ApplyMessage) => {
  await router.apply(config, jsModules ?? {}, certificates ?? {});
});

/** A configuration prepared and waiting for main's commit or abort (main/routers.ts). */
let pending: PreparedConfig | null = null;
main.handle('prepare', async ({ config, jsModules, certificates, apps: offered }: ApplyMessage & { apps?: AppTargetsInfo }) => {
  remote?.offer(offered);
  const p = await router.prepare(config, jsModules ?? {}, certificates ?? {});
  pending = p;
  return remote === null ? { apps: p.apps } : {};
});
main.handle('commit', () => {
  const p = pending;
  pending = null;
  p?.commit();
});
main.handle('abort', () => {
  const p = pending;
  pending = null;
  p?.abort();
});
main.handle('status', () => ({ ...router.status(), applications: apps.status() }));
main.handle('restart', ({ name }: { name: string }) => apps.restart(name));
main.handle('reopen', () => router.reopenLogs());
main.handle('app-exit', ({ pid, code, signal }: { pid: number; code: number | null; signal: string | null }) => {
  apps.processExited(pid, code, signal);
});
main.handle('quit', async ({ graceful }: { graceful: boolean }) => {
  await router.shutdown(graceful);
  await apps.shutdown(graceful);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});
process.on('SIGUSR1', () => {});
process.on('SIGQUIT', () => {
  void router.shutdown(true).then(() => apps.shutdown(true)).then(() => process.exit(0));
});
process.on('disconnect', () => process.exit(0));
main.notify('ready');
