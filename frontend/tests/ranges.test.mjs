// Unit tests of ranges.js: what each chart range asks the history API for,
// paging back through `more`, and joining a refresh to the bars held. The
// server is played by a fake that follows docs/PROTOCOL.md §12.1.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_RANGE, PAGE_LIMIT, RANGES, barsInRange, fetchRange, parseRange, rangeStart, spliceRefresh,
} from '../ranges.js';

const M = 60_000;
const H = 60 * M;
const D = 24 * H;
const NOW = Date.UTC(2025, 10, 25, 15, 30, 12, 345);

/** A bar at `t` whose prices say when it is, so order mistakes show. */
const bar = (t) => ({ t, o: t / M, h: t / M + 1, l: t / M - 1, c: t / M, v: 10 });

/**
 * The history endpoint over `stored` bars: the newest `limit` of those with
 * from <= t < to, oldest first, and `more` when older ones were left out.
 * Records every query it gets.
 */
function fakeServer(stored) {
  const queries = [];
  async function getPage(query) {
    queries.push(Object.fromEntries(query));
    const from = Number(query.get('from') ?? -Infinity);
    const to = Number(query.get('to') ?? Infinity);
    const limit = Math.min(PAGE_LIMIT, Number(query.get('limit') ?? 1000));
    const all = stored.filter((b) => b.t >= from && b.t < to);
    return { s: 'AAPL', interval: query.get('interval'), bars: all.slice(-limit), more: all.length > limit };
  }
  return { getPage, queries };
}

/** One bar every `stepMs` from `start` up to and including `end`. */
function every(stepMs, start, end) {
  const out = [];
  for (let t = Math.ceil(start / stepMs) * stepMs; t <= end; t += stepMs) out.push(bar(t));
  return out;
}

test('parseRange: the four ranges by id; anything else is the default (1D)', () => {
  assert.deepEqual(Object.keys(RANGES), ['1H', '1D', '5D', '1Y']);
  for (const id of Object.keys(RANGES)) assert.equal(parseRange(id).id, id);
  assert.equal(DEFAULT_RANGE.id, '1D');
  for (const bad of [null, undefined, '', '1d', '1W', 'toString', '__proto__', 5]) assert.equal(parseRange(bad), DEFAULT_RANGE, String(bad));
});

test('1H, 1D and 1Y are one request each: interval, from = now - span, limit = bars the span holds', async () => {
  const expected = {
    '1H': { interval: '1m', from: String(NOW - H), limit: '60' },
    '1D': { interval: '1m', from: String(NOW - D), limit: '1440' },
    '1Y': { interval: '1d', from: String(NOW - 366 * D), limit: '366' },
  };
  for (const [id, query] of Object.entries(expected)) {
    const range = RANGES[id];
    const stored = every(range.barMs, NOW - 400 * D, NOW);
    const server = fakeServer(stored);
    const bars = await fetchRange(server.getPage, range, { now: NOW });
    assert.deepEqual(server.queries, [query], id);
    assert.deepEqual(bars, stored.filter((b) => b.t >= NOW - range.spanMs), id);
  }
});

test('5D follows `more` back: two pages for 7,200 one-minute bars, oldest first, none twice', async () => {
  const stored = every(M, NOW - 14 * D, NOW);
  const server = fakeServer(stored);
  const bars = await fetchRange(server.getPage, RANGES['5D'], { now: NOW });
  const from = String(NOW - 5 * D);
  const window = stored.filter((b) => b.t >= NOW - 5 * D);
  assert.equal(window.length, 7200);
  assert.deepEqual(server.queries, [
    { interval: '1m', from, limit: '5000' },
    { interval: '1m', from, limit: '2200', to: String(window[2200].t) },
  ]);
  assert.deepEqual(bars, window);
});

test('5D with gaps (nights, weekends) is one request when one page holds the range', async () => {
  // 6.5 trading hours a day: about 1,950 bars in five days.
  const stored = every(M, NOW - 14 * D, NOW).filter((b) => new Date(b.t).getUTCHours() >= 14 && new Date(b.t).getUTCHours() < 21);
  const server = fakeServer(stored);
  const bars = await fetchRange(server.getPage, RANGES['5D'], { now: NOW });
  assert.equal(server.queries.length, 1);
  assert.deepEqual(bars, stored.filter((b) => b.t >= NOW - 5 * D));
});

test('paging is bounded: a server that always says `more` gets no more requests than the range can fill', async () => {
  const requests = [];
  const endless = async (query) => {
    requests.push(Object.fromEntries(query));
    const to = Number(query.get('to') ?? NOW);
    const n = Number(query.get('limit'));
    return { bars: Array.from({ length: n }, (_, i) => bar(to - (n - i) * M)), more: true };
  };
  const bars = await fetchRange(endless, RANGES['5D'], { now: NOW });
  assert.equal(requests.length, 2);
  assert.equal(bars.length, 7200);
  const hour = await fetchRange(endless, RANGES['1H'], { now: NOW });
  assert.equal(hour.length, 60);
  assert.equal(requests.length, 3, '1H: one request');
  // An empty page ends paging even with `more`.
  let asked = 0;
  const empty = async () => { asked += 1; return { bars: [], more: true }; };
  assert.deepEqual(await fetchRange(empty, RANGES['5D'], { now: NOW }), []);
  assert.equal(asked, 1);
});

test('a refresh asks only from `since` on', async () => {
  const stored = every(M, NOW - 2 * D, NOW);
  const server = fakeServer(stored);
  const since = NOW - 3 * M - 12_345;
  const bars = await fetchRange(server.getPage, RANGES['5D'], { now: NOW, since });
  assert.deepEqual(server.queries, [{ interval: '1m', from: String(since), limit: '5000' }]);
  assert.deepEqual(bars, stored.filter((b) => b.t >= since));
});

test('fetchRange rejects what is not a history reply, and passes on a failed request', async () => {
  await assert.rejects(fetchRange(async () => ({ error: { code: 'not_found' } }), RANGES['1H'], { now: NOW }), /no bars/);
  const failed = Object.assign(new Error('HTTP 404'), { status: 404 });
  await assert.rejects(fetchRange(async () => { throw failed; }, RANGES['1H'], { now: NOW }), (err) => err === failed);
});

test('spliceRefresh replaces the held bars from `since` on and drops those out of the range', () => {
  const held = [bar(1 * M), bar(2 * M), bar(3 * M), bar(4 * M)];
  const grown = { ...bar(4 * M), h: 999, v: 50 };
  assert.deepEqual(spliceRefresh(held, [grown, bar(5 * M)], 4 * M, 2 * M), [bar(2 * M), bar(3 * M), grown, bar(5 * M)]);
  assert.deepEqual(spliceRefresh(held, [], 4 * M, 0), held.slice(0, 3), 'the server no longer has the newest bar');
});

test('barsInRange keeps the bars from now - span on', () => {
  const bars = [bar(NOW - 2 * H), bar(NOW - H - 1), bar(NOW - H), bar(NOW - M)];
  assert.equal(rangeStart(RANGES['1H'], NOW), NOW - H);
  assert.deepEqual(barsInRange(bars, RANGES['1H'], NOW), bars.slice(2));
  assert.equal(barsInRange(bars.slice(2), RANGES['1H'], NOW).length, 2);
  assert.deepEqual(barsInRange(bars.slice(0, 2), RANGES['1H'], NOW), []);
  assert.deepEqual(barsInRange([], RANGES['1H'], NOW), []);
});
