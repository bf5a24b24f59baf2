// The detail panel's intraday chart: 1-minute candles over a volume
// histogram, drawn on a <canvas>.
//
// Up bars are hollow and down bars are filled, so the direction of a bar is
// readable without its colour. Colours come from the page's CSS custom
// properties (style.css), so the chart follows the light/dark theme.

import { formatPrice, formatTime, formatVolume, priceDecimals } from './format.js';

/** Fewest minute slots on the time axis: a young series is drawn at the left of a 30-minute window. */
const MIN_SLOTS = 30;
/** Narrowest slot in CSS pixels; more bars than fit are cut from the left. */
const MIN_SLOT_PX = 5;

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
 * Which bars are visible and where, for a plot `plotWidth` pixels wide.
 * Bars are placed by time (a minute without trades stays a gap).
 * @param {{t: number}[]} bars sorted oldest first
 * @param {number} plotWidth
 * @param {number} intervalMs
 * @returns {{start: number, t0: number, slots: number, slotW: number}}
 *   `start`: index of the first visible bar; `t0`: time of slot 0
 */
export function layoutSlots(bars, plotWidth, intervalMs) {
  const maxSlots = Math.max(MIN_SLOTS, Math.floor(plotWidth / MIN_SLOT_PX));
  if (!bars.length) return { start: 0, t0: 0, slots: MIN_SLOTS, slotW: plotWidth / MIN_SLOTS };
  const last = bars[bars.length - 1].t;
  const t0 = Math.max(bars[0].t, last - (maxSlots - 1) * intervalMs);
  let start = 0;
  while (start < bars.length && bars[start].t < t0) start += 1;
  const used = Math.round((last - t0) / intervalMs) + 1;
  const slots = Math.min(maxSlots, Math.max(MIN_SLOTS, used));
  return { start, t0, slots, slotW: plotWidth / slots };
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
 * Draws the chart and returns what a pointer handler needs to find the bar
 * under the pointer.
 *
 * @param {HTMLCanvasElement} canvas sized by CSS; the backing store is set to
 *   its CSS size times devicePixelRatio
 * @param {{t:number,o:number,h:number,l:number,c:number,v:number}[]} bars
 * @param {{intervalMs?: number, prevClose?: number, last?: number, locale?: string, emptyText?: string}} [options]
 * @returns {{barAt: (x: number) => object | null}}
 */
export function drawChart(canvas, bars, { intervalMs = 60_000, prevClose, last, locale, emptyText = 'Waiting for the first trade…' } = {}) {
  const dpr = globalThis.devicePixelRatio || 1;
  const cssW = Math.max(1, Math.floor(canvas.clientWidth));
  const cssH = Math.max(1, Math.floor(canvas.clientHeight));
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const ctx = canvas.getContext('2d');
  const none = { barAt: () => null };
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

  const { start, t0, slots, slotW } = layoutSlots(bars, plotW, intervalMs);
  const visible = bars.slice(start);

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
  const x = (t) => left + ((t - t0) / intervalMs + 0.5) * slotW;

  // Where the axis tags will go (drawn last), so grid labels can keep clear.
  const lastPrice = typeof last === 'number' ? last : visible[visible.length - 1].c;
  const lastVisible = lastPrice >= lo && lastPrice <= hi;
  const pcVisible = typeof prevClose === 'number' && prevClose > lo && prevClose < hi;
  const pcTag = pcVisible && !(lastVisible && Math.abs(y(prevClose) - y(lastPrice)) < 19);
  const tagYs = [];
  if (lastVisible) tagYs.push(y(lastPrice));
  if (pcTag) tagYs.push(y(prevClose));

  // Horizontal grid and price labels.
  const step = niceStep(hi - lo, Math.max(2, Math.floor(priceH / 48)));
  ctx.strokeStyle = col.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = col.muted;
  ctx.textAlign = 'left';
  for (let p = Math.ceil(lo / step) * step; p <= hi; p += step) {
    const yy = Math.round(y(p)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + plotW, yy);
    ctx.stroke();
    if (tagYs.every((ty) => Math.abs(ty - yy) >= 16)) ctx.fillText(formatPrice(p, locale), left + plotW + 8, yy);
  }

  // Time labels, every k slots so they do not overlap.
  const every = Math.max(1, Math.ceil(56 / slotW));
  const firstLabel = Math.ceil(Math.round(t0 / intervalMs) / every) * every;
  ctx.textAlign = 'center';
  ctx.fillStyle = col.muted;
  for (let i = firstLabel; (i * intervalMs - t0) / intervalMs < slots; i += every) {
    const t = i * intervalMs;
    const xx = x(t);
    if (xx < left + 14 || xx > left + plotW - 14) continue;
    ctx.strokeStyle = col.grid;
    ctx.beginPath();
    ctx.moveTo(Math.round(xx) + 0.5, top);
    ctx.lineTo(Math.round(xx) + 0.5, volTop + volH);
    ctx.stroke();
    ctx.fillText(formatTime(t, { locale, seconds: false }), xx, top + plotH + bottomAxis / 2 + 2);
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
    barAt(px) {
      const slot = Math.floor((px - left) / slotW);
      if (slot < 0 || slot >= slots) return null;
      const t = t0 + slot * intervalMs;
      return visible.find((b) => b.t === t) ?? null;
    },
  };
}
