"""Validates the deployment files: the Dockerfile and .dockerignore, docker-compose.yml
(with config/nginx.conf) and deploy/k8s/. Prints each problem; exits 1 when there is
any. Run by scripts/deploy-checks, which installs the parsers (requirements.txt)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from compose_checks import check_repository_compose  # noqa: E402
from dockerfile_checks import check_repository_dockerfile  # noqa: E402
from k8s_checks import check_repository_manifests  # noqa: E402


def main():
    failed = False
    for title, check in (
        ("Dockerfile, .dockerignore", check_repository_dockerfile),
        ("docker-compose.yml, config/nginx.conf", check_repository_compose),
        ("deploy/k8s/*.yaml", check_repository_manifests),
    ):
        problems = check()
        print(f"{'FAIL' if problems else 'ok  '} {title}")
        for item in problems.items:
            print(f"     - {item}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
