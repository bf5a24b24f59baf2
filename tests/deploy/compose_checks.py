"""Checks of docker-compose.yml: the Compose schema, then what the scale-out needs:
Redis, two identical replicas on the Redis broker, nginx in front with
config/nginx.conf, secrets only from the environment, and a grace period that covers
the server's shutdown."""

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import yaml

from common import (
    IMAGE_PORT,
    REQUIRED_SECRET_ENV,
    ROOT,
    SECRET_ENV,
    Problems,
    duration_seconds,
    shutdown_timeout_ms,
)

REPLICAS = ("tickstream-1", "tickstream-2")
NGINX_CONF = "./config/nginx.conf"


def compose_schema():
    """The Compose specification's JSON schema, as vendored by check-jsonschema
    (offline: no download)."""
    import check_jsonschema  # only for the schema file it ships

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def environment(service):
    """A service's environment as a dict, from either Compose syntax."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def long_volumes(service):
    """(source, target, read_only) for each volume, from either Compose syntax."""
    result = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            mode = parts[2] if len(parts) > 2 else ""
            result.append((parts[0], parts[1] if len(parts) > 1 else "", "ro" in mode.split(",")))
        else:
            result.append((volume.get("source"), volume.get("target"), bool(volume.get("read_only"))))
    return result


def depends_on(service):
    deps = service.get("depends_on") or []
    return set(deps) if isinstance(deps, list) else set(deps.keys())


def check_compose(doc, nginx_conf):
    """`doc`: the parsed docker-compose.yml; `nginx_conf`: config/nginx.conf's text, or
    None when the file is missing."""
    problems = Problems("docker-compose.yml")
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    for error in validator.iter_errors(doc):
        path = "/".join(str(p) for p in error.absolute_path)
        problems.check(False, f"schema: {path}: {error.message}")
    services = doc.get("services") or {}
    for name in ("redis", "nginx", *REPLICAS):
        problems.check(name in services, f"service {name} missing")
    if problems:
        return problems

    problems.check(
        str(services["redis"].get("image", "")).startswith("redis:7"), "redis must run redis:7"
    )
    # The cluster's quotes, bars and publishers' seq live in Redis: it must keep them.
    command = services["redis"].get("command") or []
    command = command.split() if isinstance(command, str) else [str(c) for c in command]
    problems.check(
        "--appendonly" in command and command[command.index("--appendonly") + 1 :][:1] == ["yes"],
        "redis must run with --appendonly yes (the cluster's state lives there)",
    )
    redis_volumes = [str(v.get("target") if isinstance(v, dict) else v).split(":")[-1] for v in services["redis"].get("volumes") or []]
    problems.check("/data" in redis_volumes, "redis must keep /data on a volume")

    first = services[REPLICAS[0]]
    problems.check(
        all(services[name] == first for name in REPLICAS),
        "the replicas must be defined identically (behind one load balancer they must "
        "be interchangeable)",
    )
    build = first.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    problems.check(context == ".", "the replicas must be built from this repository's Dockerfile")
    problems.check(not first.get("ports"), "the replicas publish no port: viewers come through nginx")
    problems.check(
        not (first.get("healthcheck") or {}).get("disable"),
        "the image's HEALTHCHECK must stay on",
    )
    env = environment(first)
    problems.check(env.get("TICKSTREAM__BROKER__KIND") == "redis", "TICKSTREAM__BROKER__KIND must be redis")
    redis_url = urlparse(env.get("TICKSTREAM__BROKER__REDIS_URL") or "")
    problems.check(
        redis_url.scheme == "redis" and redis_url.hostname == "redis" and (redis_url.port or 6379) == 6379,
        "TICKSTREAM__BROKER__REDIS_URL must point at the redis service (redis://redis:6379/0)",
    )
    problems.check("redis" in depends_on(first), "the replicas must depend on redis")
    for key in SECRET_ENV:
        value = env.get(key)
        problems.check(
            value is not None and re.fullmatch(r"\$\{[A-Z0-9_]+(:?[?-][^}]*)?\}", value) is not None,
            f"{key} must come from the environment (${{VAR...}}), never written in the file",
        )
    for key in REQUIRED_SECRET_ENV:
        problems.check(
            ":?" in (env.get(key) or ""),
            f"{key} must be required (${{VAR:?message}}), so a missing secret stops `up`",
        )
    grace = first.get("stop_grace_period", "10s")
    problems.check(
        duration_seconds(grace) * 1000 >= shutdown_timeout_ms(env) + 1000,
        f"stop_grace_period {grace} must exceed server.shutdown_timeout_ms "
        f"({shutdown_timeout_ms(env)} ms) with a margin, or viewers are killed before 1001",
    )

    nginx = services["nginx"]
    problems.check(str(nginx.get("image", "")).startswith("nginx:"), "nginx must run an nginx image")
    problems.check(
        (NGINX_CONF, "/etc/nginx/nginx.conf", True) in long_volumes(nginx),
        f"nginx must mount {NGINX_CONF} read-only at /etc/nginx/nginx.conf",
    )
    problems.check(
        any(str(port) in (f"{IMAGE_PORT}:8080", f"127.0.0.1:{IMAGE_PORT}:8080")
            for port in nginx.get("ports") or []),
        "nginx must publish port 8080",
    )
    problems.check(set(REPLICAS) <= depends_on(nginx), "nginx must depend on both replicas")
    nginx_address = None
    networks = nginx.get("networks")
    if isinstance(networks, dict):
        for network in networks.values():
            nginx_address = (network or {}).get("ipv4_address") or nginx_address
    problems.check(
        nginx_address is not None and env.get("TICKSTREAM__SECURITY__TRUSTED_PROXIES") == nginx_address,
        "the replicas must trust exactly nginx's fixed address for X-Forwarded-For, or "
        "every viewer shares nginx's address and its per-address limits",
    )

    problems.extend(check_nginx_conf(nginx_conf))
    return problems


def check_nginx_conf(text):
    """The parts of config/nginx.conf (the scale-out issue's file) that compose relies
    on: the upstream names are the compose services, and what it forwards."""
    problems = Problems("config/nginx.conf")
    if not problems.check(text is not None, "missing (the scale-out configuration mounted by compose)"):
        return problems
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for replica in REPLICAS:
        problems.check(
            re.search(rf"\bserver\s+{re.escape(replica)}:{IMAGE_PORT}\b", code) is not None,
            f"the upstream must list `server {replica}:{IMAGE_PORT};` (the compose service)",
        )
    problems.check(re.search(r"\blisten\s+(?:\S*:)?8080\b", code) is not None, "must listen on 8080")
    problems.check(
        re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade", code) is not None,
        "must forward WebSocket upgrades (proxy_set_header Upgrade $http_upgrade)",
    )
    problems.check(
        re.search(r"proxy_set_header\s+Host\s+\$http_host", code) is not None,
        "must forward Host with its port ($http_host): the origin check compares the "
        "browser's Origin with it",
    )
    problems.check(
        re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for", code) is not None,
        "must set X-Forwarded-For, which the replicas trust from nginx",
    )
    problems.check(
        re.search(r"^\s*(ip_hash|hash|sticky)\b", code, re.M) is None,
        "no sticky sessions: any replica serves any viewer",
    )
    return problems


def check_repository_compose():
    nginx_conf = ROOT / "config" / "nginx.conf"
    return check_compose(
        yaml.safe_load((ROOT / "docker-compose.yml").read_text()),
        nginx_conf.read_text() if nginx_conf.exists() else None,
    )
