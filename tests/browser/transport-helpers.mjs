// Helpers of the browser tests about transports: a scripted feed (the
// server without its simulator, ticks published over REST, quotes compared
// with REST) and a real nginx in front of the server that can be told to
// pass WebSockets or not.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { candidatePort, listensOn } from '../support/server.mjs';
import { waitFor } from './helpers.mjs';

/** The publisher key the tests that script their own feed start the server with. */
export const PUBLISHER_KEY = 'browser-tests-key';

/** The server for a scripted feed: no simulator, `PUBLISHER_KEY` may publish. */
export const QUIET_FEED_ENV = {
  TICKSTREAM__SIMULATOR__ENABLED: 'false',
  TICKSTREAM__INGEST__PUBLISHER_KEYS: PUBLISHER_KEY,
};

/** POSTs a batch of ticks to /api/v1/ticks and asserts every one was accepted. */
export async function publishTicks(server, ticks) {
  const res = await fetch(`${server.url}/api/v1/ticks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${PUBLISHER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(ticks),
    signal: AbortSignal.timeout(5000),
  });
  const reply = await res.json();
  if (res.status !== 200 || reply.accepted !== ticks.length || reply.rejected.length) {
    throw new Error(`publish refused (${res.status}): ${JSON.stringify(reply)}`);
  }
}

/** GET /api/v1/quotes for `symbols`, as symbol -> quote. */
export async function restQuotes(server, symbols) {
  const res = await fetch(`${server.url}/api/v1/quotes?symbols=${symbols.join(',')}`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`GET /api/v1/quotes: ${res.status}`);
  return Object.fromEntries((await res.json()).quotes.map((q) => [q.s, q]));
}

/**
 * A scripted feed for the watchlist: batch `round` moves every symbol's
 * price, book and volume by a different amount, with up to 6 decimals.
 */
export function scriptedTicks(symbols, round) {
  return symbols.map((symbol, i) => {
    const base = 100 + 10 * i + round * 0.37;
    return {
      symbol,
      price: Number((base + 0.000001 * (round + 1)).toFixed(6)),
      size: 10 * (round + 1) + i,
      bid: Number((base - 0.01).toFixed(2)),
      bid_size: 100 + round,
      ask: Number((base + 0.01).toFixed(2)),
      ask_size: 200 + i,
    };
  });
}

/** The dashboard client's quotes for `symbols`, as symbol -> quote. */
export function pageQuotes(page, symbols) {
  return page.evaluate((list) => Object.fromEntries(
    list.filter((s) => window.tickstream.client.quotes.has(s)).map((s) => [s, window.tickstream.client.quotes.get(s)]),
  ), symbols);
}

/** Waits (bounded) until the page's quotes equal REST's; then asserts it, for the diff. */
export async function waitForQuotesEqualRest(page, server, symbols, { timeoutMs = 10_000 } = {}) {
  const expected = await restQuotes(server, symbols);
  // Key order differs (an update appends fields), so compare with sorted keys.
  const canonical = (v) => JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x));
  const same = (a, b) => canonical(a) === canonical(b);
  try {
    await waitFor(async () => same(await pageQuotes(page, symbols), expected), { timeoutMs, message: 'the dashboard quotes to equal REST' });
  } catch (err) {
    err.message += `\npage: ${JSON.stringify(await pageQuotes(page, symbols))}\nREST: ${JSON.stringify(expected)}`;
    throw err;
  }
  return expected;
}


export const NGINX = process.env.NGINX_PATH ?? '/usr/sbin/nginx';

/**
 * The status of a WebSocket upgrade request sent to `port` (101 when the path
 * passes WebSockets), within 5 s.
 */
export function upgradeStatus(port, path = '/ws') {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path, timeout: 5000,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', Origin: `http://127.0.0.1:${port}`,
      },
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('timeout', () => req.destroy(new Error('upgrade request timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * A real nginx on a loopback port in front of the server, under a temporary
 * prefix. nginx must be told its port: when the one tried is taken, it tries
 * another (tests/support/server.mjs). With `passUpgrade: false` it behaves like a proxy that
 * cannot carry WebSockets: Upgrade and Connection are hop-by-hop headers,
 * and nginx does not forward them unless told to, so `/ws` arrives as a plain
 * GET and fails; `/sse` and REST pass. `setPassUpgrade(true)` rewrites the
 * config the way config/nginx.conf does it and reloads nginx (same port).
 * @returns {Promise<{port: number, url: string, setPassUpgrade: (pass: boolean) => Promise<void>, stop: () => Promise<void>, log: () => string}>}
 */
export async function startNginx(upstreamPort, { passUpgrade = false } = {}) {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} not found: run scripts/system-packages (scripts/browser-tests calls it)`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tickstream-nginx-'));
  const confPath = path.join(dir, 'nginx.conf');
  let port;
  const config = (pass) => `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 256; }
http {
    access_log ${dir}/access.log;
${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `    ${t}_temp_path ${dir}/${t};`).join('\n')}
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://127.0.0.1:${upstreamPort};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_read_timeout 120s;
${pass ? '            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection $connection_upgrade;' : '            # No Upgrade/Connection: WebSockets cannot pass, as behind many corporate proxies.'}
        }
    }
}
`;
  let child;
  let exited;
  let exitInfo = null;
  let output = '';
  const log = () => {
    let text = output;
    try { text += readFileSync(path.join(dir, 'error.log'), 'utf8').slice(-5000); } catch { /* not written yet */ }
    return text;
  };
  /** `signal`, then SIGKILL after `graceMs`; waits for the exit. */
  const stopChild = async (signal, graceMs) => {
    if (exitInfo) return;
    child.kill(signal);
    let timer;
    const done = await Promise.race([exited.then(() => true), new Promise((r) => { timer = setTimeout(() => r(false), graceMs); })]);
    clearTimeout(timer);
    if (!done) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  for (let attempt = 1; ; attempt += 1) {
    port = candidatePort();
    await writeFile(confPath, config(passUpgrade));
    output = '';
    exitInfo = null;
    child = spawn(NGINX, ['-p', dir, '-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (d) => { output += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { output += d; });
    exited = new Promise((resolve) => child.once('exit', (code, signal) => { exitInfo = { code, signal }; resolve(); }));
    let started;
    try {
      // Up once nginx itself listens there (a connection could reach whoever
      // else holds the port); on a taken port it says so, then retries its bind.
      started = await waitFor(() => {
        if (listensOn(child.pid, port)) return 'listening';
        if (/address already in use/i.test(output)) return 'taken';
        if (exitInfo) throw new Error(`nginx exited early (${JSON.stringify(exitInfo)}):\n${log()}`);
        return false;
      }, { timeoutMs: 10_000, intervalMs: 20, message: `nginx to listen on ${port}` });
    } catch (err) {
      await stopChild('SIGKILL', 0);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    if (started === 'listening') break;
    await stopChild('SIGKILL', 0);
    if (attempt >= 5) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`nginx: every port tried was taken:\n${log()}`);
    }
  }
  const nginx = {
    port,
    url: `http://127.0.0.1:${port}`,
    log,
    async setPassUpgrade(pass) {
      await writeFile(confPath, config(pass));
      await new Promise((resolve, reject) => {
        const reload = spawn(NGINX, ['-p', dir, '-c', confPath, '-s', 'reload'], { stdio: 'ignore' });
        reload.once('error', reject);
        reload.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nginx -s reload exited ${code}:\n${log()}`))));
      });
      // The new workers take over asynchronously; wait until the path does what was asked.
      await waitFor(async () => ((await upgradeStatus(port)) === 101) === pass, { timeoutMs: 10_000, intervalMs: 100, message: `nginx to ${pass ? 'pass' : 'block'} upgrades after the reload` });
    },
    async stop() {
      await stopChild('SIGQUIT', 5000); // graceful: lets the workers go
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(async () => {
      if (exitInfo) throw new Error(`nginx exited early (${JSON.stringify(exitInfo)}):\n${log()}`);
      return (await fetch(`${nginx.url}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200;
    }, { timeoutMs: 10_000, intervalMs: 100, message: `nginx to proxy on ${nginx.url}` });
  } catch (err) {
    await nginx.stop();
    throw err;
  }
  return nginx;
}

/**
 * A loopback TCP tap in front of the server: forwards every byte both ways
 * unchanged, and on connections whose first response is `101 Switching
 * Protocols` parses the server's WebSocket frame headers (RFC 6455 §5.2;
 * server frames are unmasked), so a test can see RSV1, the per-message
 * compression bit that no browser API exposes.
 * @returns {Promise<{url: string, port: number, frames: {fin: boolean, rsv1: boolean, opcode: number, length: number}[], close: () => Promise<void>}>}
 */
export async function startFrameTap(targetPort) {
  const frames = [];
  const sockets = new Set();
  const tap = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let phase = 'http';
    let buf = Buffer.alloc(0);
    upstream.on('data', (chunk) => {
      client.write(chunk);
      if (phase === 'done') return;
      buf = Buffer.concat([buf, chunk]);
      if (phase === 'http') {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        phase = buf.subarray(0, 12).toString('latin1') === 'HTTP/1.1 101' ? 'ws' : 'done';
        buf = buf.subarray(end + 4);
        if (phase === 'done') return;
      }
      for (;;) {
        if (buf.length < 2) return;
        let length = buf[1] & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (buf.length < 4) return;
          length = buf.readUInt16BE(2);
          offset = 4;
        } else if (length === 127) {
          if (buf.length < 10) return;
          length = Number(buf.readBigUInt64BE(2));
          offset = 10;
        }
        if (buf[1] & 0x80) offset += 4; // a masked server frame would be a protocol error; skip the key anyway
        if (buf.length < offset + length) return;
        frames.push({ fin: Boolean(buf[0] & 0x80), rsv1: Boolean(buf[0] & 0x40), opcode: buf[0] & 0x0f, length });
        buf = buf.subarray(offset + length);
      }
    });
    client.pipe(upstream);
    const drop = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('close', drop);
    upstream.on('close', drop);
    client.on('error', drop);
    upstream.on('error', drop);
  });
  await new Promise((resolve, reject) => {
    tap.once('error', reject);
    tap.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  const { port } = tap.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    frames,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      tap.close(() => resolve());
    }),
  };
}
