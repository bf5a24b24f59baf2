// Test doubles for ticker-client.js: a scriptable WebSocket, manual timers,
// a controllable clock, and a real raw-DEFLATE stream built with node:zlib.

import zlib from 'node:zlib';

/**
 * Returns a fresh fake WebSocket class with its own `instances` list, so tests
 * never see each other's sockets. Tests play the server with the `server*`
 * methods; the client only sees the browser-shaped surface.
 */
export function makeFakeWebSocket() {
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    /** @type {FakeWebSocket[]} */
    static instances = [];

    constructor(url) {
      this.url = url;
      this.readyState = FakeWebSocket.CONNECTING;
      this.binaryType = 'blob';
      /** What the handshake negotiated; a browser offers permessage-deflate on every connection. */
      this.extensions = '';
      /** Parsed client requests, in send order. */
      this.sent = [];
      this.closeCalls = [];
      this.onopen = null;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      FakeWebSocket.instances.push(this);
    }

    /** The query of the URL the client connected to. */
    get query() {
      return new URL(this.url).searchParams;
    }

    send(data) {
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error('InvalidStateError');
      if (typeof data !== 'string') throw new Error('client must send text frames');
      this.sent.push(JSON.parse(data));
    }

    close(code, reason) {
      // Browsers throw InvalidAccessError for codes a client may not send.
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
        throw new Error(`InvalidAccessError: close code ${code}`);
      }
      this.closeCalls.push({ code, reason });
      if (this.readyState < FakeWebSocket.CLOSING) this.readyState = FakeWebSocket.CLOSING;
    }

    // --- server side ---
    serverOpen() {
      this.readyState = FakeWebSocket.OPEN;
      this.onopen?.({ type: 'open' });
    }

    serverSend(message) {
      const data = typeof message === 'string' ? message : JSON.stringify(message);
      this.onmessage?.({ type: 'message', data });
    }

    /** Sends a binary frame as a browser would deliver it with binaryType 'arraybuffer'. */
    serverSendBinary(bytes) {
      const copy = new Uint8Array(bytes);
      this.onmessage?.({ type: 'message', data: copy.buffer });
    }

    /** A failed connect as Node 20's undici reports it: 'error' and no 'close'. */
    serverError() {
      this.onerror?.({ type: 'error' });
    }

    serverClose(code = 1000, reason = '') {
      this.readyState = FakeWebSocket.CLOSED;
      this.onclose?.({ type: 'close', code, reason, wasClean: true });
    }

    /** Opens and sends a welcome, as the server does first on every connection. */
    serverWelcome(extra = {}) {
      this.serverOpen();
      this.serverSend({
        type: 'welcome',
        session: '182c26f2c78f36a3',
        compression: this.query.get('compression') === 'deflate' ? 'deflate' : 'none',
        max_hz: 10,
        heartbeat_ms: 5000,
        t: 1764072000010,
        ...extra,
      });
    }
  }
  return FakeWebSocket;
}

/**
 * Returns a fresh fake EventSource class (the browser's SSE client) with its
 * own `instances` list. Like a browser's, a closed one dispatches nothing.
 * Tests play the server with the `server*` methods.
 */
export function makeFakeEventSource() {
  class FakeEventSource extends EventTarget {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 2;
    /** @type {FakeEventSource[]} */
    static instances = [];

    constructor(url) {
      super();
      this.url = url;
      this.readyState = FakeEventSource.CONNECTING;
      this.closeCalls = 0;
      FakeEventSource.instances.push(this);
    }

    get query() {
      return new URL(this.url).searchParams;
    }

    close() {
      this.closeCalls += 1;
      this.readyState = FakeEventSource.CLOSED;
    }

    // --- server side ---
    serverOpen() {
      if (this.readyState === FakeEventSource.CLOSED) return;
      this.readyState = FakeEventSource.OPEN;
      this.dispatchEvent(new Event('open'));
    }

    /** One event: `event: <type>`, `data: <json>`, and `id: <seq>` when the message has one. */
    serverEvent(message, type = message.type) {
      if (this.readyState === FakeEventSource.CLOSED) return;
      const data = typeof message === 'string' ? message : JSON.stringify(message);
      this.dispatchEvent(new MessageEvent(type, { data, lastEventId: message.seq === undefined ? '' : String(message.seq) }));
    }

    serverWelcome(extra = {}) {
      this.serverOpen();
      this.serverEvent({
        type: 'welcome', session: 'sse-session', compression: 'none', max_hz: 10, heartbeat_ms: 5000, t: 1764072000010, ...extra,
      });
    }

    /** The server ended the response: the browser reconnects by itself (readyState CONNECTING). */
    serverEnd() {
      if (this.readyState === FakeEventSource.CLOSED) return;
      this.readyState = FakeEventSource.CONNECTING;
      this.dispatchEvent(new Event('error'));
    }

    /** A response the browser will not retry (an HTTP error, a wrong content type). */
    serverFail() {
      if (this.readyState === FakeEventSource.CLOSED) return;
      this.readyState = FakeEventSource.CLOSED;
      this.dispatchEvent(new Event('error'));
    }
  }
  return FakeEventSource;
}

/** Manual timers: nothing fires until a test calls fire(). */
export function makeFakeTimers() {
  const timers = [];
  let nextId = 0;
  return {
    timers,
    setTimeout(fn, ms) {
      const t = { id: ++nextId, fn, ms, cancelled: false, fired: false };
      timers.push(t);
      return t.id;
    },
    clearTimeout(id) {
      const t = timers.find((x) => x.id === id);
      if (t) t.cancelled = true;
    },
    pending() {
      return timers.filter((t) => !t.cancelled && !t.fired);
    },
    fire(t) {
      t.fired = true;
      t.fn();
    },
  };
}

/** A clock the test moves by hand. */
export function makeClock(start = 1000) {
  let t = start;
  const now = () => t;
  now.advance = (ms) => { t += ms; };
  return now;
}

/**
 * One raw-DEFLATE stream with a sync flush after every message, like the
 * server's: `frame(msg)` resolves to the bytes of one WebSocket frame.
 */
export function makeDeflateStream() {
  const deflate = zlib.createDeflateRaw();
  const chunks = [];
  deflate.on('data', (c) => chunks.push(c));
  let tail = Promise.resolve();
  return {
    frame(message) {
      const text = (typeof message === 'string' ? message : JSON.stringify(message)) + '\n';
      const result = tail.then(() => new Promise((resolve, reject) => {
        deflate.write(text, (err) => { if (err) reject(err); });
        deflate.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve(Buffer.concat(chunks.splice(0))));
      }));
      tail = result.catch(() => {});
      return result;
    },
    close() {
      deflate.destroy();
    },
  };
}

/**
 * Resolves once `predicate()` is true. Deadline-based rather than a fixed
 * number of ticks: real inflation runs on Node's threadpool, whose latency
 * varies with machine load.
 */
export async function waitFor(predicate, { timeoutMs = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Records every event of the given types on `target`. */
export function recordEvents(target, types = ['quotes', 'status', 'latency', 'error']) {
  const log = [];
  for (const type of types) target.addEventListener(type, (e) => log.push({ type, detail: e.detail }));
  log.of = (type) => log.filter((e) => e.type === type).map((e) => e.detail);
  return log;
}
