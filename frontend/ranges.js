// The detail chart's ranges (1H, 1D, 5D, 1Y): which bars of the server's
// history each one shows (docs/PROTOCOL.md §12.1), and how they are fetched,
// a page at a time. No DOM; the page's fetch is injected, so this runs under
// `node --test`.

import { parseHistory } from './bars.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** The server answers at most this many bars a request. */
export const PAGE_LIMIT = 5000;

/**
 * @typedef {object} Range
 * @property {string} id what its button says
 * @property {string} name what it shows, for people ("the last hour")
 * @property {'1m' | '1d'} interval the history API's bar interval
 * @property {number} barMs that interval in milliseconds
 * @property {number} spanMs how far back from now it reaches
 * @property {boolean} dates whether its time axis shows dates (several days) or clock times
 */

/**
 * 1D is the last 24 hours, not "since the session opened": the trading day
 * starts at a local time the server is configured with (PROTOCOL §16) and
 * does not tell viewers, so the page cannot find that start honestly.
 * 5D's 7,200 one-minute bars at most take two requests.
 * @type {Readonly<Record<string, Readonly<Range>>>}
 */
export const RANGES = Object.freeze({
  '1H': Object.freeze({ id: '1H', name: 'the last hour', interval: '1m', barMs: MINUTE, spanMs: HOUR, dates: false }),
  '1D': Object.freeze({ id: '1D', name: 'the last 24 hours', interval: '1m', barMs: MINUTE, spanMs: DAY, dates: false }),
  '5D': Object.freeze({ id: '5D', name: 'the last 5 days', interval: '1m', barMs: MINUTE, spanMs: 5 * DAY, dates: true }),
  '1Y': Object.freeze({ id: '1Y', name: 'the last year', interval: '1d', barMs: DAY, spanMs: 366 * DAY, dates: true }),
});

/** What the chart shows until a range is chosen: about one trading day, as it always did. */
export const DEFAULT_RANGE = RANGES['1D'];

/**
 * The range named `id` (a stored choice, a button's data attribute), or the
 * default for anything else.
 * @param {unknown} id
 * @returns {Readonly<Range>}
 */
export function parseRange(id) {
  return typeof id === 'string' && Object.hasOwn(RANGES, id) ? RANGES[id] : DEFAULT_RANGE;
}

/**
 * The oldest bar start `range` shows at `now`.
 * @param {Range} range
 * @param {number} now epoch ms
 */
export function rangeStart(range, now) {
  return now - range.spanMs;
}

/**
 * The bars of `bars` (oldest first) that are within `range` at `now`.
 * @template {{t: number}} B
 * @param {B[]} bars
 * @param {Range} range
 * @param {number} now
 * @returns {B[]}
 */
export function barsInRange(bars, range, now) {
  const start = rangeStart(range, now);
  const first = bars.findIndex((b) => b.t >= start);
  if (first < 0) return [];
  return first === 0 ? bars : bars.slice(first);
}

/**
 * Loads `range`'s bars, oldest first: the newest page, then older ones while
 * the server says `more` (each asks with `to` = the oldest bar so far), never
 * more bars in all than the range can hold (one per interval of its span),
 * so the number of requests is bounded too.
 *
 * With `since`, only the bars from that time on: a refresh of bars already
 * held (see {@link spliceRefresh}).
 *
 * @param {(query: URLSearchParams) => Promise<unknown>} getPage one request
 *   to `/api/v1/history/{symbol}?{query}`: resolves to the reply's body,
 *   rejects when the request failed
 * @param {Range} range
 * @param {{now: number, since?: number}} options `now`: epoch ms
 * @returns {Promise<import('./bars.js').Bar[]>}
 * @throws {Error} when a reply is not a history reply (and whatever getPage throws)
 */
export async function fetchRange(getPage, range, { now, since }) {
  const from = Math.max(rangeStart(range, now), since ?? -Infinity);
  const most = Math.ceil(range.spanMs / range.barMs);
  let bars = [];
  let to = null;
  do {
    const query = new URLSearchParams({ interval: range.interval, from: String(from), limit: String(Math.min(PAGE_LIMIT, most - bars.length)) });
    if (to !== null) query.set('to', String(to));
    const body = await getPage(query);
    const page = parseHistory(body);
    if (!page) throw new Error('the history reply has no bars');
    bars = page.concat(bars);
    if (body.more !== true || !page.length) break;
    to = page[0].t;
  } while (bars.length < most);
  return bars;
}

/**
 * Joins a refresh to the bars held: the refresh (`fresh`, every bar from
 * `since` on) replaces the held bars from `since` on, whose newest may have
 * grown since, and held bars that left the range (before `start`) go.
 * @template {{t: number}} B
 * @param {B[]} held oldest first
 * @param {B[]} fresh oldest first
 * @param {number} since
 * @param {number} start
 * @returns {B[]}
 */
export function spliceRefresh(held, fresh, since, start) {
  return held.filter((b) => b.t >= start && b.t < since).concat(fresh);
}
