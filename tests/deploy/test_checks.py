"""The deployment checks must be able to fail: each test breaks one thing in a copy of
the real file (in memory) and expects the check to name it. Run by
scripts/deploy-checks: python -m unittest discover -s tests/deploy."""

import copy
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from common import ROOT  # noqa: E402
from compose_checks import check_compose, check_nginx_conf  # noqa: E402
from dockerfile_checks import check_dockerfile, rust_sources  # noqa: E402
from k8s_checks import K8S_DIR, check_manifests  # noqa: E402

# The parts of config/nginx.conf that compose relies on, as the scale-out issue
# describes the file; the real file is checked by validate.py.
NGINX_CONF = """
events {}
http {
    upstream tickstream {
        server tickstream-1:8080;
        server tickstream-2:8080;
    }
    server {
        listen 8080;
        location / {
            proxy_pass http://tickstream;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
"""


def read(name):
    return (ROOT / name).read_text()


class Expectations(unittest.TestCase):
    def assertFlags(self, problems, fragment):
        self.assertTrue(
            any(fragment in item for item in problems.items),
            f"expected a problem mentioning {fragment!r}, got {problems.items}",
        )


class DockerfileChecks(Expectations):
    def check(self, dockerfile=None, dockerignore=None, cargo=None, sources=None):
        return check_dockerfile(
            dockerfile if dockerfile is not None else read("Dockerfile"),
            dockerignore if dockerignore is not None else read(".dockerignore"),
            cargo if cargo is not None else read("Cargo.toml"),
            sources if sources is not None else rust_sources(),
        )

    def broken(self, old, new):
        text = read("Dockerfile")
        self.assertIn(old, text)
        return self.check(dockerfile=text.replace(old, new))

    def test_the_repository_files_pass(self):
        self.assertEqual(self.check().items, [])

    def test_each_runtime_requirement_is_checked(self):
        self.assertFlags(self.broken("USER 10001:10001", "USER root"), "USER")
        self.assertFlags(self.broken('CMD ["tickstream", "healthcheck"]', "CMD curl -f http://localhost:8080/healthz"), "HEALTHCHECK")
        self.assertFlags(self.broken("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGINT"), "STOPSIGNAL")
        self.assertFlags(self.broken('CMD ["serve"]', 'CMD ["replay", "x.csv"]'), "tickstream serve")
        self.assertFlags(self.broken("EXPOSE 8080", "EXPOSE 9090"), "EXPOSE")
        self.assertFlags(self.broken("COPY config ./config\nUSER", "COPY config ./config\nCOPY docs ./docs\nUSER"), "exactly the binary")
        self.assertFlags(self.broken("FROM debian:bookworm-slim", "FROM debian:bookworm"), "slim")
        self.assertFlags(self.broken("WORKDIR /app", "WORKDIR /srv"), "WORKDIR")
        self.assertFlags(self.broken('VOLUME ["/var/lib/tickstream"]\n', ""), "VOLUME at /var/lib/tickstream")
        self.assertFlags(
            self.broken("TICKSTREAM__STORE__DATA_DIR=/var/lib/tickstream", "TICKSTREAM__STORE__DATA_DIR=data"),
            "VOLUME at /var/lib/tickstream",
        )
        self.assertFlags(self.broken("-o 10001 -g 10001 ", ""), "owned by the runtime user")

    def test_the_dependency_layer_is_checked(self):
        self.assertFlags(self.broken("COPY Cargo.toml Cargo.lock ./", "COPY . ./"), "only Cargo.toml and Cargo.lock")
        self.assertFlags(self.broken(" benches/hot_path.rs", ""), "does not stub benches/hot_path.rs")

    def test_a_new_target_or_embedded_file_must_reach_the_build(self):
        cargo = read("Cargo.toml") + '\n[[bench]]\nname = "new_bench"\nharness = false\n'
        self.assertFlags(self.check(cargo=cargo), "does not stub benches/new_bench.rs")
        sources = rust_sources() + [("src/extra.rs", 'const X: &str = include_str!("../docs/PROTOCOL.md");')]
        problems = self.check(sources=sources)
        self.assertFlags(problems, "does not copy docs")
        self.assertFlags(problems, ".dockerignore keeps docs/PROTOCOL.md out")

    def test_dockerignore_keeps_secrets_and_build_output_out(self):
        without_env = "\n".join(line for line in read(".dockerignore").splitlines() if "env" not in line)
        self.assertFlags(self.check(dockerignore=without_env), ".env")
        self.assertFlags(self.check(dockerignore=read(".dockerignore").replace("target/", "")), "target/release")
        self.assertFlags(self.check(dockerignore=read(".dockerignore") + "\nsrc/\n"), "keeps src/")


class Hadolint(unittest.TestCase):
    """hadolint really lints: a Dockerfile it must refuse is refused."""

    def lint(self, text):
        hadolint = shutil.which("hadolint")
        self.assertIsNotNone(hadolint, "hadolint is not on PATH: run scripts/deploy-checks, which installs it")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "Dockerfile"
            path.write_text(text)
            return subprocess.run([hadolint, str(path)], capture_output=True, text=True, timeout=60)

    def test_hadolint_flags_an_unpinned_package_install(self):
        text = read("Dockerfile").replace("WORKDIR /app", "RUN apt-get update && apt-get install -y curl\nWORKDIR /app")
        result = self.lint(text)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("DL3008", result.stdout)


class ComposeChecks(Expectations):
    def doc(self):
        return yaml.safe_load(read("docker-compose.yml"))

    def check(self, doc=None, nginx=NGINX_CONF):
        return check_compose(doc if doc is not None else self.doc(), nginx)

    def replicas(self, doc, change):
        for name in ("tickstream-1", "tickstream-2"):
            doc["services"][name] = copy.deepcopy(doc["services"][name])
            change(doc["services"][name])
        return doc

    def test_the_repository_file_passes_with_a_conforming_nginx_conf(self):
        self.assertEqual(self.check().items, [])

    def test_services_and_schema(self):
        doc = self.doc()
        del doc["services"]["tickstream-2"]
        self.assertFlags(self.check(doc), "service tickstream-2 missing")
        doc = self.doc()
        doc["services"]["nginx"]["imagee"] = "nginx"
        self.assertFlags(self.check(doc), "schema")

    def test_redis_keeps_its_data(self):
        doc = self.doc()
        del doc["services"]["redis"]["command"]
        self.assertFlags(self.check(doc), "--appendonly yes")
        doc = self.doc()
        doc["services"]["redis"]["command"] = ["redis-server", "--appendonly", "no"]
        self.assertFlags(self.check(doc), "--appendonly yes")
        doc = self.doc()
        del doc["services"]["redis"]["volumes"]
        self.assertFlags(self.check(doc), "/data on a volume")

    def test_replicas(self):
        doc = self.doc()
        doc["services"]["tickstream-2"] = copy.deepcopy(doc["services"]["tickstream-2"])
        doc["services"]["tickstream-2"]["environment"]["TICKSTREAM__LOG__FORMAT"] = "text"
        self.assertFlags(self.check(doc), "identically")
        env = lambda key, value: lambda s: s["environment"].__setitem__(key, value)  # noqa: E731
        self.assertFlags(self.check(self.replicas(self.doc(), env("TICKSTREAM__BROKER__KIND", "memory"))), "BROKER__KIND")
        self.assertFlags(self.check(self.replicas(self.doc(), env("TICKSTREAM__BROKER__REDIS_URL", "redis://localhost:6379/0"))), "REDIS_URL")
        self.assertFlags(self.check(self.replicas(self.doc(), env("TICKSTREAM__ADMIN__API_KEY", "s3cret"))), "ADMIN__API_KEY must come from the environment")
        self.assertFlags(self.check(self.replicas(self.doc(), env("TICKSTREAM__ADMIN__API_KEY", "${ADMIN:-}"))), "must be required")
        self.assertFlags(self.check(self.replicas(self.doc(), env("TICKSTREAM__SECURITY__TRUSTED_PROXIES", ""))), "trust exactly nginx")
        self.assertFlags(self.check(self.replicas(self.doc(), lambda s: s.__setitem__("stop_grace_period", "3s"))), "stop_grace_period")
        self.assertFlags(self.check(self.replicas(self.doc(), lambda s: s.__setitem__("ports", ["8081:8080"]))), "publish no port")

    def test_nginx_service(self):
        doc = self.doc()
        doc["services"]["nginx"]["volumes"] = ["./config/nginx.conf:/etc/nginx/nginx.conf"]
        self.assertFlags(self.check(doc), "read-only")
        doc = self.doc()
        doc["services"]["nginx"]["ports"] = ["9999:8080"]
        self.assertFlags(self.check(doc), "publish port 8080")

    def test_nginx_conf(self):
        self.assertFlags(check_nginx_conf(None), "missing")
        self.assertFlags(check_nginx_conf(NGINX_CONF.replace("tickstream-2:8080", "tickstream-two:8080")), "server tickstream-2:8080")
        self.assertFlags(check_nginx_conf(NGINX_CONF.replace("upstream tickstream {", "upstream tickstream {\n        ip_hash;")), "sticky")
        self.assertFlags(check_nginx_conf(NGINX_CONF.replace("Host $http_host", "Host $host")), "$http_host")
        self.assertFlags(check_nginx_conf(NGINX_CONF.replace("proxy_set_header Upgrade", "# proxy_set_header Upgrade")), "upgrades")


class KubernetesChecks(Expectations):
    def files(self):
        return {p.name: p.read_text() for p in sorted(K8S_DIR.glob("*.yaml"))}

    def broken(self, name, change):
        files = self.files()
        docs = list(yaml.safe_load_all(files[name]))
        change(docs)
        files[name] = yaml.safe_dump_all(docs)
        return check_manifests(files)

    def container(self, change):
        return lambda docs: change(docs[0]["spec"]["template"]["spec"]["containers"][0])

    def env(self, name, entry):
        def change(container):
            container["env"] = [e for e in container["env"] if e["name"] != name] + [dict(name=name, **entry)]
        return self.container(change)

    def test_the_repository_manifests_pass(self):
        self.assertEqual(check_manifests(self.files()).items, [])

    def test_schema(self):
        self.assertFlags(self.broken("deployment.yaml", self.container(lambda c: c.__setitem__("imagee", "x"))), "invalid for Kubernetes")
        self.assertFlags(self.broken("service.yaml", lambda d: d[0]["spec"].__setitem__("type", 7)), "invalid for Kubernetes")

    def test_probes(self):
        self.assertFlags(self.broken("deployment.yaml", self.container(lambda c: c["readinessProbe"]["httpGet"].__setitem__("path", "/healthz"))), "/readyz")
        self.assertFlags(self.broken("deployment.yaml", self.container(lambda c: c.pop("livenessProbe"))), "/healthz")
        self.assertFlags(self.broken("deployment.yaml", self.container(lambda c: c["readinessProbe"]["httpGet"].__setitem__("port", 9090))), "port 8080")

    def test_shutdown_and_rollout(self):
        pod = lambda change: lambda docs: change(docs[0]["spec"]["template"]["spec"])  # noqa: E731
        self.assertFlags(self.broken("deployment.yaml", pod(lambda p: p.__setitem__("terminationGracePeriodSeconds", 8))), "terminationGracePeriodSeconds")
        self.assertFlags(self.broken("deployment.yaml", self.env("TICKSTREAM__SERVER__SHUTDOWN_TIMEOUT_MS", {"value": "20000"})), "terminationGracePeriodSeconds")
        self.assertFlags(self.broken("deployment.yaml", lambda d: d[0]["spec"]["strategy"]["rollingUpdate"].__setitem__("maxUnavailable", 1)), "maxUnavailable")
        self.assertFlags(self.broken("deployment.yaml", lambda d: d[0]["spec"].__setitem__("replicas", 1)), "at least 2 replicas")

    def test_resources(self):
        self.assertFlags(self.broken("deployment.yaml", self.container(lambda c: c.pop("resources"))), "requests.cpu")
        self.assertFlags(self.broken("deployment.yaml", self.container(lambda c: c["resources"]["limits"].__setitem__("memory", "128Mi"))), "limits.memory")
        self.assertFlags(self.broken("deployment.yaml", self.env("TICKSTREAM__LIMITS__MAX_CONNECTIONS", {"value": "50000"})), "limits.memory")

    def test_secrets(self):
        self.assertFlags(self.broken("deployment.yaml", self.env("TICKSTREAM__ADMIN__API_KEY", {"value": "s3cret"})), "secretKeyRef")
        ref = {"valueFrom": {"secretKeyRef": {"name": "tickstream-secrets", "key": "no-such-key"}}}
        self.assertFlags(self.broken("deployment.yaml", self.env("TICKSTREAM__INGEST__PUBLISHER_KEYS", ref)), "has no key no-such-key")
        self.assertFlags(self.broken("secret.example.yaml", lambda d: d[0]["stringData"].__setitem__("admin-api-key", "9f8e7d6c")), "placeholder")

    def test_security_context(self):
        pod = lambda change: lambda docs: change(docs[0]["spec"]["template"]["spec"])  # noqa: E731
        self.assertFlags(self.broken("deployment.yaml", pod(lambda p: p["securityContext"].__setitem__("runAsUser", 0))), "runAsUser")
        self.assertFlags(self.broken("deployment.yaml", self.container(lambda c: c["securityContext"].pop("readOnlyRootFilesystem"))), "readOnlyRootFilesystem")

    def test_services_select_the_pods(self):
        self.assertFlags(self.broken("service.yaml", lambda d: d[0]["spec"]["selector"].__setitem__("app.kubernetes.io/name", "tickstreem")), "Service tickstream")
        self.assertFlags(self.broken("service.yaml", lambda d: d[0]["spec"]["ports"][0].__setitem__("targetPort", "web")), "targets no port")
        self.assertFlags(self.broken("redis.yaml", lambda d: d[1]["metadata"].__setitem__("name", "cache")), "must name a Service")
        self.assertFlags(self.broken("pdb.yaml", lambda d: d[0]["spec"]["selector"]["matchLabels"].__setitem__("app.kubernetes.io/component", "x")), "PodDisruptionBudget")

    def test_kustomization_lists_every_manifest(self):
        self.assertFlags(self.broken("kustomization.yaml", lambda d: d[0]["resources"].remove("pdb.yaml")), "kustomization.yaml lists")


if __name__ == "__main__":
    unittest.main()
