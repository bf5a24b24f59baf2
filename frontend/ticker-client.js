// tickstream browser client.
//
// A plain ES module with no build step and no dependencies. It talks the
// viewer-stream protocol of `docs/PROTOCOL.md` (`GET /ws`): it keeps a local
// copy of the subscribed quotes, resyncs on `seq` gaps, and reconnects with
// backoff after any close. Compression is the browser's own permessage-deflate
// by default (nothing to do here); the app-level raw-DEFLATE stream
// (`compression: 'deflate'`) is still inflated when asked for. When WebSocket
// cannot get through (a proxy that strips `Upgrade`), it streams over `GET /sse`
// (Server-Sent Events) instead and keeps trying WebSocket in the background.
//
// Everything the class relies on that can be tested without a browser is
// exported as a pure helper (mergeMessage, backoffDelay, SeqTracker, ...), and
// every browser global the class touches (WebSocket, EventSource,
// DecompressionStream, timers, clock) can be injected, so the whole module runs
// under `node --test`.

/** WebSocket.OPEN; read from the injected class when it defines it. */
const WS_OPEN = 1;

/**
 * Close code the server uses when it is at its connection limit. Reconnecting
 * right away would only add load to a full server, so the client waits longer.
 */
export const CLOSE_SERVER_FULL = 1013;

/** Close code the server uses on shutdown; reconnect with ordinary backoff. */
export const CLOSE_GOING_AWAY = 1001;

/**
 * Close code this client uses when it gives up on a connection that went
 * silent (no frame for longer than the stale timeout). 4000-4999 is the
 * application range; 4008 is taken by the server's slow-consumer close.
 */
export const CLOSE_STALE = 4000;

/** Message types that carry `seq` (contract §2, docs §7). */
const SEQ_TYPES = new Set(['snapshot', 'update', 'heartbeat']);

/** EventSource.CLOSED: the browser gave up and will not reconnect by itself. */
const ES_CLOSED = 2;

/**
 * The event types `/sse` sends; each `data:` is the same JSON as on `/ws`.
 * `close` ({"type":"close","code":1001,"reason":"…"}) is the server's last
 * event before it ends the response: the close code the same ending has on a
 * WebSocket.
 */
const SSE_EVENTS = ['welcome', 'snapshot', 'update', 'heartbeat', 'error', 'close'];

/** Query parameters the client owns; every other one (e.g. `token`) is kept. */
const OWN_PARAMS = ['symbols', 'compression', 'max_hz'];

// ---------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------

/**
 * Applies one server message to the local quote map.
 *
 * - `snapshot` carries full quotes, so each one *replaces* the stored quote:
 *   merging would keep a field the server no longer has (the server re-sends a
 *   symbol in full precisely when a field disappeared, docs §8).
 * - `update` carries partial quotes, so each one is merged field by field. A
 *   symbol we have not seen yet starts as `{s}`: symbols that join the
 *   universe while subscribed to `*` first arrive in an update.
 * - Every other type is ignored here (`subscriptions` pruning is
 *   {@link pruneQuotes}, which the client calls separately).
 *
 * Stored quotes are always fresh objects, never the message's own, so a caller
 * holding a message cannot mutate the map by accident and vice versa.
 *
 * @param {Map<string, object>} quotes symbol -> quote, mutated in place
 * @param {object} message a parsed server message
 * @returns {string[]} symbols whose stored quote was replaced or changed, in
 *   message order, without repeats
 */
export function mergeMessage(quotes, message) {
  if (!message || !Array.isArray(message.quotes)) return [];
  const changed = [];
  const seen = new Set();
  if (message.type === 'snapshot') {
    for (const q of message.quotes) {
      if (!q || typeof q.s !== 'string') continue;
      quotes.set(q.s, { ...q });
      if (!seen.has(q.s)) { seen.add(q.s); changed.push(q.s); }
    }
  } else if (message.type === 'update') {
    for (const q of message.quotes) {
      if (!q || typeof q.s !== 'string') continue;
      quotes.set(q.s, { ...(quotes.get(q.s) ?? { s: q.s }), ...q });
      if (!seen.has(q.s)) { seen.add(q.s); changed.push(q.s); }
    }
  }
  return changed;
}

/**
 * Drops quotes of symbols that are no longer subscribed, as a `subscriptions`
 * message asks (docs §8 "How to merge"). `["*"]` means everything is
 * subscribed, so nothing is dropped.
 *
 * @param {Map<string, object>} quotes mutated in place
 * @param {string[]} symbols the server's complete current set
 * @returns {string[]} the symbols that were removed
 */
export function pruneQuotes(quotes, symbols) {
  if (!Array.isArray(symbols) || symbols.includes('*')) return [];
  const keep = new Set(symbols);
  const removed = [];
  for (const s of quotes.keys()) if (!keep.has(s)) removed.push(s);
  for (const s of removed) quotes.delete(s);
  return removed;
}

/**
 * Reconnect delay: exponential backoff with "full jitter"
 * (a uniform value in `[0, min(maxMs, baseMs * 2^attempt)]`).
 *
 * Full jitter rather than a fixed schedule because after a server restart
 * (close 1001) every browser reconnects at once; spreading them over the
 * whole window avoids a synchronized stampede on the fresh process.
 *
 * @param {number} attempt 0 for the first retry after a good connection
 * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [options]
 *   `random` must return a value in [0, 1]; inject it to make the result
 *   deterministic in tests
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30000, random = Math.random } = {}) {
  const n = Number.isFinite(attempt) && attempt > 0 ? Math.floor(attempt) : 0;
  // 2 ** n overflows to Infinity for huge n, and Math.min turns that into maxMs.
  const cap = Math.max(0, Math.min(maxMs, baseMs * 2 ** n));
  const r = Math.min(1, Math.max(0, Number(random()) || 0));
  return r * cap;
}

/**
 * Detects lost data messages. The server numbers `snapshot`, `update` and
 * `heartbeat` 1, 2, 3, ... per connection and never skips within one, so any
 * jump means the client lost something and its quotes may be stale.
 *
 * Create a new tracker (or call {@link SeqTracker#reset}) for every
 * connection, because each connection restarts at 1.
 */
export class SeqTracker {
  /** Last `seq` seen on this connection; 0 before the first one. */
  lastSeq = 0;
  /** How many gaps were seen, for diagnostics. */
  gaps = 0;

  /**
   * Feeds one message.
   * @param {object} message a parsed server message
   * @returns {{expected: number, actual: number} | null} the gap, or null when
   *   the message is in sequence or carries no `seq`
   */
  observe(message) {
    if (!message || !SEQ_TYPES.has(message.type) || typeof message.seq !== 'number') return null;
    const expected = this.lastSeq + 1;
    // Follow the server's numbering even after a gap, so one loss is reported
    // once and not again for every later message.
    this.lastSeq = message.seq;
    if (message.seq === expected) return null;
    this.gaps += 1;
    return { expected, actual: message.seq };
  }

  /** Starts over for a new connection. */
  reset() {
    this.lastSeq = 0;
  }
}

/**
 * Normalizes user input to the form the server reports back: trimmed,
 * upper-cased, without empties or repeats. Upper-casing locally matters
 * because the server echoes names upper-cased, and we compare its replies
 * with our desired set.
 *
 * @param {string | Iterable<string>} symbols an iterable, or one
 *   comma-separated string
 * @returns {string[]}
 */
export function normalizeSymbols(symbols) {
  if (symbols == null) return [];
  const list = typeof symbols === 'string' ? symbols.split(',') : [...symbols];
  const out = [];
  const seen = new Set();
  for (const raw of list) {
    const s = String(raw).trim().toUpperCase();
    if (s && !seen.has(s)) { seen.add(s); out.push(s); }
  }
  return out;
}

/**
 * Builds the stream URL for one connection attempt.
 *
 * Relative URLs (`/ws`) are resolved against `base` (the page, in a browser)
 * and http(s) is mapped to ws(s), because older browsers' WebSocket only
 * accepts absolute ws: URLs. Commas between symbols are left unescaped so the
 * URL stays readable in logs; the server splits on them either way.
 *
 * @param {string | URL} url
 * @param {{symbols?: string[], compression?: 'deflate' | 'none' | null, base?: string}} [options]
 *   `compression` null/undefined removes the parameter (server default: none)
 * @returns {string}
 */
export function buildStreamUrl(url, { symbols = [], compression = null, base = globalThis.location?.href } = {}) {
  const u = base === undefined ? new URL(String(url)) : new URL(String(url), base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  const params = u.searchParams;
  params.delete('symbols');
  if (compression) params.set('compression', compression);
  else params.delete('compression');
  let search = params.toString();
  if (symbols.length) {
    const list = symbols.map(encodeURIComponent).join(',');
    search = search ? `${search}&symbols=${list}` : `symbols=${list}`;
  }
  u.search = search;
  return u.toString();
}

/**
 * Builds the `/sse` URL (Server-Sent Events) for one fallback attempt.
 *
 * By default it is the stream URL with its last path segment `ws` replaced by
 * `sse` (`wss://h/feed/ws` -> `https://h/feed/sse`), or `/sse` when the path
 * does not end in `/ws`; `sseUrl` overrides it. Query parameters of the stream
 * URL other than `symbols`, `compression` and `max_hz` (i.e. `token`) are
 * carried over, because EventSource cannot send an Authorization header.
 *
 * @param {string | URL} url the `/ws` URL the client was given
 * @param {{symbols?: string[], maxHz?: number | null, sseUrl?: string | URL | null, base?: string}} [options]
 * @returns {string} an http(s) URL
 */
export function buildSseUrl(url, { symbols = [], maxHz = null, sseUrl = null, base = globalThis.location?.href } = {}) {
  const ws = base === undefined ? new URL(String(url)) : new URL(String(url), base);
  if (ws.protocol === 'ws:') ws.protocol = 'http:';
  else if (ws.protocol === 'wss:') ws.protocol = 'https:';
  let u;
  if (sseUrl != null) {
    u = new URL(String(sseUrl), ws);
  } else {
    u = new URL(ws);
    u.search = '';
    u.pathname = /\/ws\/?$/.test(u.pathname) ? u.pathname.replace(/\/ws\/?$/, '/sse') : '/sse';
  }
  const params = u.searchParams;
  for (const name of OWN_PARAMS) params.delete(name);
  for (const [k, v] of ws.searchParams) if (!OWN_PARAMS.includes(k) && !params.has(k)) params.append(k, v);
  if (maxHz != null) params.set('max_hz', String(maxHz));
  let search = params.toString();
  if (symbols.length) {
    const list = symbols.map(encodeURIComponent).join(',');
    search = search ? `${search}&symbols=${list}` : `symbols=${list}`;
  }
  u.search = search;
  return u.toString();
}

/**
 * Whether a WebSocket's negotiated `extensions` string (the handshake's
 * `Sec-WebSocket-Extensions` answer, e.g. `permessage-deflate;
 * client_no_context_takeover`) includes permessage-deflate (RFC 7692).
 * @param {unknown} extensions
 * @returns {boolean}
 */
export function negotiatedPermessageDeflate(extensions) {
  if (typeof extensions !== 'string') return false;
  return extensions.split(',').some((ext) => ext.split(';')[0].trim().toLowerCase() === 'permessage-deflate');
}

/**
 * Returns true when `DecompressionStreamImpl` exists and accepts
 * 'deflate-raw'. Some browsers shipped DecompressionStream with only 'gzip'
 * and 'deflate' (zlib-wrapped), and constructing it with an unknown format
 * throws, so probing is the only reliable test.
 *
 * @param {typeof DecompressionStream | undefined} DecompressionStreamImpl
 * @returns {boolean}
 */
export function supportsDeflateRaw(DecompressionStreamImpl) {
  if (typeof DecompressionStreamImpl !== 'function') return false;
  try {
    new DecompressionStreamImpl('deflate-raw');
    return true;
  } catch {
    return false;
  }
}

/**
 * Converts a binary WebSocket payload to bytes. We ask for 'arraybuffer', but
 * accept views and Blobs too (a Blob only if binaryType was not honoured);
 * Blob reading is async, which is one reason the inflater queues its input.
 *
 * @param {ArrayBuffer | ArrayBufferView | Blob} data
 * @returns {Promise<Uint8Array>}
 */
async function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (data && typeof data.arrayBuffer === 'function') return new Uint8Array(await data.arrayBuffer());
  throw new TypeError('unsupported binary frame payload');
}

/**
 * Inflates one connection's raw-DEFLATE stream into '\n'-terminated lines.
 *
 * The server compresses the whole connection as ONE DEFLATE stream (context
 * takeover: later frames back-reference earlier ones), so frames must reach a
 * single inflater, exactly once, in arrival order. DecompressionStream is
 * async, so this class keeps one long-lived writer/reader pair and serializes
 * writes through a promise chain (which also keeps order when a payload needs
 * an async Blob read). One reader loop turns output into text and splits it on
 * '\n' regardless of how the decompressor chunks its output.
 */
export class LineInflater {
  #writer;
  #reader;
  #decoder = new TextDecoder();
  #buffer = '';
  #tail = Promise.resolve();
  #onLine;
  #onError;
  #closing = false;
  #failed = false;
  /** Resolves when the output side has ended (normally or not). */
  done;

  /**
   * @param {(line: string) => void} onLine called once per complete line, in order
   * @param {{DecompressionStreamImpl?: typeof DecompressionStream, onError?: (err: unknown) => void}} [options]
   */
  constructor(onLine, { DecompressionStreamImpl = globalThis.DecompressionStream, onError = () => {} } = {}) {
    const stream = new DecompressionStreamImpl('deflate-raw');
    this.#writer = stream.writable.getWriter();
    this.#reader = stream.readable.getReader();
    this.#onLine = onLine;
    this.#onError = onError;
    this.done = this.#pump();
  }

  /**
   * Queues one binary frame. Returns immediately; the frame is inflated after
   * every frame pushed before it.
   * @param {ArrayBuffer | ArrayBufferView | Blob} data
   */
  push(data) {
    if (this.#closing || this.#failed) return;
    this.#tail = this.#tail
      .then(async () => {
        if (this.#failed) return;
        const bytes = await toBytes(data);
        await this.#writer.write(bytes);
      })
      .catch((err) => this.#fail(err));
  }

  /**
   * Ends input after the frames already queued. Their lines are still
   * delivered; the "incomplete stream" error that a never-finished DEFLATE
   * stream raises at end of input is expected and swallowed.
   */
  close() {
    if (this.#closing) return;
    this.#closing = true;
    this.#tail = this.#tail.then(() => (this.#failed ? undefined : this.#writer.close())).catch(() => {});
  }

  async #pump() {
    try {
      for (;;) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        this.#buffer += this.#decoder.decode(value, { stream: true });
        let nl;
        while ((nl = this.#buffer.indexOf('\n')) >= 0) {
          const line = this.#buffer.slice(0, nl);
          this.#buffer = this.#buffer.slice(nl + 1);
          if (!line) continue;
          // A failing consumer must not kill the loop, or every later frame
          // of the connection would be silently lost.
          try { this.#onLine(line); } catch (err) { this.#report(err); }
        }
      }
    } catch (err) {
      if (!this.#closing) this.#fail(err);
    }
  }

  #fail(err) {
    if (this.#failed) return;
    this.#failed = true;
    this.#writer.abort(err).catch(() => {});
    this.#reader.cancel(err).catch(() => {});
    if (!this.#closing) this.#report(err);
  }

  #report(err) {
    try { this.#onError(err); } catch { /* nothing sensible left to do */ }
  }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/**
 * @typedef {object} TickerClientOptions
 * @property {string | Iterable<string>} [symbols] initial desired subscription
 * @property {'auto' | 'deflate' | 'none'} [compression] how `/ws` is
 *   compressed. 'auto' (the default) and 'none' send no `compression=`
 *   parameter, so the WebSocket layer's own permessage-deflate (RFC 7692),
 *   which every browser offers on every connection, is what compresses; no
 *   JavaScript inflates anything. The two differ in name only: a page cannot
 *   stop its browser from offering the extension, so 'none' means "no
 *   application-level compression". 'deflate' asks for the older app-level
 *   mode (`?compression=deflate`: binary frames, one raw-DEFLATE stream per
 *   connection, inflated here with DecompressionStream('deflate-raw')); the
 *   server then declines permessage-deflate. Use it only for a WebSocket
 *   implementation that cannot do permessage-deflate.
 * @property {number} [maxHz] if set, sent as `op:set` after every welcome
 *   (and as `max_hz=` on `/sse`)
 * @property {typeof WebSocket} [WebSocketImpl]
 * @property {typeof EventSource | null} [EventSourceImpl] for the `/sse`
 *   fallback; null (or no global EventSource) disables the fallback
 * @property {boolean} [sseFallback] stream over `/sse` when WebSocket cannot
 *   connect (default true)
 * @property {string | URL} [sseUrl] the `/sse` endpoint; default: the stream
 *   URL with `/ws` replaced by `/sse` (see {@link buildSseUrl})
 * @property {number} [fallbackAfterFailures] consecutive WebSocket attempts
 *   that could not get through (never opened) before falling back (default
 *   3). An attempt that hits `connectTimeoutMs` (an upgrade that never
 *   completes, or a socket that relays nothing) falls back at once. A socket
 *   the server opened and closed with a code (1013, 1008) does not count.
 * @property {number} [sseResubscribeDelayMs] over `/sse`, watchlist and
 *   `max_hz` changes reconnect the event stream after this quiet period
 *   (default 250), so adding five symbols costs one reconnect, not five
 * @property {typeof DecompressionStream | null} [DecompressionStreamImpl]
 *   only for compression 'deflate'
 * @property {() => number} [now] monotonic clock in ms (RTT, stale check)
 * @property {(fn: () => void, ms: number) => unknown} [setTimeout]
 * @property {(handle: unknown) => void} [clearTimeout] defaults to the global
 *   one, or to a no-op when only `setTimeout` is injected (a fake timer's id
 *   must never reach the real clearTimeout)
 * @property {number} [baseMs] backoff base (default 500)
 * @property {number} [maxMs] backoff cap (default 30000)
 * @property {number} [serverFullDelayMs] minimum delay after close 1013
 *   (default 5000)
 * @property {() => number} [random] jitter source, for tests
 * @property {number} [staleTimeoutMs] give up on a connection after this long
 *   without any frame or event; default 3 × the welcome's heartbeat_ms; 0
 *   disables
 * @property {number} [connectTimeoutMs] give up on an attempt that has no
 *   welcome after this long (default 15000; 0 disables)
 * @property {string} [base] base URL for a relative `url`
 */

/**
 * Live quotes from a tickstream server.
 *
 * Transports: WebSocket (`/ws`) first. When `fallbackAfterFailures` attempts
 * in a row never open (or one hangs past `connectTimeoutMs` without its
 * welcome), the client streams over `/sse` instead, with the same
 * `symbols=`, `token=` and `max_hz=`, and keeps retrying WebSocket in the
 * background (once soon after the stream is up, then with the usual backoff);
 * the first background attempt that gets its `welcome` takes over and the
 * event stream is closed. When the event stream ends, or fails before its
 * first welcome (the server is down, not just WebSocket), the reconnect loop
 * starts from WebSocket again. Over SSE the
 * stream is one-way: subscribe()/unsubscribe()/setMaxHz() reconnect the event
 * stream with the new parameters (debounced), ping() resolves null, and a
 * `seq` gap reconnects the stream (its fresh snapshot is the resync).
 *
 * Events (all CustomEvent):
 * - `quotes`  detail `{symbols}`: symbols whose entry in `client.quotes` was
 *   replaced, merged or removed (check `quotes.has(s)` to tell removal apart).
 * - `status`  detail `{state, transport, code, reason, compression,
 *   retryInMs}`: state is 'connecting' | 'open' (welcome received) |
 *   'closed'; transport is 'websocket' | 'sse'; compression is
 *   'permessage-deflate' | 'deflate' | 'none' on a WebSocket and 'http' on
 *   SSE (the response's own Content-Encoding, which scripts cannot see);
 *   `retryInMs` is the scheduled reconnect delay, or null when the client
 *   stopped or needs none.
 * - `latency` detail `{rttMs}`: round trip of a `ping()`.
 * - `error`   detail: the server's `error` message object. Client-side
 *   failures (undecodable data) use the same `{code, message}` shape with
 *   `local: true`.
 *
 * @example
 * const client = new TickerClient('/ws', { symbols: ['AAPL', 'MSFT'] });
 * client.addEventListener('quotes', (e) => render(e.detail.symbols.map((s) => client.quotes.get(s))));
 * client.connect();
 */
export class TickerClient extends EventTarget {
  /** symbol -> latest full quote. Mutated in place; read it, don't write it. */
  quotes = new Map();
  /** The last `welcome` message, for session id and server limits. */
  welcome = null;

  #url;
  #base;
  #desired;
  #compression;
  #maxHz;
  #WebSocket;
  #EventSource;
  #sseUrl;
  #fallbackAfter;
  #sseResubscribeDelayMs;
  #DecompressionStream;
  #now;
  #setTimeout;
  #clearTimeout;
  #backoff;
  #serverFullDelayMs;
  #staleTimeoutMs;
  #connectTimeoutMs;

  /** Current (or last) connection record, WebSocket or SSE; see #openWs. */
  #conn = null;
  /** A background WebSocket attempt while streaming over SSE. */
  #probe = null;
  /** Token of the pending reconnect timer; stale timer callbacks compare it. */
  #retry = null;
  /** Token of the pending background WebSocket attempt (while on SSE). */
  #probeTimer = null;
  /** Token of the pending debounced SSE reconnect (watchlist changed). */
  #sseReopen = null;
  /** Consecutive failed connections of any kind: the reconnect backoff. */
  #attempts = 0;
  /** Consecutive WebSocket attempts that could not get through. */
  #wsFailures = 0;
  /** The next event-stream welcome triggers a quick background WebSocket attempt. */
  #quickProbeDue = false;
  #stopped = true;
  #reqId = 0;
  #state = 'idle';

  /**
   * @param {string | URL} url the `/ws` endpoint; query parameters other than
   *   `symbols`, `compression` and `max_hz` are kept (on `/sse` too)
   * @param {TickerClientOptions} [options]
   */
  constructor(url, {
    symbols = [],
    compression = 'auto',
    maxHz,
    WebSocketImpl = globalThis.WebSocket,
    EventSourceImpl = globalThis.EventSource,
    sseFallback = true,
    sseUrl = null,
    fallbackAfterFailures = 3,
    sseResubscribeDelayMs = 250,
    DecompressionStreamImpl = globalThis.DecompressionStream,
    now = () => (globalThis.performance ? globalThis.performance.now() : Date.now()),
    setTimeout,
    clearTimeout,
    baseMs = 500,
    maxMs = 30000,
    serverFullDelayMs = 5000,
    random = Math.random,
    staleTimeoutMs,
    connectTimeoutMs = 15000,
    base = globalThis.location?.href,
  } = {}) {
    super();
    if (!['auto', 'deflate', 'none'].includes(compression)) {
      throw new TypeError(`compression must be 'auto', 'deflate' or 'none', not ${JSON.stringify(compression)}`);
    }
    if (typeof WebSocketImpl !== 'function') throw new TypeError('no WebSocket implementation available');
    if (compression === 'deflate' && !supportsDeflateRaw(DecompressionStreamImpl)) {
      throw new TypeError("compression 'deflate' needs a DecompressionStream that supports 'deflate-raw'");
    }
    this.#url = url;
    this.#base = base;
    this.#desired = new Set(normalizeSymbols(symbols));
    if (this.#desired.has('*')) this.#desired = new Set(['*']);
    this.#compression = compression;
    this.#maxHz = maxHz;
    this.#WebSocket = WebSocketImpl;
    this.#EventSource = sseFallback && typeof EventSourceImpl === 'function' ? EventSourceImpl : null;
    this.#sseUrl = sseUrl;
    this.#fallbackAfter = Math.max(1, Math.floor(fallbackAfterFailures) || 1);
    this.#sseResubscribeDelayMs = sseResubscribeDelayMs;
    this.#DecompressionStream = DecompressionStreamImpl;
    this.#now = now;
    this.#setTimeout = setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this.#clearTimeout = clearTimeout ?? (setTimeout ? () => {} : (h) => globalThis.clearTimeout(h));
    this.#backoff = { baseMs, maxMs, random };
    this.#serverFullDelayMs = serverFullDelayMs;
    this.#staleTimeoutMs = staleTimeoutMs;
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  /** 'idle' before connect(), then 'connecting' | 'open' | 'closed'. */
  get state() { return this.#state; }

  /** 'websocket' or 'sse': the transport of the current (or last) connection; null before connect(). */
  get transport() { return this.#conn ? this.#conn.transport : null; }

  /** The subscription that is re-sent on every (re)connect, sorted. */
  get symbols() { return [...this.#desired].sort(); }

  /**
   * 'permessage-deflate', 'deflate' (app-level) or 'none' on a welcomed
   * WebSocket, 'http' on SSE; null before the welcome.
   */
  get compression() { return this.#conn?.welcomed ? this.#conn.compression : null; }

  /**
   * Starts the connection (and the reconnect loop). Calling it while a
   * reconnect is scheduled connects now instead of waiting; calling it while
   * connected does nothing.
   * @returns {this}
   */
  connect() {
    this.#stopped = false;
    if (this.#conn && !this.#conn.closed) return this;
    this.#cancel('#retry');
    this.#startAttempt();
    return this;
  }

  /**
   * Closes the connection and stops reconnecting until connect() is called
   * again. Quotes are kept, so a UI can keep showing the last values.
   * @param {number} [code] 1000 or 3000-4999, as WebSocket.close() allows
   * @param {string} [reason]
   */
  close(code = 1000, reason = 'client closed') {
    this.#stopped = true;
    this.#cancel('#retry');
    this.#cancel('#probeTimer');
    this.#cancel('#sseReopen');
    if (this.#probe) this.#abandon(this.#probe, code, reason);
    const conn = this.#conn;
    if (conn && !conn.closed) {
      try { conn.close(code, reason); } catch { /* already closing */ }
      // Report the close now instead of waiting for the close handshake,
      // which never finishes on a dead TCP connection.
      this.#handleClose(conn, code, reason);
    } else if (this.#state !== 'closed' && this.#state !== 'idle') {
      this.#setStatus('closed', { code, reason, retryInMs: null });
    }
  }

  /**
   * Adds symbols to the desired set and, when connected, sends `subscribe`.
   * `"*"` subscribes to everything. While disconnected, the set is simply
   * carried into the next connection's `symbols=`; over SSE the event stream
   * reconnects with the new set (debounced).
   * @param {string | Iterable<string>} symbols
   * @returns {number | null} the request's req_id, or null if not sent now
   */
  subscribe(symbols) {
    const names = normalizeSymbols(symbols);
    if (!names.length) return null;
    const before = new Set(this.#desired);
    if (names.includes('*')) this.#desired = new Set(['*']);
    else if (!this.#desired.has('*')) for (const s of names) this.#desired.add(s);
    const added = [...this.#desired].filter((s) => !before.has(s));
    this.#sseParametersChanged();
    return this.#sendSubscriptionOp('subscribe', names, added);
  }

  /**
   * Removes symbols from the desired set and, when connected, sends
   * `unsubscribe`. Their quotes are dropped at once, so the UI does not wait
   * for the server. `"*"` removes everything.
   *
   * While on `"*"`, removing one name cannot be mirrored locally (the client
   * does not know the universe); the server's `subscriptions` reply, which
   * lists every remaining name, then becomes the desired set.
   * @param {string | Iterable<string>} symbols
   * @returns {number | null} the request's req_id, or null if not sent now
   */
  unsubscribe(symbols) {
    const names = normalizeSymbols(symbols);
    if (!names.length) return null;
    let dropped;
    if (names.includes('*')) {
      this.#desired.clear();
      dropped = [...this.quotes.keys()];
    } else {
      for (const s of names) this.#desired.delete(s);
      dropped = names.filter((s) => this.quotes.has(s));
    }
    for (const s of dropped) this.quotes.delete(s);
    if (dropped.length) this.#emit('quotes', { symbols: dropped });
    this.#sseParametersChanged();
    return this.#sendSubscriptionOp('unsubscribe', names, []);
  }

  /**
   * Sets this connection's update rate (`op:set`) and remembers it for
   * later connections.
   * @param {number} hz
   * @returns {number | null} req_id, or null if not sent now
   */
  setMaxHz(hz) {
    this.#maxHz = hz;
    this.#sseParametersChanged();
    const conn = this.#liveConn();
    return conn ? this.#send(conn, { op: 'set', max_hz: hz }) : null;
  }

  /**
   * Measures the round trip with `{"op":"ping","req_id":n}` and its `pong`,
   * and emits `latency`. Resolves to the RTT in ms, or to null when not
   * connected (or on SSE, which is one-way) or when the connection closes
   * first; it never rejects, so fire-and-forget callers (a periodic ping
   * driving the `latency` event) cannot cause unhandled rejections.
   * @returns {Promise<number | null>}
   */
  ping() {
    const conn = this.#liveConn();
    if (!conn) return Promise.resolve(null);
    const sentAt = this.#now();
    const id = this.#send(conn, { op: 'ping' });
    if (id == null) return Promise.resolve(null);
    return new Promise((resolve) => conn.pings.set(id, { sentAt, resolve }));
  }

  // -- connection lifecycle -------------------------------------------------

  /** Cancels one of the timer tokens (#retry, #probeTimer, #sseReopen). */
  #cancel(name) {
    const token = name === '#retry' ? this.#retry : name === '#probeTimer' ? this.#probeTimer : this.#sseReopen;
    if (token) this.#clearTimeout(token.handle);
    if (name === '#retry') this.#retry = null;
    else if (name === '#probeTimer') this.#probeTimer = null;
    else this.#sseReopen = null;
  }

  /**
   * One attempt of the reconnect loop: WebSocket, unless WebSocket has
   * already failed often enough that the fallback is due, in which case the
   * attempt is the event stream (WebSocket keeps being tried in the
   * background).
   */
  #startAttempt() {
    if (this.#fallbackDue()) this.#startFallback();
    else this.#openWs();
  }

  #fallbackDue() {
    return this.#EventSource !== null && this.#wsFailures >= this.#fallbackAfter;
  }

  /** Streams over SSE now and schedules the next background WebSocket try. */
  #startFallback() {
    this.#quickProbeDue = true;
    try {
      this.#openSse();
    } catch (err) {
      // e.g. a SyntaxError for a URL EventSource refuses: back to the loop.
      this.#localError('connect_failed', err);
      this.#conn = null;
      const retryInMs = this.#scheduleReconnect(undefined);
      this.#setStatus('closed', { code: undefined, reason: String(err?.message ?? err), retryInMs });
      return;
    }
    this.#scheduleProbe();
  }

  /** A connection record: everything that lives and dies with one connection. */
  #newConn(transport, url, extra) {
    return {
      transport,
      url,
      /** The set sent in `symbols=`; compared with the desired set at welcome. */
      requested: new Set(this.#desired),
      maxHz: this.#maxHz,
      compression: 'none',
      welcomed: false,
      closed: false,
      /** The WebSocket handshake completed ('open'). */
      opened: false,
      /** The event stream got at least one welcome (EventSource reconnects by itself). */
      everWelcomed: false,
      /** No welcome within connectTimeoutMs. */
      timedOut: false,
      inflater: null,
      seq: new SeqTracker(),
      /** req_id of an outstanding resync snapshot; one at a time is enough. */
      resyncReqId: null,
      /** req_id of the newest subscribe/unsubscribe; null = the `symbols=` query. */
      lastSubReqId: null,
      /** req_id -> {op, added} for subscribe/unsubscribe, to undo on errors. */
      requests: new Map(),
      /** req_id -> {sentAt, resolve} for ping(). */
      pings: new Map(),
      lastFrameAt: this.#now(),
      watchdog: null,
      ...extra,
    };
  }

  /**
   * Opens a WebSocket. A probe is the background attempt made while
   * streaming over SSE: it reports no status and takes over only once it is
   * welcomed.
   */
  #openWs({ probe = false } = {}) {
    const deflate = this.#compression === 'deflate';
    const url = buildStreamUrl(this.#url, {
      symbols: [...this.#desired],
      compression: deflate ? 'deflate' : null,
      base: this.#base,
    });
    const ws = new this.#WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const conn = this.#newConn('websocket', url, {
      ws,
      deflateRequested: deflate,
      probe,
      close: (code, reason) => (code == null ? ws.close() : ws.close(code, reason)),
    });
    if (probe) this.#probe = conn;
    else this.#conn = conn;
    ws.onopen = () => { conn.opened = true; };
    ws.onmessage = (ev) => this.#onFrame(conn, ev.data);
    ws.onclose = (ev) => this.#handleClose(conn, ev?.code, ev?.reason);
    // In browsers 'error' is always followed by 'close', which is where we
    // act. Node's undici WebSocket (v20) fires only 'error' for a refused
    // connection and stays CONNECTING, so an error before the socket opened
    // is treated as the close (1006) that should have followed it.
    ws.onerror = () => {
      if (!conn.closed && ws.readyState === (this.#WebSocket.CONNECTING ?? 0)) this.#abandon(conn, 1006, 'connection failed', null);
    };
    this.#armConnectTimeout(conn);
    if (!probe) this.#setStatus('connecting', { code: undefined, reason: undefined, retryInMs: null });
  }

  /**
   * Opens the event stream (`/sse`) as the current connection. EventSource
   * reconnects by itself after the server ends a response (each new response
   * starts with a fresh `welcome` and `snapshot`, `seq` from 1); only when it
   * gives up (readyState CLOSED, e.g. an HTTP error) does the client's own
   * reconnect loop take over.
   */
  #openSse() {
    const url = buildSseUrl(this.#url, {
      symbols: [...this.#desired], maxHz: this.#maxHz, sseUrl: this.#sseUrl, base: this.#base,
    });
    const es = new this.#EventSource(url);
    const conn = this.#newConn('sse', url, {
      es,
      compression: 'http',
      close: () => es.close(),
    });
    this.#conn = conn;
    for (const type of SSE_EVENTS) {
      es.addEventListener(type, (ev) => {
        if (conn.closed) return;
        if (type === 'error' && typeof ev?.data !== 'string') {
          this.#onSseTransportError(conn);
          return;
        }
        conn.lastFrameAt = this.#now();
        if (type === 'close') {
          this.#onSseClose(conn, ev.data);
          return;
        }
        this.#onLine(conn, ev.data);
      });
    }
    this.#armConnectTimeout(conn);
    this.#setStatus('connecting', { code: undefined, reason: undefined, retryInMs: null });
  }

  /**
   * The server's last event (shutdown, kick, token expiry, slow consumer).
   * Rather than let EventSource come back after its own fixed delay, the
   * stream is closed and the reconnect loop takes over, exactly as after a
   * WebSocket close with that code: backoff with jitter, 1013's longer wait.
   */
  #onSseClose(conn, data) {
    let msg = null;
    try { msg = JSON.parse(data); } catch { /* a close without a readable code is still a close */ }
    const code = Number.isInteger(msg?.code) ? msg.code : 1006;
    this.#abandon(conn, code, typeof msg?.reason === 'string' ? msg.reason : 'event stream closed', null);
  }

  /** EventSource's own 'error' (no data): it is reconnecting, or gave up. */
  #onSseTransportError(conn) {
    // Failing before any welcome means HTTP does not get through either: the
    // server is down or unreachable, which says nothing against WebSocket.
    // Rather than let EventSource retry every few seconds, the reconnect loop
    // (WebSocket first again) takes over.
    if (conn.es.readyState === ES_CLOSED || !conn.everWelcomed) {
      this.#abandon(conn, 1006, 'event stream failed');
      return;
    }
    // Reconnecting by itself: the next response starts with a new welcome.
    // The server may have restarted, and WebSocket with it: try soon.
    this.#quickProbeDue = true;
    if (conn.watchdog) this.#clearTimeout(conn.watchdog.handle);
    conn.watchdog = null;
    const wasWelcomed = conn.welcomed;
    conn.welcomed = false;
    this.#armConnectTimeout(conn);
    if (wasWelcomed && this.#conn === conn) this.#setStatus('connecting', { code: undefined, reason: 'event stream reconnecting', retryInMs: null });
  }

  /**
   * A connect that hangs (blackholed SYN, a proxy that never answers or
   * never completes the upgrade) would otherwise wait for the OS TCP
   * timeout, often minutes.
   */
  #armConnectTimeout(conn) {
    if (!(this.#connectTimeoutMs > 0)) return;
    conn.watchdog = {
      handle: this.#setTimeout(() => {
        if (conn.closed || conn.welcomed) return;
        conn.timedOut = true;
        this.#abandon(conn, CLOSE_STALE, `no welcome within ${this.#connectTimeoutMs} ms`);
      }, this.#connectTimeoutMs),
    };
  }

  #liveConn() {
    const conn = this.#conn;
    return conn && conn.welcomed && !conn.closed ? conn : null;
  }

  #handleClose(conn, code, reason) {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.watchdog) this.#clearTimeout(conn.watchdog.handle);
    conn.watchdog = null;
    // Let frames that already arrived finish inflating; their data is valid.
    conn.inflater?.close();
    for (const { resolve } of conn.pings.values()) resolve(null);
    conn.pings.clear();
    // What counts towards the fallback is a WebSocket that could not get
    // through: one that never opened, or one that opened and then stayed
    // silent past the connect timeout (a proxy that does not relay frames).
    // A socket the server opened and then closed with a code (1013 full,
    // 1008 policy) did get through; SSE would not help. Nor does a socket
    // this client closed itself (close()) say anything about the network.
    if (conn.transport === 'websocket' && !conn.welcomed && !this.#stopped && (!conn.opened || conn.timedOut)) {
      this.#wsFailures += 1;
      // An upgrade that hangs is what a proxy that cannot pass WebSocket
      // does: waiting for more attempts would only add minutes.
      if (conn.timedOut) this.#wsFailures = Math.max(this.#wsFailures, this.#fallbackAfter);
    }
    if (conn === this.#probe) {
      this.#probe = null;
      if (!this.#stopped && this.#conn?.transport === 'sse' && !this.#conn.closed) this.#scheduleProbe();
      return;
    }
    if (this.#conn !== conn) return;
    if (conn.transport === 'sse') {
      this.#cancel('#sseReopen');
      this.#cancel('#probeTimer');
      // The next attempt is WebSocket again: an event stream that ended
      // (the server restarted, or is gone) may well mean WebSocket works now;
      // if it is still blocked, its quick failures bring the fallback back.
      this.#wsFailures = 0;
    }
    if (!this.#stopped && conn.transport === 'websocket' && this.#fallbackDue()) {
      this.#setStatus('closed', { code, reason, retryInMs: 0 });
      this.#attempts += 1;
      this.#startFallback();
      return;
    }
    const retryInMs = this.#stopped ? null : this.#scheduleReconnect(code);
    this.#setStatus('closed', { code, reason, retryInMs });
  }

  /**
   * Schedules the next connect. Every close is retried, including 1000 (the
   * server's idle timeout) and 1001 (shutdown). After 1013 (server full) the
   * delay is `serverFullDelayMs` plus the jittered backoff: a floor so a full
   * server is not hammered, and jitter above it so the clients it turned away
   * do not all come back in the same instant.
   * @returns {number} the delay in ms
   */
  #scheduleReconnect(code) {
    const attempt = this.#attempts++;
    let delay = backoffDelay(attempt, this.#backoff);
    if (code === CLOSE_SERVER_FULL) delay += this.#serverFullDelayMs;
    const token = { handle: null };
    token.handle = this.#setTimeout(() => {
      if (this.#retry !== token || this.#stopped) return;
      this.#retry = null;
      try {
        this.#startAttempt();
      } catch (err) {
        // e.g. a SecurityError from the WebSocket constructor: keep trying,
        // with growing delays, rather than dying inside a timer.
        this.#localError('connect_failed', err);
        this.#conn = null;
        const retryInMs = this.#scheduleReconnect(undefined);
        this.#setStatus('closed', { code: undefined, reason: String(err?.message ?? err), retryInMs });
      }
    }, delay);
    this.#retry = token;
    return delay;
  }

  /**
   * While on SSE: the next background WebSocket attempt, with the same
   * backoff as any reconnect, counted from the WebSocket failures so far
   * (after the quick one when the stream is welcomed, up to 8, 16, then 30 s
   * apart); `soon`: within the first backoff step (0.5 s).
   */
  #scheduleProbe({ soon = false } = {}) {
    this.#cancel('#probeTimer');
    const delay = backoffDelay(soon ? 0 : this.#wsFailures, this.#backoff);
    const token = { handle: null };
    token.handle = this.#setTimeout(() => {
      if (this.#probeTimer !== token || this.#stopped) return;
      this.#probeTimer = null;
      if (this.#conn?.transport !== 'sse' || this.#conn.closed || this.#probe) return;
      try {
        this.#openWs({ probe: true });
      } catch (err) {
        this.#localError('connect_failed', err);
        this.#wsFailures += 1;
        this.#scheduleProbe();
      }
    }, delay);
    this.#probeTimer = token;
  }

  /** Over SSE, a changed watchlist or max_hz means a new event stream; debounced. */
  #sseParametersChanged() {
    const conn = this.#conn;
    if (!conn || conn.closed || conn.transport !== 'sse' || this.#stopped) return;
    this.#cancel('#sseReopen');
    const token = { handle: null };
    token.handle = this.#setTimeout(() => {
      if (this.#sseReopen !== token) return;
      this.#sseReopen = null;
      if (this.#conn !== conn || conn.closed || this.#stopped) return;
      if (this.#sseOutOfDate(conn)) this.#reopenSse(conn);
    }, this.#sseResubscribeDelayMs);
    this.#sseReopen = token;
  }

  /** Whether the event stream was opened with other symbols or max_hz than wanted now. */
  #sseOutOfDate(conn) {
    return conn.maxHz !== this.#maxHz || conn.requested.size !== this.#desired.size
      || [...this.#desired].some((s) => !conn.requested.has(s));
  }

  /**
   * Replaces the event stream with a new one (new parameters, or a resync
   * after a `seq` gap), without going through the reconnect loop: the
   * background WebSocket attempts go on as scheduled.
   */
  #reopenSse(conn) {
    conn.closed = true;
    if (conn.watchdog) this.#clearTimeout(conn.watchdog.handle);
    conn.watchdog = null;
    try { conn.close(); } catch { /* already closed */ }
    try {
      this.#openSse();
    } catch (err) {
      this.#localError('connect_failed', err);
      this.#cancel('#probeTimer');
      this.#conn = null;
      const retryInMs = this.#scheduleReconnect(undefined);
      this.#setStatus('closed', { code: undefined, reason: String(err?.message ?? err), retryInMs });
    }
  }

  /**
   * Closes a connection the client itself has given up on and reports it as
   * closed with `code` right away: on a dead connection the close handshake
   * would never complete, so waiting for the 'close' event could take minutes.
   * `sendCode` is what goes on the wire (WebSocket.close() only accepts 1000
   * and 3000-4999, so 1006 cannot be sent; null sends no code).
   */
  #abandon(conn, code, reason, sendCode = code) {
    if (conn.closed) return;
    // Mark it closed first: Node's undici fires 'error' synchronously from
    // close() on a CONNECTING socket, and that must not re-enter here.
    this.#handleClose(conn, code, reason);
    try {
      conn.close(sendCode, reason);
    } catch { /* already closing */ }
  }

  #armWatchdog(conn, staleMs) {
    const check = () => {
      if (conn.closed) return;
      const idle = this.#now() - conn.lastFrameAt;
      if (idle >= staleMs) {
        this.#abandon(conn, CLOSE_STALE, `no frame for ${Math.round(idle)} ms`);
        return;
      }
      conn.watchdog = { handle: this.#setTimeout(check, staleMs - idle) };
    };
    conn.watchdog = { handle: this.#setTimeout(check, staleMs) };
  }

  // -- inbound --------------------------------------------------------------

  #onFrame(conn, data) {
    if (conn.closed) return;
    conn.lastFrameAt = this.#now();
    if (typeof data === 'string') {
      // welcome, or everything when not app-level compressed.
      this.#onLine(conn, data);
    } else if (conn.inflater) {
      conn.inflater.push(data);
    }
    // A binary frame without an inflater (before welcome, or on a plain
    // connection) is outside the protocol and is dropped.
  }

  #onLine(conn, text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      this.#localError('bad_message', err);
      return;
    }
    if (msg && typeof msg === 'object') this.#onMessage(conn, msg);
  }

  #onMessage(conn, msg) {
    if (this.#stopped) return;
    if (conn === this.#probe) {
      // A background WebSocket got through: it takes over from the event stream.
      if (msg.type !== 'welcome') return;
      this.#promoteProbe(conn);
    }
    if (this.#conn !== conn) return;
    if (msg.type === 'welcome') {
      this.#onWelcome(conn, msg);
      return;
    }
    const gap = conn.seq.observe(msg);
    if (gap && !conn.closed) {
      if (conn.transport === 'sse') {
        // One-way: a new event stream's snapshot is the resync. Apply this
        // message first; it is still the newest data for its symbols.
        const changed = mergeMessage(this.quotes, msg);
        if (changed.length) this.#emit('quotes', { symbols: changed });
        this.#reopenSse(conn);
        return;
      }
      if (conn.resyncReqId == null) {
        // Only one resync at a time: any loss seen before its reply arrives
        // happened earlier than the reply's snapshot, which covers it.
        conn.resyncReqId = this.#send(conn, { op: 'snapshot' });
      }
    }
    switch (msg.type) {
      case 'snapshot':
      case 'update': {
        if (msg.type === 'snapshot' && msg.req_id !== undefined && msg.req_id === conn.resyncReqId) {
          conn.resyncReqId = null;
        }
        const changed = mergeMessage(this.quotes, msg);
        if (changed.length) this.#emit('quotes', { symbols: changed });
        break;
      }
      case 'subscriptions':
        this.#onSubscriptions(conn, msg);
        break;
      case 'pong': {
        const pending = conn.pings.get(msg.req_id);
        if (!pending) break;
        conn.pings.delete(msg.req_id);
        const rttMs = this.#now() - pending.sentAt;
        this.#emit('latency', { rttMs });
        pending.resolve(rttMs);
        break;
      }
      case 'error':
        this.#onServerError(conn, msg);
        break;
      default:
        // heartbeat (already counted), settings, and future types.
        break;
    }
  }

  /** The background WebSocket becomes the connection; the event stream ends. */
  #promoteProbe(conn) {
    this.#probe = null;
    this.#cancel('#probeTimer');
    // The event stream may have failed while this socket was connecting: its
    // pending reconnect is not needed any more.
    this.#cancel('#retry');
    this.#cancel('#sseReopen');
    const old = this.#conn;
    this.#conn = conn;
    if (old && !old.closed) {
      old.closed = true;
      if (old.watchdog) this.#clearTimeout(old.watchdog.handle);
      old.watchdog = null;
      try { old.close(1000, 'switching to WebSocket'); } catch { /* already closed */ }
    }
    // The probe's symbols= was the desired set when it started; #onWelcome's
    // reconcile sends whatever changed since.
  }

  #onWelcome(conn, msg) {
    if (conn.welcomed) return;
    conn.welcomed = true;
    if (conn.watchdog) this.#clearTimeout(conn.watchdog.handle); // the connect timeout
    conn.watchdog = null;
    this.welcome = msg;
    // A connection that got this far counts as good: the next failure starts
    // the backoff from the bottom again.
    this.#attempts = 0;
    if (conn.transport === 'sse') {
      // Every response of the event stream numbers from 1 again.
      conn.seq.reset();
      conn.everWelcomed = true;
      // The server is up: if WebSocket failed only because it was down (a
      // restart), one quick background attempt finds out now rather than
      // after the backoff. A blocked WebSocket costs one failed attempt.
      // (Once per fallback or stream restart, not after a watchlist change.)
      if (this.#quickProbeDue && !this.#probe) this.#scheduleProbe({ soon: true });
      this.#quickProbeDue = false;
    } else {
      this.#wsFailures = 0;
      if (msg.compression === 'deflate') conn.compression = 'deflate';
      else conn.compression = negotiatedPermessageDeflate(conn.ws.extensions) ? 'permessage-deflate' : 'none';
    }
    if (conn.compression === 'deflate') {
      if (!conn.deflateRequested || !supportsDeflateRaw(this.#DecompressionStream)) {
        this.#localError('bad_message', new Error('server chose deflate, which this client cannot decode'));
        this.#abandon(conn, 1000, 'cannot decode deflate');
        return;
      }
      conn.inflater = new LineInflater((line) => this.#onLine(conn, line), {
        DecompressionStreamImpl: this.#DecompressionStream,
        onError: (err) => {
          if (conn.closed) return;
          // The stream is unrecoverable once one frame fails; a new
          // connection is the only way back to a consistent state.
          this.#localError('decompression_failed', err);
          this.#abandon(conn, 1000, 'decompression failed');
        },
      });
    }
    this.#setStatus('open', { code: undefined, reason: undefined, retryInMs: null });
    if (conn.closed) return; // a status listener called close()
    const staleMs = this.#staleTimeoutMs ?? 3 * (Number(msg.heartbeat_ms) > 0 ? Number(msg.heartbeat_ms) : 5000);
    if (staleMs > 0) this.#armWatchdog(conn, staleMs);
    if (conn.transport === 'sse') {
      // Changes made while this stream was connecting need a new stream.
      if (this.#sseOutOfDate(conn)) this.#sseParametersChanged();
      return;
    }
    if (this.#maxHz != null) this.#send(conn, { op: 'set', max_hz: this.#maxHz });
    this.#reconcile(conn);
  }

  /**
   * Brings the server in line with subscribe()/unsubscribe() calls made after
   * this connection's URL was built (e.g. while it was still connecting).
   */
  #reconcile(conn) {
    const desired = this.#desired;
    const removed = [...conn.requested].filter((s) => !desired.has(s));
    const added = [...desired].filter((s) => !conn.requested.has(s));
    if (removed.includes('*')) {
      // Unsubscribing "*" drops everything, so re-add what is still wanted.
      this.#sendOnConn(conn, 'unsubscribe', ['*'], []);
      if (desired.size) this.#sendOnConn(conn, 'subscribe', [...desired], [...desired]);
      return;
    }
    if (removed.length) this.#sendOnConn(conn, 'unsubscribe', removed, []);
    if (added.length) this.#sendOnConn(conn, 'subscribe', added, added);
  }

  #onSubscriptions(conn, msg) {
    if (!Array.isArray(msg.symbols)) return;
    // The server's set is the truth, but only the reply to our newest
    // request reflects every request we made; older replies would undo
    // changes still in flight.
    if ((msg.req_id ?? null) === conn.lastSubReqId) {
      this.#desired = new Set(msg.symbols.includes('*') ? ['*'] : msg.symbols);
    }
    if (msg.req_id !== undefined) conn.requests.delete(msg.req_id);
    const removed = pruneQuotes(this.quotes, msg.symbols);
    if (removed.length) this.#emit('quotes', { symbols: removed });
  }

  #onServerError(conn, msg) {
    const req = msg.req_id === undefined ? { op: 'subscribe', added: [] } : conn.requests.get(msg.req_id);
    if (req?.op === 'subscribe') {
      if (msg.code === 'too_many_symbols') {
        // The request changed nothing on the server; undo it locally so the
        // next reconnect's symbols= does not fail the same way.
        for (const s of req.added) this.#desired.delete(s);
      } else if ((msg.code === 'invalid_symbol' || msg.code === 'unknown_symbol') && Array.isArray(msg.symbols)) {
        // The server will never hold these; keeping them would repeat the
        // error on every reconnect.
        for (const s of msg.symbols) this.#desired.delete(String(s).toUpperCase());
      }
    }
    if (msg.req_id !== undefined && msg.req_id === conn.resyncReqId) conn.resyncReqId = null;
    this.#emit('error', msg);
  }

  // -- outbound -------------------------------------------------------------

  #sendSubscriptionOp(op, names, added) {
    const conn = this.#liveConn();
    return conn ? this.#sendOnConn(conn, op, names, added) : null;
  }

  #sendOnConn(conn, op, names, added) {
    const id = this.#send(conn, { op, symbols: names });
    if (id == null) return null;
    conn.lastSubReqId = id;
    conn.requests.set(id, { op, added });
    if (conn.requests.size > 1000) conn.requests.delete(conn.requests.keys().next().value);
    return id;
  }

  /** Sends one request with a fresh req_id; returns it, or null if not open. */
  #send(conn, request) {
    const open = this.#WebSocket.OPEN ?? WS_OPEN;
    // The event stream is one-way: nothing can be sent on it.
    if (conn.closed || conn.transport !== 'websocket' || conn.ws.readyState !== open) return null;
    const id = ++this.#reqId;
    try {
      conn.ws.send(JSON.stringify({ ...request, req_id: id }));
    } catch {
      return null;
    }
    return id;
  }

  // -- events ---------------------------------------------------------------

  #setStatus(state, { code, reason, retryInMs }) {
    this.#state = state;
    const conn = this.#conn;
    const compression = conn?.welcomed || state === 'open' ? conn?.compression ?? null : null;
    this.#emit('status', { state, transport: conn?.transport ?? null, code, reason, compression, retryInMs });
  }

  #localError(code, err) {
    this.#emit('error', { type: 'error', code, message: String(err?.message ?? err), local: true });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
