// The detail panel's chart: candles over a volume histogram, drawn on a
// <canvas>.
//
// Up bars are hollow and down bars are filled, so the direction of a bar is
// readable without its colour. Colours come from the page's CSS custom
// properties (style.css), so the chart follows the light/dark theme.
//
// Bars are placed by time (a minute without trades stays a gap). When the
// bars given are too many for the width (a day or a year of them), they are
// combined into wider ones first, so the whole range is always on screen.

import { aggregateBars, bucketStart } from './bars.js';
import { formatDate, formatMonth, formatPrice, formatTime, formatVolume, priceDecimals } from './format.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEK = 7 * DAY;

/** Fewest slots on the time axis: a young series is drawn at the left of a 30-bar window. */
const MIN_SLOTS = 30;
/** Narrowest slot in CSS pixels; bars are combined into wider ones rather than drawn narrower. */
const MIN_SLOT_PX = 5;
/** Room for one time-axis label, in CSS pixels. */
const LABEL_PX = 56;
/** Bar widths the chart draws, finest first. */
const BAR_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 240].map((m) => m * MINUTE).concat(DAY, WEEK);
/** Spacing of clock-time labels. */
const TIME_TICKS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720].map((m) => m * MINUTE);
/** Spacing of date labels in days; wider than these, in months. */
const DAY_TICKS = [1, 2, 7, 14];
const MONTH_TICKS = [1, 2, 3, 6, 12];

/**
 * A "nice" step (1, 2, 2.5 or 5 times a power of ten) that divides `span`
 * into about `count` intervals.
 * @param {number} span
 * @param {number} count
 */
export function niceStep(span, count) {
  if (!(span > 0) || !(count > 0)) return 1;
  const raw = span / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * pow >= raw) return m * pow;
  }
  return 10 * pow;
}

/**
 * How many slots a plot `plotWidth` pixels wide has room for.
 * @param {number} plotWidth
 */
export function maxSlots(plotWidth) {
  return Math.max(MIN_SLOTS, Math.floor(plotWidth / MIN_SLOT_PX));
}

/**
 * The finest bar width (a multiple of `baseMs`, the width of `bars`) at
 * which `bars` fit in `slots` slots; the widest there is when none does.
 * @param {{t: number}[]} bars sorted oldest first, not empty
 * @param {number} baseMs
 * @param {number} slots
 */
export function fitStep(bars, baseMs, slots) {
  const steps = BAR_STEPS.filter((s) => s >= baseMs && s % baseMs === 0);
  const first = bars[0].t;
  const last = bars[bars.length - 1].t;
  const fits = (s) => (bucketStart(last, s) - bucketStart(first, s)) / s + 1 <= slots;
  return steps.find(fits) ?? steps[steps.length - 1] ?? baseMs;
}

/**
 * Which bars are visible and where, for a plot `plotWidth` pixels wide.
 * Bars are placed by time (a minute without trades stays a gap).
 * @param {{t: number}[]} bars sorted oldest first
 * @param {number} plotWidth
 * @param {number} intervalMs
 * @returns {{start: number, t0: number, slots: number, slotW: number}}
 *   `start`: index of the first visible bar; `t0`: time of slot 0
 */
export function layoutSlots(bars, plotWidth, intervalMs) {
  const most = maxSlots(plotWidth);
  if (!bars.length) return { start: 0, t0: 0, slots: MIN_SLOTS, slotW: plotWidth / MIN_SLOTS };
  const last = bars[bars.length - 1].t;
  const t0 = Math.max(bars[0].t, last - (most - 1) * intervalMs);
  let start = 0;
  while (start < bars.length && bars[start].t < t0) start += 1;
  const used = Math.round((last - t0) / intervalMs) + 1;
  const slots = Math.min(most, Math.max(MIN_SLOTS, used));
  return { start, t0, slots, slotW: plotWidth / slots };
}

/**
 * Daily bars are stamped with their trading date at 00:00 UTC (PROTOCOL
 * §12.1), so their dates are read in UTC; finer bars' times are instants,
 * read in the viewer's time zone.
 * @param {number} stepMs
 */
function zoneOf(stepMs) {
  return stepMs % DAY === 0 ? 'UTC' : undefined;
}

/**
 * Year, month and day of a time, and the time of a date's 00:00, in UTC or
 * in the viewer's time zone (the only two the chart needs).
 * @param {string | undefined} timeZone 'UTC' or undefined
 */
function calendar(timeZone) {
  if (timeZone === 'UTC') {
    return {
      ymd: (t) => { const d = new Date(t); return [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()]; },
      at: (y, m, d) => Date.UTC(y, m, d),
    };
  }
  return {
    ymd: (t) => { const d = new Date(t); return [d.getFullYear(), d.getMonth(), d.getDate()]; },
    at: (y, m, d) => new Date(y, m, d).getTime(),
  };
}

/**
 * The labels of a time axis from `t0` to `t1`, at least `minGapMs` apart:
 * round clock times ("14:30") for an intraday chart; with `dates`, midnights
 * ("Nov 25", every n-th day counted from a Monday so labels stay put while
 * the chart moves) or, wider apart, month starts ("Mar"; "2026" for January).
 * @param {number} t0
 * @param {number} t1
 * @param {number} minGapMs
 * @param {{dates?: boolean, timeZone?: string, locale?: string}} [options]
 *   timeZone: 'UTC', or undefined for the viewer's
 * @returns {{t: number, label: string}[]}
 */
export function axisTicks(t0, t1, minGapMs, { dates = false, timeZone, locale } = {}) {
  const ticks = [];
  if (!dates) {
    const step = TIME_TICKS.find((s) => s >= minGapMs) ?? TIME_TICKS[TIME_TICKS.length - 1];
    // Round on the viewer's clock, not on UTC's.
    const offset = timeZone === 'UTC' ? 0 : -new Date(t0).getTimezoneOffset() * MINUTE;
    for (let t = Math.ceil((t0 + offset) / step) * step - offset; t <= t1; t += step) {
      ticks.push({ t, label: formatTime(t, { locale, seconds: false, timeZone }) });
    }
    return ticks;
  }
  const { ymd, at } = calendar(timeZone);
  let [y, m, d] = ymd(t0);
  const days = DAY_TICKS.find((n) => n * DAY >= minGapMs);
  if (days) {
    for (let t = at(y, m, d); t <= t1; d += 1, t = at(y, m, d)) {
      const monday = Date.UTC(y, m, d) / DAY - 4; // days since 1970-01-05
      if (t >= t0 && monday % days === 0) ticks.push({ t, label: formatDate(t, { locale, timeZone }) });
    }
    return ticks;
  }
  const months = MONTH_TICKS.find((n) => n * 28 * DAY >= minGapMs) ?? MONTH_TICKS[MONTH_TICKS.length - 1];
  for (let t = at(y, m, 1); t <= t1; m += 1, t = at(y, m, 1)) {
    if (t >= t0 && (y * 12 + m) % months === 0) ticks.push({ t, label: formatMonth(t, { locale, timeZone, year: m % 12 === 0 }) });
  }
  return ticks;
}

/**
 * What one bar of `stepMs` is called: "1-minute", "4-hour", "daily", "weekly".
 * @param {number} stepMs
 */
export function stepName(stepMs) {
  if (stepMs === WEEK) return 'weekly';
  if (stepMs === DAY) return 'daily';
  if (stepMs % HOUR === 0) return `${stepMs / HOUR}-hour`;
  return `${stepMs / MINUTE}-minute`;
}

/**
 * When a bar of `stepMs` starts, for the legend: its time ("14:05"), with
 * `dates` its date and time ("Nov 25 14:05"), and for a daily or weekly bar
 * its date ("Nov 25, 2025").
 * @param {number} t
 * @param {{locale?: string, dates?: boolean, stepMs?: number}} [options]
 */
export function formatBarTime(t, { locale, dates = false, stepMs = MINUTE } = {}) {
  if (zoneOf(stepMs)) return formatDate(t, { locale, timeZone: zoneOf(stepMs), year: true });
  const time = formatTime(t, { locale, seconds: false });
  return dates ? `${formatDate(t, { locale })} ${time}` : time;
}

/** Reads the theme's colours from CSS custom properties on `el`. */
function themeColors(el) {
  const cs = getComputedStyle(el);
  const v = (name, fallback) => cs.getPropertyValue(name).trim() || fallback;
  return {
    up: v('--up', '#16a34a'),
    down: v('--down', '#dc2626'),
    text: v('--text', '#111'),
    muted: v('--muted', '#666'),
    grid: v('--grid', 'rgba(128,128,128,0.2)'),
    panel: v('--panel', '#fff'),
    font: cs.fontFamily || 'sans-serif',
  };
}

/**
 * Draws the chart: `bars`, combined into wider ones when they do not fit
 * (see {@link fitStep}). Returns the bars drawn, their width, and what a
 * pointer handler needs to find the bar under the pointer.
 *
 * @param {HTMLCanvasElement} canvas sized by CSS; the backing store is set to
 *   its CSS size times devicePixelRatio
 * @param {{t:number,o:number,h:number,l:number,c:number,v:number}[]} bars
 * @param {{intervalMs?: number, dates?: boolean, prevClose?: number, last?: number, locale?: string, emptyText?: string}} [options]
 *   intervalMs: the width of `bars`; dates: label the time axis with dates
 * @returns {{barAt: (x: number) => object | null, bars: object[], intervalMs: number}}
 */
export function drawChart(canvas, bars, { intervalMs = MINUTE, dates = false, prevClose, last, locale, emptyText = 'Waiting for the first trade…' } = {}) {
  const dpr = globalThis.devicePixelRatio || 1;
  const cssW = Math.max(1, Math.floor(canvas.clientWidth));
  const cssH = Math.max(1, Math.floor(canvas.clientHeight));
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const ctx = canvas.getContext('2d');
  const none = { barAt: () => null, bars: [], intervalMs };
  if (!ctx) return none;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const col = themeColors(canvas);
  const fontSize = 11;
  ctx.font = `${fontSize}px ${col.font}`;
  ctx.textBaseline = 'middle';

  const axisW = 70;
  const left = 8;
  const top = 10;
  const bottomAxis = 22;
  const plotW = Math.max(10, cssW - left - axisW);
  const plotH = Math.max(10, cssH - top - bottomAxis);
  const volH = Math.round(plotH * 0.2);
  const priceH = plotH - volH - 8;
  const volTop = top + priceH + 8;

  if (!bars.length) {
    ctx.fillStyle = col.muted;
    ctx.textAlign = 'center';
    ctx.font = `${fontSize + 2}px ${col.font}`;
    ctx.fillText(emptyText, left + plotW / 2, top + plotH / 2);
    return none;
  }

  const step = fitStep(bars, intervalMs, maxSlots(plotW));
  const fitted = step === intervalMs ? bars : aggregateBars(bars, step);
  const { start, t0, slots, slotW } = layoutSlots(fitted, plotW, step);
  const visible = fitted.slice(start);

  // Price scale over the visible bars, padded; a flat series gets a small band.
  let lo = Infinity;
  let hi = -Infinity;
  let vMax = 0;
  for (const b of visible) {
    if (b.l < lo) lo = b.l;
    if (b.h > hi) hi = b.h;
    if (b.v > vMax) vMax = b.v;
  }
  if (typeof prevClose === 'number' && Number.isFinite(prevClose)) {
    // Include the previous close when it is close enough not to squash the bars.
    const span = Math.max(hi - lo, Math.abs(hi) * 0.002);
    if (prevClose > lo - span && prevClose < hi + span) {
      lo = Math.min(lo, prevClose);
      hi = Math.max(hi, prevClose);
    }
  }
  let span = hi - lo;
  if (!(span > 0)) span = Math.max(Math.abs(hi) * 0.002, 10 ** -priceDecimals(hi));
  lo -= span * 0.08;
  hi += span * 0.08;
  const y = (p) => top + priceH * (1 - (p - lo) / (hi - lo));
  const x = (t) => left + ((t - t0) / step + 0.5) * slotW;

  // Where the axis tags will go (drawn last), so grid labels can keep clear.
  const lastPrice = typeof last === 'number' ? last : visible[visible.length - 1].c;
  const lastVisible = lastPrice >= lo && lastPrice <= hi;
  const pcVisible = typeof prevClose === 'number' && prevClose > lo && prevClose < hi;
  const pcTag = pcVisible && !(lastVisible && Math.abs(y(prevClose) - y(lastPrice)) < 19);
  const tagYs = [];
  if (lastVisible) tagYs.push(y(lastPrice));
  if (pcTag) tagYs.push(y(prevClose));

  // Horizontal grid and price labels.
  const priceStep = niceStep(hi - lo, Math.max(2, Math.floor(priceH / 48)));
  ctx.strokeStyle = col.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = col.muted;
  ctx.textAlign = 'left';
  for (let p = Math.ceil(lo / priceStep) * priceStep; p <= hi; p += priceStep) {
    const yy = Math.round(y(p)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + plotW, yy);
    ctx.stroke();
    if (tagYs.every((ty) => Math.abs(ty - yy) >= 16)) ctx.fillText(formatPrice(p, locale), left + plotW + 8, yy);
  }

  // Time labels, far enough apart not to overlap.
  ctx.textAlign = 'center';
  ctx.fillStyle = col.muted;
  const ticks = axisTicks(t0, t0 + slots * step, (LABEL_PX / slotW) * step, { dates, timeZone: zoneOf(step), locale });
  for (const { t, label } of ticks) {
    const xx = x(t);
    if (xx < left + 14 || xx > left + plotW - 14) continue;
    ctx.strokeStyle = col.grid;
    ctx.beginPath();
    ctx.moveTo(Math.round(xx) + 0.5, top);
    ctx.lineTo(Math.round(xx) + 0.5, volTop + volH);
    ctx.stroke();
    ctx.fillText(label, xx, top + plotH + bottomAxis / 2 + 2);
  }

  // Previous close: a dotted muted line (its axis tag is drawn last).
  if (pcVisible) {
    const yy = Math.round(y(prevClose)) + 0.5;
    ctx.save();
    ctx.setLineDash([2, 3]);
    ctx.strokeStyle = col.muted;
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + plotW, yy);
    ctx.stroke();
    ctx.restore();
  }

  // Candles and volume.
  const bodyW = Math.max(1, Math.min(18, Math.floor(slotW * 0.64)));
  for (const b of visible) {
    const up = b.c >= b.o;
    const color = up ? col.up : col.down;
    const cx = Math.round(x(b.t));
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 1;
    // wick
    ctx.beginPath();
    ctx.moveTo(cx + 0.5, Math.round(y(b.h)));
    ctx.lineTo(cx + 0.5, Math.round(y(b.l)));
    ctx.stroke();
    // body: hollow when up, filled when down
    const yTop = Math.round(y(Math.max(b.o, b.c)));
    const yBot = Math.round(y(Math.min(b.o, b.c)));
    const h = Math.max(1, yBot - yTop);
    const bx = cx - Math.floor(bodyW / 2);
    if (up && bodyW >= 3 && h >= 3) {
      ctx.fillStyle = col.panel;
      ctx.fillRect(bx, yTop, bodyW, h);
      ctx.strokeRect(bx + 0.5, yTop + 0.5, bodyW - 1, h - 1);
    } else {
      ctx.fillRect(bx, yTop, bodyW, h);
    }
    // volume
    if (vMax > 0 && b.v > 0) {
      const vh = Math.max(1, Math.round((b.v / vMax) * volH));
      ctx.globalAlpha = 0.45;
      ctx.fillStyle = color;
      ctx.fillRect(bx, volTop + volH - vh, bodyW, vh);
      ctx.globalAlpha = 1;
    }
  }

  // Axis tags: previous close (muted, outlined) and last price (filled in
  // its direction's colour), drawn over the grid labels.
  const tag = (price, { fill, stroke, text }) => {
    const yy = Math.round(y(price)) + 0.5;
    const label = formatPrice(price, locale);
    const tw = ctx.measureText(label).width + 10;
    ctx.fillStyle = fill;
    ctx.fillRect(left + plotW + 2, yy - 9, tw, 18);
    if (stroke) {
      ctx.strokeStyle = stroke;
      ctx.strokeRect(left + plotW + 2.5, yy - 8.5, tw - 1, 17);
    }
    ctx.fillStyle = text;
    ctx.textAlign = 'left';
    ctx.fillText(label, left + plotW + 7, yy + 0.5);
    return yy;
  };
  if (pcTag) {
    tag(prevClose, { fill: col.panel, stroke: col.muted, text: col.muted });
  }
  if (lastVisible) {
    const ref = typeof prevClose === 'number' ? prevClose : visible[0].o;
    const color = lastPrice >= ref ? col.up : col.down;
    const yy = Math.round(y(lastPrice)) + 0.5;
    ctx.save();
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = color;
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + plotW, yy);
    ctx.stroke();
    ctx.restore();
    tag(lastPrice, { fill: color, text: col.panel });
  }

  // Volume scale: the tallest bar's volume.
  if (vMax > 0) {
    ctx.fillStyle = col.muted;
    ctx.textAlign = 'left';
    ctx.fillText(formatVolume(vMax, locale), left + plotW + 8, volTop + 6);
  }

  return {
    bars: visible,
    intervalMs: step,
    barAt(px) {
      const slot = Math.floor((px - left) / slotW);
      if (slot < 0 || slot >= slots) return null;
      const t = t0 + slot * step;
      return visible.find((b) => b.t === t) ?? null;
    },
  };
}
