// Number and time formatting for the dashboard: "numbers for people".
//
// Pure functions over plain numbers, no DOM, so they run under `node --test`
// (frontend/tests/format.test.mjs). Every function takes an optional locale;
// the page passes the browser's, the tests pin 'en-US'.
//
// Rules (from the dashboard issue):
// - prices: thousands separators, 2 decimals at or above 1, 4 below;
// - changes: always signed (+ / −), with the decimals of the price they belong to;
// - change percent: signed, 2 decimals;
// - volume: separated below a million, compact above (1.23M);
// - a missing value is an em dash, never "NaN" or "undefined".

/** Shown for a value the server has not sent yet. */
export const MISSING = '—';

/** U+2212 MINUS SIGN: the same width as "+" in tabular figures, unlike "-". */
export const MINUS = '\u2212';

/** Direction glyphs; direction is never shown by colour alone. */
export const ARROW_UP = '▲';
export const ARROW_DOWN = '▼';

const cache = new Map();

/** One Intl formatter per (kind, locale, options): constructing them is slow. */
function intlFormat(Format, locale, options) {
  const key = `${Format.name}|${locale ?? ''}|${JSON.stringify(options)}`;
  let format = cache.get(key);
  if (!format) {
    format = new Format(locale, options);
    cache.set(key, format);
  }
  return format;
}

const numberFormat = (locale, options) => intlFormat(Intl.NumberFormat, locale, options);
const dateTimeFormat = (locale, options) => intlFormat(Intl.DateTimeFormat, locale, options);

function isNumber(x) {
  return typeof x === 'number' && Number.isFinite(x);
}

/**
 * Decimals for a price: 2 at or above 1, 4 below (penny stocks, FX-like
 * quotes), judged on the magnitude.
 * @param {number} price
 * @returns {2 | 4}
 */
export function priceDecimals(price) {
  return Math.abs(price) >= 1 ? 2 : 4;
}

/** Replaces the locale's ASCII hyphen-minus by a real minus sign. */
function typographicMinus(text) {
  return text.replace('-', MINUS);
}

/**
 * A price with grouping and fixed decimals: 1398.56 -> "1,398.56",
 * 0.51234 -> "0.5123".
 * @param {number | undefined} price
 * @param {string} [locale]
 * @returns {string}
 */
export function formatPrice(price, locale) {
  if (!isNumber(price)) return MISSING;
  const d = priceDecimals(price);
  return typographicMinus(numberFormat(locale, { minimumFractionDigits: d, maximumFractionDigits: d }).format(price));
}

/**
 * A signed change. `reference` is the price the change belongs to (it picks
 * the decimals, so a 0.0412 change of a 0.51 stock is not shown as "+0.04").
 * Zero (after rounding) is shown unsigned.
 * @param {number | undefined} change
 * @param {number} [reference] defaults to the change itself
 * @param {string} [locale]
 * @returns {string}
 */
export function formatChange(change, reference, locale) {
  if (!isNumber(change)) return MISSING;
  const d = priceDecimals(isNumber(reference) ? reference : change);
  const text = numberFormat(locale, {
    minimumFractionDigits: d,
    maximumFractionDigits: d,
    signDisplay: 'exceptZero',
  }).format(change);
  return typographicMinus(text);
}

/**
 * A signed percentage with 2 decimals: 0.11 -> "+0.11%", -1.5 -> "−1.50%".
 * The input is already in percent (the server's `dp`).
 * @param {number | undefined} percent
 * @param {string} [locale]
 * @returns {string}
 */
export function formatPercent(percent, locale) {
  if (!isNumber(percent)) return MISSING;
  const text = numberFormat(locale, {
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
    signDisplay: 'exceptZero',
  }).format(percent);
  return `${typographicMinus(text)}%`;
}

/**
 * Volume: separated below one million (45,678), compact from there on
 * (1.23M, 4.5B), so the column stays narrow on a busy day.
 * @param {number | undefined} volume
 * @param {string} [locale]
 * @returns {string}
 */
export function formatVolume(volume, locale) {
  if (!isNumber(volume)) return MISSING;
  if (Math.abs(volume) < 1e6) return numberFormat(locale, { maximumFractionDigits: 0 }).format(volume);
  return numberFormat(locale, { notation: 'compact', maximumFractionDigits: 2, minimumFractionDigits: 2 }).format(volume);
}

/**
 * A whole number with grouping (sizes, full volume): 1800 -> "1,800".
 * @param {number | undefined} n
 * @param {string} [locale]
 */
export function formatInteger(n, locale) {
  if (!isNumber(n)) return MISSING;
  return numberFormat(locale, { maximumFractionDigits: 0 }).format(n);
}

/**
 * The day's range "low – high", each as a price.
 * @param {number | undefined} low
 * @param {number | undefined} high
 * @param {string} [locale]
 */
export function formatRange(low, high, locale) {
  if (!isNumber(low) || !isNumber(high)) return MISSING;
  return `${formatPrice(low, locale)} – ${formatPrice(high, locale)}`;
}

/** `ms` with the date and time fields `fields`, in the viewer's time zone unless `timeZone` is given. */
function formatInstant(ms, locale, timeZone, fields) {
  if (!isNumber(ms)) return MISSING;
  return dateTimeFormat(locale, timeZone ? { ...fields, timeZone } : fields).format(ms);
}

/**
 * Wall-clock time of an epoch-ms timestamp, 24-hour "HH:MM:SS" (or "HH:MM"
 * with `seconds: false`), in the viewer's time zone unless `timeZone` is given.
 * @param {number | undefined} ms
 * @param {{locale?: string, seconds?: boolean, timeZone?: string}} [options]
 */
export function formatTime(ms, { locale, seconds = true, timeZone } = {}) {
  const fields = seconds ? { hour: '2-digit', minute: '2-digit', second: '2-digit' } : { hour: '2-digit', minute: '2-digit' };
  return formatInstant(ms, locale, timeZone, { ...fields, hourCycle: 'h23' });
}

/**
 * The calendar date of an epoch-ms timestamp, short: "Nov 25" (with
 * `year: true`, "Nov 25, 2025"), in the viewer's time zone unless `timeZone`
 * is given. A daily bar's `t` is its date at 00:00 UTC: format it in 'UTC'.
 * @param {number | undefined} ms
 * @param {{locale?: string, year?: boolean, timeZone?: string}} [options]
 */
export function formatDate(ms, { locale, year = false, timeZone } = {}) {
  return formatInstant(ms, locale, timeZone, year ? { month: 'short', day: 'numeric', year: 'numeric' } : { month: 'short', day: 'numeric' });
}

/**
 * A month on a long time axis: its short name ("Mar"), or with `year: true`
 * the year alone ("2026"), which the axis shows for January, where a year begins.
 * @param {number | undefined} ms
 * @param {{locale?: string, year?: boolean, timeZone?: string}} [options]
 */
export function formatMonth(ms, { locale, year = false, timeZone } = {}) {
  return formatInstant(ms, locale, timeZone, year ? { year: 'numeric' } : { month: 'short' });
}

/**
 * -1, 0 or 1 for a change value; 0 for missing values.
 * @param {number | undefined} x
 * @returns {-1 | 0 | 1}
 */
export function direction(x) {
  if (!isNumber(x) || x === 0) return 0;
  return x > 0 ? 1 : -1;
}

/**
 * The arrow for a direction, or '' for none.
 * @param {number} dir
 */
export function arrow(dir) {
  return dir > 0 ? ARROW_UP : dir < 0 ? ARROW_DOWN : '';
}

/**
 * A round-trip time: "3 ms", "<1 ms", "1.2 s".
 * @param {number | null | undefined} ms
 */
export function formatDuration(ms) {
  if (!isNumber(ms)) return MISSING;
  if (ms < 1) return '<1 ms';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}
