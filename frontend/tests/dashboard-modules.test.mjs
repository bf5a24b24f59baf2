// Unit tests of the dashboard's pure modules: format.js, bars.js,
// watchlist.js and chart.js's layout helpers. (The page itself is tested in
// a real browser by tests/browser/.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MINUS, MISSING, arrow, direction, formatChange, formatDate, formatDuration, formatInteger, formatMonth, formatPercent,
  formatPrice, formatRange, formatTime, formatVolume, priceDecimals,
} from '../format.js';
import {
  BarBuilder, PriceSamples, aggregateBars, bucketStart, followQuote, mergeBars, parseHistory, sparklinePoints,
} from '../bars.js';
import {
  CHART_KEY, DEFAULT_WATCHLIST, STORAGE_KEY, isSymbolLike, loadChartChoice, loadWatchlist, moveSymbol, openingSymbol,
  saveChartChoice, saveWatchlist, searchSymbols,
} from '../watchlist.js';
import { axisTicks, fitStep, formatBarTime, layoutSlots, maxSlots, niceStep, stepName } from '../chart.js';

const L = 'en-US';

// --- format.js --------------------------------------------------------------

test('prices: separators, 2 decimals from 1 up, 4 below', () => {
  assert.equal(formatPrice(1398.56, L), '1,398.56');
  assert.equal(formatPrice(189.1, L), '189.10');
  assert.equal(formatPrice(190, L), '190.00');
  assert.equal(formatPrice(1, L), '1.00');
  assert.equal(formatPrice(0.51234, L), '0.5123');
  assert.equal(formatPrice(0.5, L), '0.5000');
  assert.equal(formatPrice(1234567.891, L), '1,234,567.89');
  assert.equal(priceDecimals(0.99), 4);
  assert.equal(priceDecimals(1), 2);
  for (const bad of [undefined, null, NaN, Infinity, '1']) assert.equal(formatPrice(bad, L), MISSING);
});

test('changes are signed, with a real minus, and use the decimals of their price', () => {
  assert.equal(formatChange(0.2, 189.32, L), '+0.20');
  assert.equal(formatChange(-0.13, 415.13, L), `${MINUS}0.13`);
  assert.equal(formatChange(-1234.5, 5000, L), `${MINUS}1,234.50`);
  assert.equal(formatChange(0.0412, 0.51, L), '+0.0412');
  assert.equal(formatChange(0, 10, L), '0.00');
  assert.equal(formatChange(-0.001, 10, L), '0.00', 'rounds to zero: no sign');
  assert.equal(formatChange(undefined, 10, L), MISSING);
});

test('percent: signed, 2 decimals', () => {
  assert.equal(formatPercent(0.11, L), '+0.11%');
  assert.equal(formatPercent(-1.5, L), `${MINUS}1.50%`);
  assert.equal(formatPercent(0, L), '0.00%');
  assert.equal(formatPercent(12345.678, L), '+12,345.68%');
  assert.equal(formatPercent(undefined, L), MISSING);
});

test('volume: separated below a million, compact above', () => {
  assert.equal(formatVolume(0, L), '0');
  assert.equal(formatVolume(45678, L), '45,678');
  assert.equal(formatVolume(999999, L), '999,999');
  assert.equal(formatVolume(1_234_567, L), '1.23M');
  assert.equal(formatVolume(4_500_000_000, L), '4.50B');
  assert.equal(formatVolume(undefined, L), MISSING);
  assert.equal(formatInteger(1800, L), '1,800');
});

test('range, time, duration, direction', () => {
  assert.equal(formatRange(186.51, 1189.32, L), '186.51 – 1,189.32');
  assert.equal(formatRange(undefined, 1, L), MISSING);
  const t = Date.UTC(2025, 10, 25, 14, 3, 9);
  assert.equal(formatTime(t, { locale: L, timeZone: 'UTC' }), '14:03:09');
  assert.equal(formatTime(t, { locale: L, timeZone: 'UTC', seconds: false }), '14:03');
  assert.equal(formatTime(Date.UTC(2025, 0, 1, 0, 5), { locale: L, timeZone: 'UTC' }), '00:05:00', '24-hour clock');
  assert.equal(formatTime(undefined), MISSING);
  assert.equal(formatDate(t, { locale: L, timeZone: 'UTC' }), 'Nov 25');
  assert.equal(formatDate(t, { locale: L, timeZone: 'UTC', year: true }), 'Nov 25, 2025');
  assert.equal(formatDate(Date.UTC(2025, 10, 25), { locale: L, timeZone: 'UTC' }), 'Nov 25', "a daily bar's t, read in UTC");
  assert.equal(formatMonth(t, { locale: L, timeZone: 'UTC' }), 'Nov');
  assert.equal(formatMonth(Date.UTC(2026, 0, 1), { locale: L, timeZone: 'UTC', year: true }), '2026');
  assert.equal(formatDate(undefined), MISSING);
  assert.equal(formatDuration(0.4), '<1 ms');
  assert.equal(formatDuration(12.4), '12 ms');
  assert.equal(formatDuration(1500), '1.5 s');
  assert.equal(formatDuration(null), MISSING);
  assert.equal(direction(0.01), 1);
  assert.equal(direction(-3), -1);
  assert.equal(direction(0), 0);
  assert.equal(direction(NaN), 0);
  assert.equal(arrow(1), '▲');
  assert.equal(arrow(-1), '▼');
  assert.equal(arrow(0), '');
});

// --- bars.js ----------------------------------------------------------------

const M = 60_000;

test('BarBuilder: OHLC per minute, volume from the rise of cumulative v', () => {
  const b = new BarBuilder();
  assert.equal(b.update({ s: 'X', pc: 10 }), false, 'no trade price yet');
  assert.equal(b.update({ p: 10, v: 1000, t: 5 * M + 1 }), true);
  assert.deepEqual(b.bars, [{ t: 5 * M, o: 10, h: 10, l: 10, c: 10, v: 0 }], 'first quote only sets the volume baseline');
  b.update({ p: 10.5, v: 1100, t: 5 * M + 2 });
  b.update({ p: 9.8, v: 1150, t: 5 * M + 3 });
  b.update({ p: 10.1, v: 1200, t: 5 * M + 59_999 });
  assert.deepEqual(b.bars, [{ t: 5 * M, o: 10, h: 10.5, l: 9.8, c: 10.1, v: 200 }]);
  b.update({ p: 10.2, v: 1300, t: 6 * M });
  assert.deepEqual(b.bars[1], { t: 6 * M, o: 10.2, h: 10.2, l: 10.2, c: 10.2, v: 100 });
  assert.equal(b.volumeAt(5 * M), 200);
  assert.equal(b.volumeAt(7 * M), 0);
  const v = b.version;
  assert.equal(b.update({ p: 10.2, v: 1300, t: 6 * M }), false, 'an identical quote changes nothing');
  assert.equal(b.version, v);
});

test('BarBuilder: a volume drop (new session, restarted server) resets the baseline', () => {
  const b = new BarBuilder();
  b.update({ p: 10, v: 5000, t: M });
  b.update({ p: 10, v: 5100, t: M + 1 });
  b.update({ p: 11, v: 40, t: M + 2 });
  assert.equal(b.bars[0].v, 100);
  b.update({ p: 11, v: 90, t: M + 3 });
  assert.equal(b.bars[0].v, 150);
});

test('BarBuilder: time going backwards starts over; the bar count is capped', () => {
  const b = new BarBuilder({ maxBars: 3 });
  for (let i = 0; i < 5; i += 1) b.update({ p: 10 + i, v: i, t: i * M });
  assert.deepEqual(b.bars.map((x) => x.t), [2 * M, 3 * M, 4 * M]);
  b.update({ p: 1, v: 0, t: M });
  assert.deepEqual(b.bars, [{ t: M, o: 1, h: 1, l: 1, c: 1, v: 0 }]);
});

test('parseHistory keeps valid bars, sorted and unique; rejects other shapes', () => {
  assert.equal(parseHistory(null), null);
  assert.equal(parseHistory({ error: { code: 'not_found' } }), null);
  const bars = parseHistory({
    s: 'AAPL',
    interval: '1m',
    bars: [
      { t: 2 * M, o: 2, h: 3, l: 1, c: 2.5, v: 10 },
      { t: M, o: 1, h: 1, l: 1, c: 1 },
      { t: 3 * M, o: 'x', h: 1, l: 1, c: 1, v: 1 },
      null,
    ],
  });
  assert.deepEqual(bars, [{ t: M, o: 1, h: 1, l: 1, c: 1, v: 0 }, { t: 2 * M, o: 2, h: 3, l: 1, c: 2.5, v: 10 }]);
});

test('mergeBars: history first, the live bar of its last minute extends it, later live bars follow', () => {
  const hist = [{ t: M, o: 1, h: 2, l: 1, c: 2, v: 10 }, { t: 2 * M, o: 2, h: 3, l: 2, c: 3, v: 20 }];
  const live = [
    { t: M, o: 9, h: 9, l: 9, c: 9, v: 99 }, // older than the last history bar: ignored
    { t: 2 * M, o: 2.5, h: 3.5, l: 1.5, c: 3.2, v: 7 },
    { t: 3 * M, o: 3.2, h: 3.3, l: 3.1, c: 3.3, v: 4 },
  ];
  assert.deepEqual(mergeBars(hist, live, 5), [
    hist[0],
    { t: 2 * M, o: 2, h: 3.5, l: 1.5, c: 3.2, v: 22 },
    live[2],
  ]);
  assert.deepEqual(mergeBars([], live), live);
  assert.deepEqual(mergeBars(hist, []), hist);
});

const DAY = 24 * 60 * M;

test('bucketStart: multiples of the step since the epoch; weeks start on Mondays', () => {
  const t = Date.UTC(2025, 10, 27, 14, 37, 12); // a Thursday
  assert.equal(bucketStart(t, 15 * M), Date.UTC(2025, 10, 27, 14, 30));
  assert.equal(bucketStart(t, 4 * 60 * M), Date.UTC(2025, 10, 27, 12, 0));
  assert.equal(bucketStart(t, DAY), Date.UTC(2025, 10, 27));
  assert.equal(bucketStart(t, 7 * DAY), Date.UTC(2025, 10, 24), 'the Monday before');
  assert.equal(bucketStart(Date.UTC(2025, 10, 24), 7 * DAY), Date.UTC(2025, 10, 24), 'a Monday is its own week');
});

test('aggregateBars: first open, extremes, last close, summed volume; a lone bar is kept as it is', () => {
  const bars = [
    { t: 0, o: 10, h: 11, l: 9, c: 10.5, v: 100 },
    { t: M, o: 10.5, h: 12, l: 10, c: 11, v: 50 },
    { t: 4 * M, o: 11, h: 11.5, l: 8, c: 9, v: 25 },
    { t: 7 * M, o: 9, h: 9, l: 9, c: 9, v: 1 },
  ];
  const five = aggregateBars(bars, 5 * M);
  assert.deepEqual(five, [{ t: 0, o: 10, h: 12, l: 8, c: 9, v: 175 }, { t: 5 * M, o: 9, h: 9, l: 9, c: 9, v: 1 }]);
  assert.deepEqual(aggregateBars(bars, M), bars);
  assert.equal(aggregateBars(bars, M)[0], bars[0], 'no copy when nothing is combined');
  assert.deepEqual(aggregateBars([], 5 * M), []);
});

test('followQuote: the day in progress follows the quote; yesterday\'s bar never takes today\'s values', () => {
  const day = Date.UTC(2025, 10, 25);
  const bars = [{ t: day - DAY, o: 9, h: 10, l: 8, c: 9.5, v: 1000 }, { t: day, o: 10, h: 10.4, l: 9.9, c: 10.2, v: 500 }];
  const quote = { o: 10, h: 10.6, l: 9.8, p: 10.5, v: 700 };
  const followed = followQuote(bars, quote);
  assert.deepEqual(followed, [bars[0], { t: day, o: 10, h: 10.6, l: 9.8, c: 10.5, v: 700 }]);
  assert.deepEqual(bars[1], { t: day, o: 10, h: 10.4, l: 9.9, c: 10.2, v: 500 }, 'the held bars are not changed');
  // A new trading day whose bar is not fetched yet: another open, or less volume.
  assert.equal(followQuote(bars, { ...quote, o: 10.5 }), bars);
  assert.equal(followQuote(bars, { ...quote, v: 20 }), bars);
  assert.equal(followQuote(bars, { ...quote, h: 10.3 }), bars, 'a high below the bar\'s');
  // Right after the rollover the quote has no o/h/l.
  assert.equal(followQuote(bars, { p: 10.5, v: 0 }), bars);
  assert.equal(followQuote(bars, undefined), bars);
  assert.deepEqual(followQuote([], quote), []);
});

test('PriceSamples: one sample per change, at most one per interval, capped', () => {
  const s = new PriceSamples({ capacity: 3, minIntervalMs: 100 });
  assert.equal(s.push(undefined, 0), false);
  assert.equal(s.push(10, 0), true);
  assert.equal(s.push(10, 500), false, 'unchanged price');
  s.push(11, 500);
  s.push(12, 550); // within the interval: replaces 11
  assert.deepEqual(s.values, [10, 12]);
  s.push(13, 700);
  s.push(14, 900);
  assert.deepEqual(s.values, [12, 13, 14]);
  s.clear();
  assert.deepEqual(s.values, []);
});

test('sparklinePoints scales into the box; a flat series runs through the middle', () => {
  assert.equal(sparklinePoints([1], 100, 20), '');
  assert.equal(sparklinePoints([1, 3, 2], 100, 20, 2), '0.0,18.0 50.0,2.0 100.0,10.0');
  assert.equal(sparklinePoints([5, 5], 10, 20), '0.0,10.0 10.0,10.0');
});

// --- watchlist.js -----------------------------------------------------------

function memoryStorage(initial = {}) {
  const data = new Map(Object.entries(initial));
  return {
    data,
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => data.set(k, String(v)),
  };
}

test('watchlist: default when nothing is stored, stored order otherwise, empty stays empty', () => {
  assert.deepEqual(loadWatchlist(memoryStorage()), [...DEFAULT_WATCHLIST]);
  assert.deepEqual(loadWatchlist(null), [...DEFAULT_WATCHLIST]);
  const st = memoryStorage();
  assert.equal(saveWatchlist(st, ['TSLA', 'AAPL']), true);
  assert.equal(st.data.get(STORAGE_KEY), '{"symbols":["TSLA","AAPL"]}');
  assert.deepEqual(loadWatchlist(st), ['TSLA', 'AAPL']);
  saveWatchlist(st, []);
  assert.deepEqual(loadWatchlist(st), []);
});

test('watchlist: corrupt or hostile stored values are cleaned up', () => {
  assert.deepEqual(loadWatchlist(memoryStorage({ [STORAGE_KEY]: 'not json' })), [...DEFAULT_WATCHLIST]);
  assert.deepEqual(loadWatchlist(memoryStorage({ [STORAGE_KEY]: '{"x":1}' })), [...DEFAULT_WATCHLIST]);
  assert.deepEqual(
    loadWatchlist(memoryStorage({ [STORAGE_KEY]: JSON.stringify({ symbols: ['aapl', 'AAPL', ' brk.b ', 'A$', 7, '<img>'] }) })),
    ['AAPL', 'BRK.B'],
  );
  assert.deepEqual(loadWatchlist(memoryStorage({ [STORAGE_KEY]: '["msft","nvda"]' })), ['MSFT', 'NVDA'], 'a bare array works too');
  const throwing = { getItem() { throw new Error('SecurityError'); }, setItem() { throw new Error('QuotaExceededError'); } };
  assert.deepEqual(loadWatchlist(throwing), [...DEFAULT_WATCHLIST]);
  assert.equal(saveWatchlist(throwing, ['AAPL']), false);
});

test('chart choice: stored and read back; anything unusable reads as nothing chosen', () => {
  const st = memoryStorage();
  assert.deepEqual(loadChartChoice(st), { symbol: null, range: null });
  assert.equal(saveChartChoice(st, { symbol: 'NVDA', range: '5D' }), true);
  assert.equal(st.data.get(CHART_KEY), '{"symbol":"NVDA","range":"5D"}');
  assert.deepEqual(loadChartChoice(st), { symbol: 'NVDA', range: '5D' });
  assert.deepEqual(loadChartChoice(memoryStorage({ [CHART_KEY]: 'not json' })), { symbol: null, range: null });
  assert.deepEqual(loadChartChoice(memoryStorage({ [CHART_KEY]: '{"symbol":"A$","range":7}' })), { symbol: null, range: null });
  assert.deepEqual(loadChartChoice(memoryStorage({ [CHART_KEY]: '{"symbol":" brk.b "}' })), { symbol: 'BRK.B', range: null });
  const throwing = { getItem() { throw new Error('SecurityError'); }, setItem() { throw new Error('QuotaExceededError'); } };
  assert.deepEqual(loadChartChoice(throwing), { symbol: null, range: null });
  assert.equal(saveChartChoice(throwing, { symbol: 'AAPL', range: '1D' }), false);
  assert.equal(saveChartChoice(null, { symbol: 'AAPL', range: '1D' }), false);
});

test('openingSymbol: the last chosen while still listed, else the first, else none', () => {
  assert.equal(openingSymbol('MSFT', ['AAPL', 'MSFT']), 'MSFT');
  assert.equal(openingSymbol('TSLA', ['AAPL', 'MSFT']), 'AAPL', 'chosen symbol was removed since');
  assert.equal(openingSymbol(null, ['AAPL', 'MSFT']), 'AAPL', 'nothing chosen yet');
  assert.equal(openingSymbol('AAPL', []), null, 'an empty watchlist');
});

test('moveSymbol reorders within bounds', () => {
  const list = ['A', 'B', 'C'];
  assert.deepEqual(moveSymbol(list, 'C', -1), ['A', 'C', 'B']);
  assert.deepEqual(moveSymbol(list, 'A', 1), ['B', 'A', 'C']);
  assert.equal(moveSymbol(list, 'A', -1), list, 'already first');
  assert.equal(moveSymbol(list, 'Z', 1), list, 'not in the list');
});

test('isSymbolLike follows the server rule', () => {
  assert.equal(isSymbolLike('aapl'), true);
  assert.equal(isSymbolLike(' brk.b '), true);
  assert.equal(isSymbolLike('A$'), false);
  assert.equal(isSymbolLike('.A'), false);
  assert.equal(isSymbolLike(''), false);
  assert.equal(isSymbolLike('ABCDEFGHIJKLMNOPQ'), false);
});

test('searchSymbols: by ticker or company name, best matches first', () => {
  const universe = [
    { s: 'AAPL', name: 'Apple Inc.' },
    { s: 'AMAT', name: 'Applied Materials Inc.' },
    { s: 'PG', name: 'The Procter & Gamble Company' },
    { s: 'JPM', name: 'JPMorgan Chase & Co.' },
    { s: 'A', name: 'Agilent Technologies' },
    { s: 'NFLX', name: 'Netflix Inc.' },
    { s: 'MA', name: 'Mastercard Incorporated' },
  ];
  assert.deepEqual(searchSymbols(universe, ''), []);
  assert.deepEqual(searchSymbols(universe, 'a').slice(0, 3).map((r) => r.s), ['A', 'AAPL', 'AMAT'], 'exact ticker, then ticker prefixes');
  assert.deepEqual(searchSymbols(universe, 'appl').map((r) => r.s), ['AAPL', 'AMAT'], 'ticker prefix before name prefix');
  assert.deepEqual(searchSymbols(universe, 'netfl').map((r) => r.s), ['NFLX']);
  assert.deepEqual(searchSymbols(universe, 'procter').map((r) => r.s), ['PG'], 'any word of the name');
  assert.deepEqual(searchSymbols(universe, 'jp morgan').map((r) => r.s), ['JPM'], 'punctuation and spaces are ignored');
  assert.deepEqual(searchSymbols(universe, 'master').map((r) => r.s), ['MA']);
  assert.deepEqual(searchSymbols(universe, 'zzz'), []);
  assert.deepEqual(searchSymbols([...universe, { s: 'INTC', name: 'Intel Corporation' }], 'in').map((r) => r.s), ['INTC'],
    '"Inc." and "Incorporated" are no word matches');
  assert.deepEqual(searchSymbols(universe, 'inc.').map((r) => r.s), ['AAPL', 'AMAT', 'NFLX', 'MA'], 'but still substring matches');
  assert.equal(searchSymbols(universe, 'a', 2).length, 2);
});

// --- chart.js ---------------------------------------------------------------

test('niceStep picks 1/2/2.5/5 x 10^k', () => {
  assert.equal(niceStep(10, 5), 2);
  assert.equal(niceStep(1, 4), 0.25);
  assert.equal(niceStep(0.037, 4), 0.01);
  assert.equal(niceStep(730, 5), 200);
  assert.equal(niceStep(1100, 5), 250);
  assert.equal(niceStep(0, 5), 1);
});

test('layoutSlots: a young series sits at the left of a 30-minute window; old bars are cut', () => {
  const bars = [{ t: 10 * M }, { t: 11 * M }, { t: 13 * M }];
  assert.deepEqual(layoutSlots(bars, 300, M), { start: 0, t0: 10 * M, slots: 30, slotW: 10 });
  const many = Array.from({ length: 200 }, (_, i) => ({ t: i * M }));
  const lay = layoutSlots(many, 500, M); // at most 100 slots of 5 px
  assert.equal(lay.slots, 100);
  assert.equal(lay.start, 100);
  assert.equal(lay.t0, 100 * M);
});

test('maxSlots and fitStep: bars are combined into the finest width that fits the plot', () => {
  assert.equal(maxSlots(840), 168);
  assert.equal(maxSlots(100), 30, 'never fewer than 30 slots');
  const minutes = (n) => Array.from({ length: n }, (_, i) => ({ t: Date.UTC(2025, 10, 25) + i * M }));
  assert.equal(fitStep(minutes(60), M, 168), M, '1H: one-minute bars');
  assert.equal(fitStep(minutes(1440), M, 168), 10 * M, '1D: 145 ten-minute bars');
  assert.equal(fitStep(minutes(1440), M, 52), 30 * M, '1D on a phone');
  assert.equal(fitStep(minutes(7200), M, 168), 60 * M, '5D: hourly bars');
  const days = Array.from({ length: 366 }, (_, i) => ({ t: Date.UTC(2024, 10, 25) + i * DAY }));
  assert.equal(fitStep(days, DAY, 400), DAY, 'daily bars when they fit');
  assert.equal(fitStep(days, DAY, 168), 7 * DAY, '1Y: weekly bars');
  assert.equal(fitStep(days, DAY, 30), 7 * DAY, 'the widest there is (the oldest weeks are cut)');
});

test('axisTicks: round clock times for a day, midnights for days, month starts for a year', () => {
  const at = (h, m = 0) => Date.UTC(2025, 10, 25, h, m);
  const opts = { locale: L, timeZone: 'UTC' };
  const hour = axisTicks(at(10, 3), at(11, 3), 4 * M, opts);
  assert.deepEqual(hour.slice(0, 3), [{ t: at(10, 5), label: '10:05' }, { t: at(10, 10), label: '10:10' }, { t: at(10, 15), label: '10:15' }]);
  assert.equal(hour.length, 12);
  assert.deepEqual(axisTicks(at(0), at(23, 59), 100 * M, opts).map((x) => x.label), ['00:00', '02:00', '04:00', '06:00', '08:00', '10:00', '12:00', '14:00', '16:00', '18:00', '20:00', '22:00']);

  const fiveDays = axisTicks(Date.UTC(2025, 10, 22, 10), Date.UTC(2025, 10, 27, 10), 8 * 60 * M, { ...opts, dates: true });
  assert.deepEqual(fiveDays, [23, 24, 25, 26, 27].map((d) => ({ t: Date.UTC(2025, 10, d), label: `Nov ${d}` })));
  const everyOther = axisTicks(Date.UTC(2025, 10, 22, 10), Date.UTC(2025, 10, 29, 10), 1.5 * DAY, { ...opts, dates: true });
  assert.deepEqual(everyOther.map((x) => x.label), ['Nov 24', 'Nov 26', 'Nov 28'], 'every other day, counted from a Monday');

  const year = { ...opts, dates: true };
  const months = axisTicks(Date.UTC(2024, 10, 25), Date.UTC(2025, 10, 26), 25 * DAY, year).map((x) => x.label);
  assert.deepEqual(months, ['Dec', '2025', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov']);
  const quarters = axisTicks(Date.UTC(2024, 10, 25), Date.UTC(2025, 10, 26), 60 * DAY, year).map((x) => x.label);
  assert.deepEqual(quarters, ['2025', 'Apr', 'Jul', 'Oct']);
});

test('stepName and formatBarTime name bars for people', () => {
  assert.deepEqual([M, 15 * M, 60 * M, 240 * M, DAY, 7 * DAY].map(stepName), ['1-minute', '15-minute', '1-hour', '4-hour', 'daily', 'weekly']);
  const t = Date.UTC(2025, 10, 25, 14, 5);
  assert.equal(formatBarTime(t, { locale: L }), formatTime(t, { locale: L, seconds: false }));
  assert.equal(formatBarTime(t, { locale: L, dates: true, stepMs: 60 * M }), `${formatDate(t, { locale: L })} ${formatTime(t, { locale: L, seconds: false })}`);
  assert.equal(formatBarTime(Date.UTC(2025, 10, 25), { locale: L, dates: true, stepMs: DAY }), 'Nov 25, 2025', 'a daily bar: its date, in UTC');
  assert.equal(formatBarTime(Date.UTC(2025, 10, 24), { locale: L, dates: true, stepMs: 7 * DAY }), 'Nov 24, 2025');
});
