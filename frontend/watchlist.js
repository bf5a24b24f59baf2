// The watchlist (an ordered list of symbols) and its persistence in
// localStorage, what the detail chart showed last (so a reload opens on it),
// plus the type-ahead search over the symbol universe.
// No DOM; the storage is injected, so both run under `node --test`.

import { normalizeSymbols } from './ticker-client.js';

/** localStorage key; the suffix versions the stored shape. */
export const STORAGE_KEY = 'tickstream.watchlist.v1';

/** Shown when nothing is stored (a stored empty list stays empty). */
export const DEFAULT_WATCHLIST = Object.freeze(['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL', 'META', 'TSLA', 'JPM']);

/** Same rule as the server (docs/PROTOCOL.md §2), after upper-casing. */
const SYMBOL_RE = /^[A-Z0-9][A-Z0-9.-]{0,15}$/;

/** Upper bound on a stored list, so a corrupted value cannot blow up the page. */
export const MAX_WATCHLIST = 200;

/**
 * Reads the stored watchlist. Anything unusable (missing, not JSON, wrong
 * shape, storage disabled) gives the default list; malformed names and
 * repeats are dropped.
 * @param {Pick<Storage, 'getItem'> | null | undefined} storage
 * @returns {string[]}
 */
export function loadWatchlist(storage) {
  const parsed = readStored(storage, STORAGE_KEY);
  const list = Array.isArray(parsed) ? parsed : Array.isArray(parsed?.symbols) ? parsed.symbols : null;
  if (!list) return [...DEFAULT_WATCHLIST];
  return normalizeSymbols(list.filter((s) => typeof s === 'string'))
    .filter((s) => SYMBOL_RE.test(s))
    .slice(0, MAX_WATCHLIST);
}

/**
 * Stores the watchlist. Failures (quota, disabled storage) are reported, not
 * thrown: the page keeps working, it just forgets on reload.
 * @param {Pick<Storage, 'setItem'> | null | undefined} storage
 * @param {string[]} symbols
 * @returns {boolean} whether it was stored
 */
export function saveWatchlist(storage, symbols) {
  return writeStored(storage, STORAGE_KEY, { symbols: [...symbols] });
}

/** localStorage key of what the detail chart showed last. */
export const CHART_KEY = 'tickstream.chart.v1';

/**
 * What the detail chart showed last: `{symbol, range}`, each null when
 * nothing usable is stored. The range is returned as stored; the caller
 * knows which ranges exist.
 * @param {Pick<Storage, 'getItem'> | null | undefined} storage
 * @returns {{symbol: string | null, range: string | null}}
 */
export function loadChartChoice(storage) {
  const parsed = readStored(storage, CHART_KEY);
  const symbol = typeof parsed?.symbol === 'string' ? parsed.symbol.trim().toUpperCase() : '';
  return {
    symbol: SYMBOL_RE.test(symbol) ? symbol : null,
    range: typeof parsed?.range === 'string' ? parsed.range : null,
  };
}

/**
 * Stores what the detail chart shows, so a reload opens on it again.
 * @param {Pick<Storage, 'setItem'> | null | undefined} storage
 * @param {{symbol: string | null, range: string | null}} choice
 * @returns {boolean} whether it was stored
 */
export function saveChartChoice(storage, { symbol, range }) {
  return writeStored(storage, CHART_KEY, { symbol, range });
}

/**
 * The symbol the chart opens on: the last one chosen while it is still in
 * the watchlist, else the watchlist's first, else none (an empty list).
 * @param {string | null} chosen
 * @param {string[]} watchlist
 * @returns {string | null}
 */
export function openingSymbol(chosen, watchlist) {
  return chosen && watchlist.includes(chosen) ? chosen : watchlist[0] ?? null;
}

/** The parsed JSON stored under `key`, or null (missing, not JSON, storage blocked). */
function readStored(storage, key) {
  try {
    const raw = storage?.getItem(key) ?? null;
    return raw == null ? null : JSON.parse(raw);
  } catch {
    return null; // a SyntaxError, or a SecurityError when storage is blocked
  }
}

/** Stores `value` as JSON under `key`; false when it could not be stored. */
function writeStored(storage, key, value) {
  try {
    storage?.setItem(key, JSON.stringify(value));
    return Boolean(storage);
  } catch {
    return false;
  }
}

/**
 * Moves `symbol` by `delta` places (clamped to the list); returns a new list,
 * or the same list when nothing moved.
 * @param {string[]} list
 * @param {string} symbol
 * @param {number} delta
 * @returns {string[]}
 */
export function moveSymbol(list, symbol, delta) {
  const from = list.indexOf(symbol);
  if (from < 0) return list;
  const to = Math.max(0, Math.min(list.length - 1, from + delta));
  if (to === from) return list;
  const out = list.slice();
  out.splice(from, 1);
  out.splice(to, 0, symbol);
  return out;
}

/**
 * Whether `text` looks like a symbol the user typed (so Enter can add it even
 * before the symbol list has loaded).
 * @param {string} text
 */
export function isSymbolLike(text) {
  return SYMBOL_RE.test(String(text).trim().toUpperCase());
}

/**
 * Type-ahead over the universe by ticker or company name, best first:
 *   0 exact ticker, 1 ticker prefix, 2 a word of the name starts with the
 *   query (legal-form words like "Inc." do not count), 3 the name starts
 *   with the whole query, 4 the ticker contains it, or the name does (for
 *   queries of 3 characters or more). Ties keep the universe's order.
 * Case- and punctuation-insensitive for names ("procter" finds
 * "The Procter & Gamble Company", "jp morgan" finds "JPMorgan Chase & Co.").
 *
 * @param {{s: string, name?: string}[]} universe
 * @param {string} query
 * @param {number} [limit]
 * @returns {{s: string, name: string, rank: number}[]}
 */
export function searchSymbols(universe, query, limit = 8) {
  const q = String(query ?? '').trim().toUpperCase();
  if (!q) return [];
  const qWords = simplify(q);
  const qFlat = qWords.replace(/ /g, '');
  const hits = [];
  universe.forEach((entry, index) => {
    const s = entry.s;
    const name = entry.name ?? '';
    const nameWords = simplify(name.toUpperCase());
    // Words like "Inc." or "Corporation" are in almost every name: "in"
    // should find Intel and Intuit, not every "Inc.".
    const keyWords = nameWords.split(' ').filter((w) => !NOISE_WORDS.has(w)).join(' ');
    let rank = -1;
    if (s === q) rank = 0;
    else if (s.startsWith(q)) rank = 1;
    else if (qWords && (` ${keyWords}`).includes(` ${qWords}`)) rank = 2;
    else if (qFlat && nameWords.replace(/ /g, '').startsWith(qFlat)) rank = 3;
    else if (s.includes(q) || (qFlat.length >= 3 && nameWords.replace(/ /g, '').includes(qFlat))) rank = 4;
    if (rank >= 0) hits.push({ s, name, rank, index });
  });
  hits.sort((a, b) => a.rank - b.rank || a.index - b.index);
  return hits.slice(0, limit).map(({ s, name, rank }) => ({ s, name, rank }));
}

/** Legal-form and filler words that say nothing about which company it is. */
const NOISE_WORDS = new Set(['THE', 'INC', 'INCORPORATED', 'CORP', 'CORPORATION', 'CO', 'COMPANY', 'CLASS', 'LTD', 'PLC', 'LLC', 'SA', 'AG', 'NV']);

/** Upper-case letters and digits, words separated by single spaces. */
function simplify(text) {
  return text.replace(/[^A-Z0-9]+/g, ' ').trim();
}
