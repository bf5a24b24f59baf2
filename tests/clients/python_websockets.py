#!/usr/bin/env python3
"""A real Python client on /ws: the `websockets` package with its default offer.

`websockets` offers permessage-deflate (RFC 7692) on every connection unless told
not to, so this is what a third-party Python client gets with no code at all.
Checks, against a server this script starts itself (loopback, a port the OS
picks, the simulator off, a publisher key):

- the handshake answer's Sec-WebSocket-Extensions names permessage-deflate, and
  websockets negotiated its PerMessageDeflate extension;
- the welcome says compression "none" (nothing app-level to inflate);
- seq grows by exactly 1 from 1;
- after the scripted ticks (tests/clients/ticks.json), the quotes merged from
  snapshot and updates equal GET /api/v1/quotes exactly, numbers compared as
  their decimal text (Decimal), never as floats.

Run by scripts/client-tests (which installs websockets into a venv). Exits 0
on success and prints "N passed, 0 failed".
"""

import asyncio
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import PerMessageDeflate

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PUBLISHER_KEY = "client-tests-key"
DEADLINE_S = 20  # every wait below is bounded by this
SEQ_TYPES = {"snapshot", "update", "heartbeat"}


def server_binary() -> Path:
    if os.environ.get("TICKSTREAM_BIN"):
        return Path(os.environ["TICKSTREAM_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "tickstream"


def exact_json(text: str):
    """JSON with every number as Decimal: 189.12 stays 189.12, never a float."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


class Server:
    """The tickstream binary on a loopback port the OS picks, stopped with SIGTERM.

    It binds port 0 and writes the port it got to TICKSTREAM_PORT_FILE once it
    listens (src/main.rs), as tests/support does for the Rust and JavaScript tests.
    """

    def __init__(self):
        binary = server_binary()
        if not binary.exists():
            raise SystemExit(f"{binary} does not exist: run scripts/client-tests (it builds it)")
        self.dir = tempfile.mkdtemp(prefix="tickstream-client-tests-py-")
        port_file = Path(self.dir) / "port"
        env = dict(os.environ)
        env.update({
            "TICKSTREAM__SERVER__HOST": "127.0.0.1",
            "TICKSTREAM__SERVER__PORT": "0",
            "TICKSTREAM_PORT_FILE": str(port_file),
            # Memory only: the server runs in the repository, which must stay clean.
            "TICKSTREAM__STORE__DATA_DIR": "",
            "TICKSTREAM__SIMULATOR__ENABLED": "false",
            "TICKSTREAM__INGEST__PUBLISHER_KEYS": PUBLISHER_KEY,
            "TICKSTREAM__STREAM__HEARTBEAT_MS": "500",
            "TICKSTREAM__SERVER__SHUTDOWN_TIMEOUT_MS": "1000",
            "RUST_LOG": env.get("RUST_LOG", "warn"),
        })
        self.log = open(os.path.join(self.dir, "server.log"), "w+")
        self.proc = subprocess.Popen([str(binary)], cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DEADLINE_S
        # The port: the file appears, renamed into place, once the server listens.
        while not port_file.exists():
            self.fail_if_exited()
            if time.monotonic() > deadline:
                self.give_up("server reported no port")
            time.sleep(0.02)
        self.port = int(port_file.read_text().strip())
        self.url = f"http://127.0.0.1:{self.port}"
        while True:
            self.fail_if_exited()
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as res:
                    if res.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.give_up(f"server not ready on {self.url}")
            time.sleep(0.1)

    def fail_if_exited(self):
        if self.proc.poll() is not None:
            self.give_up(f"server exited early ({self.proc.returncode})")

    def give_up(self, why: str):
        output = self.output()
        self.stop(keep_log=True)
        raise SystemExit(f"{why} (log: {self.log.name}):\n{output}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-20000:]

    def stop(self, keep_log=False):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if not keep_log:
            shutil.rmtree(self.dir, ignore_errors=True)

    def publish(self, ticks):
        req = urllib.request.Request(
            f"{self.url}/api/v1/ticks",
            data=json.dumps(ticks).encode(),
            headers={"Authorization": f"Bearer {PUBLISHER_KEY}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as res:
            reply = json.loads(res.read())
        assert reply["accepted"] == len(ticks) and not reply["rejected"], f"publish refused: {reply}"

    def rest_quotes(self, symbols):
        url = f"{self.url}/api/v1/quotes?symbols={','.join(symbols)}"
        with urllib.request.urlopen(url, timeout=5) as res:
            return {q["s"]: q for q in exact_json(res.read().decode())["quotes"]}


def merge(quotes, msg):
    """The contract's merge rule: a snapshot replaces, an update merges field by field."""
    if msg.get("type") == "snapshot":
        for q in msg["quotes"]:
            quotes[q["s"]] = dict(q)
    elif msg.get("type") == "update":
        for q in msg["quotes"]:
            quotes.setdefault(q["s"], {"s": q["s"]}).update(q)


async def run(server: Server) -> int:
    script = json.loads((HERE / "ticks.json").read_text())
    symbols, batches = script["symbols"], script["batches"]
    server.publish(batches[0])

    url = f"ws://127.0.0.1:{server.port}/ws?symbols={','.join(symbols)}"
    passed = 0
    # The default offer: compression="deflate" is websockets' default; spelled out
    # so that a change of default cannot quietly turn this test into a plain one.
    async with connect(url, compression="deflate", open_timeout=10, close_timeout=5) as ws:
        answer = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert answer.split(";")[0].strip().lower() == "permessage-deflate", \
            f"server did not accept permessage-deflate: Sec-WebSocket-Extensions={answer!r}"
        assert any(isinstance(e, PerMessageDeflate) for e in ws.protocol.extensions), ws.protocol.extensions
        print(f"ok - handshake negotiated: Sec-WebSocket-Extensions: {answer}")
        passed += 1

        welcome = exact_json(await asyncio.wait_for(ws.recv(), DEADLINE_S))
        assert welcome["type"] == "welcome", welcome
        assert welcome["compression"] == "none", f"nothing app-level under permessage-deflate: {welcome}"
        print("ok - welcome: compression none (the extension compresses)")
        passed += 1

        quotes, seqs, updates = {}, [], 0

        async def receive_until(pred, what):
            nonlocal updates
            deadline = time.monotonic() + DEADLINE_S
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; merged={quotes}")
                raw = await asyncio.wait_for(ws.recv(), left)
                assert isinstance(raw, str), "every message is a text frame under permessage-deflate"
                msg = exact_json(raw)
                if msg.get("type") in SEQ_TYPES:
                    seqs.append(int(msg["seq"]))
                if msg.get("type") == "update":
                    updates += 1
                merge(quotes, msg)

        await receive_until(lambda: len(quotes) == len(symbols), "the snapshot")
        for batch in batches[1:]:
            server.publish(batch)
            await asyncio.sleep(0.15)  # > 1/max_hz: several separate updates
        expected = server.rest_quotes(symbols)  # the feed is quiet now
        await receive_until(lambda: quotes == expected, "the merged quotes to equal REST")
        assert updates >= 1, "the scripted ticks arrived as updates"
        print(f"ok - merged quotes equal GET /api/v1/quotes exactly (Decimal), after {updates} updates")
        passed += 1

        # A heartbeat (heartbeat_ms 500) keeps the count going after the data.
        n = len(seqs)
        await receive_until(lambda: len(seqs) > n, "a heartbeat")
        assert seqs == list(range(1, len(seqs) + 1)), f"seq must grow by 1 from 1: {seqs}"
        print(f"ok - seq grows by exactly 1 ({len(seqs)} messages)")
        passed += 1
    return passed


def main() -> int:
    server = Server()
    failed = True
    try:
        passed = asyncio.run(asyncio.wait_for(run(server), 60))
        failed = False
    except BaseException:
        print(f"server output ({server.log.name}):\n{server.output()}", file=sys.stderr)
        raise
    finally:
        server.stop(keep_log=failed)
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
