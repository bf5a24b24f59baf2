"""What the deployment checks share: the repository's paths, a problem list, and
parsers for the units that Kubernetes and Compose write (quantities, durations)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The image's contract, as the Dockerfile states it and tests/api/container.rs
# relies on: this user, this port, this working directory, this command.
IMAGE_UID = 10001
IMAGE_PORT = 8080
IMAGE_WORKDIR = "/app"
# Where the image keeps the market state (TICKSTREAM__STORE__DATA_DIR, a VOLUME owned
# by IMAGE_UID); tests/api/container/image.rs gives the server its copy of it.
IMAGE_DATA_DIR = "/var/lib/tickstream"

# The sizing figure of docs/DEPLOYMENT.md: 40 KiB per connection with everything
# included (an SSE viewer measures 31.5 KiB, a deflate W1 viewer 11.5 KiB since issue
# 13, docs/BENCHMARKS.md), and about 9 MiB for a server at rest.
RSS_PER_CONNECTION_BYTES = 40 * 1024
RSS_AT_REST_BYTES = 9 * 1024 * 1024

# Secrets, by environment variable: accepted only from the environment (src/config/layering.rs).
SECRET_ENV = (
    "TICKSTREAM__INGEST__PUBLISHER_KEYS",
    "TICKSTREAM__ADMIN__API_KEY",
    "TICKSTREAM__AUTH__JWT_SECRET",
    "TICKSTREAM__FEED__API_KEY",
    "TICKSTREAM__FEED__API_SECRET",
)
# The ones a scaled-out deployment cannot do without (ingest and admin stay shut
# without them); the JWT secret (auth.mode = "jwt") and the feed connector's
# credentials (feed.kind) are optional.
REQUIRED_SECRET_ENV = SECRET_ENV[:2]


class Problems:
    """Collects what is wrong, so one run reports every problem, not just the first."""

    def __init__(self, subject):
        self.subject = subject
        self.items = []

    def check(self, ok, message):
        if not ok:
            self.items.append(f"{self.subject}: {message}")
        return ok

    def extend(self, other):
        self.items.extend(other.items)

    def __bool__(self):
        return bool(self.items)


def default_settings():
    """config/default.toml: the values a deployment gets when it sets nothing."""
    return tomllib.loads((ROOT / "config" / "default.toml").read_text())


def shutdown_timeout_ms(env):
    """server.shutdown_timeout_ms as a process with environment `env` sees it."""
    raw = env.get("TICKSTREAM__SERVER__SHUTDOWN_TIMEOUT_MS")
    if raw is not None:
        return int(raw)
    return int(default_settings()["server"]["shutdown_timeout_ms"])


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(quantity):
    """A Kubernetes memory quantity ("256Mi", "1G", "1048576") in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMGT]?)", str(quantity))
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    number, suffix = match.groups()
    factor = _BINARY_SUFFIXES.get(suffix) or _DECIMAL_SUFFIXES[suffix]
    return float(number) * factor


def cpu_cores(quantity):
    """A Kubernetes CPU quantity ("750m", "2", 1.5) in cores."""
    text = str(quantity)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    return float(text)


def duration_seconds(text):
    """A Compose duration ("15s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)
