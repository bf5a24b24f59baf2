// tickstream dashboard: the watchlist table, the detail chart, the search box
// and the status bar, on top of ticker-client.js.
//
// Data flow: the client's `quotes` events only record what changed (a dirty
// set, the sparkline samples and the live 1-minute bars); the DOM is touched
// once per animation frame, for the rows that changed since the last frame.
// While the tab is hidden no frame is requested at all; the dirty set keeps
// growing and the first frame after the tab is shown again catches up.
//
// No inline script or style anywhere (the page must run under a strict CSP):
// everything visual is a class in style.css, and SVG geometry is attributes.

import { TickerClient } from './ticker-client.js';
import {
  MISSING, arrow, direction, formatChange, formatDuration, formatInteger, formatPercent,
  formatPrice, formatRange, formatTime, formatVolume,
} from './format.js';
import { BarBuilder, PriceSamples, followQuote, mergeBars, sparklinePoints } from './bars.js';
import { drawChart, formatBarTime, stepName } from './chart.js';
import { RANGES, barsInRange, fetchRange, parseRange, rangeStart, spliceRefresh } from './ranges.js';
import {
  isSymbolLike, loadChartChoice, loadWatchlist, moveSymbol, openingSymbol, saveChartChoice, saveWatchlist, searchSymbols,
} from './watchlist.js';

const LOCALE = globalThis.navigator?.languages?.[0] ?? globalThis.navigator?.language ?? 'en-US';
const SVG_NS = 'http://www.w3.org/2000/svg';
const SPARK_W = 100;
const SPARK_H = 28;
const PING_EVERY_MS = 5000;
const HISTORY_REFRESH_MS = 60_000;

const $ = (id) => document.getElementById(id);

function storage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/** Ordered symbols of the watchlist (persisted). */
let watchlist = loadWatchlist(storage());
/** symbol -> row view (DOM nodes and what they currently show). */
const rows = new Map();
/** symbol -> {samples, bars}: recorded from the stream even while hidden. */
const series = new Map();
/** The universe from /api/v1/symbols: [{s, name, pc}]. */
let universe = [];
const names = new Map();
/** symbol -> history state of the chart (see fetchHistory). */
const history = new Map();

let selected = null;
/** What the chart showed last (persisted): it opens on that symbol and range again. */
const chartChoice = loadChartChoice(storage());
/** The chart's range (ranges.js): which history it fetches and shows. */
let range = parseRange(chartChoice.range);
const dirty = new Set();
let detailDirty = false;
let chartDirty = false;
let statusDirty = false;
let frameRequested = false;
let catchingUp = false;
let updatesThisSecond = 0;
let lastUpdateAt = null;
/** What drawChart drew last: the bars on screen, their width, and barAt for the pointer. */
let chartLayout = { barAt: () => null, bars: [], intervalMs: 60_000 };
let hoverBar = null;

/** Counters for the end-to-end tests (window.tickstream.stats). */
const stats = { frames: 0, rowRenders: 0, chartDraws: 0, quoteEvents: 0 };

// With viewer auth on (auth.mode = jwt), open the page as /?token=<jwt>: the token
// goes to the stream only, never to another origin.
const pageToken = new URLSearchParams(location.search).get('token');
const streamUrl = pageToken ? `/ws?token=${encodeURIComponent(pageToken)}` : '/ws';
const client = new TickerClient(streamUrl, { symbols: watchlist });

function seriesOf(symbol) {
  let s = series.get(symbol);
  if (!s) {
    s = { samples: new PriceSamples(), bars: new BarBuilder() };
    series.set(symbol, s);
  }
  return s;
}

// ---------------------------------------------------------------------------
// Frame scheduling
// ---------------------------------------------------------------------------

function isHidden() {
  return document.visibilityState === 'hidden';
}

function schedule() {
  if (frameRequested || isHidden()) return;
  frameRequested = true;
  requestAnimationFrame(frame);
}

function frame() {
  frameRequested = false;
  if (isHidden()) return; // resumed by visibilitychange
  stats.frames += 1;
  const flash = !catchingUp;
  catchingUp = false;
  for (const symbol of dirty) {
    const row = rows.get(symbol);
    if (row) renderRow(row, flash);
  }
  dirty.clear();
  if (detailDirty) renderDetail();
  if (chartDirty) renderChart();
  if (statusDirty) renderStatusTimes();
}

document.addEventListener('visibilitychange', () => {
  if (isHidden()) return;
  // Everything that changed while hidden is still in the dirty set; draw it
  // in one frame, without a flash for each accumulated change.
  catchingUp = true;
  detailDirty = true;
  chartDirty = true;
  statusDirty = true;
  schedule();
});

// ---------------------------------------------------------------------------
// Stream events
// ---------------------------------------------------------------------------

client.addEventListener('quotes', (event) => {
  const now = performance.now();
  const symbols = event.detail.symbols;
  stats.quoteEvents += 1;
  updatesThisSecond += symbols.length;
  lastUpdateAt = Date.now();
  statusDirty = true;
  for (const symbol of symbols) {
    const q = client.quotes.get(symbol);
    if (q) {
      const s = seriesOf(symbol);
      s.samples.push(q.p, now);
      if (s.bars.update(q) && symbol === selected) chartDirty = true;
    }
    dirty.add(symbol);
    if (symbol === selected) detailDirty = true;
  }
  schedule();
});

/** Whether the stream was open before: an 'open' after that is a reconnect. */
let hasBeenOpen = false;

client.addEventListener('status', (event) => {
  const { state, transport, compression, retryInMs } = event.detail;
  renderConnection(state, transport, compression, retryInMs);
  if (state === 'open') {
    client.ping();
    if (!universe.length) loadUniverse();
    // After a reconnect the server may be a new one, with history the old one
    // did not have. On the first open, the history the page asked for at
    // start-up is on its way (or here) already, unless that request failed.
    if (selected && (hasBeenOpen || history.get(selected)?.status === 'error')) fetchHistory(selected, { quiet: true });
    hasBeenOpen = true;
  }
});

client.addEventListener('latency', (event) => {
  $('status-rtt').textContent = formatDuration(event.detail.rttMs);
});

client.addEventListener('error', (event) => {
  const msg = event.detail;
  if (msg.local) {
    console.warn('tickstream client:', msg.code, msg.message);
    return;
  }
  if ((msg.code === 'unknown_symbol' || msg.code === 'invalid_symbol') && Array.isArray(msg.symbols)) {
    const gone = msg.symbols.map((s) => String(s).toUpperCase()).filter((s) => watchlist.includes(s));
    for (const s of gone) removeSymbol(s, { announce: false });
    if (gone.length) announce(`${gone.join(', ')} ${gone.length === 1 ? 'is not a known symbol and was' : 'are not known symbols and were'} removed.`);
  } else {
    console.warn('tickstream server error:', msg.code, msg.message);
  }
});

setInterval(() => {
  if (client.state === 'open') client.ping();
}, PING_EVERY_MS);

setInterval(() => {
  if (!isHidden()) {
    $('status-rate').textContent = formatInteger(updatesThisSecond, LOCALE);
    if (retryAt !== null) renderRetry();
  }
  updatesThisSecond = 0;
}, 1000);

// ---------------------------------------------------------------------------
// Watchlist rows
// ---------------------------------------------------------------------------

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function td(className) {
  const cell = document.createElement('td');
  cell.className = className;
  return cell;
}

/** A cell with an aria-hidden arrow and a value, for direction without colour. */
function arrowCell(className) {
  const cell = td(className);
  const a = document.createElement('span');
  a.className = 'arrow';
  a.setAttribute('aria-hidden', 'true');
  const v = document.createElement('span');
  v.className = 'val';
  cell.append(a, v);
  return { cell, arrow: a, value: v };
}

function createRow(symbol) {
  const tr = document.createElement('tr');
  tr.id = `row-${symbol}`;
  tr.dataset.symbol = symbol;
  tr.tabIndex = 0;
  tr.className = 'quote-row';

  const sym = td('c-sym');
  const symText = document.createElement('span');
  symText.className = 'sym';
  symText.textContent = symbol;
  const subName = document.createElement('span');
  subName.className = 'sub-name';
  sym.append(symText, subName);

  const name = td('c-name');
  const last = arrowCell('c-num c-last');
  const chg = arrowCell('c-num c-chg');
  const pct = arrowCell('c-num c-pct');
  const bid = td('c-num c-bid');
  const ask = td('c-num c-ask');
  const vol = td('c-num c-vol');
  const range = td('c-num c-range');
  const time = td('c-num c-time');

  const spark = td('c-spark');
  const svg = svgEl('svg', {
    class: 'spark',
    viewBox: `0 0 ${SPARK_W} ${SPARK_H}`,
    preserveAspectRatio: 'none',
    'aria-hidden': 'true',
    focusable: 'false',
  });
  const area = svgEl('polygon', { class: 'spark-area', points: '' });
  const line = svgEl('polyline', { class: 'spark-line', points: '', 'vector-effect': 'non-scaling-stroke' });
  svg.append(area, line);
  spark.append(svg);

  const act = td('c-act');
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'icon-button remove';
  remove.dataset.action = 'remove';
  remove.setAttribute('aria-label', `Remove ${symbol}`);
  remove.title = `Remove ${symbol}`;
  remove.textContent = '✕';
  act.append(remove);

  tr.append(sym, name, last.cell, chg.cell, pct.cell, bid, ask, vol, range, time, spark, act);

  const row = {
    symbol, tr, name, subName, last, chg, pct, bid, ask, vol, range, time, svg, area, line,
    shown: {}, // text currently in each cell
    prev: {}, // last rendered numbers, for flash direction
    flipped: {}, // which of the two flash classes each cell used last
    sparkVersion: -1,
  };
  renderName(row);
  renderRow(row, false);
  return row;
}

function setText(row, key, el, text) {
  if (row.shown[key] === text) return;
  row.shown[key] = text;
  el.textContent = text;
}

function setDir(el, dir) {
  const cls = dir > 0 ? 'up' : dir < 0 ? 'down' : 'flat';
  if (el.dataset.dir !== cls) {
    el.classList.remove('up', 'down', 'flat');
    el.classList.add(cls);
    el.dataset.dir = cls;
  }
}

/**
 * Restarts the flash animation on `cell`. Two identical keyframe sets are
 * alternated (…-a / …-b): changing the animation name restarts it without a
 * forced reflow.
 */
function flash(row, key, cell, dir) {
  if (!dir) return;
  const next = row.flipped[key] === 'a' ? 'b' : 'a';
  row.flipped[key] = next;
  cell.classList.remove('flash-up-a', 'flash-up-b', 'flash-down-a', 'flash-down-b');
  cell.classList.add(`flash-${dir > 0 ? 'up' : 'down'}-${next}`);
}

function renderName(row) {
  const name = names.get(row.symbol) ?? '';
  setText(row, 'name', row.name, name);
  setText(row, 'subName', row.subName, name);
}

function renderRow(row, allowFlash) {
  stats.rowRenders += 1;
  const q = client.quotes.get(row.symbol) ?? {};
  const ref = q.p ?? q.pc;

  // Last price, with the direction of its latest move.
  const lastDir = direction((q.p ?? NaN) - (row.prev.p ?? NaN));
  if (lastDir) row.lastDir = lastDir;
  setText(row, 'last', row.last.value, formatPrice(q.p, LOCALE));
  setText(row, 'lastArrow', row.last.arrow, arrow(row.lastDir ?? 0));
  setDir(row.last.cell, row.lastDir ?? 0);
  if (allowFlash && lastDir) flash(row, 'last', row.last.cell, lastDir);

  // Change and change %, signed, with arrows.
  const d = direction(q.d);
  setText(row, 'chg', row.chg.value, formatChange(q.d, ref, LOCALE));
  setText(row, 'chgArrow', row.chg.arrow, arrow(d));
  setDir(row.chg.cell, d);
  setText(row, 'pct', row.pct.value, formatPercent(q.dp, LOCALE));
  setText(row, 'pctArrow', row.pct.arrow, arrow(direction(q.dp)));
  setDir(row.pct.cell, direction(q.dp));

  // Book.
  const bidDir = direction((q.bp ?? NaN) - (row.prev.bp ?? NaN));
  const askDir = direction((q.ap ?? NaN) - (row.prev.ap ?? NaN));
  setText(row, 'bid', row.bid, formatPrice(q.bp, LOCALE));
  setText(row, 'ask', row.ask, formatPrice(q.ap, LOCALE));
  if (allowFlash) {
    flash(row, 'bid', row.bid, bidDir);
    flash(row, 'ask', row.ask, askDir);
  }

  setText(row, 'vol', row.vol, formatVolume(q.v, LOCALE));
  setText(row, 'range', row.range, formatRange(q.l, q.h, LOCALE));
  setText(row, 'time', row.time, formatTime(q.t, { locale: LOCALE }));

  row.prev = { p: q.p, bp: q.bp, ap: q.ap };
  row.tr.classList.toggle('no-data', q.p === undefined);
  renderSpark(row, q);
}

function renderSpark(row, q) {
  const s = series.get(row.symbol);
  if (!s || s.samples.version === row.sparkVersion) return;
  row.sparkVersion = s.samples.version;
  const values = s.samples.values;
  const pts = sparklinePoints(values, SPARK_W, SPARK_H, 3);
  row.line.setAttribute('points', pts);
  row.area.setAttribute('points', pts ? `0,${SPARK_H} ${pts} ${SPARK_W},${SPARK_H}` : '');
  // Colour by the move over the visible window (the arrows in the change
  // columns carry the direction for people who cannot tell the colours apart).
  const dir = values.length > 1 ? direction(values[values.length - 1] - values[0]) : direction(q.d);
  row.svg.setAttribute('class', `spark ${dir > 0 ? 'up' : dir < 0 ? 'down' : 'flat'}`);
  row.svg.dataset.points = String(values.length);
}

function rebuildTable() {
  const body = $('watchlist-body');
  const keep = new Set(watchlist);
  for (const [symbol, row] of rows) {
    if (!keep.has(symbol)) {
      row.tr.remove();
      rows.delete(symbol);
    }
  }
  const frag = document.createDocumentFragment();
  for (const symbol of watchlist) {
    let row = rows.get(symbol);
    if (!row) {
      row = createRow(symbol);
      rows.set(symbol, row);
    }
    if (row.tr.classList.contains('selected') !== (symbol === selected)) markSelected(row, symbol === selected);
    frag.append(row.tr);
  }
  body.append(frag);
  $('watchlist-empty').hidden = watchlist.length > 0;
  $('watchlist').classList.toggle('is-empty', watchlist.length === 0);
}

function markSelected(row, on) {
  row.tr.classList.toggle('selected', on);
  if (on) row.tr.setAttribute('aria-current', 'true');
  else row.tr.removeAttribute('aria-current');
}

function persist() {
  if (!saveWatchlist(storage(), watchlist)) console.warn('tickstream: could not store the watchlist');
}

function addSymbol(raw) {
  const symbol = String(raw).trim().toUpperCase();
  if (!isSymbolLike(symbol)) {
    announce(`${raw} is not a valid symbol.`);
    return false;
  }
  if (watchlist.includes(symbol)) {
    selectSymbol(symbol, { focus: false, scroll: true });
    announce(`${symbol} is already in the watchlist.`);
    return false;
  }
  watchlist = [...watchlist, symbol];
  persist();
  seriesOf(symbol);
  rebuildTable();
  client.subscribe([symbol]);
  rows.get(symbol)?.tr.scrollIntoView({ block: 'nearest' });
  announce(`Added ${symbol}${names.has(symbol) ? `, ${names.get(symbol)}` : ''}.`);
  return true;
}

function removeSymbol(symbol, { announce: say = true, focusNext = false } = {}) {
  const index = watchlist.indexOf(symbol);
  if (index < 0) return;
  watchlist = watchlist.filter((s) => s !== symbol);
  persist();
  client.unsubscribe([symbol]);
  series.delete(symbol);
  history.delete(symbol);
  dirty.delete(symbol);
  if (selected === symbol) selectSymbol(null);
  rebuildTable();
  if (focusNext) {
    const next = watchlist[Math.min(index, watchlist.length - 1)];
    if (next) rows.get(next)?.tr.focus();
    else $('search-input').focus();
  }
  if (say) announce(`Removed ${symbol}.`);
}

function moveRow(symbol, delta) {
  const moved = moveSymbol(watchlist, symbol, delta);
  if (moved === watchlist) return;
  watchlist = moved;
  persist();
  rebuildTable();
  rows.get(symbol)?.tr.focus();
  announce(`${symbol} moved to position ${watchlist.indexOf(symbol) + 1} of ${watchlist.length}.`);
}

const body = $('watchlist-body');

body.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action="remove"]');
  const tr = event.target.closest('tr[data-symbol]');
  if (!tr) return;
  if (button) {
    removeSymbol(tr.dataset.symbol, { focusNext: true });
    return;
  }
  selectSymbol(tr.dataset.symbol, { focus: true });
});

body.addEventListener('keydown', (event) => {
  const tr = event.target.closest('tr[data-symbol]');
  if (!tr || event.target !== tr) return; // keys on the remove button are the button's
  const symbol = tr.dataset.symbol;
  const index = watchlist.indexOf(symbol);
  const focusAt = (i) => rows.get(watchlist[Math.max(0, Math.min(watchlist.length - 1, i))])?.tr.focus();
  switch (event.key) {
    case 'Enter':
    case ' ':
      event.preventDefault();
      selectSymbol(symbol, { focus: false });
      break;
    case 'Delete':
    case 'Backspace':
      event.preventDefault();
      removeSymbol(symbol, { focusNext: true });
      break;
    case 'ArrowDown':
    case 'ArrowUp': {
      event.preventDefault();
      const delta = event.key === 'ArrowDown' ? 1 : -1;
      if (event.altKey) moveRow(symbol, delta);
      else focusAt(index + delta);
      break;
    }
    case 'Home':
      event.preventDefault();
      focusAt(0);
      break;
    case 'End':
      event.preventDefault();
      focusAt(watchlist.length - 1);
      break;
    default:
      break;
  }
});

// ---------------------------------------------------------------------------
// Detail panel and chart
// ---------------------------------------------------------------------------

function selectSymbol(symbol, { focus = false, scroll = false } = {}) {
  if (selected && rows.has(selected)) markSelected(rows.get(selected), false);
  selected = symbol;
  hoverBar = null;
  const detail = $('detail');
  if (!symbol) {
    detail.dataset.state = 'empty';
    $('detail-empty').hidden = false;
    $('detail-body').hidden = true;
    return;
  }
  const row = rows.get(symbol);
  if (row) {
    markSelected(row, true);
    if (focus) row.tr.focus();
    if (scroll) row.tr.scrollIntoView({ block: 'nearest' });
  }
  chartChoice.symbol = symbol;
  rememberChart();
  detail.dataset.state = 'selected';
  detail.dataset.symbol = symbol;
  $('detail-empty').hidden = true;
  $('detail-body').hidden = false;
  $('detail-symbol').textContent = symbol;
  $('detail-name').textContent = names.get(symbol) ?? '';
  detailDirty = true;
  chartDirty = true;
  fetchHistory(symbol);
  schedule();
}

$('detail-close').addEventListener('click', () => {
  const was = selected;
  selectSymbol(null);
  if (was) rows.get(was)?.tr.focus();
});

function renderDetail() {
  detailDirty = false;
  if (!selected) return;
  const q = client.quotes.get(selected) ?? {};
  const ref = q.p ?? q.pc;
  $('detail-name').textContent = names.get(selected) ?? '';
  $('detail-last').textContent = formatPrice(q.p, LOCALE);
  const d = direction(q.d);
  const change = $('detail-change');
  change.textContent = q.d === undefined ? MISSING : `${arrow(d)} ${formatChange(q.d, ref, LOCALE)} (${formatPercent(q.dp, LOCALE)})`.trim();
  change.classList.toggle('up', d > 0);
  change.classList.toggle('down', d < 0);
  $('stat-o').textContent = formatPrice(q.o, LOCALE);
  $('stat-h').textContent = formatPrice(q.h, LOCALE);
  $('stat-l').textContent = formatPrice(q.l, LOCALE);
  $('stat-pc').textContent = formatPrice(q.pc, LOCALE);
  $('stat-bid').textContent = q.bp === undefined ? MISSING : `${formatPrice(q.bp, LOCALE)} × ${formatInteger(q.bs, LOCALE)}`;
  $('stat-ask').textContent = q.ap === undefined ? MISSING : `${formatPrice(q.ap, LOCALE)} × ${formatInteger(q.as, LOCALE)}`;
  $('stat-spread').textContent = q.bp !== undefined && q.ap !== undefined ? formatPrice(Math.round((q.ap - q.bp) * 1e6) / 1e6, LOCALE) : MISSING;
  $('stat-v').textContent = formatInteger(q.v, LOCALE);
}

function rememberChart() {
  if (!saveChartChoice(storage(), chartChoice)) console.warn('tickstream: could not store the chart choice');
}

/**
 * The bars the chart shows for `symbol` in the current range, and their
 * width. History 1-minute bars are extended by the live ones; the newest
 * daily bar follows the live quote. Without history (yet), the live
 * 1-minute bars.
 */
function chartBars(symbol) {
  const live = seriesOf(symbol).bars;
  const h = history.get(symbol);
  const now = Date.now();
  if (h?.status === 'ok') {
    const bars = range.interval === '1d'
      ? followQuote(h.bars, client.quotes.get(symbol))
      : mergeBars(h.bars, live.bars, h.liveVolumeAtFetch);
    return { bars: barsInRange(bars, range, now), barMs: range.barMs, source: 'history' };
  }
  return { bars: barsInRange(live.bars, range, now), barMs: live.intervalMs, source: 'live' };
}

function barTime(t) {
  return formatBarTime(t, { locale: LOCALE, dates: range.dates, stepMs: chartLayout.intervalMs });
}

function renderChart() {
  chartDirty = false;
  if (!selected) return;
  const canvas = $('chart');
  if (!canvas.clientWidth) return;
  const q = client.quotes.get(selected) ?? {};
  const { bars, barMs, source } = chartBars(selected);
  stats.chartDraws += 1;
  // The previous close is a reference within a day, not across several.
  const prevClose = range.dates ? undefined : q.pc;
  chartLayout = drawChart(canvas, bars, { intervalMs: barMs, dates: range.dates, prevClose, last: q.p, locale: LOCALE });
  const drawn = chartLayout.bars;
  const kind = stepName(chartLayout.intervalMs);
  canvas.dataset.bars = String(drawn.length);
  canvas.dataset.step = String(chartLayout.intervalMs);
  canvas.dataset.source = source;
  $('chart-title').textContent = `${kind[0].toUpperCase()}${kind.slice(1)} bars`;
  const first = drawn[0];
  const lastBar = drawn[drawn.length - 1];
  canvas.setAttribute(
    'aria-label',
    drawn.length
      ? `${selected}, ${range.name}: ${drawn.length} ${kind} bar${drawn.length === 1 ? '' : 's'} from ${barTime(first.t)} to ${barTime(lastBar.t)}, last ${formatPrice(lastBar.c, LOCALE)}.`
      : `${selected}, ${range.name}: no trades yet.`,
  );
  renderLegend(hoverBar ?? lastBar);
  const h = history.get(selected);
  const note = $('chart-source');
  const key = prevClose === undefined ? '' : ' Dotted line: previous close.';
  if (source === 'history') {
    const live = range.interval === '1d' ? 'the newest following the live quote' : 'extended live';
    note.textContent = `Server history, ${formatInteger(bars.length, LOCALE)} bar${bars.length === 1 ? '' : 's'}, ${live}.${key}`;
  } else if (h?.status === 'loading') {
    note.textContent = 'Loading history…';
  } else {
    const since = bars.length ? ` since ${formatTime(bars[0].t, { locale: LOCALE, seconds: false })}` : '';
    note.textContent = `1-minute bars built from the live stream${since}${h?.status === 'unavailable' ? ' (no server history)' : ''}.${key}`;
  }
  $('detail').dataset.chartSource = source;
}

function renderLegend(bar) {
  const legend = $('chart-legend');
  if (!bar) {
    legend.textContent = '';
    return;
  }
  const p = (x) => formatPrice(x, LOCALE);
  const dir = bar.c > bar.o ? `${arrow(1)} ` : bar.c < bar.o ? `${arrow(-1)} ` : '';
  legend.textContent = `${barTime(bar.t)}  O ${p(bar.o)}  H ${p(bar.h)}  L ${p(bar.l)}  C ${dir}${p(bar.c)}  V ${formatInteger(bar.v, LOCALE)}`;
}

const canvas = $('chart');
canvas.addEventListener('pointermove', (event) => {
  const rect = canvas.getBoundingClientRect();
  const bar = chartLayout.barAt(event.clientX - rect.left);
  if (bar !== hoverBar) {
    hoverBar = bar;
    renderLegend(bar ?? chartLayout.bars.at(-1));
  }
});
canvas.addEventListener('pointerleave', () => {
  hoverBar = null;
  if (selected) renderLegend(chartLayout.bars.at(-1));
});

new ResizeObserver(() => {
  chartDirty = true;
  schedule();
}).observe($('detail'));

globalThis.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', () => {
  chartDirty = true;
  schedule();
});

/** The range buttons, one per range: a group of toggle buttons (aria-pressed). */
const rangeButtons = Object.values(RANGES).map((r) => {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'range-button';
  button.dataset.range = r.id;
  button.textContent = r.id;
  button.title = `Show ${r.name}`;
  return button;
});
$('chart-ranges').append(...rangeButtons);

function renderRangeButtons() {
  for (const button of rangeButtons) button.setAttribute('aria-pressed', String(button.dataset.range === range.id));
}

$('chart-ranges').addEventListener('click', (event) => {
  const button = event.target.closest('button[data-range]');
  if (!button || button.dataset.range === range.id) return;
  range = parseRange(button.dataset.range);
  chartChoice.range = range.id;
  rememberChart();
  renderRangeButtons();
  hoverBar = null;
  if (selected) fetchHistory(selected);
  chartDirty = true;
  schedule();
});

/**
 * Loads the history of `symbol` for the current range (ranges.js): one
 * request, or a bounded few pages for 5D. 200: the chart uses it (extended
 * live). 404: the server has no history endpoint (or no history for the
 * symbol), so the chart is built from the live stream. Anything else
 * (network error, 5xx) also falls back to live bars and is tried again later.
 *
 * `quiet` keeps what the chart shows while the request is out. A `refresh`
 * of bars already held asks only for those from the newest one on (it may
 * have grown), so the periodic refresh of 5D is not 7,200 bars a minute.
 */
async function fetchHistory(symbol, { quiet = false, refresh = false } = {}) {
  const prev = history.get(symbol);
  if (prev?.controller) prev.controller.abort();
  const controller = new AbortController();
  const same = prev?.range === range ? prev : null;
  const since = refresh && same?.status === 'ok' ? same.bars.at(-1)?.t : undefined;
  const entry = {
    range,
    status: quiet && same ? same.status : 'loading',
    bars: same?.bars ?? [],
    liveVolumeAtFetch: same?.liveVolumeAtFetch ?? 0,
    fetchedAt: Date.now(),
    controller,
  };
  history.set(symbol, entry);
  chartDirty = true;
  schedule();
  const getPage = async (query) => {
    const res = await fetch(`/api/v1/history/${encodeURIComponent(symbol)}?${query}`, {
      signal: controller.signal,
      headers: { accept: 'application/json' },
    });
    if (res.status !== 200) throw Object.assign(new Error(`history: HTTP ${res.status}`), { status: res.status });
    return res.json();
  };
  let status;
  let bars = null;
  try {
    const fetched = await fetchRange(getPage, entry.range, { now: Date.now(), since });
    bars = since === undefined ? fetched : spliceRefresh(entry.bars, fetched, since, rangeStart(entry.range, Date.now()));
    status = 'ok';
  } catch (err) {
    if (err?.name === 'AbortError') return;
    status = err?.status === 404 ? 'unavailable' : 'error';
  }
  if (history.get(symbol) !== entry) return; // superseded
  entry.controller = null;
  entry.status = status;
  entry.fetchedAt = Date.now();
  if (status === 'ok') {
    entry.bars = bars;
    const lastT = bars.length ? bars[bars.length - 1].t : null;
    entry.liveVolumeAtFetch = lastT === null ? 0 : seriesOf(symbol).bars.volumeAt(lastT);
  }
  if (symbol === selected) {
    chartDirty = true;
    schedule();
  }
}

setInterval(() => {
  if (!selected || isHidden()) return;
  const h = history.get(selected);
  if (h && !h.controller && Date.now() - h.fetchedAt >= HISTORY_REFRESH_MS) fetchHistory(selected, { quiet: true, refresh: true });
}, 15_000);

// ---------------------------------------------------------------------------
// Status bar
// ---------------------------------------------------------------------------

/** When the scheduled reconnect happens (epoch ms), for the countdown. */
let retryAt = null;

/** What the status bar says about each compression the client can report. */
const COMPRESSION_TEXT = {
  'permessage-deflate': 'On (permessage-deflate)',
  deflate: 'On (deflate)',
  http: 'HTTP (SSE)',
  none: 'Off',
};

function renderConnection(state, transport, compression, retryInMs) {
  const el = $('status-conn');
  el.dataset.state = state;
  if (transport) el.dataset.transport = transport;
  else delete el.dataset.transport;
  retryAt = state === 'closed' && retryInMs != null ? Date.now() + retryInMs : null;
  $('status-conn-text').textContent = connectionText(state, transport);
  renderRetry();
  const comp = $('status-compression');
  if (state === 'open') {
    comp.textContent = COMPRESSION_TEXT[compression] ?? 'Off';
    comp.dataset.compression = compression ?? 'none';
  } else {
    comp.textContent = MISSING;
    delete comp.dataset.compression;
  }
  document.body.classList.toggle('is-offline', state !== 'open');
  if (state !== 'open') $('status-rtt').textContent = MISSING;
}

/**
 * The status bar names the transport while live: "SSE fallback" tells a
 * user (and their admin) that a proxy on the way blocks WebSockets.
 */
function connectionText(state, transport) {
  if (state === 'open') return transport === 'sse' ? 'Live · SSE fallback' : 'Live · WebSocket';
  if (state === 'connecting') return client.welcome ? 'Reconnecting…' : 'Connecting…';
  return 'Disconnected';
}

/**
 * The reconnect countdown, next to (not inside) the aria-live status, so a
 * screen reader announces the state changes and not every second.
 */
function renderRetry() {
  const el = $('status-retry');
  if (retryAt === null) {
    el.hidden = true;
    return;
  }
  const text = `retrying in ${Math.max(1, Math.ceil((retryAt - Date.now()) / 1000))} s`;
  if (el.textContent !== text) el.textContent = text;
  el.hidden = false;
}

function renderStatusTimes() {
  statusDirty = false;
  $('status-last').textContent = lastUpdateAt === null ? MISSING : formatTime(lastUpdateAt, { locale: LOCALE });
}

// ---------------------------------------------------------------------------
// Symbol universe and search
// ---------------------------------------------------------------------------

let universeRetry = 0;
let universeLoading = false;
let universeLoadedAt = 0;
let universeTimer = null;
/** The universe can change (admin routes); the search refreshes it when older. */
const UNIVERSE_MAX_AGE_MS = 60_000;

async function loadUniverse() {
  if (universeLoading) return;
  universeLoading = true;
  try {
    const res = await fetch('/api/v1/symbols', { headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    if (!Array.isArray(body?.symbols)) throw new Error('unexpected /api/v1/symbols reply');
    universe = body.symbols.filter((e) => e && typeof e.s === 'string');
    names.clear();
    for (const e of universe) if (e.name) names.set(e.s, e.name);
    for (const row of rows.values()) renderName(row);
    if (selected) $('detail-name').textContent = names.get(selected) ?? '';
    universeRetry = 0;
    universeLoadedAt = Date.now();
    if (searchInput.value.trim()) updateResults();
  } catch (err) {
    console.warn('tickstream: symbol list not loaded:', err?.message ?? err);
    const delay = Math.min(30_000, 1000 * 2 ** universeRetry++);
    clearTimeout(universeTimer);
    universeTimer = setTimeout(loadUniverse, delay);
  } finally {
    universeLoading = false;
  }
}

const searchInput = $('search-input');
const resultsList = $('search-results');
let results = [];
let active = -1;

function openResults(open) {
  resultsList.hidden = !open;
  searchInput.setAttribute('aria-expanded', String(open));
  if (!open) searchInput.removeAttribute('aria-activedescendant');
}

function updateResults() {
  const query = searchInput.value;
  results = searchSymbols(universe, query, 8);
  active = results.length ? 0 : -1;
  renderResults(query);
}

function renderResults(query) {
  resultsList.replaceChildren();
  if (!query.trim()) {
    openResults(false);
    return;
  }
  if (!results.length) {
    const li = document.createElement('li');
    li.className = 'search-none';
    li.textContent = universe.length ? `No symbol matches “${query.trim()}”` : 'Loading symbols…';
    resultsList.append(li);
    openResults(true);
    searchInput.removeAttribute('aria-activedescendant');
    return;
  }
  results.forEach((r, i) => {
    const li = document.createElement('li');
    li.id = `opt-${i}`;
    li.className = 'search-option';
    li.setAttribute('role', 'option');
    li.dataset.symbol = r.s;
    li.setAttribute('aria-selected', String(i === active));
    const s = document.createElement('span');
    s.className = 'opt-sym';
    s.textContent = r.s;
    const n = document.createElement('span');
    n.className = 'opt-name';
    n.textContent = r.name;
    li.append(s, n);
    if (watchlist.includes(r.s)) {
      const badge = document.createElement('span');
      badge.className = 'opt-badge';
      badge.textContent = 'in list';
      li.append(badge);
    }
    resultsList.append(li);
  });
  openResults(true);
  setActive(active);
}

function setActive(i) {
  active = i;
  const options = resultsList.querySelectorAll('[role="option"]');
  options.forEach((li, j) => li.setAttribute('aria-selected', String(j === i)));
  if (i >= 0 && options[i]) {
    searchInput.setAttribute('aria-activedescendant', options[i].id);
    options[i].scrollIntoView({ block: 'nearest' });
  } else {
    searchInput.removeAttribute('aria-activedescendant');
  }
}

function chooseResult() {
  let symbol = null;
  if (active >= 0 && results[active]) symbol = results[active].s;
  else if (!universe.length && isSymbolLike(searchInput.value)) {
    // The symbol list has not loaded (yet): take the ticker as typed; the
    // server reports it if it does not exist and the row is removed again.
    symbol = searchInput.value.trim().toUpperCase();
  }
  if (!symbol) {
    if (searchInput.value.trim()) announce(`No symbol matches ${searchInput.value.trim()}.`);
    return;
  }
  addSymbol(symbol);
  searchInput.value = '';
  results = [];
  active = -1;
  openResults(false);
}

searchInput.addEventListener('input', updateResults);
searchInput.addEventListener('focus', () => {
  if (universe.length && Date.now() - universeLoadedAt < UNIVERSE_MAX_AGE_MS) return;
  loadUniverse();
});

searchInput.addEventListener('keydown', (event) => {
  switch (event.key) {
    case 'ArrowDown':
    case 'ArrowUp': {
      event.preventDefault();
      if (resultsList.hidden) {
        updateResults();
        return;
      }
      if (!results.length) return;
      const delta = event.key === 'ArrowDown' ? 1 : -1;
      setActive((active + delta + results.length) % results.length);
      break;
    }
    case 'Enter':
      event.preventDefault();
      chooseResult();
      break;
    case 'Escape':
      if (!resultsList.hidden) {
        event.preventDefault();
        openResults(false);
      } else if (searchInput.value) {
        event.preventDefault();
        searchInput.value = '';
      }
      break;
    default:
      break;
  }
});

// mousedown, not click: keep the focus in the input while picking.
resultsList.addEventListener('mousedown', (event) => {
  const li = event.target.closest('[role="option"]');
  if (!li) return;
  event.preventDefault();
  setActive([...resultsList.querySelectorAll('[role="option"]')].indexOf(li));
  chooseResult();
});

$('search-form').addEventListener('submit', (event) => event.preventDefault());
$('search-form').addEventListener('focusout', (event) => {
  if (!event.currentTarget.contains(event.relatedTarget)) openResults(false);
});

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

let announceTimer = null;
function announce(text) {
  const el = $('announcer');
  el.textContent = text;
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { el.textContent = ''; }, 5000);
}

/**
 * Read-only hook for the end-to-end tests and for poking around in the
 * console: `tickstream.client.compression`, `tickstream.watchlist`, ...
 */
globalThis.tickstream = Object.freeze({
  client,
  stats,
  get watchlist() { return [...watchlist]; },
  get selected() { return selected; },
  get range() { return range.id; },
  historyStatus: (symbol) => history.get(symbol)?.status ?? null,
  chartBars: (symbol) => chartBars(symbol),
});

for (const symbol of watchlist) seriesOf(symbol);
rebuildTable();
renderRangeButtons();
// The chart opens on a symbol whenever there is one: never an empty panel
// that asks for a click first.
selectSymbol(openingSymbol(chartChoice.symbol, watchlist));
renderConnection('connecting', null, null, null);
client.connect();
loadUniverse();
