/**
 * `junction: router` process entry: wires the Router and the application
 * manager to main over IPC (listener sockets, application processes) and
 * answers the controller's requests relayed by main.
 */
import { Channel } from '../ipc/channel.ts';
import { log } from '../runtime/log.ts';
import type { ChildSettings } from '../main/main.ts';
import type { AppHost, AppSpawnResult, AppSpawnSpec } from '../apps/types.ts';
import { AppManager } from '../apps/manager.ts';
import { Router } from './router.ts';
import type { RouterHost } from './host.ts';

process.title = 'junction: router';
const settings = JSON.parse(process.env.JUNCTION_SETTINGS ?? '{}') as ChildSettings;
delete process.env.JUNCTION_SETTINGS;
const main = new Channel(process);

const appHost: AppHost = {
  async spawn(spec: AppSpawnSpec): Promise<AppSpawnResult> {
    return (await main.request<AppSpawnResult>('spawn', spec)).data;
  },
  kill(pid: number, signal?: NodeJS.Signals): void {
    main.notify('kill', { pid, signal });
  },
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

const apps = new AppManager(appHost, log, {
  modules: settings.modules,
  noDaemon: settings.noDaemon,
  user: settings.user,
  group: settings.group,
});
const router = new Router(host, apps);
log.info('router started');

/** The controller's apply message: the configuration and the uploaded JS modules (name → source). */
interface ApplyMessage { config: Record<string, unknown>; jsModules?: Record<string, string> }

main.handle('apply', async ({ config, jsModules }: ApplyMessage) => {
  await router.apply(config, jsModules ?? {});
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
