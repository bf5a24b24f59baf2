// A real Node client on /ws: the `ws` package with perMessageDeflate: true.
//
// Against a server this file starts itself (loopback, a port the OS picks,
// the simulator off, a publisher key), it checks that:
// - the handshake answer's Sec-WebSocket-Extensions names permessage-deflate
//   and ws negotiated it (ws.extensions);
// - a subscribe the client sends compressed (RSV1 set on the wire, seen in
//   the bytes the client's socket writes) is understood: `subscriptions` and
//   the new symbol's snapshot come back;
// - seq grows by exactly 1 from 1;
// - after the scripted ticks (ticks.json) the merged quotes equal
//   GET /api/v1/quotes exactly, numbers compared as their JSON text.
//
// Run by scripts/client-tests (which installs ws from package-lock.json).

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startTickstream } from '../support/server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const BIN = process.env.TICKSTREAM_BIN ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, 'target'), 'debug/tickstream');
const KEY = 'client-tests-key';
const SEQ_TYPES = new Set(['snapshot', 'update', 'heartbeat']);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * JSON.parse, except that every number stays its text: 189.12 is compared as
 * "189.12", so float noise on either side (stream or REST) cannot hide.
 * Only what the server sends is needed: objects, arrays, strings, numbers,
 * true/false/null.
 */
export function parseExact(text) {
  let i = 0;
  const ws = () => { while (/\s/.test(text[i] ?? '')) i++; };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++; const o = {}; ws();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        ws(); const k = value(); ws();
        assert.equal(text[i++], ':', `':' expected at ${i}`);
        o[k] = value(); ws();
        const d = text[i++];
        if (d === '}') return o;
        assert.equal(d, ',', `',' expected at ${i}`);
      }
    }
    if (c === '[') {
      i++; const a = []; ws();
      if (text[i] === ']') { i++; return a; }
      for (;;) {
        a.push(value()); ws();
        const d = text[i++];
        if (d === ']') return a;
        assert.equal(d, ',', `',' expected at ${i}`);
      }
    }
    if (c === '"') {
      const m = /^"(?:[^"\\]|\\.)*"/.exec(text.slice(i));
      i += m[0].length;
      return JSON.parse(m[0]);
    }
    const m = /^(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i));
    assert.ok(m, `JSON value expected at ${i}: ${text.slice(i, i + 20)}`);
    i += m[0].length;
    if (m[0] === 'true') return true;
    if (m[0] === 'false') return false;
    if (m[0] === 'null') return null;
    return { num: m[0] };
  };
  const v = value();
  ws();
  assert.equal(i, text.length, 'trailing text');
  return v;
}

/** The server on a loopback port the OS picks, the simulator off. */
async function startServer() {
  assert.ok(existsSync(BIN), `${BIN} does not exist: run scripts/client-tests (it builds it)`);
  return startTickstream({
    bin: BIN,
    cwd: REPO,
    env: {
      TICKSTREAM__SIMULATOR__ENABLED: 'false',
      TICKSTREAM__INGEST__PUBLISHER_KEYS: KEY,
      TICKSTREAM__STREAM__HEARTBEAT_MS: '500',
      TICKSTREAM__SERVER__SHUTDOWN_TIMEOUT_MS: '1000',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
    },
  });
}

async function publish(server, ticks) {
  const res = await fetch(`${server.url}/api/v1/ticks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(ticks),
    signal: AbortSignal.timeout(5000),
  });
  const reply = await res.json();
  assert.equal(res.status, 200);
  assert.deepEqual({ accepted: reply.accepted, rejected: reply.rejected }, { accepted: ticks.length, rejected: [] });
}

async function restQuotes(server, symbols) {
  const res = await fetch(`${server.url}/api/v1/quotes?symbols=${symbols.join(',')}`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return Object.fromEntries(parseExact(await res.text()).quotes.map((q) => [q.s, q]));
}

function merge(quotes, msg) {
  if (msg.type === 'snapshot') for (const q of msg.quotes) quotes[q.s] = { ...q };
  else if (msg.type === 'update') for (const q of msg.quotes) quotes[q.s] = { ...(quotes[q.s] ?? { s: q.s }), ...q };
}

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

test('parseExact keeps numbers as their text', () => {
  assert.deepEqual(parseExact('{"p":189.10,"a":[1,-2.5e3,true,null],"s":"A\\"B"}'),
    { p: { num: '189.10' }, a: [{ num: '1' }, { num: '-2.5e3' }, true, null], s: 'A"B' });
  assert.notDeepEqual(parseExact('{"p":0.30000000000000004}'), parseExact('{"p":0.3}'));
});

test('ws with perMessageDeflate: negotiated, compressed subscribe, exact convergence on REST', { timeout: 60_000 }, async (t) => {
  const script = JSON.parse(readFileSync(path.join(HERE, 'ticks.json'), 'utf8'));
  const [first, ...later] = script.symbols; // connect with the first; subscribe the rest, compressed
  const { batches } = script;
  await publish(server, batches[0]);

  // Every byte the client's socket writes, to see RSV1 on its own frames.
  const written = [];
  let upgradeDone = false;
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws?symbols=${first}`, {
    // threshold 0: compress every message, however small (ws's default skips
    // messages under 1 KiB, and a subscribe is far smaller).
    perMessageDeflate: { threshold: 0 },
    handshakeTimeout: 10_000,
    createConnection: (options) => {
      const socket = net.connect(options);
      const write = socket.write.bind(socket);
      socket.write = (chunk, ...rest) => {
        if (upgradeDone) written.push(Buffer.from(chunk));
        return write(chunk, ...rest);
      };
      return socket;
    },
  });
  t.after(() => ws.terminate());
  const messages = [];
  const raw = [];
  let waiter = null;
  ws.on('message', (data, isBinary) => {
    raw.push({ isBinary });
    messages.push(parseExact(data.toString('utf8')));
    waiter?.();
  });
  const answer = await new Promise((resolve, reject) => {
    ws.once('upgrade', (res) => resolve(res.headers['sec-websocket-extensions'] ?? ''));
    ws.once('error', reject);
    setTimeout(() => reject(new Error('no upgrade within 10 s')), 10_000).unref();
  });
  upgradeDone = true;
  await new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.OPEN) resolve();
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  assert.equal(answer.split(';')[0].trim().toLowerCase(), 'permessage-deflate', `Sec-WebSocket-Extensions: ${answer}`);
  assert.match(ws.extensions, /^permessage-deflate\b/, 'ws negotiated the extension');

  /** Waits (bounded) until `pred()` holds, re-checking after every message. */
  async function until(pred, what, timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; messages: ${JSON.stringify(messages).slice(-2000)}`);
      await new Promise((r) => { waiter = r; setTimeout(r, Math.min(left, 200)); });
      waiter = null;
    }
  }

  await until(() => messages.some((m) => m.type === 'snapshot'), 'the first snapshot');
  assert.equal(messages[0].type, 'welcome');
  assert.equal(messages[0].compression, 'none', 'nothing app-level under permessage-deflate');

  // A compressed client -> server message: the subscribe.
  const before = written.length;
  ws.send(JSON.stringify({ op: 'subscribe', symbols: later, req_id: 1 }), { compress: true });
  await until(() => messages.some((m) => m.type === 'subscriptions' && m.req_id?.num === '1'), 'the subscribe reply');
  const frameHeads = written.slice(before).filter((b) => (b[0] & 0x0f) === 0x1); // text frames the client wrote
  assert.ok(frameHeads.length >= 1, 'the client wrote the subscribe');
  assert.equal(frameHeads[0][0] & 0x40, 0x40, 'RSV1: the subscribe went out compressed');
  const subs = messages.find((m) => m.type === 'subscriptions' && m.req_id?.num === '1');
  assert.deepEqual([...subs.symbols].sort(), [...script.symbols].sort());
  await until(() => later.every((s) => messages.some((m) => m.type === 'snapshot' && m.quotes.some((q) => q.s === s))), 'the snapshot of the subscribed symbols');

  // The feed: several batches while streaming, then quiet.
  for (const batch of batches.slice(1)) {
    await publish(server, batch);
    await sleep(150); // > 1 / max_hz: separate updates
  }
  const expected = await restQuotes(server, script.symbols);
  const merged = () => {
    const quotes = {};
    for (const m of messages) merge(quotes, m);
    return quotes;
  };
  await until(() => { try { assert.deepEqual(merged(), expected); return true; } catch { return false; } }, 'the merged quotes to equal REST');
  assert.deepEqual(merged(), expected);
  assert.ok(messages.some((m) => m.type === 'update'), 'updates arrived');

  // seq: 1, 2, 3, ... with a heartbeat (heartbeat_ms 500) after the data.
  const n = messages.length;
  await until(() => messages.slice(n).some((m) => m.type === 'heartbeat'), 'a heartbeat');
  const seqs = messages.filter((m) => SEQ_TYPES.has(m.type)).map((m) => Number(m.seq.num));
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'seq grows by exactly 1');
  assert.ok(raw.every((r) => !r.isBinary), 'every message is a text frame');
  ws.close(1000);
});
