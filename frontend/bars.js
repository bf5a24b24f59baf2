// Intraday bars for the detail chart, and the recent-price samples behind
// each row's sparkline. Pure data structures (no DOM), tested under node.
//
// Where the chart's bars come from:
// - the server's history, `GET /api/v1/history/{symbol}?interval=1m&limit=N`,
//   when it answers 200 (see {@link parseHistory});
// - otherwise (404: the endpoint is not there) 1-minute bars built in the page
//   from the live stream ({@link BarBuilder}). The stream is conflated (the
//   latest value at most max_hz times a second), so such a bar's high and low
//   are those of the prices this page saw, not necessarily the traded extremes;
//   volume is exact, because `v` is cumulative.
// - With history, the bars after the last history bar come from the live
//   builder too ({@link mergeBars}), so the chart keeps moving between fetches.
//   Daily history has no live builder: its newest bar, the day in progress,
//   follows the live quote instead ({@link followQuote}).
// - Bars too fine for the chart's width are combined into wider ones
//   ({@link aggregateBars}).

/** One bar: start time (epoch ms), open, high, low, close, volume. */
/** @typedef {{t: number, o: number, h: number, l: number, c: number, v: number}} Bar */

const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

/**
 * Builds fixed-interval OHLCV bars from successive full quotes of one symbol.
 */
export class BarBuilder {
  /** @type {Bar[]} oldest first */
  bars = [];
  /** Bumped on every change, so a renderer can tell whether to redraw. */
  version = 0;
  #intervalMs;
  #maxBars;
  #lastV = null;
  #lastP = null;
  #lastT = null;

  /**
   * @param {{intervalMs?: number, maxBars?: number}} [options]
   */
  constructor({ intervalMs = 60_000, maxBars = 600 } = {}) {
    this.#intervalMs = intervalMs;
    this.#maxBars = maxBars;
  }

  get intervalMs() { return this.#intervalMs; }

  /**
   * Feeds the symbol's current full quote (after merging an update). Only
   * quotes whose trade price, volume or time moved change the bars, so
   * book-only updates are cheap no-ops.
   *
   * Volume is the rise of the cumulative `v` since the previous quote. The
   * first quote seen only sets the baseline (its volume happened before this
   * page was watching), and a drop in `v` (a new session, or a restarted
   * server) resets the baseline instead of adding a negative volume.
   *
   * @param {{p?: number, v?: number, t?: number}} quote
   * @returns {boolean} whether the bars changed
   */
  update(quote) {
    if (!quote || !isNum(quote.p) || !isNum(quote.t)) return false;
    const { p, t } = quote;
    const v = isNum(quote.v) ? quote.v : null;
    if (p === this.#lastP && t === this.#lastT && v === this.#lastV) return false;
    let dv = 0;
    if (v !== null) {
      if (this.#lastV !== null && v >= this.#lastV) dv = v - this.#lastV;
      this.#lastV = v;
    }
    this.#lastP = p;
    this.#lastT = t;
    const start = Math.floor(t / this.#intervalMs) * this.#intervalMs;
    const last = this.bars[this.bars.length - 1];
    if (last && last.t === start) {
      if (p > last.h) last.h = p;
      if (p < last.l) last.l = p;
      last.c = p;
      last.v += dv;
    } else if (!last || start > last.t) {
      this.bars.push({ t: start, o: p, h: p, l: p, c: p, v: dv });
      if (this.bars.length > this.#maxBars) this.bars.splice(0, this.bars.length - this.#maxBars);
    } else {
      // A quote for an older bar (its `t` went backwards: a restarted server
      // with a clock behind ours). Start over rather than draw out of order.
      this.bars = [{ t: start, o: p, h: p, l: p, c: p, v: dv }];
    }
    this.version += 1;
    return true;
  }

  /**
   * Volume already counted in the bar that starts at `t` (0 if none); used to
   * avoid counting twice what a history reply already contains.
   * @param {number} t
   */
  volumeAt(t) {
    for (let i = this.bars.length - 1; i >= 0; i -= 1) {
      if (this.bars[i].t === t) return this.bars[i].v;
      if (this.bars[i].t < t) break;
    }
    return 0;
  }
}

/**
 * Validates a history reply, `{"s","interval","bars":[{t,o,h,l,c,v}]}`:
 * keeps well-formed bars only, sorted by time, one per start time.
 * @param {unknown} body
 * @returns {Bar[] | null} null when the body is not a history reply at all
 */
export function parseHistory(body) {
  if (!body || typeof body !== 'object' || !Array.isArray(body.bars)) return null;
  const byT = new Map();
  for (const b of body.bars) {
    if (!b || !isNum(b.t) || !isNum(b.o) || !isNum(b.h) || !isNum(b.l) || !isNum(b.c)) continue;
    byT.set(b.t, { t: b.t, o: b.o, h: b.h, l: b.l, c: b.c, v: isNum(b.v) ? b.v : 0 });
  }
  return [...byT.values()].sort((a, b) => a.t - b.t);
}

/**
 * Joins history bars with live-built bars.
 *
 * History wins for every bar it has. The live bar of the same minute as the
 * last history bar extends it (high/low/close, and the volume the live
 * builder added after the history was fetched: `liveVolumeAtFetch`), and
 * later live bars are appended as they are.
 *
 * @param {Bar[]} history sorted oldest first
 * @param {Bar[]} live sorted oldest first
 * @param {number} [liveVolumeAtFetch] the live builder's volume in the last
 *   history bar's interval when the history was fetched
 * @returns {Bar[]} new array; bars are copies where they were merged
 */
export function mergeBars(history, live, liveVolumeAtFetch = 0) {
  if (!history.length) return live.slice();
  const out = history.slice();
  const lastHist = out[out.length - 1];
  for (const bar of live) {
    if (bar.t < lastHist.t) continue;
    if (bar.t === lastHist.t) {
      out[out.length - 1] = {
        t: lastHist.t,
        o: lastHist.o,
        h: Math.max(lastHist.h, bar.h),
        l: Math.min(lastHist.l, bar.l),
        c: bar.c,
        v: lastHist.v + Math.max(0, bar.v - liveVolumeAtFetch),
      };
    } else {
      out.push(bar);
    }
  }
  return out;
}

const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
/** 1970-01-05, the first Monday after the epoch: weeks start on Mondays. */
const FIRST_MONDAY_MS = 4 * DAY_MS;

/**
 * Start of the `stepMs`-wide bucket holding `t`: a multiple of `stepMs` since
 * the epoch (so 15-minute buckets start at :00, :15, …, days at 00:00 UTC),
 * except that week-long buckets start on Mondays.
 * @param {number} t
 * @param {number} stepMs
 */
export function bucketStart(t, stepMs) {
  const origin = stepMs % WEEK_MS === 0 ? FIRST_MONDAY_MS : 0;
  return Math.floor((t - origin) / stepMs) * stepMs + origin;
}

/**
 * Combines finer bars into `stepMs`-wide ones (see {@link bucketStart}): the
 * first open, the highest high, the lowest low, the last close and the
 * summed volume. A bucket holding one bar keeps that bar object.
 * @param {Bar[]} bars sorted oldest first
 * @param {number} stepMs
 * @returns {Bar[]}
 */
export function aggregateBars(bars, stepMs) {
  const out = [];
  for (const b of bars) {
    const t = bucketStart(b.t, stepMs);
    const last = out[out.length - 1];
    if (last?.t !== t) {
      out.push(b.t === t ? b : { ...b, t });
    } else {
      out[out.length - 1] = { t, o: last.o, h: Math.max(last.h, b.h), l: Math.min(last.l, b.l), c: b.c, v: last.v + b.v };
    }
  }
  return out;
}

/**
 * Daily bars whose newest bar, the day in progress, follows the live quote:
 * its open, high, low, volume and close become the quote's `o`, `h`, `l`, `v`
 * and `p` (the daily bar is made of exactly those, docs/PROTOCOL.md §12.1).
 *
 * After the trading day rolls over, the newest bar held is yesterday's until
 * the next history fetch brings today's. So the quote counts as the bar's day
 * only while it agrees with it: the same open, and a high, low and volume
 * that have only grown since (within one day they never go back).
 *
 * @param {Bar[]} bars daily bars, oldest first
 * @param {{o?: number, h?: number, l?: number, p?: number, v?: number} | undefined} quote
 * @returns {Bar[]} `bars` itself when the quote does not apply
 */
export function followQuote(bars, quote) {
  const last = bars[bars.length - 1];
  if (!last || !quote || ![quote.o, quote.h, quote.l, quote.p, quote.v].every(isNum)) return bars;
  if (quote.o !== last.o || quote.h < last.h || quote.l > last.l || quote.v < last.v) return bars;
  return [...bars.slice(0, -1), { t: last.t, o: quote.o, h: quote.h, l: quote.l, c: quote.p, v: quote.v }];
}

/**
 * The last prices of one symbol for its sparkline: one sample per price
 * change, at most one per `minIntervalMs` (a newer price within the interval
 * replaces the newest sample), at most `capacity` samples.
 */
export class PriceSamples {
  /** @type {number[]} oldest first */
  values = [];
  version = 0;
  #capacity;
  #minIntervalMs;
  #lastAt = -Infinity;

  /**
   * @param {{capacity?: number, minIntervalMs?: number}} [options]
   */
  constructor({ capacity = 90, minIntervalMs = 200 } = {}) {
    this.#capacity = capacity;
    this.#minIntervalMs = minIntervalMs;
  }

  /**
   * @param {number | undefined} price
   * @param {number} now ms on any monotonic clock
   * @returns {boolean} whether the samples changed
   */
  push(price, now) {
    if (!isNum(price)) return false;
    const n = this.values.length;
    if (n && this.values[n - 1] === price) return false;
    if (n > 1 && now - this.#lastAt < this.#minIntervalMs) {
      this.values[n - 1] = price;
    } else {
      this.values.push(price);
      this.#lastAt = now;
      if (this.values.length > this.#capacity) this.values.splice(0, this.values.length - this.#capacity);
    }
    this.version += 1;
    return true;
  }

  clear() {
    this.values = [];
    this.#lastAt = -Infinity;
    this.version += 1;
  }
}

/**
 * SVG polyline points for a sparkline of `values` in a `width` x `height`
 * box with `pad` pixels kept free at top and bottom. A flat series is drawn
 * through the middle.
 * @param {number[]} values
 * @param {number} width
 * @param {number} height
 * @param {number} [pad]
 * @returns {string} "x,y x,y ..." ('' for fewer than 2 values)
 */
export function sparklinePoints(values, width, height, pad = 2) {
  const n = values.length;
  if (n < 2) return '';
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max - min;
  const usable = height - 2 * pad;
  const step = width / (n - 1);
  const parts = new Array(n);
  for (let i = 0; i < n; i += 1) {
    const y = span > 0 ? pad + usable * (1 - (values[i] - min) / span) : height / 2;
    parts[i] = `${(i * step).toFixed(1)},${y.toFixed(1)}`;
  }
  return parts.join(' ');
}
