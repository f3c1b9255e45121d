/**
 * `junction: controller` process entry. Receives the control socket from main,
 * restores the stored configuration through the router, then serves the
 * control API (spec/control-api.md §1.4: the socket answers only after the
 * initial configuration was applied).
 */
import http from 'node:http';
import { Channel } from '../ipc/channel.ts';
import { log } from '../runtime/log.ts';
import type { ChildSettings } from '../main/main.ts';
import { Controller } from './controller.ts';

process.title = 'junction: controller';
const settings = JSON.parse(process.env.JUNCTION_SETTINGS ?? '{}') as ChildSettings;
delete process.env.JUNCTION_SETTINGS;
const main = new Channel(process);
const controller = new Controller(main, log, settings);
log.info('controller started');

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => {});
process.on('SIGQUIT', () => process.exit(0));
process.on('SIGHUP', () => {});
process.on('SIGUSR1', () => {});
process.on('disconnect', () => process.exit(0));

main.handle('router-restarted', () => controller.reapply());

const server = http.createServer({ requireHostHeader: false, keepAlive: false }, (req, res) => controller.handle(req, res));
server.headersTimeout = 300_000;
server.requestTimeout = 0;
server.on('clientError', (_e, socket) => socket.destroy());

await controller.restore();
const { handle } = await main.request('control-socket');
server.listen(handle, () => {
  main.notify('listening');
});
main.notify('ready');
