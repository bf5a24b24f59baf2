// Unit tests for frontend/ticker-client.js. Run: node --test frontend/tests/
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import {
  TickerClient,
  mergeMessage,
  pruneQuotes,
  backoffDelay,
  SeqTracker,
  normalizeSymbols,
  buildStreamUrl,
  supportsDeflateRaw,
  LineInflater,
  buildSseUrl,
  negotiatedPermessageDeflate,
} from '../ticker-client.js';
import {
  makeFakeWebSocket,
  makeFakeEventSource,
  makeFakeTimers,
  makeClock,
  makeDeflateStream,
  waitFor,
  recordEvents,
} from './fakes.mjs';

const AAPL = { s: 'AAPL', p: 189.22, bp: 189.24, bs: 1700, ap: 189.25, as: 1800, v: 3728, pc: 189.12, d: 0.1, dp: 0.05, t: 1 };
const MSFT = { s: 'MSFT', p: 415.13, bp: 414.93, bs: 800, pc: 415.26, d: -0.13, dp: -0.03, t: 2 };

// ---------------------------------------------------------------------------

describe('mergeMessage', () => {
  test('snapshot replaces each quote wholesale', () => {
    const quotes = new Map([['AAPL', { ...AAPL, o: 188, extra: 'stale' }]]);
    const changed = mergeMessage(quotes, { type: 'snapshot', seq: 1, quotes: [{ s: 'AAPL', pc: 189.12 }] });
    assert.deepEqual(changed, ['AAPL']);
    assert.deepEqual(quotes.get('AAPL'), { s: 'AAPL', pc: 189.12 });
  });

  test('snapshot leaves symbols it does not mention alone', () => {
    const quotes = new Map([['MSFT', { ...MSFT }]]);
    mergeMessage(quotes, { type: 'snapshot', seq: 1, quotes: [AAPL] });
    assert.deepEqual(quotes.get('MSFT'), MSFT);
    assert.deepEqual(quotes.get('AAPL'), AAPL);
  });

  test('update merges field by field', () => {
    const quotes = new Map([['AAPL', { ...AAPL }]]);
    const changed = mergeMessage(quotes, { type: 'update', seq: 2, quotes: [{ s: 'AAPL', p: 189.32, v: 4728, t: 9 }] });
    assert.deepEqual(changed, ['AAPL']);
    assert.deepEqual(quotes.get('AAPL'), { ...AAPL, p: 189.32, v: 4728, t: 9 });
  });

  test('update for an unknown symbol starts from {s}', () => {
    const quotes = new Map();
    assert.deepEqual(mergeMessage(quotes, { type: 'update', seq: 3, quotes: [{ s: 'XYZ' }] }), ['XYZ']);
    assert.deepEqual(quotes.get('XYZ'), { s: 'XYZ' });
    mergeMessage(quotes, { type: 'update', seq: 4, quotes: [{ s: 'NEW', bp: 1.5 }] });
    assert.deepEqual(quotes.get('NEW'), { s: 'NEW', bp: 1.5 });
  });

  test('several symbols in one message, reported once each, in order', () => {
    const quotes = new Map();
    const changed = mergeMessage(quotes, { type: 'snapshot', seq: 1, quotes: [MSFT, AAPL, { ...MSFT, p: 1 }] });
    assert.deepEqual(changed, ['MSFT', 'AAPL']);
    assert.equal(quotes.get('MSFT').p, 1);
  });

  test('stored quotes are copies, not the message objects', () => {
    const quotes = new Map();
    const msg = { type: 'snapshot', seq: 1, quotes: [{ ...AAPL }] };
    mergeMessage(quotes, msg);
    msg.quotes[0].p = -1;
    assert.equal(quotes.get('AAPL').p, AAPL.p);
    const before = quotes.get('AAPL');
    mergeMessage(quotes, { type: 'update', seq: 2, quotes: [{ s: 'AAPL', p: 2 }] });
    assert.equal(before.p, AAPL.p, 'update must not mutate the previous object');
  });

  test('non-data messages are no-ops', () => {
    const quotes = new Map([['AAPL', { ...AAPL }]]);
    for (const msg of [
      { type: 'welcome', session: 'x', compression: 'none' },
      { type: 'heartbeat', seq: 5, t: 1 },
      { type: 'subscriptions', symbols: [] },
      { type: 'settings', max_hz: 2 },
      { type: 'pong', req_id: 1, t: 1 },
      { type: 'error', code: 'unknown_symbol', message: 'no such symbol', symbols: ['ZZZZ'] },
      { type: 'future', quotes: [{ s: 'AAPL', p: 0 }] },
      null,
      {},
      { type: 'update' },
    ]) {
      assert.deepEqual(mergeMessage(quotes, msg), [], JSON.stringify(msg));
    }
    assert.deepEqual([...quotes.entries()], [['AAPL', AAPL]]);
  });
});

describe('pruneQuotes', () => {
  test('drops symbols not in the subscription set', () => {
    const quotes = new Map([['AAPL', AAPL], ['MSFT', MSFT]]);
    assert.deepEqual(pruneQuotes(quotes, ['MSFT']), ['AAPL']);
    assert.deepEqual([...quotes.keys()], ['MSFT']);
  });

  test('"*" keeps everything', () => {
    const quotes = new Map([['AAPL', AAPL]]);
    assert.deepEqual(pruneQuotes(quotes, ['*']), []);
    assert.equal(quotes.size, 1);
  });
});

// ---------------------------------------------------------------------------

describe('backoffDelay', () => {
  test('stays within [0, min(maxMs, baseMs * 2^attempt)]', () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      const cap = Math.min(30000, 500 * 2 ** attempt);
      assert.equal(backoffDelay(attempt, { random: () => 0 }), 0);
      assert.equal(backoffDelay(attempt, { random: () => 1 }), cap);
      for (let i = 0; i < 20; i++) {
        const d = backoffDelay(attempt);
        assert.ok(d >= 0 && d <= cap, `attempt ${attempt}: ${d} not in [0, ${cap}]`);
      }
    }
  });

  test('grows exponentially from baseMs', () => {
    const top = (a) => backoffDelay(a, { random: () => 1 });
    assert.deepEqual([0, 1, 2, 3, 4, 5].map(top), [500, 1000, 2000, 4000, 8000, 16000]);
  });

  test('is capped at maxMs, even for huge attempts', () => {
    assert.equal(backoffDelay(6, { random: () => 1 }), 30000);
    assert.equal(backoffDelay(10_000, { random: () => 1 }), 30000);
    assert.equal(backoffDelay(Infinity, { random: () => 0.5 }), 250, 'non-finite attempts count as 0');
    assert.equal(backoffDelay(3, { baseMs: 100, maxMs: 250, random: () => 1 }), 250);
  });

  test('is deterministic with an injected random (full jitter)', () => {
    assert.equal(backoffDelay(2, { random: () => 0.25 }), 500);
    assert.equal(backoffDelay(2, { random: () => 0.25 }), 500);
    assert.equal(backoffDelay(0, { baseMs: 1000, random: () => 0.5 }), 500);
  });

  test('treats negative attempts as 0 and clamps a bad random', () => {
    assert.equal(backoffDelay(-3, { random: () => 1 }), 500);
    assert.equal(backoffDelay(1, { random: () => 7 }), 1000);
    assert.equal(backoffDelay(1, { random: () => -1 }), 0);
  });
});

// ---------------------------------------------------------------------------

describe('SeqTracker', () => {
  test('consecutive seqs from 1 are not a gap; heartbeats count', () => {
    const t = new SeqTracker();
    assert.equal(t.observe({ type: 'snapshot', seq: 1, quotes: [] }), null);
    assert.equal(t.observe({ type: 'update', seq: 2, quotes: [] }), null);
    assert.equal(t.observe({ type: 'heartbeat', seq: 3, t: 0 }), null);
    assert.equal(t.lastSeq, 3);
    assert.equal(t.gaps, 0);
  });

  test('reports a skipped number once, then follows the new numbering', () => {
    const t = new SeqTracker();
    t.observe({ type: 'snapshot', seq: 1 });
    t.observe({ type: 'update', seq: 2 });
    assert.deepEqual(t.observe({ type: 'update', seq: 4 }), { expected: 3, actual: 4 });
    assert.equal(t.observe({ type: 'heartbeat', seq: 5 }), null);
    assert.equal(t.gaps, 1);
  });

  test('a first message other than 1, a repeat, or going back is a gap', () => {
    assert.deepEqual(new SeqTracker().observe({ type: 'update', seq: 2 }), { expected: 1, actual: 2 });
    const t = new SeqTracker();
    t.observe({ type: 'update', seq: 1 });
    assert.deepEqual(t.observe({ type: 'update', seq: 1 }), { expected: 2, actual: 1 });
  });

  test('control messages neither count nor break the sequence', () => {
    const t = new SeqTracker();
    t.observe({ type: 'snapshot', seq: 1 });
    for (const type of ['welcome', 'subscriptions', 'settings', 'pong', 'error']) {
      assert.equal(t.observe({ type }), null);
    }
    assert.equal(t.observe({ type: 'update', seq: 2 }), null);
  });

  test('reset() starts a new connection at 1', () => {
    const t = new SeqTracker();
    t.observe({ type: 'update', seq: 1 });
    t.observe({ type: 'update', seq: 2 });
    t.reset();
    assert.equal(t.observe({ type: 'snapshot', seq: 1 }), null);
  });
});

// ---------------------------------------------------------------------------

describe('URL and symbol helpers', () => {
  test('normalizeSymbols trims, upper-cases, dedupes, accepts a CSV string', () => {
    assert.deepEqual(normalizeSymbols([' aapl', 'MSFT', 'msft', '', 'brk.b']), ['AAPL', 'MSFT', 'BRK.B']);
    assert.deepEqual(normalizeSymbols('aapl, msft,,*'), ['AAPL', 'MSFT', '*']);
    assert.deepEqual(normalizeSymbols(undefined), []);
  });

  test('buildStreamUrl sets symbols and compression, keeps other params', () => {
    const url = buildStreamUrl('ws://h:8080/ws?token=abc&symbols=OLD&compression=none', {
      symbols: ['AAPL', 'BRK.B'], compression: 'deflate',
    });
    assert.equal(url, 'ws://h:8080/ws?token=abc&compression=deflate&symbols=AAPL,BRK.B');
    assert.equal(buildStreamUrl('ws://h/ws?compression=deflate', {}), 'ws://h/ws');
    assert.equal(buildStreamUrl('ws://h/ws', { symbols: ['*'] }), 'ws://h/ws?symbols=*');
  });

  test('buildStreamUrl resolves relative URLs and maps http(s) to ws(s)', () => {
    assert.equal(buildStreamUrl('/ws', { base: 'https://example.com/app/' }), 'wss://example.com/ws');
    assert.equal(buildStreamUrl('http://example.com/ws', { base: undefined }), 'ws://example.com/ws');
  });

  test('buildSseUrl: /ws -> /sse, http(s), keeps token, sets max_hz and symbols, drops compression', () => {
    assert.equal(
      buildSseUrl('ws://h:8080/ws?token=abc&compression=deflate&symbols=OLD', { symbols: ['AAPL', 'BRK.B'], maxHz: 2 }),
      'http://h:8080/sse?token=abc&max_hz=2&symbols=AAPL,BRK.B',
    );
    assert.equal(buildSseUrl('/feed/ws', { base: 'https://example.com/app/' }), 'https://example.com/feed/sse');
    assert.equal(buildSseUrl('wss://example.com/stream', {}), 'https://example.com/sse');
    assert.equal(buildSseUrl('/ws?token=t', { base: 'http://a/', sseUrl: 'http://b/events?x=1', symbols: ['*'] }), 'http://b/events?x=1&token=t&symbols=*');
  });

  test('negotiatedPermessageDeflate reads the extensions string', () => {
    assert.equal(negotiatedPermessageDeflate('permessage-deflate'), true);
    assert.equal(negotiatedPermessageDeflate('Permessage-Deflate; client_no_context_takeover; server_max_window_bits=12'), true);
    assert.equal(negotiatedPermessageDeflate('x-webkit-deflate-frame, permessage-deflate'), true);
    assert.equal(negotiatedPermessageDeflate(''), false);
    assert.equal(negotiatedPermessageDeflate('permessage-deflatex'), false);
    assert.equal(negotiatedPermessageDeflate(undefined), false);
  });

  test('supportsDeflateRaw probes the constructor', () => {
    assert.equal(supportsDeflateRaw(undefined), false);
    class GzipOnly { constructor(f) { if (f !== 'gzip') throw new TypeError('unsupported'); } }
    assert.equal(supportsDeflateRaw(GzipOnly), false);
    class Any { constructor() {} }
    assert.equal(supportsDeflateRaw(Any), true);
  });
});

// ---------------------------------------------------------------------------

/** Builds a client wired to fakes; every test gets fresh ones. */
function setup(options = {}) {
  const WS = makeFakeWebSocket();
  const timers = makeFakeTimers();
  const now = makeClock();
  const client = new TickerClient('ws://127.0.0.1:8080/ws', {
    symbols: ['AAPL', 'MSFT'],
    WebSocketImpl: WS,
    // No fallback unless a test asks for one (Node may or may not have a global EventSource).
    EventSourceImpl: null,
    DecompressionStreamImpl: null,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    now,
    random: () => 1,
    staleTimeoutMs: 0,
    ...options,
  });
  const events = recordEvents(client);
  const ws = () => WS.instances.at(-1);
  return { WS, timers, now, client, events, ws };
}

/** Opens the latest socket, sends welcome and the initial subscription replies. */
function welcomeWithSnapshot(ws, quotes = [AAPL, MSFT]) {
  ws.serverWelcome();
  ws.serverSend({ type: 'subscriptions', symbols: quotes.map((q) => q.s).sort() });
  ws.serverSend({ type: 'snapshot', seq: 1, quotes });
}

describe('TickerClient: connecting', () => {
  test('by default no compression= even when DecompressionStream could inflate: permessage-deflate does it', () => {
    const { client, ws } = setup({ DecompressionStreamImpl: globalThis.DecompressionStream });
    client.connect();
    assert.equal(ws().query.get('symbols'), 'AAPL,MSFT');
    assert.equal(ws().query.has('compression'), false, 'an app-level request would make the server decline the extension');
    assert.match(ws().url, /symbols=AAPL,MSFT/);
    assert.equal(ws().binaryType, 'arraybuffer');
  });

  test('"none" sends no compression= either; "deflate" asks for the app-level mode', () => {
    const a = setup({ DecompressionStreamImpl: globalThis.DecompressionStream, compression: 'none' });
    a.client.connect();
    assert.equal(a.ws().query.has('compression'), false);
    const b = setup({ DecompressionStreamImpl: globalThis.DecompressionStream, compression: 'deflate' });
    b.client.connect();
    assert.equal(b.ws().query.get('compression'), 'deflate');
  });

  test('compression reports the negotiated permessage-deflate, from the socket\'s extensions', () => {
    const { client, ws, events } = setup();
    client.connect();
    ws().extensions = 'permessage-deflate; client_no_context_takeover';
    ws().serverWelcome(); // its compression field is "none": nothing app-level
    assert.equal(client.compression, 'permessage-deflate');
    assert.equal(client.transport, 'websocket');
    assert.deepEqual(events.of('status').at(-1), {
      state: 'open', transport: 'websocket', code: undefined, reason: undefined, compression: 'permessage-deflate', retryInMs: null,
    });
    const b = setup();
    b.client.connect();
    b.ws().serverWelcome(); // declined (or not offered): extensions is ''
    assert.equal(b.client.compression, 'none');
  });

  test('no symbols= without symbols; "*" passes through', () => {
    const a = setup({ symbols: [] });
    a.client.connect();
    assert.equal(a.ws().query.has('symbols'), false);
    const b = setup({ symbols: ['aapl', '*'] });
    b.client.connect();
    assert.equal(b.ws().query.get('symbols'), '*');
  });

  test('rejects bad options early', () => {
    const WS = makeFakeWebSocket();
    assert.throws(() => new TickerClient('ws://h/ws', { WebSocketImpl: WS, compression: 'gzip' }), TypeError);
    assert.throws(() => new TickerClient('ws://h/ws', { WebSocketImpl: WS, compression: 'deflate', DecompressionStreamImpl: null }), TypeError);
  });

  test('status goes connecting -> open on welcome', () => {
    const { client, ws, events } = setup();
    assert.equal(client.state, 'idle');
    client.connect();
    assert.equal(client.state, 'connecting');
    ws().serverOpen();
    assert.equal(client.state, 'connecting', 'open means welcomed, not just TCP-connected');
    ws().serverWelcome();
    assert.equal(client.state, 'open');
    assert.equal(client.compression, 'none');
    assert.equal(client.welcome.session, '182c26f2c78f36a3');
    assert.deepEqual(events.of('status').map((s) => s.state), ['connecting', 'open']);
    assert.equal(events.of('status')[1].compression, 'none');
  });

  test('connect() while connected is a no-op', () => {
    const { client, WS } = setup();
    client.connect();
    client.connect();
    assert.equal(WS.instances.length, 1);
  });
});

describe('TickerClient: data', () => {
  test('merges snapshot and updates into client.quotes and emits quotes', () => {
    const { client, ws, events } = setup();
    client.connect();
    welcomeWithSnapshot(ws());
    ws().serverSend({ type: 'update', seq: 2, quotes: [{ s: 'MSFT', bp: 414.96, t: 3 }] });
    ws().serverSend({ type: 'heartbeat', seq: 3, t: 4 });
    assert.deepEqual(client.quotes.get('AAPL'), AAPL);
    assert.deepEqual(client.quotes.get('MSFT'), { ...MSFT, bp: 414.96, t: 3 });
    assert.deepEqual(events.of('quotes'), [{ symbols: ['AAPL', 'MSFT'] }, { symbols: ['MSFT'] }]);
    assert.deepEqual(ws().sent, [], 'no gap, nothing to request');
  });

  test('a subscriptions message prunes quotes that are no longer subscribed', () => {
    const { client, ws, events } = setup();
    client.connect();
    welcomeWithSnapshot(ws());
    ws().serverSend({ type: 'subscriptions', symbols: ['MSFT'] });
    assert.deepEqual([...client.quotes.keys()], ['MSFT']);
    assert.deepEqual(events.of('quotes').at(-1), { symbols: ['AAPL'] });
  });

  test('a seq gap sends one {"op":"snapshot"} until its reply arrives', () => {
    const { client, ws } = setup();
    client.connect();
    welcomeWithSnapshot(ws());
    ws().serverSend({ type: 'update', seq: 3, quotes: [{ s: 'AAPL', p: 190 }] }); // 2 lost
    assert.equal(ws().sent.length, 1);
    const req = ws().sent[0];
    assert.equal(req.op, 'snapshot');
    assert.equal(typeof req.req_id, 'number');
    assert.equal(client.quotes.get('AAPL').p, 190, 'the update after a gap is still applied');

    ws().serverSend({ type: 'update', seq: 5, quotes: [{ s: 'AAPL', p: 191 }] }); // another loss, resync pending
    assert.equal(ws().sent.length, 1, 'the pending snapshot covers it');

    ws().serverSend({ type: 'snapshot', seq: 6, req_id: req.req_id, quotes: [{ s: 'AAPL', pc: 189.12 }, MSFT] });
    assert.deepEqual(client.quotes.get('AAPL'), { s: 'AAPL', pc: 189.12 });
    ws().serverSend({ type: 'heartbeat', seq: 8, t: 0 }); // a new gap after the resync
    assert.equal(ws().sent.length, 2);
    assert.equal(ws().sent[1].op, 'snapshot');
  });

  test('server errors are emitted with the message as detail', () => {
    const { client, ws, events } = setup();
    client.connect();
    ws().serverWelcome();
    const err = { type: 'error', req_id: 7, code: 'unknown_op', message: 'unknown op "dance"' };
    ws().serverSend(err);
    assert.deepEqual(events.of('error'), [err]);
  });

  test('an unparseable text frame is reported as a local error, not thrown', () => {
    const { client, ws, events } = setup();
    client.connect();
    ws().serverWelcome();
    ws().serverSend('not json');
    assert.equal(events.of('error')[0].local, true);
    assert.equal(client.state, 'open');
  });

  test('maxHz is sent as op:set after every welcome', () => {
    const { client, ws, timers } = setup({ maxHz: 2 });
    client.connect();
    ws().serverWelcome();
    assert.deepEqual(ws().sent.map(({ op, max_hz }) => ({ op, max_hz })), [{ op: 'set', max_hz: 2 }]);
    ws().serverClose(1001, 'server shutting down');
    timers.fire(timers.pending()[0]);
    ws().serverWelcome();
    assert.equal(ws().sent[0].op, 'set');
  });
});

describe('TickerClient: subscriptions', () => {
  test('subscribe/unsubscribe send ops with req_id and update the desired set', () => {
    const { client, ws, events } = setup();
    client.connect();
    welcomeWithSnapshot(ws());
    const id1 = client.subscribe(['nvda']);
    const id2 = client.unsubscribe('AAPL');
    assert.deepEqual(ws().sent, [
      { op: 'subscribe', symbols: ['NVDA'], req_id: id1 },
      { op: 'unsubscribe', symbols: ['AAPL'], req_id: id2 },
    ]);
    assert.deepEqual(client.symbols, ['MSFT', 'NVDA']);
    assert.equal(client.quotes.has('AAPL'), false, 'unsubscribed quotes are dropped at once');
    assert.deepEqual(events.of('quotes').at(-1), { symbols: ['AAPL'] });
  });

  test('reconnect after close resubscribes the current set through symbols=', () => {
    const { client, ws, WS, timers, events } = setup();
    client.connect();
    welcomeWithSnapshot(ws());
    client.subscribe(['NVDA']);
    client.unsubscribe(['AAPL']);
    ws().serverClose(1006, '');
    assert.equal(client.state, 'closed');
    const status = events.of('status').at(-1);
    assert.equal(status.code, 1006);
    assert.equal(status.retryInMs, 500, 'first retry: backoffDelay(0) with random=1');

    const [timer] = timers.pending();
    assert.equal(timer.ms, 500);
    timers.fire(timer);
    assert.equal(WS.instances.length, 2);
    assert.equal(ws().query.get('symbols'), 'MSFT,NVDA');

    // The new connection numbers from 1 again: no false gap.
    ws().serverWelcome();
    ws().serverSend({ type: 'subscriptions', symbols: ['MSFT', 'NVDA'] });
    ws().serverSend({ type: 'snapshot', seq: 1, quotes: [MSFT, { s: 'NVDA', p: 121.37 }] });
    assert.deepEqual(ws().sent, []);
    assert.deepEqual([...client.quotes.keys()].sort(), ['MSFT', 'NVDA']);
  });

  test('subscribe while disconnected is carried into the next connection', () => {
    const { client, ws, timers } = setup();
    client.connect();
    ws().serverWelcome();
    ws().serverClose(1000, 'idle timeout: no frame received');
    assert.equal(client.subscribe(['TSLA']), null, 'nothing to send on');
    timers.fire(timers.pending()[0]);
    assert.equal(ws().query.get('symbols'), 'AAPL,MSFT,TSLA');
  });

  test('changes made while connecting are sent right after welcome', () => {
    const { client, ws } = setup();
    client.connect(); // URL has AAPL,MSFT
    client.subscribe(['NVDA']);
    client.unsubscribe(['AAPL']);
    ws().serverWelcome();
    assert.deepEqual(ws().sent.map(({ op, symbols }) => ({ op, symbols })), [
      { op: 'unsubscribe', symbols: ['AAPL'] },
      { op: 'subscribe', symbols: ['NVDA'] },
    ]);
  });

  test('the reply to the newest request becomes the desired set (e.g. "*" minus one)', () => {
    const { client, ws } = setup({ symbols: ['*'] });
    client.connect();
    ws().serverWelcome();
    ws().serverSend({ type: 'subscriptions', symbols: ['*'] });
    const older = client.subscribe(['AAPL']);
    const id = client.unsubscribe(['AAPL']);
    ws().serverSend({ type: 'subscriptions', req_id: older, symbols: ['*'] });
    assert.deepEqual(client.symbols, ['*'], 'an older reply does not override');
    ws().serverSend({ type: 'subscriptions', req_id: id, symbols: ['MSFT', 'NVDA'] });
    assert.deepEqual(client.symbols, ['MSFT', 'NVDA']);
  });

  test('unknown/invalid names and too_many_symbols are not carried into reconnects', () => {
    const { client, ws, events } = setup();
    client.connect();
    welcomeWithSnapshot(ws());
    const a = client.subscribe(['ZZZZ', 'A$', 'NVDA']);
    ws().serverSend({ type: 'subscriptions', req_id: a, symbols: ['AAPL', 'MSFT', 'NVDA'] });
    ws().serverSend({ type: 'error', req_id: a, code: 'invalid_symbol', message: '…', symbols: ['A$'] });
    ws().serverSend({ type: 'error', req_id: a, code: 'unknown_symbol', message: 'no such symbol', symbols: ['ZZZZ'] });
    assert.deepEqual(client.symbols, ['AAPL', 'MSFT', 'NVDA']);

    const b = client.subscribe(['T1', 'T2', 'AAPL']);
    assert.deepEqual(client.symbols, ['AAPL', 'MSFT', 'NVDA', 'T1', 'T2']);
    ws().serverSend({ type: 'error', req_id: b, code: 'too_many_symbols', message: 'at most 500 symbols' });
    assert.deepEqual(client.symbols, ['AAPL', 'MSFT', 'NVDA'], 'only what that request added is undone');
    assert.equal(events.of('error').length, 3);
  });
});

describe('TickerClient: reconnecting', () => {
  test('backoff grows while connections fail and resets after a welcome', () => {
    const { client, ws, timers, events } = setup();
    client.connect();
    const delays = [];
    for (let i = 0; i < 4; i++) {
      ws().serverClose(1006, ''); // never welcomed
      const [t] = timers.pending();
      delays.push(t.ms);
      timers.fire(t);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000]);
    ws().serverWelcome();
    ws().serverClose(1006, '');
    assert.equal(timers.pending()[0].ms, 500);
    assert.equal(events.of('status').at(-1).retryInMs, 500);
  });

  test('1013 (server full) reconnects after a longer minimum delay', () => {
    const { client, ws, timers, WS } = setup({ random: () => 0 });
    client.connect();
    ws().serverClose(1013, 'server full');
    const [t] = timers.pending();
    assert.ok(t.ms >= 5000, `1013 delay ${t.ms} should be at least 5000`);
    timers.fire(t);
    assert.equal(WS.instances.length, 2, 'still reconnects');
  });

  test('1013 delay keeps its jitter above the minimum', () => {
    const { client, ws, timers } = setup({ random: () => 1, serverFullDelayMs: 6000 });
    client.connect();
    ws().serverClose(1013, 'server full');
    assert.equal(timers.pending()[0].ms, 6500);
  });

  test('1001 (server shutting down) and 1000 also reconnect with backoff', () => {
    for (const code of [1001, 1000, 1011, 4008]) {
      const { client, ws, timers, WS } = setup({ random: () => 0.5 });
      client.connect();
      ws().serverWelcome();
      ws().serverClose(code, '');
      const [t] = timers.pending();
      assert.equal(t.ms, 250, `code ${code}`);
      timers.fire(t);
      assert.equal(WS.instances.length, 2, `code ${code}`);
    }
  });

  test('close() stops reconnecting', () => {
    const { client, ws, timers, WS, events } = setup();
    client.connect();
    ws().serverWelcome();
    client.close();
    assert.deepEqual(ws().closeCalls, [{ code: 1000, reason: 'client closed' }]);
    assert.equal(client.state, 'closed');
    assert.equal(events.of('status').at(-1).retryInMs, null);
    ws().serverClose(1000, 'client closed'); // the echoed close arrives later
    assert.deepEqual(timers.pending(), []);
    assert.equal(WS.instances.length, 1);
    assert.equal(events.of('status').filter((s) => s.state === 'closed').length, 1);
  });

  test('close() during the backoff wait cancels the pending reconnect', () => {
    const { client, ws, timers, WS } = setup();
    client.connect();
    ws().serverClose(1006, '');
    const [t] = timers.pending();
    client.close();
    assert.equal(t.cancelled, true);
    t.fn(); // even if a timer fires anyway, nothing happens
    assert.equal(WS.instances.length, 1);
  });

  test('connect() after close() starts again; connect() during backoff connects now', () => {
    const { client, ws, timers, WS } = setup();
    client.connect();
    ws().serverClose(1006, '');
    const [retry] = timers.pending();
    client.connect();
    assert.equal(WS.instances.length, 2);
    assert.equal(retry.cancelled, true);
    client.close();
    client.connect();
    assert.equal(WS.instances.length, 3);
  });

  test('an error while connecting counts as close 1006 (Node\'s WebSocket sends no close)', () => {
    const { client, ws, timers, WS, events } = setup();
    client.connect();
    ws().serverError();
    assert.equal(client.state, 'closed');
    assert.equal(events.of('status').at(-1).code, 1006);
    assert.deepEqual(ws().closeCalls, [{ code: undefined, reason: undefined }]);
    ws().serverClose(1006, ''); // a browser's close after the error is not reported twice
    assert.equal(events.of('status').filter((s) => s.state === 'closed').length, 1);
    timers.fire(timers.pending()[0]);
    assert.equal(WS.instances.length, 2);
  });

  test('a socket that fires error synchronously from close() does not recurse', () => {
    // Node 20's undici does this for a CONNECTING socket.
    const { client, ws, timers, WS, events } = setup();
    client.connect();
    let errors = 0;
    const socket = ws();
    const close = socket.close.bind(socket);
    socket.close = (...args) => { close(...args); if (++errors < 100) socket.serverError(); };
    socket.serverError();
    assert.equal(errors, 1, 'close() called once');
    assert.equal(events.of('status').filter((s) => s.state === 'closed').length, 1);
    assert.equal(timers.pending().length, 1, 'one reconnect scheduled');
    timers.fire(timers.pending()[0]);
    assert.equal(WS.instances.length, 2);
  });

  test('an attempt without welcome is abandoned after connectTimeoutMs', () => {
    const { client, ws, timers, WS, events } = setup({ connectTimeoutMs: 8000 });
    client.connect();
    ws().serverOpen(); // TCP up, but no welcome
    const [connectTimer] = timers.pending();
    assert.equal(connectTimer.ms, 8000);
    timers.fire(connectTimer);
    assert.equal(client.state, 'closed');
    assert.equal(ws().closeCalls[0].code, 4000);
    assert.equal(events.of('status').at(-1).code, 4000);
    timers.fire(timers.pending()[0]);
    assert.equal(WS.instances.length, 2);
    ws().serverWelcome();
    assert.equal(timers.timers.at(-1).cancelled, true, 'welcome clears the connect timeout');
    assert.deepEqual(timers.pending(), []);
  });

  test('a connection that goes silent is abandoned and retried', () => {
    const { client, ws, timers, now, WS } = setup({ staleTimeoutMs: undefined });
    client.connect();
    ws().serverWelcome({ heartbeat_ms: 1000 }); // stale after 3000 ms
    let [watchdog] = timers.pending();
    assert.equal(watchdog.ms, 3000);
    now.advance(2000);
    ws().serverSend({ type: 'heartbeat', seq: 1, t: 0 });
    now.advance(1000);
    timers.fire(watchdog); // only 1000 ms since the last frame: re-armed
    [watchdog] = timers.pending();
    assert.equal(watchdog.ms, 2000);
    assert.equal(client.state, 'open');
    now.advance(2000);
    timers.fire(watchdog);
    assert.equal(client.state, 'closed');
    assert.equal(ws().closeCalls[0].code, 4000);
    timers.fire(timers.pending()[0]);
    assert.equal(WS.instances.length, 2);
  });
});

/** A client with the SSE fallback wired to a fake EventSource. */
function setupSse(options = {}) {
  const ES = makeFakeEventSource();
  const ctx = setup({ EventSourceImpl: ES, ...options });
  return { ...ctx, ES, es: () => ES.instances.at(-1) };
}

/** Lets `n` WebSocket attempts fail before their welcome, firing each retry timer. */
function failWebSocketAttempts(ctx, n) {
  for (let i = 0; i < n; i++) {
    ctx.ws().serverClose(1006, '');
    if (i < n - 1) {
      const [retry] = ctx.timers.pending();
      ctx.timers.fire(retry);
    }
  }
}

describe('TickerClient: SSE fallback', () => {
  test('after 3 WebSocket attempts without welcome it streams over /sse with symbols, token and max_hz', () => {
    const ctx = setupSse({ maxHz: 2 });
    const { client, WS, ES, es, events } = ctx;
    // The URL the dashboard builds with a page token.
    const c = new TickerClient('ws://127.0.0.1:8080/ws?token=abc', {
      symbols: ['AAPL', 'MSFT'], WebSocketImpl: WS, EventSourceImpl: ES, DecompressionStreamImpl: null,
      setTimeout: ctx.timers.setTimeout, clearTimeout: ctx.timers.clearTimeout, now: ctx.now, random: () => 1, staleTimeoutMs: 0, maxHz: 2,
    });
    void client;
    const log = recordEvents(c);
    c.connect();
    failWebSocketAttempts(ctx, 2);
    assert.equal(ES.instances.length, 0, 'two failures are not enough');
    ctx.timers.fire(ctx.timers.pending()[0]);
    failWebSocketAttempts(ctx, 1);
    assert.equal(WS.instances.length, 3);
    assert.equal(ES.instances.length, 1);
    assert.equal(es().url, 'http://127.0.0.1:8080/sse?token=abc&max_hz=2&symbols=AAPL,MSFT');
    assert.equal(c.state, 'connecting');
    assert.equal(c.transport, 'sse');
    assert.deepEqual(log.of('status').at(-1), { state: 'connecting', transport: 'sse', code: undefined, reason: undefined, compression: null, retryInMs: null });

    es().serverWelcome();
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [AAPL, MSFT] });
    es().serverEvent({ type: 'update', seq: 2, quotes: [{ s: 'MSFT', bp: 414.96, t: 3 }] });
    es().serverEvent({ type: 'heartbeat', seq: 3, t: 4 });
    assert.equal(c.state, 'open');
    assert.equal(c.compression, 'http');
    assert.equal(c.welcome.session, 'sse-session');
    assert.deepEqual(log.of('status').at(-1), { state: 'open', transport: 'sse', code: undefined, reason: undefined, compression: 'http', retryInMs: null });
    assert.deepEqual(c.quotes.get('MSFT'), { ...MSFT, bp: 414.96, t: 3 });
    assert.deepEqual(c.quotes.get('AAPL'), AAPL);
    assert.equal(ES.instances.length, 1, 'no gap: no new stream');
    assert.deepEqual(events.of('error'), []);
    c.close();
    assert.equal(es().readyState, ES.CLOSED);
    assert.deepEqual(ctx.timers.pending(), [], 'close() cancels the background WebSocket attempt too');
  });

  test('an upgrade that never completes within connectTimeoutMs falls back at once', () => {
    const { client, timers, WS, ES, es } = setupSse({ connectTimeoutMs: 8000 });
    client.connect(); // the socket stays CONNECTING: a proxy holding the upgrade
    const [connectTimer] = timers.pending();
    assert.equal(connectTimer.ms, 8000);
    timers.fire(connectTimer);
    assert.equal(WS.instances.length, 1);
    assert.equal(ES.instances.length, 1);
    assert.equal(es().query.get('symbols'), 'AAPL,MSFT');
    assert.equal(client.transport, 'sse');
  });

  test('sockets the server opened and closed with a code (1013 full, 1008) do not count: WebSocket got through', () => {
    const ctx = setupSse({ random: () => 0 });
    const { client, timers, WS, ES, ws } = ctx;
    client.connect();
    for (let i = 0; i < 4; i++) {
      ws().serverOpen();
      ws().serverClose(i % 2 ? 1008 : 1013, 'server full');
      timers.fire(timers.pending().find((t) => t.ms !== 15000));
    }
    assert.equal(ES.instances.length, 0);
    assert.equal(WS.instances.length, 5);
    // An opened socket that stays silent past the connect timeout does count (a proxy that relays nothing).
    ws().serverOpen();
    timers.fire(timers.pending().find((t) => t.ms === 15000));
    assert.equal(ES.instances.length, 1);
  });

  test('without EventSource (or with sseFallback: false) it keeps to WebSocket', () => {
    for (const options of [{ EventSourceImpl: null }, { EventSourceImpl: makeFakeEventSource(), sseFallback: false }]) {
      const ctx = setup(options);
      ctx.client.connect();
      failWebSocketAttempts(ctx, 5);
      ctx.timers.fire(ctx.timers.pending()[0]);
      assert.equal(ctx.WS.instances.length, 6);
      assert.equal(ctx.client.transport, 'websocket');
    }
  });

  test('keeps retrying WebSocket in the background with backoff and switches back when one is welcomed', () => {
    const ctx = setupSse();
    const { client, timers, WS, ES, es, ws, events } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [AAPL, MSFT] });
    const statusCount = events.of('status').length;

    // The stream is up, so the server is: one quick background attempt
    // (backoffDelay(0) with random=1), in case WebSocket failed only while
    // the server was down.
    let [probeTimer] = timers.pending();
    assert.equal(probeTimer.ms, 500);
    timers.fire(probeTimer);
    assert.equal(WS.instances.length, 4);
    assert.equal(client.transport, 'sse', 'the stream stays on SSE while WebSocket is tried');
    ws().serverClose(1006, ''); // still blocked
    assert.equal(events.of('status').length, statusCount, 'background failures are not reported as status');
    assert.equal(client.state, 'open');
    [probeTimer] = timers.pending();
    assert.equal(probeTimer.ms, 8000, 'then the background attempts back off: backoffDelay(4)');

    // Meanwhile the watchlist changed: the probe's URL carries it.
    client.subscribe(['NVDA']);
    timers.fire(timers.pending().find((t) => t.ms === 250)); // the SSE resubscribe
    assert.equal(ES.instances.length, 2);
    es().serverWelcome();
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [AAPL, MSFT, { s: 'NVDA', p: 121.37 }] });
    assert.equal(probeTimer.cancelled, false, 'a watchlist change does not reset the background backoff');
    assert.equal(timers.pending().filter((t) => t.ms < 8000).length, 0);
    timers.fire(probeTimer);
    assert.equal(ws().query.get('symbols'), 'AAPL,MSFT,NVDA');
    client.unsubscribe(['MSFT']); // while the probe is connecting
    ws().extensions = 'permessage-deflate';
    ws().serverWelcome();
    assert.equal(client.transport, 'websocket');
    assert.equal(client.state, 'open');
    assert.equal(client.compression, 'permessage-deflate');
    assert.equal(es().readyState, ES.CLOSED, 'the event stream is closed');
    assert.deepEqual(events.of('status').at(-1), { state: 'open', transport: 'websocket', code: undefined, reason: undefined, compression: 'permessage-deflate', retryInMs: null });
    assert.deepEqual(ws().sent.map(({ op, symbols }) => ({ op, symbols })), [{ op: 'unsubscribe', symbols: ['MSFT'] }], 'reconciled on the new socket');
    assert.deepEqual(timers.pending(), [], 'no more background attempts or SSE reconnects');

    ws().serverSend({ type: 'snapshot', seq: 1, quotes: [{ ...AAPL, p: 200 }, { s: 'NVDA', p: 122 }] });
    assert.equal(client.quotes.get('AAPL').p, 200);
    // A later WebSocket failure starts the count from 0 again: no immediate fallback.
    ws().serverClose(1001, 'server shutting down');
    assert.equal(ES.instances.length, 2);
    timers.fire(timers.pending()[0]);
    assert.equal(WS.instances.length, 6, '3 failed, 2 in the background, and this one');
    assert.equal(client.transport, 'websocket');
  });

  test('changing the watchlist over SSE reconnects the stream with the new set, debounced', () => {
    const ctx = setupSse();
    const { client, timers, ES, es, events } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [AAPL, MSFT] });
    const first = es();

    assert.equal(client.subscribe(['nvda']), null, 'nothing is sent on a one-way stream');
    assert.equal(client.unsubscribe(['AAPL']), null);
    assert.equal(client.quotes.has('AAPL'), false, 'dropped at once');
    assert.deepEqual(events.of('quotes').at(-1), { symbols: ['AAPL'] });
    client.subscribe(['TSLA']);
    assert.equal(ES.instances.length, 1, 'debounced');
    const debounces = timers.pending().filter((t) => t.ms === 250);
    assert.equal(debounces.length, 1, 'one pending reconnect for three changes');
    timers.fire(debounces[0]);
    assert.equal(ES.instances.length, 2);
    assert.equal(first.readyState, ES.CLOSED);
    assert.equal(es().query.get('symbols'), 'MSFT,NVDA,TSLA');
    assert.equal(client.state, 'connecting');
    es().serverWelcome();
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [MSFT, { s: 'NVDA', p: 121.37 }, { s: 'TSLA', p: 250 }] });
    assert.deepEqual([...client.quotes.keys()].sort(), ['MSFT', 'NVDA', 'TSLA']);

    client.setMaxHz(1);
    timers.fire(timers.pending().find((t) => t.ms === 250));
    assert.equal(ES.instances.length, 3);
    assert.equal(es().query.get('max_hz'), '1');

    // Back and forth to the same set: no reconnect.
    es().serverWelcome();
    client.subscribe(['META']);
    client.unsubscribe(['META']);
    timers.fire(timers.pending().find((t) => t.ms === 250));
    assert.equal(ES.instances.length, 3);
  });

  test("EventSource's own reconnect: a fresh welcome and snapshot, seq from 1, no false gap", () => {
    const ctx = setupSse();
    const { client, ES, es, events } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [AAPL, MSFT] });
    es().serverEvent({ type: 'update', seq: 2, quotes: [{ s: 'AAPL', p: 190 }] });
    es().serverEnd(); // e.g. the server restarted; the browser reconnects with Last-Event-ID
    assert.equal(client.state, 'connecting');
    assert.equal(events.of('status').at(-1).transport, 'sse');
    es().serverWelcome({ session: 'second' });
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [{ ...AAPL, p: 191 }, MSFT] });
    es().serverEvent({ type: 'update', seq: 2, quotes: [{ s: 'MSFT', p: 416 }] });
    assert.equal(client.state, 'open');
    assert.equal(client.welcome.session, 'second');
    assert.equal(ES.instances.length, 1, 'the browser reconnected, not the client');
    assert.equal(client.quotes.get('AAPL').p, 191);
    assert.equal(client.quotes.get('MSFT').p, 416);
  });

  test('a seq gap over SSE applies the message and reconnects the stream for a fresh snapshot', () => {
    const ctx = setupSse();
    const { client, ES, es } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    es().serverEvent({ type: 'snapshot', seq: 1, quotes: [AAPL, MSFT] });
    const first = es();
    es().serverEvent({ type: 'update', seq: 3, quotes: [{ s: 'AAPL', p: 190 }] }); // 2 lost
    assert.equal(client.quotes.get('AAPL').p, 190);
    assert.equal(ES.instances.length, 2);
    assert.equal(first.readyState, ES.CLOSED);
    assert.equal(es().query.get('symbols'), 'AAPL,MSFT');
  });

  test('server errors arrive as events; unknown symbols leave the set; ping() is null', async () => {
    const ctx = setupSse();
    const { client, es, events } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    const err = { type: 'error', code: 'unknown_symbol', message: 'no such symbol', symbols: ['MSFT'] };
    es().serverEvent(err);
    assert.deepEqual(events.of('error'), [err]);
    assert.deepEqual(client.symbols, ['AAPL']);
    assert.equal(await client.ping(), null);
  });

  test('a stream that ends goes back to the reconnect loop, WebSocket first again', () => {
    const ctx = setupSse();
    const { client, timers, ES, WS, es, ws, events } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    es().serverFail(); // e.g. 401 after the token expired, or the server went away
    assert.equal(client.state, 'closed');
    const status = events.of('status').at(-1);
    assert.equal(status.transport, 'sse');
    assert.equal(status.retryInMs, 500, 'the SSE welcome reset the backoff');
    const pending = timers.pending();
    assert.equal(pending.length, 1, 'only the reconnect: the background attempt was cancelled');
    timers.fire(pending[0]);
    assert.equal(WS.instances.length, 4, 'the server may be back with WebSocket: it is tried first');
    assert.equal(ES.instances.length, 1);
    failWebSocketAttempts(ctx, 1);
    timers.fire(timers.pending()[0]);
    failWebSocketAttempts(ctx, 1);
    timers.fire(timers.pending()[0]);
    failWebSocketAttempts(ctx, 1);
    assert.equal(ES.instances.length, 2, 'still blocked: three quick failures, and SSE again');
    es().serverWelcome();
    timers.fire(timers.pending().find((t) => t.ms === 500));
    ws().serverWelcome();
    assert.equal(client.transport, 'websocket');
  });

  test('an event stream that fails before any welcome (server down) does not retry by itself', () => {
    const ctx = setupSse();
    const { client, timers, ES, WS, es } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    const first = es();
    first.serverEnd(); // connection refused: EventSource would retry every few seconds
    assert.equal(first.readyState, ES.CLOSED, 'closed: the reconnect loop decides');
    assert.equal(client.state, 'closed');
    timers.fire(timers.pending().find((t) => t.ms !== 15000));
    assert.equal(WS.instances.length, 4, 'WebSocket first: nothing says it is blocked');
  });

  test("after EventSource's own reconnect (a server restart) one quick WebSocket attempt is made", () => {
    const ctx = setupSse();
    const { client, timers, WS, es, ws } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    timers.fire(timers.pending().find((t) => t.ms === 500));
    ws().serverClose(1006, ''); // blocked
    assert.equal(timers.pending()[0].ms, 8000);
    es().serverEnd();
    es().serverWelcome({ session: 'restarted' });
    const quick = timers.pending().find((t) => t.ms === 500);
    assert.ok(quick, 'a quick attempt replaces the 8 s wait');
    timers.fire(quick);
    assert.equal(WS.instances.length, 5);
    ws().serverWelcome();
    assert.equal(client.transport, 'websocket');
  });

  test("the server's close event ends the stream; the reconnect loop comes back with backoff", () => {
    const ctx = setupSse({ random: () => 0.5 });
    const { client, timers, ES, es, events } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    const first = es();
    es().serverEvent({ type: 'close', code: 1001, reason: 'server shutting down' });
    assert.equal(first.readyState, ES.CLOSED, 'closed by the client, not left to EventSource');
    assert.equal(client.state, 'closed');
    const status = events.of('status').at(-1);
    assert.deepEqual({ code: status.code, reason: status.reason, transport: status.transport, retryInMs: status.retryInMs },
      { code: 1001, reason: 'server shutting down', transport: 'sse', retryInMs: 250 });
    const retries = timers.pending();
    assert.deepEqual(retries.map((t) => t.ms), [250], 'only the reconnect, no stray background attempt');
    timers.fire(retries[0]);
    assert.equal(ctx.WS.instances.length, 4, 'after a restart WebSocket is tried first');
    assert.equal(ES.instances.length, 1);
  });

  test('close code 1013 on SSE waits at least serverFullDelayMs', () => {
    const ctx = setupSse({ random: () => 0 });
    const { client, timers, es } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    es().serverEvent({ type: 'close', code: 1013, reason: 'server full' });
    assert.equal(timers.pending()[0].ms, 5000);
  });

  test('a background socket welcomed after the event stream failed takes over and cancels the pending reconnect', () => {
    const ctx = setupSse();
    const { client, timers, WS, ES, es, ws } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    timers.fire(timers.pending().find((t) => t.ms === 500)); // the background attempt starts
    const probe = ws();
    es().serverFail(); // meanwhile the event stream fails
    assert.equal(client.state, 'closed');
    probe.serverWelcome();
    assert.equal(client.transport, 'websocket');
    assert.equal(client.state, 'open');
    assert.deepEqual(timers.pending(), [], 'nothing left to reconnect');
    assert.equal(WS.instances.length, 4);
    assert.equal(ES.instances.length, 1);
  });

  test('close() closes the background socket too; connect() starts again from WebSocket', () => {
    const ctx = setupSse();
    const { client, timers, WS, ES, es, ws } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome();
    timers.fire(timers.pending().find((t) => t.ms === 500));
    const probe = ws();
    client.close();
    assert.equal(probe.closeCalls.length, 1, 'the background socket is closed');
    assert.equal(es().readyState, ES.CLOSED);
    assert.deepEqual(timers.pending(), []);
    client.connect();
    assert.equal(WS.instances.length, 5);
    assert.equal(ES.instances.length, 1);
    assert.equal(client.transport, 'websocket');
  });

  test('an SSE connection without any event for the stale timeout is given up', () => {
    const ctx = setupSse({ staleTimeoutMs: undefined });
    const { client, timers, now, es } = ctx;
    client.connect();
    failWebSocketAttempts(ctx, 3);
    es().serverWelcome({ heartbeat_ms: 1000 });
    const watchdog = timers.pending().find((t) => t.ms === 3000);
    assert.ok(watchdog, 'stale watchdog armed at 3 x heartbeat_ms');
    now.advance(3000);
    timers.fire(watchdog);
    assert.equal(client.state, 'closed');
    assert.equal(es().readyState, 2);
  });
});

describe('TickerClient: ping', () => {
  test('ping() measures round trip with op:ping and the matching pong', async () => {
    const { client, ws, now, events } = setup();
    client.connect();
    ws().serverWelcome();
    const p = client.ping();
    const req = ws().sent.at(-1);
    assert.equal(req.op, 'ping');
    assert.equal(typeof req.req_id, 'number');
    now.advance(42);
    ws().serverSend({ type: 'pong', req_id: req.req_id + 1000, t: 0 }); // not ours
    assert.deepEqual(events.of('latency'), []);
    ws().serverSend({ type: 'pong', req_id: req.req_id, t: 1764072001000 });
    assert.equal(await p, 42);
    assert.deepEqual(events.of('latency'), [{ rttMs: 42 }]);
  });

  test('ping() resolves null when not connected or when the connection closes', async () => {
    const { client, ws } = setup();
    assert.equal(await client.ping(), null);
    client.connect();
    ws().serverWelcome();
    const p = client.ping();
    ws().serverClose(1006, '');
    assert.equal(await p, null);
  });
});

// ---------------------------------------------------------------------------

const HAS_DEFLATE_RAW = supportsDeflateRaw(globalThis.DecompressionStream);

describe('raw DEFLATE (real node:zlib stream, global DecompressionStream)', () => {
  test('this Node version supports DecompressionStream("deflate-raw")', () => {
    // Asserted, not skipped: if this fails, the tests below cannot run here.
    assert.ok(HAS_DEFLATE_RAW, `Node ${process.version} lacks DecompressionStream('deflate-raw')`);
  });

  test('LineInflater keeps frame order and splits lines across chunk boundaries', { skip: !HAS_DEFLATE_RAW }, async () => {
    const stream = makeDeflateStream();
    const frames = [];
    for (let i = 1; i <= 50; i++) frames.push(await stream.frame({ type: 'update', seq: i, quotes: [{ s: 'AAPL', p: 100 + i }] }));
    stream.close();
    for (const f of frames) assert.deepEqual([...f.subarray(-4)], [0, 0, 0xff, 0xff], 'sync-flushed frame');

    const lines = [];
    const inflater = new LineInflater((l) => lines.push(JSON.parse(l)));
    // Push everything synchronously; split one frame in two, as a chunked transport could.
    for (const [i, f] of frames.entries()) {
      if (i === 10) { inflater.push(f.subarray(0, 3)); inflater.push(f.subarray(3)); } else inflater.push(f);
    }
    await waitFor(() => lines.length === 50, { what: '50 lines' });
    assert.deepEqual(lines.map((m) => m.seq), Array.from({ length: 50 }, (_, i) => i + 1));
    inflater.close();
    await inflater.done;
  });

  test('LineInflater reports corrupt input once', { skip: !HAS_DEFLATE_RAW }, async () => {
    const errors = [];
    const inflater = new LineInflater(() => {}, { onError: (e) => errors.push(e) });
    inflater.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x00, 0x01]));
    inflater.push(new Uint8Array([1, 2, 3]));
    await waitFor(() => errors.length > 0, { what: 'decompression error' });
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(errors.length, 1);
  });

  test('client decodes consecutive binary frames of one stream after a text welcome', { skip: !HAS_DEFLATE_RAW }, async () => {
    const { client, ws, events, timers } = setup({ DecompressionStreamImpl: globalThis.DecompressionStream, compression: 'deflate' });
    client.connect();
    assert.equal(ws().query.get('compression'), 'deflate');
    ws().serverWelcome(); // text frame, compression: deflate
    assert.equal(client.compression, 'deflate');
    assert.equal(events.of('status').at(-1).compression, 'deflate');

    const stream = makeDeflateStream();
    const messages = [
      { type: 'subscriptions', symbols: ['AAPL', 'MSFT'] },
      { type: 'snapshot', seq: 1, quotes: [AAPL, MSFT] },
      { type: 'update', seq: 2, quotes: [{ s: 'MSFT', bp: 414.96, t: 3 }] },
      { type: 'update', seq: 3, quotes: [{ s: 'AAPL', p: 189.32, v: 4728, t: 4 }] },
      { type: 'snapshot', seq: 4, quotes: [AAPL, MSFT] }, // repeats: back-references into earlier frames
      { type: 'heartbeat', seq: 5, t: 5 },
    ];
    const frames = [];
    for (const m of messages) frames.push(await stream.frame(m));
    stream.close();
    assert.ok(frames[4].length < frames[1].length / 2, 'the repeated snapshot only decodes with context takeover');
    for (const f of frames) ws().serverSendBinary(f); // all at once: order must survive async inflation

    await waitFor(() => events.of('quotes').length === 4, { what: '4 quotes events' });
    assert.deepEqual(events.of('quotes').map((q) => q.symbols), [['AAPL', 'MSFT'], ['MSFT'], ['AAPL'], ['AAPL', 'MSFT']]);
    assert.deepEqual(client.quotes.get('AAPL'), AAPL);
    assert.deepEqual(client.quotes.get('MSFT'), MSFT);
    assert.deepEqual(ws().sent, [], 'no gap detected: frames were decoded in order');

    // pong through the compressed stream
    const p = client.ping();
    const s2 = makeDeflateStream();
    // A new connection has a new stream: a fresh inflater must be used.
    ws().serverClose(1001, 'server shutting down');
    assert.equal(await p, null);
    timers.fire(timers.pending()[0]);
    ws().serverWelcome();
    ws().serverSendBinary(await s2.frame({ type: 'snapshot', seq: 1, quotes: [{ s: 'AAPL', p: 1 }] }));
    ws().serverSendBinary(await s2.frame({ type: 'update', seq: 2, quotes: [{ s: 'AAPL', p: 2 }] }));
    s2.close();
    await waitFor(() => client.quotes.get('AAPL').p === 2, { what: 'second connection data' });
    assert.deepEqual(client.quotes.get('AAPL'), { s: 'AAPL', p: 2 });
    assert.deepEqual(events.of('error'), []);
    client.close();
  });

  test('ping/pong works over the compressed stream', { skip: !HAS_DEFLATE_RAW }, async () => {
    const { client, ws, now } = setup({ DecompressionStreamImpl: globalThis.DecompressionStream, compression: 'deflate' });
    client.connect();
    ws().serverWelcome();
    const p = client.ping();
    const { req_id } = ws().sent.at(-1);
    now.advance(7);
    const s = makeDeflateStream();
    ws().serverSendBinary(await s.frame({ type: 'pong', req_id, t: 0 }));
    s.close();
    assert.equal(await p, 7);
    client.close();
  });

  test('corrupt compressed data closes the connection and reconnects', { skip: !HAS_DEFLATE_RAW }, async () => {
    const { client, ws, events, timers, WS } = setup({ DecompressionStreamImpl: globalThis.DecompressionStream, compression: 'deflate' });
    client.connect();
    ws().serverWelcome();
    ws().serverSendBinary(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x00, 0x01]));
    await waitFor(() => client.state === 'closed', { what: 'close after corrupt frame' });
    assert.equal(events.of('error')[0].code, 'decompression_failed');
    assert.equal(events.of('error')[0].local, true);
    assert.equal(ws().closeCalls.length, 1);
    timers.fire(timers.pending()[0]);
    assert.equal(WS.instances.length, 2);
    client.close();
  });
});
