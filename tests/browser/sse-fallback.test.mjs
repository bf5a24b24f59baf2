// The dashboard behind a real nginx that cannot carry WebSockets (its config
// does not pass Upgrade, like many corporate proxies): the client gives up on
// /ws after a few quick failures, streams over /sse, and the status bar says
// so; when the path passes WebSockets again (the config is rewritten and
// nginx reloaded on the same port), the client's background attempts get
// through and it returns to WebSocket, without a reload of the page.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_WATCHLIST, launchBrowser, lastPrices, openPage, startServer, waitForFilledRows, waitForPriceChanges,
} from './helpers.mjs';
import { startNginx, upgradeStatus } from './transport-helpers.mjs';

let server;
let nginx;
let browser;

before(async () => {
  server = await startServer();
  nginx = await startNginx(server.port, { passUpgrade: false });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await nginx?.stop();
  await server?.stop();
});

const transport = (page) => page.getAttribute('#status-conn', 'data-transport');
const state = (page) => page.getAttribute('#status-conn', 'data-state');

test('falls back to SSE through nginx without Upgrade, then returns to WebSocket', { timeout: 120_000 }, async () => {
  // The premise: through this nginx an upgrade does not succeed, directly it does.
  assert.notEqual(await upgradeStatus(nginx.port), 101, 'this nginx must not pass WebSockets');
  assert.equal(await upgradeStatus(server.port), 101);

  const { page, problems } = await openPage(browser.context, null);
  /** Every /sse request the page makes (EventSource's included). */
  const streams = [];
  page.on('request', (req) => { if (req.url().includes('/sse?')) streams.push(req.url()); });
  await page.goto(`${nginx.url}/`, { waitUntil: 'domcontentloaded' });
  await page.evaluate(() => localStorage.clear());
  await page.reload({ waitUntil: 'domcontentloaded' });

  // Three quick WebSocket failures (backoff up to 0.5 + 1 s), then /sse.
  await page.waitForFunction(() => document.getElementById('status-conn').dataset.state === 'open', null, { timeout: 15_000 });
  assert.equal(await transport(page), 'sse');
  assert.equal(await page.textContent('#status-conn-text'), 'Live · SSE fallback');
  assert.equal(await page.textContent('#status-compression'), 'HTTP (SSE)');
  assert.equal(await page.evaluate(() => window.tickstream.client.transport), 'sse');
  await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 5000);
  const onSse = await lastPrices(page);
  await waitForPriceChanges(page, onSse, { min: 3, timeoutMs: 10_000 });

  // A watchlist change over SSE reconnects the event stream with the new set.
  const streamsBefore = streams.length;
  assert.ok(streamsBefore >= 1);
  assert.doesNotMatch(streams.at(-1), /NFLX/);
  await page.click('#search-input');
  await page.keyboard.type('NFLX');
  await page.waitForSelector('#search-results [role="option"][data-symbol="NFLX"]', { timeout: 5000 });
  await page.keyboard.press('Enter');
  await page.waitForSelector('#row-NFLX', { timeout: 2000 });
  await waitForFilledRows(page, DEFAULT_WATCHLIST.length + 1, 10_000);
  assert.equal(await transport(page), 'sse');
  assert.ok(streams.length > streamsBefore, 'a new event stream');
  assert.match(streams.at(-1), /symbols=[^&]*NFLX/);

  // Still SSE a while later: the background WebSocket attempts keep failing.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await transport(page), 'sse');

  // A normal path again: the client finds it on its own (backoff: within 30 s).
  await nginx.setPassUpgrade(true);
  await page.waitForFunction(() => document.getElementById('status-conn').dataset.transport === 'websocket'
    && document.getElementById('status-conn').dataset.state === 'open', null, { timeout: 45_000 });
  assert.equal(await page.textContent('#status-conn-text'), 'Live · WebSocket');
  assert.equal(await page.textContent('#status-compression'), 'On (permessage-deflate)');
  assert.equal(await state(page), 'open');
  const onWs = await lastPrices(page);
  await waitForPriceChanges(page, onWs, { min: 3, timeoutMs: 10_000 });
  assert.equal(Object.keys(await lastPrices(page)).length, DEFAULT_WATCHLIST.length + 1, 'the added symbol came along');
  await page.waitForFunction(() => /^(<1|\d+) ms$/.test(document.getElementById('status-rtt').textContent), null, { timeout: 7000 });

  await page.close();
  assert.deepEqual(problems, [], 'the page logged errors');
});
