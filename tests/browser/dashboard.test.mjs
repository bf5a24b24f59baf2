// End-to-end tests of the dashboard (frontend/) against the real server, in
// headless Chromium. One server and one browser for the whole file; each
// test opens its own page (and clears the watchlist it stored).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  ARTIFACTS, COMMITTED_SCREENSHOT, DEFAULT_WATCHLIST, PRICE_RE, REPO_ROOT, SCREENSHOT, UPDATE_SCREENSHOT, launchBrowser, lastPrices, openPage,
  startCspProxy, startServer, tableSymbols, waitForFilledRows, waitForPriceChanges,
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

/** A page with nothing stored, i.e. the default watchlist. */
async function freshPage(options) {
  const opened = await openPage(browser.context, `${server.url}/`, options);
  await opened.page.evaluate(() => localStorage.clear());
  await opened.page.reload({ waitUntil: 'domcontentloaded' });
  return opened;
}

async function done({ page, problems }) {
  await page.close();
  assert.deepEqual(problems, [], 'the page logged errors');
}

describe('dashboard', { timeout: 120_000 }, () => {
  test('loads, fills the default watchlist within 2 s, and prices move', async () => {
    const opened = await openPage(browser.context, null);
    const { page } = opened;
    await page.goto(`${server.url}/`, { waitUntil: 'domcontentloaded' });
    await page.evaluate(() => localStorage.clear());
    await page.reload({ waitUntil: 'domcontentloaded' });
    assert.equal(await page.title(), 'tickstream — live quotes');

    // performance.now() counts from the start of the navigation.
    const filledAt = await (await page.waitForFunction(({ n, re }) => {
      const cells = [...document.querySelectorAll('#watchlist-body tr .c-last .val')];
      const rx = new RegExp(re);
      return cells.length === n && cells.every((c) => rx.test(c.textContent)) && performance.now();
    }, { n: DEFAULT_WATCHLIST.length, re: PRICE_RE.source }, { timeout: 3000, polling: 'raf' })).jsonValue();
    assert.ok(filledAt <= 2000, `rows filled ${Math.round(filledAt)} ms after navigation start`);
    assert.deepEqual(await tableSymbols(page), DEFAULT_WATCHLIST);

    // Company names come from /api/v1/symbols.
    await page.waitForFunction(() => document.querySelector('#row-AAPL .c-name')?.textContent === 'Apple Inc.', null, { timeout: 2000 });

    // Every cell is formatted for people.
    const row = await page.$eval('#row-MSFT', (tr) => Object.fromEntries(
      ['c-last', 'c-chg', 'c-pct', 'c-bid', 'c-ask', 'c-vol', 'c-range', 'c-time'].map((c) => [c, tr.querySelector(`.${c}`).textContent]),
    ));
    assert.match(row['c-last'].replace(/^[▲▼]/, ''), PRICE_RE);
    assert.match(row['c-chg'], /^([▲▼][+−]\d{1,3}(,\d{3})*\.\d{2}|0\.00)$/, `change ${row['c-chg']}`);
    assert.match(row['c-pct'], /^([▲▼][+−]\d+\.\d{2}|0\.00)%$/, `change % ${row['c-pct']}`);
    assert.match(row['c-bid'], PRICE_RE);
    assert.match(row['c-ask'], PRICE_RE);
    assert.match(row['c-vol'], /^(\d{1,3}(,\d{3})*|\d+\.\d{2}[MBT])$/, `volume ${row['c-vol']}`);
    assert.match(row['c-range'], /^[\d,]+\.\d{2} – [\d,]+\.\d{2}$/, `range ${row['c-range']}`);
    assert.match(row['c-time'], /^\d{2}:\d{2}:\d{2}$/);

    // Direction is shown by an arrow and a sign, not only by colour.
    const dirs = await page.$$eval('#watchlist-body .c-chg', (cells) => cells.map((c) => ({
      cls: c.dataset.dir, arrow: c.querySelector('.arrow').textContent, text: c.querySelector('.val').textContent,
    })));
    for (const d of dirs) {
      if (d.cls === 'up') assert.ok(d.arrow === '▲' && d.text.startsWith('+'), JSON.stringify(d));
      if (d.cls === 'down') assert.ok(d.arrow === '▼' && d.text.startsWith('−'), JSON.stringify(d));
    }

    // Prices change, and changed cells flash.
    const before = await lastPrices(page);
    await waitForPriceChanges(page, before, { min: 3, timeoutMs: 5000 });
    await page.waitForFunction(() => document.querySelector('#watchlist-body [class*="flash-"]'), null, { timeout: 3000 });
    // Sparklines collect recent prices.
    await page.waitForFunction(() => [...document.querySelectorAll('#watchlist-body svg.spark')]
      .every((s) => Number(s.dataset.points) >= 3), null, { timeout: 5000 });
    await done(opened);
  });

  test('status bar: live over WebSocket, permessage-deflate, RTT and updates per second', async () => {
    const opened = await freshPage();
    const { page } = opened;
    await page.waitForFunction(() => document.getElementById('status-conn').dataset.state === 'open', null, { timeout: 5000 });
    assert.equal(await page.textContent('#status-conn-text'), 'Live · WebSocket');
    assert.equal(await page.getAttribute('#status-conn', 'data-transport'), 'websocket');
    assert.equal(await page.getAttribute('#status-conn', 'aria-live'), 'polite');
    // Chromium offers permessage-deflate on every socket; the client asks for
    // nothing app-level, so the server accepts the extension.
    assert.equal(await page.evaluate(() => window.tickstream.client.compression), 'permessage-deflate');
    assert.equal(await page.textContent('#status-compression'), 'On (permessage-deflate)');
    await page.waitForFunction(() => /^(<1|\d+) ms$/.test(document.getElementById('status-rtt').textContent), null, { timeout: 7000 });
    await page.waitForFunction(() => Number(document.getElementById('status-rate').textContent.replace(/,/g, '')) > 0, null, { timeout: 3000 });
    await page.waitForFunction(() => /^\d{2}:\d{2}:\d{2}$/.test(document.getElementById('status-last').textContent), null, { timeout: 3000 });
    await done(opened);
  });

  test('rendering is batched per frame and paused while the tab is hidden', async () => {
    const opened = await freshPage();
    const { page } = opened;
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);

    // Frames never outnumber the stream's quote events (coalescing).
    const s1 = await page.evaluate(() => ({ ...window.tickstream.stats }));
    await page.waitForFunction((n) => window.tickstream.stats.quoteEvents >= n + 10, s1.quoteEvents, { timeout: 5000 });
    const s2 = await page.evaluate(() => ({ ...window.tickstream.stats }));
    assert.ok(s2.frames - s1.frames <= s2.quoteEvents - s1.quoteEvents + 1,
      `frames ${s2.frames - s1.frames} vs quote events ${s2.quoteEvents - s1.quoteEvents}`);

    // Pretend the tab is hidden.
    await page.evaluate(() => {
      window.__visibility = 'hidden';
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => window.__visibility });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    // Let one frame that may already be queued run out before measuring.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const hidden = await page.evaluate(() => ({ stats: { ...window.tickstream.stats }, prices: Object.fromEntries([...document.querySelectorAll('#watchlist-body tr')].map((tr) => [tr.dataset.symbol, tr.querySelector('.c-last .val').textContent])) }));
    await page.waitForFunction((n) => window.tickstream.stats.quoteEvents >= n + 10, hidden.stats.quoteEvents, { timeout: 5000 });
    const during = await page.evaluate(() => ({ ...window.tickstream.stats }));
    assert.equal(during.frames, hidden.stats.frames, 'no frame is rendered while hidden');
    assert.equal(during.rowRenders, hidden.stats.rowRenders, 'no row is rendered while hidden');
    assert.deepEqual(await lastPrices(page), hidden.prices, 'the table does not change while hidden');

    // Back to visible: one catch-up frame brings every row up to date.
    await page.evaluate(() => {
      window.__visibility = 'visible';
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await page.waitForFunction(() => {
      const fmt = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      return [...document.querySelectorAll('#watchlist-body tr')].every((tr) => {
        const q = window.tickstream.client.quotes.get(tr.dataset.symbol);
        return q && tr.querySelector('.c-last .val').textContent === fmt.format(q.p);
      });
    }, null, { timeout: 3000, polling: 'raf' });
    const afterStats = await page.evaluate(() => ({ ...window.tickstream.stats }));
    assert.ok(afterStats.frames > during.frames);
    await done(opened);
  });

  test('selecting a row (click or keyboard) shows the intraday chart', async () => {
    const opened = await freshPage();
    const { page } = opened;
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);

    await page.click('#row-NVDA .c-name');
    await page.waitForFunction(() => document.getElementById('detail').dataset.state === 'selected', null, { timeout: 2000 });
    assert.equal(await page.textContent('#detail-symbol'), 'NVDA');
    assert.equal(await page.getAttribute('#row-NVDA', 'aria-current'), 'true');
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });
    // The canvas really has something drawn on it.
    const painted = await page.$eval('#chart', (c) => {
      const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n += 1;
      return n;
    });
    assert.ok(painted > 500, `only ${painted} painted pixels`);
    assert.match(await page.getAttribute('#chart', 'aria-label'), /^NVDA, the last 24 hours: \d+ 1-minute bars? from \d{2}:\d{2} to \d{2}:\d{2}, last /);
    assert.match(await page.textContent('#stat-pc'), PRICE_RE);
    // The chart's data comes from history (200) or the live stream (404).
    const source = await page.getAttribute('#chart', 'data-source');
    const status = await page.evaluate(() => window.tickstream.historyStatus('NVDA'));
    assert.ok((source === 'history' && status === 'ok') || (source === 'live' && status !== 'ok'), `${source} / ${status}`);

    // Keyboard: focus a row, Enter selects it; Space selects another.
    await page.focus('#row-MSFT');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => window.tickstream.selected === 'MSFT', null, { timeout: 2000 });
    assert.equal(await page.textContent('#detail-symbol'), 'MSFT');
    await page.keyboard.press('ArrowDown'); // focus moves to NVDA
    assert.equal(await page.evaluate(() => document.activeElement.dataset.symbol), 'NVDA');
    await page.keyboard.press(' ');
    await page.waitForFunction(() => window.tickstream.selected === 'NVDA', null, { timeout: 2000 });

    // The close button empties the panel again.
    await page.click('#detail-close');
    assert.equal(await page.getAttribute('#detail', 'data-state'), 'empty');
    await done(opened);
  });

  test('the chart opens on the first watchlist symbol, and on the last chosen one after a reload', async () => {
    const opened = await freshPage();
    const { page } = opened;
    // Nothing chosen yet: the watchlist's first symbol, without a click.
    await page.waitForFunction(() => document.getElementById('detail').dataset.state === 'selected', null, { timeout: 2000 });
    assert.equal(await page.textContent('#detail-symbol'), DEFAULT_WATCHLIST[0]);
    assert.equal(await page.getAttribute(`#row-${DEFAULT_WATCHLIST[0]}`, 'aria-current'), 'true');
    assert.equal(await page.isVisible('#detail-empty'), false);
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });

    // The last chosen symbol comes back after a reload.
    await page.click('#row-META');
    await page.waitForFunction(() => window.tickstream.selected === 'META', null, { timeout: 2000 });
    await page.reload({ waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => window.tickstream.selected === 'META', null, { timeout: 2000 });
    assert.equal(await page.textContent('#detail-symbol'), 'META');
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });

    // A chosen symbol that left the watchlist falls back to the first one.
    await page.click('#row-META button.remove');
    await page.reload({ waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => window.tickstream.selected === 'AAPL', null, { timeout: 2000 });
    await page.evaluate(() => localStorage.clear());
    await done(opened);
  });

  test('chart uses server history when the history endpoint answers 200', async () => {
    const opened = await freshPage();
    const { page } = opened;
    const now = Date.now();
    const minute = 60_000;
    const start = Math.floor(now / minute) * minute - 44 * minute;
    const bars = Array.from({ length: 45 }, (_, i) => {
      const o = 189 + Math.sin(i / 5);
      const c = o + (i % 3 === 0 ? -0.2 : 0.25);
      return { t: start + i * minute, o, h: Math.max(o, c) + 0.1, l: Math.min(o, c) - 0.1, c, v: 1000 + i * 10 };
    });
    let asked = null;
    await page.route('**/api/v1/history/**', (route) => {
      asked = route.request().url();
      return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ s: 'AAPL', interval: '1m', bars }) });
    });
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
    await page.click('#row-AAPL');
    await page.waitForFunction(() => document.getElementById('chart').dataset.source === 'history', null, { timeout: 5000 });
    const u = new URL(asked);
    assert.equal(u.pathname, '/api/v1/history/AAPL');
    assert.equal(u.searchParams.get('interval'), '1m');
    assert.ok(Number(u.searchParams.get('limit')) > 0);
    assert.ok(Number(await page.getAttribute('#chart', 'data-bars')) >= 45);
    assert.match(await page.textContent('#chart-source'), /Server history/);
    await done(opened);
  });

  test('chart falls back to live 1-minute bars when the history endpoint answers 404', async () => {
    const opened = await freshPage();
    const { page } = opened;
    await page.route('**/api/v1/history/**', (route) => route.fulfill({
      status: 404,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'not_found', message: 'no such route' } }),
    }));
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
    await page.focus('#row-TSLA');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => window.tickstream.historyStatus('TSLA') === 'unavailable', null, { timeout: 5000 });
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });
    assert.equal(await page.getAttribute('#chart', 'data-source'), 'live');
    assert.match(await page.textContent('#chart-source'), /live stream/);
    // The live bar follows the stream: its close is the current last price.
    const [bar, p] = await page.evaluate(() => [window.tickstream.chartBars('TSLA').bars.at(-1), window.tickstream.client.quotes.get('TSLA').p]);
    assert.ok(bar.l <= bar.c && bar.c <= bar.h && bar.l <= bar.o && bar.o <= bar.h, JSON.stringify(bar));
    assert.equal(bar.c, p);
    await done(opened);
  });

  test('a symbol is added with the search box, removed with its button, and the order survives a reload', async () => {
    const opened = await freshPage();
    const { page } = opened;
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);

    // Type-ahead by company name; pick with the keyboard.
    await page.click('#search-input');
    await page.keyboard.type('netfl');
    await page.waitForSelector('#search-results [role="option"][data-symbol="NFLX"]', { timeout: 3000 });
    assert.equal(await page.getAttribute('#search-input', 'aria-expanded'), 'true');
    assert.equal(await page.getAttribute('#search-input', 'aria-activedescendant'), 'opt-0');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#row-NFLX', { timeout: 2000 });
    assert.equal(await page.inputValue('#search-input'), '');
    assert.equal(await page.getAttribute('#search-input', 'aria-expanded'), 'false');
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length + 1, 3000);
    await page.waitForFunction(() => /Added NFLX/.test(document.getElementById('announcer').textContent), null, { timeout: 2000 });

    // Type-ahead by ticker; pick with the mouse.
    await page.fill('#search-input', 'orc');
    await page.click('#search-results [role="option"][data-symbol="ORCL"]');
    await page.waitForSelector('#row-ORCL', { timeout: 2000 });

    const expected = [...DEFAULT_WATCHLIST, 'NFLX', 'ORCL'];
    assert.deepEqual(await tableSymbols(page), expected);
    assert.deepEqual(await page.evaluate(() => window.tickstream.client.symbols), [...expected].sort());

    // Remove one with its button, another with the Delete key.
    await page.click('#row-MSFT button[aria-label="Remove MSFT"]');
    await page.waitForSelector('#row-MSFT', { state: 'detached', timeout: 2000 });
    await page.focus('#row-META');
    await page.keyboard.press('Delete');
    await page.waitForSelector('#row-META', { state: 'detached', timeout: 2000 });
    // Focus moved on to the next row, so the keyboard user is not lost.
    assert.equal(await page.evaluate(() => document.activeElement.dataset.symbol), 'TSLA');
    // Reorder with Alt+ArrowUp.
    await page.keyboard.press('Alt+ArrowUp');
    const afterEdit = ['AAPL', 'NVDA', 'AMZN', 'TSLA', 'GOOGL', 'JPM', 'NFLX', 'ORCL'];
    assert.deepEqual(await tableSymbols(page), afterEdit);
    await page.waitForFunction(() => !window.tickstream.client.symbols.includes('MSFT') && !window.tickstream.client.symbols.includes('META'), null, { timeout: 2000 });

    // The order survives a reload.
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitForFilledRows(page, afterEdit.length, 3000);
    assert.deepEqual(await tableSymbols(page), afterEdit);

    // An empty list stays empty (it does not fall back to the default).
    for (const s of afterEdit) await page.click(`#row-${s.replace('.', '\\.')} button.remove`);
    assert.equal(await page.isVisible('#watchlist-empty'), true);
    await page.reload({ waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => window.tickstream.client.state === 'open', null, { timeout: 5000 });
    assert.deepEqual(await tableSymbols(page), []);
    assert.equal(await page.isVisible('#watchlist-empty'), true);
    await page.evaluate(() => localStorage.clear());
    await done(opened);
  });

  test('the page runs under a strict Content-Security-Policy without inline code', async () => {
    // Static check of the markup: no inline script, style attribute or handler.
    const html = await readFile(path.join(REPO_ROOT, 'frontend/index.html'), 'utf8');
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'inline <script>');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'style attribute');
    assert.doesNotMatch(html, /<style/i, '<style> element');
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'inline event handler');

    // 'self' only: no 'unsafe-inline', no 'unsafe-eval'; the WebSocket goes
    // to the page's own origin, which connect-src 'self' covers.
    const csp = [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; ');
    const proxy = await startCspProxy(server.port, csp);
    const { page, problems } = await openPage(browser.context, null);
    try {
      await page.addInitScript(() => {
        window.__csp = [];
        document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
      });
      const res = await page.goto(`${proxy.url}/`, { waitUntil: 'domcontentloaded' });
      assert.equal(res.headers()['content-security-policy'], csp);
      await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
      await page.click('#row-AAPL');
      await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });
      await page.waitForFunction(() => document.querySelector('#watchlist-body [class*="flash-"]'), null, { timeout: 3000 });
      assert.equal(await page.evaluate(() => window.tickstream.client.compression), 'permessage-deflate');
      assert.deepEqual(await page.evaluate(() => window.__csp), []);
      await done({ page, problems });
    } finally {
      await proxy.close();
    }
  });

  test('fits a phone (375 px): less important columns are hidden, nothing scrolls sideways', async () => {
    const opened = await freshPage({ viewport: { width: 375, height: 740 } });
    const { page } = opened;
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
    const layout = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      tableRight: document.getElementById('watchlist').getBoundingClientRect().right,
      hidden: ['c-name', 'c-bid', 'c-ask', 'c-vol', 'c-range', 'c-time', 'c-chg']
        .filter((c) => getComputedStyle(document.querySelector(`#row-AAPL .${c}`)).display === 'none'),
      shown: ['c-sym', 'c-last', 'c-pct', 'c-act']
        .filter((c) => getComputedStyle(document.querySelector(`#row-AAPL .${c}`)).display !== 'none'),
    }));
    assert.ok(layout.scrollWidth <= 375, `page is ${layout.scrollWidth} px wide`);
    assert.ok(layout.tableRight <= 375, `table ends at ${layout.tableRight} px`);
    assert.deepEqual(layout.hidden, ['c-name', 'c-bid', 'c-ask', 'c-vol', 'c-range', 'c-time', 'c-chg']);
    assert.deepEqual(layout.shown, ['c-sym', 'c-last', 'c-pct', 'c-act']);
    // The company name moves under the symbol.
    await page.waitForFunction(() => document.querySelector('#row-AAPL .sub-name').offsetHeight > 0, null, { timeout: 3000 });
    await page.click('#row-AAPL');
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth) <= 375);
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
    await done(opened);
  });

  test('screenshot of the running dashboard, light and dark', async () => {
    const opened = await freshPage({ viewport: { width: 1280, height: 800 } });
    const { page } = opened;
    await waitForFilledRows(page, DEFAULT_WATCHLIST.length, 3000);
    await page.click('#row-AAPL');
    // Let the sparklines collect a useful history and the RTT arrive.
    await page.waitForFunction(() => [...document.querySelectorAll('#watchlist-body svg.spark')]
      .every((s) => Number(s.dataset.points) >= 25), null, { timeout: 15_000 });
    await page.waitForFunction(() => /ms$/.test(document.getElementById('status-rtt').textContent), null, { timeout: 7000 });
    await page.waitForFunction(() => Number(document.getElementById('chart').dataset.bars) >= 1, null, { timeout: 5000 });
    await page.mouse.move(0, 0);
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    const png = await readFile(SCREENSHOT);
    assert.equal(png.readUInt32BE(16), 1280, 'screenshot width');
    assert.equal(png.readUInt32BE(20), 800, 'screenshot height');
    // The committed one (README) changes only when asked for.
    if (UPDATE_SCREENSHOT) await writeFile(COMMITTED_SCREENSHOT, png);

    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForFunction(() => getComputedStyle(document.body).backgroundColor !== 'rgb(243, 245, 248)', null, { timeout: 2000 });
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-dark.png') });
    await done(opened);
  });
});
