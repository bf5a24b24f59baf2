// End-to-end tests of the dashboard's detail chart and its ranges (1H, 1D,
// 5D, 1Y) in headless Chromium. Where the exact history requests matter, the
// history endpoint is played by a stub (page.route) that follows
// docs/PROTOCOL.md §12.1; the last test asks the real server.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_WATCHLIST, openPage, serverAndBrowserForFile, waitForFilledRows } from './helpers.mjs';

const M = 60_000;
const H = 60 * M;
const D = 24 * H;
/** How far back each range's `from` is. */
const SPANS = { '1H': H, '1D': D, '5D': 5 * D, '1Y': 366 * D };

const shared = serverAndBrowserForFile();

/**
 * The history endpoint as a stub: one bar every interval (a minute or a
 * day) up to now, the newest `limit` of those with from <= t < to, oldest
 * first, with `more` when older ones were left out. Records each request.
 */
async function stubHistory(page) {
  const requests = [];
  await page.route('**/api/v1/history/**', (route) => {
    const now = Date.now();
    const url = new URL(route.request().url());
    const q = url.searchParams;
    requests.push({ symbol: url.pathname.split('/').pop(), query: Object.fromEntries(q), at: now });
    const step = q.get('interval') === '1d' ? D : M;
    const from = Number(q.get('from'));
    const to = Math.min(q.has('to') ? Number(q.get('to')) : Infinity, now + 1);
    const limit = Number(q.get('limit'));
    const newest = Math.floor((to - 1) / step) * step;
    const oldest = Math.ceil(from / step) * step;
    const count = Math.max(0, Math.floor((newest - oldest) / step) + 1);
    const bars = [];
    for (let t = newest - (Math.min(limit, count) - 1) * step; t <= newest; t += step) {
      const o = 180 + 5 * Math.sin(t / (step * 50));
      const c = o + (Math.floor(t / step) % 3 === 0 ? -0.3 : 0.4);
      bars.push({ t, o, h: Math.max(o, c) + 0.2, l: Math.min(o, c) - 0.2, c, v: 1000 + (Math.floor(t / step) % 7) * 100 });
    }
    return route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({ s: url.pathname.split('/').pop(), interval: q.get('interval'), bars, more: count > limit }),
    });
  });
  return requests;
}

/**
 * A page with nothing stored (the default watchlist, no chosen symbol or
 * range), the history stubbed unless `stub` is false, once its rows are
 * filled (and with the stub, once the chart shows the default range).
 * `requests` holds the history requests of the load after the storage was
 * cleared, and later ones.
 */
async function openChart({ stub = true } = {}) {
  const opened = await openPage(shared.browser.context, null);
  const { page } = opened;
  const requests = stub ? await stubHistory(page) : [];
  await page.goto(`${shared.server.url}/`, { waitUntil: 'domcontentloaded' });
  await page.evaluate(() => localStorage.clear());
  requests.length = 0;
  await page.reload({ waitUntil: 'domcontentloaded' });
  if (stub) await waitForHistoryChart(page, 10 * M);
  await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
  return { ...opened, requests };
}

async function done({ page, problems }) {
  await page.evaluate(() => localStorage.clear());
  await page.close();
  assert.deepEqual(problems, [], 'the page logged errors');
}

const pressed = (page) => page.$$eval('#chart-ranges button', (bs) => Object.fromEntries(bs.map((b) => [b.textContent, b.getAttribute('aria-pressed')])));

/** Waits for the chart to show history with bars `stepMs` wide. */
async function waitForHistoryChart(page, stepMs) {
  await page.waitForFunction((step) => {
    const c = document.getElementById('chart');
    return c.dataset.source === 'history' && Number(c.dataset.step) === step && Number(c.dataset.bars) > 0;
  }, stepMs, { timeout: 5000 });
}

/** Pixels drawn on the chart's canvas. */
function painted(page) {
  return page.$eval('#chart', (c) => {
    const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
    return n;
  });
}

/**
 * Asserts that `requests` are exactly `expected` ({interval, limit, to?}
 * for `symbol`), each with `from` = the page's now - the range's span, now
 * being between `before` and the request's arrival.
 */
function assertRequests(requests, { symbol, range, before }, expected) {
  assert.deepEqual(requests.map((r) => ({ symbol: r.symbol, ...r.query, from: undefined })), expected.map((e) => ({ symbol, ...e, from: undefined })), range);
  for (const r of requests) {
    const from = Number(r.query.from);
    assert.ok(from >= before - SPANS[range] && from <= r.at - SPANS[range], `${range}: from ${from} is not now - ${SPANS[range]} ms`);
    assert.equal(r.query.from, requests[0].query.from, 'every page of one load has the same from');
  }
}

const settle = () => new Promise((r) => setTimeout(r, 400));

describe('detail chart', { timeout: 120_000 }, () => {
  test('opens on the first watchlist symbol in the default range (1D), from one history request', async () => {
    const before = Date.now();
    const opened = await openChart();
    const { page, requests } = opened;
    assert.equal(await page.textContent('#detail-symbol'), DEFAULT_WATCHLIST[0]);
    assert.deepEqual(await pressed(page), { '1H': 'false', '1D': 'true', '5D': 'false', '1Y': 'false' });
    // The stream's first open does not ask again.
    await page.waitForFunction(() => window.tickstream.client.state === 'open', null, { timeout: 5000 });
    await settle();
    assertRequests(requests, { symbol: 'AAPL', range: '1D', before }, [{ interval: '1m', limit: '1440' }]);
    // 1,440 one-minute bars fit as ten-minute ones; the axis shows clock times.
    assert.equal(await page.textContent('#chart-title'), '10-minute bars');
    assert.match(await page.getAttribute('#chart', 'aria-label'), /^AAPL, the last 24 hours: 14[45] 10-minute bars from \d{2}:\d0 to \d{2}:\d0, last /);
    assert.ok(await painted(page) > 2000);
    await done(opened);
  });

  test('each range asks for its own bars (5D in two pages) and draws them; the keyboard works too', async () => {
    const opened = await openChart();
    const { page, requests } = opened;
    await settle();

    const cases = [
      { range: '1H', step: M, title: '1-minute bars', label: /^AAPL, the last hour: 6\d 1-minute bars from \d{2}:\d{2} to \d{2}:\d{2}, last / },
      { range: '5D', step: H, title: '1-hour bars', label: /^AAPL, the last 5 days: 12[01] 1-hour bars from [A-Z][a-z]{2} \d{1,2} \d{2}:00 to [A-Z][a-z]{2} \d{1,2} \d{2}:00, last / },
      { range: '1Y', step: 7 * D, title: 'Weekly bars', label: /^AAPL, the last year: 5[34] weekly bars from [A-Z][a-z]{2} \d{1,2}, \d{4} to [A-Z][a-z]{2} \d{1,2}, \d{4}, last / },
      { range: '1D', step: 10 * M, title: '10-minute bars', label: /^AAPL, the last 24 hours: 14[45] 10-minute bars/ },
    ];
    for (const { range, step, title, label } of cases) {
      requests.length = 0;
      const before = Date.now();
      await page.click(`#chart-ranges button[data-range="${range}"]`);
      await waitForHistoryChart(page, step);
      await settle();
      const pages = {
        '1H': [{ interval: '1m', limit: '60' }],
        '1D': [{ interval: '1m', limit: '1440' }],
        // 7,200 bars: the newest 5,000, then the 2,200 before the oldest of
        // those (the stub's first page starts 4,999 minutes before its newest).
        '5D': [{ interval: '1m', limit: '5000' }, { interval: '1m', limit: '2200', to: String(Math.floor(requests[0].at / M) * M - 4999 * M) }],
        '1Y': [{ interval: '1d', limit: '366' }],
      }[range];
      assertRequests(requests, { symbol: 'AAPL', range, before }, pages);
      assert.equal((await pressed(page))[range], 'true');
      assert.equal(Object.values(await pressed(page)).filter((v) => v === 'true').length, 1);
      assert.equal(await page.textContent('#chart-title'), title);
      assert.match(await page.getAttribute('#chart', 'aria-label'), label);
      assert.ok(await painted(page) > 2000, `${range}: painted`);
      assert.equal(await page.evaluate(() => window.tickstream.range), range);
    }

    // Clicking the range already shown asks for nothing.
    requests.length = 0;
    await page.click('#chart-ranges button[data-range="1D"]');
    await settle();
    assert.deepEqual(requests, []);

    // The buttons are ordinary buttons: Tab reaches them, Space and Enter press them.
    await page.focus('#chart-ranges button[data-range="1D"]');
    await page.keyboard.press('Shift+Tab');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.range), '1H');
    await page.keyboard.press('Space');
    await waitForHistoryChart(page, M);
    assert.equal((await pressed(page))['1H'], 'true');
    for (let i = 0; i < 3; i += 1) await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.range), '1Y');
    await page.keyboard.press('Enter');
    await waitForHistoryChart(page, 7 * D);
    assert.equal((await pressed(page))['1Y'], 'true');
    await done(opened);
  });

  test('the chosen range and symbol survive a reload', async () => {
    const opened = await openChart();
    const { page, requests } = opened;
    await page.click('#row-NVDA');
    await page.click('#chart-ranges button[data-range="5D"]');
    await waitForHistoryChart(page, H);

    requests.length = 0;
    const before = Date.now();
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitForHistoryChart(page, H);
    await page.waitForFunction(() => window.tickstream.client.state === 'open', null, { timeout: 5000 });
    await settle();
    assert.equal(await page.textContent('#detail-symbol'), 'NVDA');
    assert.deepEqual(await pressed(page), { '1H': 'false', '1D': 'false', '5D': 'true', '1Y': 'false' });
    assertRequests(requests, { symbol: 'NVDA', range: '5D', before }, [
      { interval: '1m', limit: '5000' },
      { interval: '1m', limit: '2200', to: String(Math.floor(requests[0].at / M) * M - 4999 * M) },
    ]);
    await done(opened);
  });

  test('against the real server: every range loads, live bars extend 1H, and 1Y\'s newest bar follows the quote', async () => {
    const opened = await openChart({ stub: false });
    const { page } = opened;
    for (const range of ['1H', '5D', '1Y', '1D']) {
      await page.click(`#chart-ranges button[data-range="${range}"]`);
      await page.waitForFunction(() => window.tickstream.historyStatus('AAPL') === 'ok'
        && document.getElementById('chart').dataset.source === 'history'
        && Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });
    }

    // 1H: the newest bar is the live one, closing at the last price.
    await page.click('#chart-ranges button[data-range="1H"]');
    await waitForHistoryChart(page, M);
    await page.waitForFunction(() => {
      const bar = window.tickstream.chartBars('AAPL').bars.at(-1);
      const q = window.tickstream.client.quotes.get('AAPL');
      return bar && q && bar.c === q.p && bar.t === Math.floor(q.t / 60_000) * 60_000;
    }, null, { timeout: 5000 });

    // 1Y: the server's newest daily bar is the day in progress; it follows the
    // quote's o/h/l/p/v as they move, without another request.
    await page.click('#chart-ranges button[data-range="1Y"]');
    await waitForHistoryChart(page, D);
    const fetchedV = await page.evaluate(() => window.tickstream.client.quotes.get('AAPL').v);
    await page.waitForFunction((v0) => {
      const bar = window.tickstream.chartBars('AAPL').bars.at(-1);
      const q = window.tickstream.client.quotes.get('AAPL');
      return q.v > v0 && bar.o === q.o && bar.h === q.h && bar.l === q.l && bar.c === q.p && bar.v === q.v;
    }, fetchedV, { timeout: 5000 });
    assert.match(await page.getAttribute('#chart', 'aria-label'), /^AAPL, the last year: 1 daily bar from [A-Z][a-z]{2} \d{1,2}, \d{4} to /);
    await done(opened);
  });
});
