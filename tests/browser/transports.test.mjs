// The browser's own transports, against the real server in Chromium.
//
// The dashboard's WebSocket uses the standard compression: Chromium offers
// permessage-deflate (RFC 7692) on every socket, the client asks for nothing
// app-level, so the server must accept the extension. Two views of it: the
// DevTools protocol (Network domain) records the handshake answer and every
// frame the page receives, and a TCP tap between the page and the server
// reads the frame headers themselves, where RSV1 (the compression bit, which
// no browser API exposes) is set. The feed is scripted (no simulator), so
// once it is quiet the dashboard's quotes must equal REST's exactly.
//
// A plain EventSource on /sse (the fallback transport) gets the same messages
// as events, gzip-encoded, and converges on REST the same way.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_WATCHLIST, launchBrowser, lastPrices, openPage, startServer, waitFor, waitForFilledRows,
} from './helpers.mjs';
import {
  QUIET_FEED_ENV, publishTicks, restQuotes, scriptedTicks, startFrameTap, waitForQuotesEqualRest,
} from './transport-helpers.mjs';
import { formatPrice } from '../../frontend/format.js';
import { mergeMessage } from '../../frontend/ticker-client.js';

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

test('on the wire: the frames the dashboard receives carry RSV1 (compressed messages)', { timeout: 60_000 }, async () => {
  // The page and its socket go through a TCP tap that reads frame headers.
  const tap = await startFrameTap(server.port);
  try {
    const { page, problems } = await openPage(browser.context, `${tap.url}/`);
    await page.evaluate(() => localStorage.clear());
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 5000);
    for (let round = 20; round <= 22; round++) {
      await publishTicks(server, scriptedTicks(DEFAULT_WATCHLIST, round));
      await new Promise((r) => setTimeout(r, 150));
    }
    await waitForQuotesEqualRest(page, server, DEFAULT_WATCHLIST);
    const data = tap.frames.filter((f) => f.opcode === 1 || f.opcode === 2);
    // welcome, subscriptions, snapshot, then updates: all compressed messages.
    assert.ok(data.length >= 5, `data frames seen: ${JSON.stringify(tap.frames)}`);
    assert.ok(data.every((f) => f.opcode === 1), 'text frames only: nothing app-level');
    // The server may leave a message uncompressed (RFC 7692 allows it); the
    // snapshot and the updates of three rounds are compressed.
    const compressed = data.filter((f) => f.rsv1);
    assert.ok(compressed.length >= 4, `RSV1 frames: ${compressed.length} of ${JSON.stringify(data)}`);
    await page.close();
    assert.deepEqual(problems, [], 'the page logged errors');
  } finally {
    await tap.close();
  }
});

test('a browser EventSource on /sse: gzip, seq from 1 by 1, converges exactly on REST', { timeout: 60_000 }, async () => {
  const symbols = ['AAPL', 'MSFT', 'NVDA'];
  await publishTicks(server, scriptedTicks(symbols, 10));
  const { page, problems } = await openPage(browser.context, null);
  let sseResponse = null;
  page.on('response', (res) => { if (res.url().includes('/sse?')) sseResponse = res; });
  // A page of the server's origin, for a same-origin EventSource.
  await page.goto(`${server.url}/healthz`, { waitUntil: 'domcontentloaded' });
  await page.evaluate((list) => {
    window.sse = { messages: [], ids: [] };
    const es = new EventSource(`/sse?symbols=${list.join(',')}`);
    for (const type of ['welcome', 'snapshot', 'update', 'heartbeat', 'error', 'close']) {
      es.addEventListener(type, (e) => {
        if (typeof e.data !== 'string') return;
        window.sse.messages.push(JSON.parse(e.data));
        window.sse.ids.push(e.lastEventId);
      });
    }
    window.sse.es = es;
  }, symbols);
  await waitFor(() => page.evaluate(() => window.sse.messages.some((m) => m.type === 'snapshot')), { message: 'the snapshot event' });
  for (let round = 11; round <= 13; round++) {
    await publishTicks(server, scriptedTicks(symbols, round));
    await new Promise((r) => setTimeout(r, 150));
  }
  const rest = await restQuotes(server, symbols);
  const canonical = (v) => JSON.stringify(v, (_, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x));
  const merged = async () => {
    const messages = await page.evaluate(() => window.sse.messages);
    const quotes = new Map();
    for (const m of messages) mergeMessage(quotes, m);
    return Object.fromEntries(quotes);
  };
  try {
    await waitFor(async () => canonical(await merged()) === canonical(rest), { timeoutMs: 10_000, message: 'the merged events to equal REST' });
  } catch (err) {
    err.message += `\nmerged: ${canonical(await merged())}\nREST: ${canonical(rest)}`;
    throw err;
  }
  const { messages, ids } = await page.evaluate(() => ({ messages: window.sse.messages, ids: window.sse.ids }));
  assert.equal(messages[0].type, 'welcome');
  assert.ok(messages.some((m) => m.type === 'update'), 'updates arrived');
  const data = messages.map((m, i) => ({ m, id: ids[i] })).filter(({ m }) => ['snapshot', 'update', 'heartbeat'].includes(m.type));
  assert.deepEqual(data.map(({ m }) => m.seq), data.map((_, i) => i + 1), 'seq grows by 1 from 1');
  assert.deepEqual(data.map(({ id }) => id), data.map(({ m }) => String(m.seq)), 'id: is the seq');

  assert.ok(sseResponse, 'the /sse response was seen');
  const headers = await sseResponse.allHeaders();
  assert.match(headers['content-type'], /^text\/event-stream/);
  assert.equal(headers['content-encoding'], 'gzip', 'Chromium accepts gzip, so the server compresses (and the browser inflates)');
  await page.evaluate(() => window.sse.es.close());
  await page.close();
  assert.deepEqual(problems, [], 'the page logged errors');
});
