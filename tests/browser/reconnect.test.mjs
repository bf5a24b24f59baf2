// The dashboard recovers by itself when the server restarts: the server is
// stopped (SIGTERM: viewers get close 1001), a new one is started on the SAME
// port, and the page must get back to "connected" with moving prices,
// without a reload.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_WATCHLIST, launchBrowser, lastPrices, openPage, startServer, waitForFilledRows, waitForPriceChanges,
} from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('recovers after the server restarts on the same port', { timeout: 90_000 }, async () => {
  const { page, problems } = await openPage(browser.context, `${server.url}/`);
  await page.evaluate(() => localStorage.clear());
  await page.reload({ waitUntil: 'domcontentloaded' });
  await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
  await page.waitForFunction(() => document.getElementById('status-conn').dataset.state === 'open', null, { timeout: 5000 });
  await page.click('#row-AAPL');
  const firstSession = await page.evaluate(() => window.tickstream.client.welcome.session);

  // Stop the server: the page notices and says so.
  const { port } = server;
  await server.stop();
  server = null;
  await page.waitForFunction(() => document.getElementById('status-conn').dataset.state !== 'open', null, { timeout: 10_000 });
  assert.match(await page.textContent('#status-conn-text'), /Disconnected|Reconnecting|Connecting/);
  assert.equal(await page.evaluate(() => document.body.classList.contains('is-offline')), true);
  assert.equal(await page.textContent('#status-compression'), '—');
  assert.equal(await page.textContent('#status-rtt'), '—');
  // The last known quotes stay on screen.
  const stale = await lastPrices(page);
  assert.equal(Object.keys(stale).length, DEFAULT_WATCHLIST.length);

  // A new server on the same port: the page reconnects on its own. While the
  // server was away, WebSocket failed often enough for the client to try /sse
  // too; whichever gets through first, it ends on WebSocket.
  server = await startServer({ port });
  await page.waitForFunction(() => {
    const el = document.getElementById('status-conn');
    return el.dataset.state === 'open' && el.dataset.transport === 'websocket';
  }, null, { timeout: 30_000 });
  assert.equal(await page.textContent('#status-conn-text'), 'Live · WebSocket');
  assert.notEqual(await page.evaluate(() => window.tickstream.client.welcome.session), firstSession);
  assert.equal(await page.evaluate(() => window.tickstream.client.compression), 'permessage-deflate');
  assert.equal(await page.textContent('#status-compression'), 'On (permessage-deflate)');
  assert.equal(await page.evaluate(() => document.body.classList.contains('is-offline')), false);

  // Prices move again, in every row, and the chart still follows.
  const afterRestart = await lastPrices(page);
  await waitForPriceChanges(page, afterRestart, { min: 3, timeoutMs: 10_000 });
  await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
  await page.waitForFunction(() => /^(<1|\d+) ms$/.test(document.getElementById('status-rtt').textContent), null, { timeout: 7000 });
  assert.equal(await page.evaluate(() => window.tickstream.selected), 'AAPL');
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });

  await page.close();
  assert.deepEqual(problems, [], 'the page logged errors');
});
