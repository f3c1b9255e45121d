/**
 * The connection channel's ownership rule (src/apps/transport/handoff.ts): a
 * connection handed to a process stays the router's until the process
 * acknowledges it. A process that dies before it read the connection gives it
 * back untouched (what the client sent is still there to read); one that took
 * it is its only holder (the client sees the connection end when it closes).
 * The channel is made as in the daemon: the router end connects to main's
 * rendezvous socket, the process gets the other end as Node's IPC channel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HandoffChannel } from '../../src/apps/transport/handoff.ts';
import { ChannelRendezvous } from '../../src/main/spawn.ts';

/**
 * A process holding the other end of `channel` as fd 3, running `script`:
 * as its IPC channel when `ipc`, else never read.
 */
async function processWith(rendezvous: ChannelRendezvous, channel: HandoffChannel, script: string, ipc = true): Promise<ChildProcess> {
  const end = await rendezvous.take(channel.token);
  assert.ok(end, 'the channel reached the rendezvous');
  const env: Record<string, string | undefined> = { ...process.env, NODE_OPTIONS: '' };
  if (ipc) Object.assign(env, { NODE_CHANNEL_FD: '3', NODE_CHANNEL_SERIALIZATION_MODE: 'json' });
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit', end], env });
  end.destroy();
  return child;
}

/** A client connected to a local server, and the server's side of that connection. */
async function connectionPair(): Promise<{ client: net.Socket; accepted: net.Socket; close(): void }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  return { client, accepted: await accepted, close: () => { client.destroy(); server.close(); } };
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

test('a connection the process never took comes back untouched when the process dies', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-handoff-'));
  const rendezvous = await ChannelRendezvous.open(path.join(dir, 'channels.sock'));
  t.after(() => { rendezvous.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  const channel = await HandoffChannel.connect(rendezvous.path);
  // A process that never reads its channel.
  const child = await processWith(rendezvous, channel, 'setInterval(() => {}, 1000)', false);
  const pair = await connectionPair();
  t.after(() => pair.close());
  pair.client.write('GET / HTTP/1.1\r\n\r\n');
  const back = new Promise<{ socket: net.Socket; msg: Record<string, unknown> }>((resolve) => {
    channel.onReclaim((socket, msg) => resolve({ socket, msg }));
  });
  const closed = new Promise<void>((resolve) => channel.onClose(resolve));
  assert.equal(channel.send(pair.accepted, { id: 7 }), true);
  assert.equal(pair.accepted.destroyed, true, 'the router\'s socket object is detached');
  child.kill('SIGKILL');
  await exited(child);
  const { socket, msg } = await back;
  await closed;
  assert.deepEqual(msg, { id: 7 });
  // Nothing was read from it: the request is still there, and the connection works both ways.
  const data = await new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString())));
  assert.equal(data, 'GET / HTTP/1.1\r\n\r\n');
  const answer = new Promise<string>((resolve) => pair.client.once('data', (d) => resolve(d.toString())));
  socket.write('served by the router');
  assert.equal(await answer, 'served by the router');
  socket.destroy();
});

test('a connection the process took is its alone: the router keeps no copy', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-handoff-'));
  const rendezvous = await ChannelRendezvous.open(path.join(dir, 'channels.sock'));
  t.after(() => { rendezvous.close(); fs.rmSync(dir, { recursive: true, force: true }); });
  const channel = await HandoffChannel.connect(rendezvous.path);
  const child = await processWith(rendezvous, channel, `
    process.on('message', (msg, socket) => {
      socket.end('taken by ' + msg.id, () => process.exit(0));
    });`);
  let reclaimed = 0;
  channel.onReclaim((socket) => { reclaimed++; socket.destroy(); });
  const pair = await connectionPair();
  t.after(() => pair.close());
  let text = '';
  pair.client.on('data', (d) => { text += d; });
  const ended = new Promise<void>((resolve) => pair.client.once('end', resolve));
  assert.equal(channel.send(pair.accepted, { id: 'the process' }), true);
  // The client sees the end as soon as the process closes: no other descriptor holds it open.
  await ended;
  assert.equal(text, 'taken by the process');
  await exited(child);
  await new Promise<void>((resolve) => { if (channel.closed) resolve(); else channel.onClose(resolve); });
  assert.equal(reclaimed, 0);
});
