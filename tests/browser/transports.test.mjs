// The dashboard's WebSocket in Chromium uses the standard compression:
// Chromium offers permessage-deflate (RFC 7692) on every socket, the client
// asks for nothing app-level, so the server must accept the extension. The
// handshake is read through the DevTools protocol (Network domain), which
// also shows every frame the page receives; RSV1 itself is below what any
// browser API exposes, so "the handshake answer names the extension" and
// "text frames arrive" is the evidence. The feed is scripted (no simulator),
// so once it is quiet the dashboard's quotes must equal REST's exactly.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_WATCHLIST, QUIET_FEED_ENV, launchBrowser, lastPrices, openPage, publishTicks, scriptedTicks,
  startServer, waitFor, waitForFilledRows, waitForQuotesEqualRest,
} from './helpers.mjs';
import { formatPrice } from '../../frontend/format.js';

let server;
let browser;

before(async () => {
  server = await startServer({ env: QUIET_FEED_ENV });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the dashboard negotiates permessage-deflate, receives frames, and converges on REST', { timeout: 60_000 }, async () => {
  await publishTicks(server, scriptedTicks(DEFAULT_WATCHLIST, 0));

  const { page, problems } = await openPage(browser.context, null);
  const cdp = await browser.context.newCDPSession(page);
  /** requestId -> {url, status, headers, framesIn, texts} */
  const sockets = new Map();
  const socket = (id) => {
    if (!sockets.has(id)) sockets.set(id, { url: null, status: null, headers: {}, framesIn: 0, texts: 0 });
    return sockets.get(id);
  };
  cdp.on('Network.webSocketCreated', (e) => { socket(e.requestId).url = e.url; });
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    socket(e.requestId).status = e.response.status;
    // Header names as the server sent them; compare case-insensitively.
    socket(e.requestId).headers = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
  });
  cdp.on('Network.webSocketFrameReceived', (e) => {
    const s = socket(e.requestId);
    s.framesIn += 1;
    if (e.response.opcode === 1) s.texts += 1;
  });
  await cdp.send('Network.enable');

  await page.goto(`${server.url}/`, { waitUntil: 'domcontentloaded' });
  await page.evaluate(() => localStorage.clear());
  await page.reload({ waitUntil: 'domcontentloaded' });
  await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 5000);
  assert.equal(await page.textContent('#status-conn-text'), 'Live · WebSocket');

  // The feed moves while the page watches: updates, not only the snapshot.
  const before = await lastPrices(page);
  for (let round = 1; round <= 3; round++) {
    await publishTicks(server, scriptedTicks(DEFAULT_WATCHLIST, round));
    await new Promise((r) => setTimeout(r, 150));
  }
  const rest = await waitForQuotesEqualRest(page, server, DEFAULT_WATCHLIST);
  const shown = await lastPrices(page);
  for (const s of DEFAULT_WATCHLIST) {
    assert.equal(shown[s], formatPrice(rest[s].p, 'en-US'), `${s}: the row shows REST's last price`);
    assert.notEqual(shown[s], before[s], `${s}: the row moved`);
  }

  // The socket of the page that is showing all this (the one after the reload).
  const ws = await waitFor(() => [...sockets.values()].filter((s) => s.url?.includes('/ws') && s.status === 101).at(-1),
    { message: 'the dashboard socket in the DevTools log' });
  const extensions = ws.headers['sec-websocket-extensions'] ?? '';
  assert.match(extensions, /^permessage-deflate\b/i, `handshake answer: Sec-WebSocket-Extensions: ${extensions}`);
  assert.doesNotMatch(ws.url, /compression=/, 'no app-level compression asked for');
  // welcome, subscriptions, snapshot and at least one update per round.
  assert.ok(ws.texts >= 5, `text frames received: ${ws.texts}`);
  assert.equal(ws.texts, ws.framesIn, 'every frame is text: nothing app-level binary');
  assert.equal(await page.evaluate(() => window.tickstream.client.compression), 'permessage-deflate');
  assert.equal(await page.textContent('#status-compression'), 'On (permessage-deflate)');

  await cdp.detach();
  await page.close();
  assert.deepEqual(problems, [], 'the page logged errors');
});
