// The JavaScript side of tests/support (tests/browser, tests/clients): the
// tickstream binary on a port the OS chose, and a port for a program that
// must be told one (nginx). The same mechanisms as tests/support/mod.rs:
// the binary binds port 0 and writes the port it got to TICKSTREAM_PORT_FILE
// (src/main.rs); nothing here binds a port, releases it and hopes.
//
// Node built-ins only, so any test package can import it.

import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts the tickstream binary `bin` in `cwd` with `env` on top of this
 * process's environment, on 127.0.0.1:`port` (0 by default: the OS picks,
 * and the binary reports it), then waits until /readyz answers 200.
 * A port asked for is kept (a test restarting a server on its old port).
 * @returns {Promise<{port: number, url: string, pid: number, stop: () => Promise<void>, output: () => string}>}
 */
export async function startTickstream({ bin, cwd, env = {}, port = 0, readyTimeoutMs = 20_000 }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tickstream-port-'));
  const portFile = path.join(dir, 'port');
  const child = spawn(bin, [], {
    cwd,
    env: {
      ...process.env,
      TICKSTREAM__SERVER__HOST: '127.0.0.1',
      // Memory only unless a test asks for a data directory: test servers share the
      // repository as their working directory, and a data file has one owner.
      TICKSTREAM__STORE__DATA_DIR: '',
      ...env,
      TICKSTREAM__SERVER__PORT: String(port),
      TICKSTREAM_PORT_FILE: portFile,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => {
    output += chunk;
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  let exitInfo = null;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    exitInfo = { code, signal };
    resolve();
  }));

  const server = {
    port,
    url: '',
    pid: child.pid,
    output: () => output,
    /** SIGTERM (graceful: viewers get 1001), then SIGKILL after 10 s; waits for the exit. */
    async stop() {
      if (!exitInfo) {
        child.kill('SIGTERM');
        let timer;
        const done = await Promise.race([exited.then(() => true), new Promise((r) => { timer = setTimeout(() => r(false), 10_000); })]);
        clearTimeout(timer); // a pending timer would keep the test process alive
        if (!done) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + readyTimeoutMs;
  const failed = async (why) => {
    await server.stop();
    throw new Error(`${why}:\n${output}`);
  };
  // The port: the file appears, renamed into place, once the server listens.
  for (;;) {
    if (exitInfo) await failed(`server exited early (${JSON.stringify(exitInfo)})`);
    const text = await readFile(portFile, 'utf8').catch(() => null);
    if (text !== null) {
      server.port = Number(text.trim());
      break;
    }
    if (Date.now() > deadline) await failed(`server reported no port within ${readyTimeoutMs} ms`);
    await sleep(20);
  }
  server.url = `http://127.0.0.1:${server.port}`;
  for (;;) {
    if (exitInfo) await failed(`server exited early (${JSON.stringify(exitInfo)})`);
    try {
      const res = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return server;
    } catch { /* not yet */ }
    if (Date.now() > deadline) await failed(`server not ready on ${server.url} within ${readyTimeoutMs} ms`);
    await sleep(100);
  }
}

/**
 * A port to try for a program that must be told one: random, below the
 * kernel's ephemeral range, where no port-0 bind (every tickstream under
 * test) and no outgoing connection lands. Another program told a fixed port
 * may still hold it: start the program, and try another port when it says
 * "address already in use".
 */
export function candidatePort() {
  let ephemeralStart = 32768;
  try {
    ephemeralStart = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralStart;
  } catch { /* not Linux: the usual default */ }
  const top = Math.max(ephemeralStart, 20_000);
  return 10_000 + Math.floor(Math.random() * (top - 10_000));
}

/**
 * Whether process `pid` itself holds a listening TCP socket on `port` (Linux
 * /proc): a connection alone could reach whoever else holds the port.
 */
export function listensOn(pid, port) {
  const sockets = new Set();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(table, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st ... inode (the 10th field); 0A is LISTEN.
      const fields = line.trim().split(/\s+/);
      const local = fields[1]?.split(':').pop();
      if (local && parseInt(local, 16) === port && fields[3] === '0A') sockets.add(`socket:[${fields[9]}]`);
    }
  }
  if (sockets.size === 0) return false;
  let fds = [];
  try { fds = readdirSync(`/proc/${pid}/fd`); } catch { return false; }
  return fds.some((fd) => {
    try { return sockets.has(readlinkSync(`/proc/${pid}/fd/${fd}`)); } catch { return false; }
  });
}
