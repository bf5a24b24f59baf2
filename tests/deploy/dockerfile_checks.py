"""Checks of the Dockerfile and .dockerignore that hadolint cannot make: what the issue
asks of the image, the facts tests/api/container.rs relies on, and whether the build
can find every file cargo needs (a Docker build is not run here: no daemon)."""

import json
import re
import tomllib

from common import IMAGE_DATA_DIR, IMAGE_PORT, IMAGE_UID, IMAGE_WORKDIR, ROOT, Problems


def instructions(text):
    """The Dockerfile as (KEYWORD, arguments) pairs: continuations joined, comments
    and the parser directive dropped."""
    joined = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(text):
    """The instructions of each build stage, each list starting with its FROM."""
    result = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def exec_form(rest):
    """The JSON array of an exec-form instruction, or None for the shell form."""
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def required_target_files(cargo_toml):
    """Files cargo must find to build `--bin tickstream`: the library, that binary, and
    every target declared without a `path` (cargo checks those when it loads the
    manifest; declared paths are only read when that target is built)."""
    manifest = tomllib.loads(cargo_toml)
    files = {manifest.get("lib", {}).get("path", "src/lib.rs")}
    defaults = {"bin": "src/bin/{}.rs", "bench": "benches/{}.rs", "test": "tests/{}.rs",
                "example": "examples/{}.rs"}
    for kind, pattern in defaults.items():
        for target in manifest.get(kind, []):
            if kind == "bin" and target["name"] == "tickstream":
                files.add(target.get("path", "src/main.rs"))
            elif "path" not in target:
                files.add(pattern.format(target["name"]))
    return files


def embedded_paths(sources):
    """Repository-relative files and folders the crate embeds at compile time
    (include_str!/include_bytes! relative to the source file, rust-embed folders
    relative to the crate), from `sources`: (path relative to ROOT, text) pairs."""
    result = set()
    for path, text in sources:
        base = (ROOT / path).parent
        for target in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', text):
            result.add((base / target).resolve().relative_to(ROOT).as_posix())
        for folder in re.findall(r'#\[folder\s*=\s*"([^"]+)"\]', text):
            result.add(folder.rstrip("/"))
    return result


def rust_sources():
    return [(p.relative_to(ROOT).as_posix(), p.read_text()) for p in (ROOT / "src").rglob("*.rs")]


def _pattern_regex(pattern):
    """A .dockerignore pattern as a regex, with Go's filepath.Match rules that Docker
    uses: `*` and `?` stay within one path component, `**` spans any number."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def ignored(path, patterns):
    """Whether .dockerignore `patterns` keep `path` (or a folder above it) out of the
    build context; `!` exceptions re-include, the last matching pattern wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex(raw.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            result = not negate
    return result


def dockerignore_patterns(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def check_dockerfile(dockerfile, dockerignore, cargo_toml, sources):
    problems = Problems("Dockerfile")
    all_stages = stages(dockerfile)
    if not problems.check(len(all_stages) >= 2, "needs a build stage and a runtime stage"):
        return problems
    build, runtime = all_stages[0], all_stages[-1]
    patterns = dockerignore_patterns(dockerignore)

    # Build stage: dependencies first, from the manifests alone, then the sources.
    build_copies = [rest for keyword, rest in build if keyword == "COPY"]
    runs = [(i, rest) for i, (keyword, rest) in enumerate(build) if keyword == "RUN"]
    first_source_copy = next(
        (i for i, (k, rest) in enumerate(build) if k == "COPY" and rest.split()[0] == "src"),
        None,
    )
    problems.check(first_source_copy is not None, "the build stage never copies src/")
    dependency_runs = [rest for i, rest in runs if first_source_copy and i < first_source_copy]
    problems.check(
        any("cargo build --release --locked" in run for run in dependency_runs),
        "no dependency layer: `cargo build --release --locked` before `COPY src`",
    )
    problems.check(
        all(set(rest.split()[:-1]) <= {"Cargo.toml", "Cargo.lock"}
            for i, (k, rest) in enumerate(build)
            if k == "COPY" and first_source_copy and i < first_source_copy),
        "only Cargo.toml and Cargo.lock may be copied before the dependency layer "
        "(anything else invalidates its cache on every change)",
    )
    problems.check(
        any("cargo build --release --locked --bin tickstream" in rest
            for i, rest in runs if first_source_copy and i > first_source_copy),
        "no release build of the tickstream binary after the sources are copied",
    )
    stub_text = " ".join(dependency_runs)
    for needed in sorted(required_target_files(cargo_toml)):
        problems.check(
            needed in stub_text,
            f"the dependency layer does not stub {needed}, which Cargo.toml needs "
            "to load; the image build would fail",
        )
    copied = {
        source.rstrip("/")
        for rest in build_copies
        for source in rest.split()[:-1]
        if not source.startswith("--")
    }
    for needed in sorted(required_target_files(cargo_toml) | embedded_paths(sources)
                         | {"Cargo.toml", "Cargo.lock"}):
        top = needed.split("/")[0]
        problems.check(
            top in copied or needed in copied,
            f"the build stage does not copy {top} (needed for {needed})",
        )
        problems.check(
            not ignored(needed, patterns),
            f".dockerignore keeps {needed} out of the build context; the build needs it",
        )

    # Runtime stage: slim, non-root, only the binary and config/, the contract.
    base = runtime[0][1].split()[0]
    problems.check(
        "slim" in base or "distroless" in base, f"the runtime image {base} is not a slim one"
    )
    last = {}
    for keyword, rest in runtime:
        last[keyword] = rest
    problems.check(
        last.get("USER", "").split(":")[0] == str(IMAGE_UID),
        f"runtime USER must be {IMAGE_UID} (non-root; tests/api/container.rs runs as it)",
    )
    problems.check(last.get("WORKDIR") == IMAGE_WORKDIR, f"runtime WORKDIR must be {IMAGE_WORKDIR}")
    runtime_copies = [rest for keyword, rest in runtime if keyword in ("COPY", "ADD")]
    allowed = {
        "--from=build /src/target/release/tickstream /usr/local/bin/tickstream",
        "config ./config",
    }
    problems.check(
        set(runtime_copies) == allowed,
        f"the runtime image must get exactly the binary and config/, got {runtime_copies}",
    )
    runtime_runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    problems.check(
        not re.search(r"\b(apt-get|apk|curl|wget)\b", runtime_runs),
        "the runtime stage installs packages; the health check must need none",
    )
    problems.check(
        str(IMAGE_PORT) in last.get("EXPOSE", "").split(), f"EXPOSE {IMAGE_PORT} missing"
    )
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    problems.check(
        "TICKSTREAM__SERVER__HOST=0.0.0.0" in env and f"TICKSTREAM__SERVER__PORT={IMAGE_PORT}" in env,
        "the image must listen on 0.0.0.0 and the EXPOSEd port through TICKSTREAM__ env",
    )
    problems.check(
        f"TICKSTREAM__STORE__DATA_DIR={IMAGE_DATA_DIR}" in env
        and IMAGE_DATA_DIR in last.get("VOLUME", ""),
        f"the image must keep its market state in a VOLUME at {IMAGE_DATA_DIR} "
        "(TICKSTREAM__STORE__DATA_DIR); the root file system is read-only",
    )
    problems.check(
        re.search(rf"-o {IMAGE_UID} -g {IMAGE_UID} .*{re.escape(IMAGE_DATA_DIR)}", runtime_runs)
        is not None,
        f"{IMAGE_DATA_DIR} must be created owned by the runtime user {IMAGE_UID} "
        f"(install -d -o {IMAGE_UID} -g {IMAGE_UID} ... {IMAGE_DATA_DIR})",
    )
    health = last.get("HEALTHCHECK", "")
    problems.check(
        health.split("CMD", 1)[-1].strip() == '["tickstream", "healthcheck"]',
        "HEALTHCHECK must run `tickstream healthcheck` (exec form, no curl)",
    )
    problems.check(last.get("STOPSIGNAL") == "SIGTERM", "STOPSIGNAL SIGTERM missing")
    problems.check(
        exec_form(last.get("ENTRYPOINT", "")) == ["tickstream"]
        and exec_form(last.get("CMD", "")) == ["serve"],
        'the image must start `tickstream serve`: ENTRYPOINT ["tickstream"] CMD ["serve"]',
    )

    # .dockerignore: build output, history and secrets stay out of the context.
    for path in ("target/release/tickstream", ".git/config", ".env", "deploy/k8s/x.yaml"):
        problems.check(ignored(path, patterns), f".dockerignore lets {path} into the build context")
    return problems


def check_repository_dockerfile():
    return check_dockerfile(
        (ROOT / "Dockerfile").read_text(),
        (ROOT / ".dockerignore").read_text(),
        (ROOT / "Cargo.toml").read_text(),
        rust_sources(),
    )
