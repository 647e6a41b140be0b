"""The local node's pieces (hack/build-node.sh, hack/oci_image.py) without building them: pinned
versions, and an OCI image archive whose digests check out as `ctr images import` checks them."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _require(module_dir: str, module: str) -> str:
    match = re.search(rf"(?m)^\s*(?:require\s+)?{re.escape(module)} (v\S+)", (REPO / module_dir / "go.mod").read_text())
    assert match, module
    return match.group(1)


def test_kubelet_and_kube_proxy_come_from_the_control_planes_module() -> None:
    tools = (REPO / "hack/k8s/tools.go").read_text()
    for cmd in ("kubelet", "kube-proxy", "kube-scheduler", "kube-apiserver"):
        assert f'_ "k8s.io/kubernetes/cmd/{cmd}"' in tools
    assert "k8s.io/kubernetes/cmd/kubelet" in (REPO / "hack/build-node.sh").read_text()


def test_containerd_is_new_enough_for_kubelet_1_34() -> None:
    version = _require("hack/containerd", "github.com/containerd/containerd/v2")
    major, minor = (int(x) for x in version[1:].split(".")[:2])
    assert (major, minor) >= (1, 7)
    assert re.fullmatch(r"v1\.\d+\.\d+", _require("hack/coredns", "github.com/coredns/coredns"))
    for script in ("build-node.sh", "e2e-node.sh", "build-argocd-health.sh"):
        subprocess.run(["bash", "-n", str(REPO / "hack" / script)], check=True)


def test_the_oci_archive_is_a_valid_layout(tmp_path: Path) -> None:
    payload = tmp_path / "hello"
    payload.write_bytes(b"#!/bin/true\n")
    out = tmp_path / "image.tar"
    subprocess.run([sys.executable, str(REPO / "hack/oci_image.py"), "--output", str(out), "--name",
                    "example.org/x/hello:1", "--entrypoint=/hello", "--user", "65535:65535",
                    "--layer-file", f"{payload}:hello:0755"], check=True, capture_output=True)
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    (desc,) = json.loads(files["index.json"])["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == "example.org/x/hello:1"
    manifest = json.loads(files["blobs/sha256/" + desc["digest"].split(":")[1]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Entrypoint"] == ["/hello"] and config["config"]["User"] == "65535:65535"
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 1
