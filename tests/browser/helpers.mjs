// Shared helpers of the browser end-to-end tests: start and stop the real
// tickstream server on a loopback port the OS chose (tests/support/server.mjs),
// drive Debian's Chromium with playwright-core, and wait for things with a
// bound on every wait.
//
// Run through scripts/browser-tests, which installs Chromium and
// playwright-core and builds the server first.

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { startTickstream } from '../support/server.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SERVER_BIN = process.env.TICKSTREAM_BIN ?? path.join(REPO_ROOT, 'target/debug/tickstream');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/**
 * Where a run writes its screenshots (the dashboard, phone width, dark theme):
 * outside the working tree, so a test run leaves it clean.
 */
export const ARTIFACTS = process.env.TICKSTREAM_ARTIFACTS
  ?? process.env.BROWSER_TEST_ARTIFACTS
  ?? path.join(os.tmpdir(), 'tickstream-artifacts');
export const SCREENSHOT = path.join(ARTIFACTS, 'dashboard.png');
/** The README's screenshot: rewritten only on purpose (UPDATE_SCREENSHOT=1). */
export const COMMITTED_SCREENSHOT = path.join(REPO_ROOT, 'docs/dashboard.png');
export const UPDATE_SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1';

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
 * Starts target/debug/tickstream on 127.0.0.1 with a fast, seeded simulator,
 * on a port the OS picks (or `port`, to restart on the same one), and waits
 * until /readyz answers 200.
 * @returns {Promise<{port: number, url: string, pid: number, stop: () => Promise<void>, output: () => string}>}
 */
export async function startServer({ port, env = {}, readyTimeoutMs = 20_000 } = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`${SERVER_BIN} does not exist: run scripts/browser-tests (it builds it with cargo test --no-run first)`);
  }
  return startTickstream({
    bin: SERVER_BIN,
    cwd: REPO_ROOT,
    port,
    readyTimeoutMs,
    env: {
      TICKSTREAM__SIMULATOR__TICKS_PER_SECOND: '2000',
      TICKSTREAM__SIMULATOR__SEED: '1',
      TICKSTREAM__SERVER__SHUTDOWN_TIMEOUT_MS: '2000',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
      ...env,
    },
  });
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
 * One server (startServer) and one browser (launchBrowser) for a whole test
 * file: started before its first test, stopped after its last.
 * @returns {{server: Awaited<ReturnType<typeof startServer>>, browser: Awaited<ReturnType<typeof launchBrowser>>}}
 *   filled in once the file's tests run
 */
export function serverAndBrowserForFile() {
  const shared = { server: null, browser: null };
  before(async () => {
    shared.server = await startServer();
    shared.browser = await launchBrowser();
  });
  after(async () => {
    await shared.browser?.close();
    await shared.server?.stop();
  });
  return shared;
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
