// Shared helpers of the browser end-to-end tests: start and stop the real
// tickstream server on a free loopback port, drive Debian's Chromium with
// playwright-core, and wait for things with a bound on every wait.
//
// Run through scripts/browser-tests, which installs Chromium and
// playwright-core and builds the server first.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SERVER_BIN = process.env.TICKSTREAM_BIN ?? path.join(REPO_ROOT, 'target/debug/tickstream');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SCREENSHOT = path.join(REPO_ROOT, 'docs/dashboard.png');
/** Extra screenshots (phone width, dark theme) for people reviewing a run; not committed. */
export const ARTIFACTS = process.env.BROWSER_TEST_ARTIFACTS ?? path.join(os.tmpdir(), 'tickstream-browser-tests');

export const DEFAULT_WATCHLIST = ['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA', 'JPM'];

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A port that was free on 127.0.0.1 a moment ago (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns a truthy value or `timeoutMs` passes; returns
 * that value or throws with `message`.
 */
export async function waitFor(fn, { timeoutMs = 5000, intervalMs = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${lastError ? `: ${lastError.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * Starts target/debug/tickstream on 127.0.0.1:`port` (a free one by default)
 * with a fast, seeded simulator, and waits until /readyz answers 200.
 * @returns {Promise<{port: number, url: string, pid: number, stop: () => Promise<void>, output: () => string}>}
 */
export async function startServer(options = {}) {
  // A port picked by freePort() can be taken by someone else before the
  // server binds it; then try another one (a port asked for is not changed).
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startServerOnce(options);
    } catch (err) {
      if (options.port !== undefined || attempt >= 3 || !err.message.includes('exited early')) throw err;
    }
  }
}

async function startServerOnce({ port, env = {}, readyTimeoutMs = 20_000 } = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`${SERVER_BIN} does not exist: run scripts/browser-tests (it builds it with cargo test --no-run first)`);
  }
  const p = port ?? (await freePort());
  const child = spawn(SERVER_BIN, [], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      TICKSTREAM__SERVER__HOST: '127.0.0.1',
      TICKSTREAM__SERVER__PORT: String(p),
      TICKSTREAM__SIMULATOR__TICKS_PER_SECOND: '2000',
      TICKSTREAM__SIMULATOR__SEED: '1',
      TICKSTREAM__SERVER__SHUTDOWN_TIMEOUT_MS: '2000',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => {
    output += chunk;
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let exitInfo = null;
  exited.then((info) => { exitInfo = info; });

  const url = `http://127.0.0.1:${p}`;
  const server = {
    port: p,
    url,
    pid: child.pid,
    output: () => output,
    /** SIGTERM (graceful: viewers get 1001), then SIGKILL after 10 s; waits for the exit. */
    async stop() {
      if (exitInfo) return;
      child.kill('SIGTERM');
      let timer;
      const done = await Promise.race([exited, new Promise((r) => { timer = setTimeout(() => r(null), 10_000); })]);
      clearTimeout(timer); // a pending timer would keep the test process alive
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  try {
    await waitFor(async () => {
      if (exitInfo) throw new Error(`server exited early (${JSON.stringify(exitInfo)}):\n${output}`);
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
      return res.status === 200;
    }, { timeoutMs: readyTimeoutMs, intervalMs: 100, message: `tickstream to be ready on ${url}` });
  } catch (err) {
    await server.stop();
    if (exitInfo && !err.message.includes('exited early')) err.message += `\nserver output:\n${output}`;
    throw err;
  }
  return server;
}

/**
 * Launches Chromium with a fresh, temporary profile.
 * @returns {Promise<{context: import('playwright-core').BrowserContext, close: () => Promise<void>}>}
 */
export async function launchBrowser({ viewport = { width: 1280, height: 800 }, colorScheme = 'light' } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run scripts/browser-tests (it installs Debian's chromium)`);
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'tickstream-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport,
      colorScheme,
      locale: 'en-US',
      timezoneId: 'UTC',
      timeout: 30_000,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(10_000);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Opens a page that records uncaught errors and console errors, so a test
 * can assert the dashboard ran cleanly.
 */
export async function openPage(context, url, { viewport } = {}) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    // The browser itself logs failed requests (a 404 from the history
    // endpoint, a refused WebSocket while the server restarts); those are
    // expected. Errors from the page's own code are not.
    if (/Failed to load resource|WebSocket connection to .* failed/.test(text)) return;
    problems.push(`console.error: ${text}`);
  });
  if (url) await page.goto(url, { waitUntil: 'domcontentloaded' });
  return { page, problems };
}

/** Texts of every row's last-price cell, keyed by symbol. */
export function lastPrices(page) {
  return page.$$eval('#watchlist-body tr', (trs) => Object.fromEntries(
    trs.map((tr) => [tr.dataset.symbol, tr.querySelector('.c-last .val').textContent]),
  ));
}

/** The watchlist's symbols in table order. */
export function tableSymbols(page) {
  return page.$$eval('#watchlist-body tr', (trs) => trs.map((tr) => tr.dataset.symbol));
}

/** A formatted price as the dashboard shows it: "1,234.56" or "0.1234". */
export const PRICE_RE = /^\d{1,3}(,\d{3})*\.(\d{2}|\d{4})$/;

/** Resolves once every row shows a formatted price; returns the elapsed ms. */
export async function waitForFilledRows(page, count, timeoutMs) {
  const started = Date.now();
  await page.waitForFunction(({ n, re }) => {
    const cells = [...document.querySelectorAll('#watchlist-body tr .c-last .val')];
    const rx = new RegExp(re);
    return cells.length === n && cells.every((c) => rx.test(c.textContent));
  }, { n: count, re: PRICE_RE.source }, { timeout: timeoutMs });
  return Date.now() - started;
}

/** Waits until at least `min` rows show a different last price than `before`. */
export async function waitForPriceChanges(page, before, { min = 2, timeoutMs = 5000 } = {}) {
  await page.waitForFunction(({ prev, need }) => {
    let changed = 0;
    for (const tr of document.querySelectorAll('#watchlist-body tr')) {
      const text = tr.querySelector('.c-last .val').textContent;
      if (prev[tr.dataset.symbol] !== undefined && prev[tr.dataset.symbol] !== text) changed += 1;
    }
    return changed >= need;
  }, { prev: before, need: min }, { timeout: timeoutMs });
}

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

/**
 * A loopback reverse proxy in front of the server that adds a
 * Content-Security-Policy header to every response, WebSocket upgrades
 * included (piped through as raw TCP). It stands in for the header a
 * deployment will add; intercepting the document in the browser instead
 * would make Chromium treat the page as non-local and block its loopback
 * WebSocket (Local Network Access checks).
 * @returns {Promise<{url: string, port: number, close: () => Promise<void>}>}
 */
export async function startCspProxy(targetPort, csp) {
  const sockets = new Set();
  const proxy = http.createServer((req, res) => {
    const upstream = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode, { ...up.headers, 'content-security-policy': csp });
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  proxy.on('upgrade', (req, socket, head) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const up = net.connect(targetPort, '127.0.0.1', () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(`${raw}\r\n`);
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    sockets.add(up);
    up.on('close', () => { sockets.delete(up); socket.destroy(); });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise((resolve, reject) => {
    proxy.once('error', reject);
    proxy.listen({ host: '127.0.0.1', port: 0 }, resolve);
  });
  const { port } = proxy.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      proxy.closeAllConnections();
      proxy.close(() => resolve());
    }),
  };
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
 * A real nginx on a free loopback port in front of the server, under a
 * temporary prefix. With `passUpgrade: false` it behaves like a proxy that
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
  const port = await freePort();
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
  await writeFile(confPath, config(passUpgrade));
  const child = spawn(NGINX, ['-p', dir, '-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { output += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { output += d; });
  let exitInfo = null;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => { exitInfo = { code, signal }; resolve(); }));
  const log = () => {
    let text = output;
    try { text += readFileSync(path.join(dir, 'error.log'), 'utf8').slice(-5000); } catch { /* not written yet */ }
    return text;
  };
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
      if (!exitInfo) {
        child.kill('SIGQUIT'); // graceful: lets the workers go
        let timer;
        const done = await Promise.race([exited.then(() => true), new Promise((r) => { timer = setTimeout(() => r(false), 5000); })]);
        clearTimeout(timer);
        if (!done) {
          child.kill('SIGKILL');
          await exited;
        }
      }
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
