"""Checks of deploy/k8s/: every manifest against the Kubernetes API schema (strict, the
oldest and newest versions kubernetes-validate ships, offline), then what the issue
asks: probes on /readyz and /healthz, a grace period that covers the shutdown,
resources from the benchmarks, keys from a Secret, a Service that selects the pods."""

import math
from urllib.parse import urlparse

import kubernetes_validate
import yaml

from common import (
    IMAGE_PORT,
    IMAGE_UID,
    REQUIRED_SECRET_ENV,
    ROOT,
    RSS_AT_REST_BYTES,
    RSS_PER_CONNECTION_BYTES,
    SECRET_ENV,
    Problems,
    cpu_cores,
    default_settings,
    memory_bytes,
    shutdown_timeout_ms,
)

K8S_DIR = ROOT / "deploy" / "k8s"
# Applied out of band (real values); the example only documents the shape.
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secret.example.yaml"}


def schema_versions():
    versions = kubernetes_validate.utils.all_versions()
    return sorted({versions[0], versions[-1]})


def find(resources, kind, name):
    return next(
        (r for r in resources if r.get("kind") == kind and r.get("metadata", {}).get("name") == name),
        None,
    )


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(container):
    return {item["name"]: item for item in container.get("env") or []}


def port_number(container, port):
    """A probe's or Service's port (number or name) as the container's port number."""
    for declared in container.get("ports") or []:
        if port in (declared.get("name"), declared.get("containerPort")):
            return declared.get("containerPort")
    return None


def check_manifests(files):
    """`files`: {file name: text} of deploy/k8s."""
    problems = Problems("deploy/k8s")
    resources = []
    kustomization = None
    for name, text in sorted(files.items()):
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            problems.check(False, f"{name}: not YAML: {e}")
            continue
        for doc in docs:
            if doc.get("kind") == "Kustomization":
                kustomization = doc
                continue
            for version in schema_versions():
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
                    problems.check(False, f"{name}: {doc.get('kind')} is invalid for Kubernetes {version}: "
                                          f"{getattr(e, 'message', e)}")
            resources.append(doc)

    if problems.check(kustomization is not None, "kustomization.yaml missing"):
        listed = set(kustomization.get("resources") or [])
        expected = {name for name in files if name.endswith(".yaml")} - NOT_IN_KUSTOMIZATION
        problems.check(listed == expected, f"kustomization.yaml lists {sorted(listed)}, expected {sorted(expected)}")

    deployment = find(resources, "Deployment", "tickstream")
    if not problems.check(deployment is not None, "Deployment tickstream missing"):
        return problems
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    problems.check(
        selects(spec["selector"].get("matchLabels"), pod_labels),
        "the Deployment's selector must match its pod labels",
    )
    problems.check(spec.get("replicas", 1) >= 2, "at least 2 replicas, so an upgrade or a drain keeps one serving")
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    problems.check(
        str(rolling.get("maxUnavailable")) in ("0", "0%"),
        "rollingUpdate.maxUnavailable must be 0: a new pod is ready before an old one stops",
    )
    containers = [c for c in pod["containers"] if c["name"] == "tickstream"]
    if not problems.check(len(containers) == 1, "container tickstream missing"):
        return problems
    container = containers[0]
    env = env_of(container)
    plain_env = {k: v.get("value") for k, v in env.items() if "value" in v}

    problems.check(
        not container.get("command") and container.get("args") in (None, ["serve"]),
        "the container must run the image's `tickstream serve`",
    )
    problems.check(":latest" not in container["image"] and ":" in container["image"].split("/")[-1],
                   "the image must be pinned (a tag or digest, not latest)")
    problems.check(port_number(container, "http") == IMAGE_PORT, f"container port http must be {IMAGE_PORT}")

    # Probes.
    readiness = (container.get("readinessProbe") or {}).get("httpGet") or {}
    liveness = (container.get("livenessProbe") or {}).get("httpGet") or {}
    problems.check(readiness.get("path") == "/readyz", "readinessProbe must GET /readyz")
    problems.check(liveness.get("path") == "/healthz", "livenessProbe must GET /healthz")
    for probe_name, probe in (("readiness", readiness), ("liveness", liveness)):
        problems.check(
            port_number(container, probe.get("port")) == IMAGE_PORT,
            f"the {probe_name} probe must target the server's port {IMAGE_PORT}",
        )

    # Shutdown: preStop, then SIGTERM and the server's shutdown timeout, within the grace.
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {})
    sleep_seconds = 0
    if "exec" in pre_stop:
        command = pre_stop["exec"].get("command") or []
        sleep_seconds = int(command[1]) if command[:1] == ["sleep"] and len(command) == 2 else 0
    elif "sleep" in pre_stop:
        sleep_seconds = int(pre_stop["sleep"]["seconds"])
    shutdown_s = math.ceil(shutdown_timeout_ms(plain_env) / 1000)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    problems.check(
        grace >= sleep_seconds + shutdown_s + 2,
        f"terminationGracePeriodSeconds {grace} must cover preStop {sleep_seconds} s + "
        f"server.shutdown_timeout_ms {shutdown_s} s + a margin of 2 s",
    )

    # Resources, from docs/BENCHMARKS.md.
    sizing = container.get("resources") or {}
    requests, limits = sizing.get("requests") or {}, sizing.get("limits") or {}
    for key in ("cpu", "memory"):
        problems.check(key in requests, f"resources.requests.{key} missing")
    if problems.check("memory" in limits, "resources.limits.memory missing") and "memory" in requests:
        problems.check(memory_bytes(requests["memory"]) <= memory_bytes(limits["memory"]),
                       "the memory request must not exceed the limit")
        cap = int(plain_env.get("TICKSTREAM__LIMITS__MAX_CONNECTIONS",
                                default_settings()["limits"]["max_connections"]))
        need = cap * RSS_PER_CONNECTION_BYTES + RSS_AT_REST_BYTES
        problems.check(
            memory_bytes(limits["memory"]) >= need,
            f"limits.memory {limits['memory']} is below {need / 2**20:.0f} MiB, what "
            f"{cap} connections (limits.max_connections) take at 40 KiB each (BENCHMARKS W1)",
        )
    if "cpu" in requests and "cpu" in limits:
        problems.check(cpu_cores(requests["cpu"]) <= cpu_cores(limits["cpu"]), "the CPU request must not exceed the limit")

    # Security: the image's non-root user, nothing written.
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}
    problems.check(pod_security.get("runAsNonRoot") is True, "runAsNonRoot must be true")
    problems.check(
        security.get("runAsUser", pod_security.get("runAsUser")) == IMAGE_UID,
        f"runAsUser must be the image's user {IMAGE_UID}",
    )
    problems.check(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    problems.check(security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")

    # Secrets: only through secretKeyRef, to keys the example Secret documents.
    problems.check(plain_env.get("TICKSTREAM__BROKER__KIND") == "redis", "TICKSTREAM__BROKER__KIND must be redis")
    secret_refs = {}
    for key in SECRET_ENV:
        ref = ((env.get(key) or {}).get("valueFrom") or {}).get("secretKeyRef")
        required = key in REQUIRED_SECRET_ENV
        if ref is None:
            problems.check(not required and key not in env,
                           f"{key} must come from a Secret (valueFrom.secretKeyRef), never a value")
            continue
        problems.check(not (required and ref.get("optional")), f"{key} is required: its secretKeyRef must not be optional")
        secret_refs[key] = ref
    for key, ref in secret_refs.items():
        secret = find(resources, "Secret", ref.get("name"))
        if problems.check(secret is not None, f"{key}: Secret {ref.get('name')} is not in secret.example.yaml"):
            data = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
            problems.check(ref.get("key") in data, f"{key}: Secret {ref.get('name')} has no key {ref.get('key')}")
    for secret in (r for r in resources if r.get("kind") == "Secret"):
        for field, value in (secret.get("stringData") or {}).items():
            problems.check(
                "example" in value and "change-me" in value,
                f"Secret {secret['metadata']['name']}.{field} must be an obvious placeholder "
                "(example…change-me): real secrets never live in the repository",
            )

    # The broker URL names a Service of these manifests.
    redis_url = urlparse(plain_env.get("TICKSTREAM__BROKER__REDIS_URL") or "")
    redis_service = find(resources, "Service", redis_url.hostname)
    if problems.check(redis_service is not None, "TICKSTREAM__BROKER__REDIS_URL must name a Service of deploy/k8s"):
        ports = [p.get("port") for p in redis_service["spec"].get("ports") or []]
        problems.check((redis_url.port or 6379) in ports, f"Service {redis_url.hostname} does not serve port {redis_url.port or 6379}")

    # Every Service and PodDisruptionBudget selects the pods of some Deployment here.
    pods = [(d["metadata"]["name"], d["spec"]["template"]) for d in resources if d.get("kind") == "Deployment"]
    for resource in resources:
        kind = resource.get("kind")
        if kind == "Service":
            selector = resource["spec"].get("selector") or {}
        elif kind == "PodDisruptionBudget":
            selector = (resource["spec"].get("selector") or {}).get("matchLabels") or {}
        else:
            continue
        name = resource["metadata"]["name"]
        targets = [(n, t) for n, t in pods if selects(selector, t["metadata"].get("labels") or {})]
        if not problems.check(len(targets) == 1, f"{kind} {name} must select the pods of exactly one Deployment"):
            continue
        if kind == "Service":
            target = targets[0][1]["spec"]["containers"][0]
            for port in resource["spec"].get("ports") or []:
                problems.check(
                    port_number(target, port.get("targetPort", port.get("port"))) is not None,
                    f"Service {name} port {port.get('port')} targets no port of {targets[0][0]}",
                )
    service = find(resources, "Service", "tickstream")
    problems.check(
        service is not None and selects(service["spec"].get("selector"), pod_labels),
        "Service tickstream must select the tickstream pods",
    )
    return problems


def check_repository_manifests():
    return check_manifests({p.name: p.read_text() for p in sorted(K8S_DIR.glob("*.yaml"))})
