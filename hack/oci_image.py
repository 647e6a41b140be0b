#!/usr/bin/env python3
"""Writes an OCI image archive (an OCI image layout in one tar) that `ctr images import` takes,
without a registry or a container engine: the layers are tar files made elsewhere (mmdebstrap's
root file system) or single files given on the command line. Standard library only.

  oci_image.py --output out.tar --name repo/name:tag [--entrypoint ARG]... [--cmd ARG]...
               [--env K=V]... [--user UID:GID] [--workdir DIR]
               [--layer-tar layer.tar]... [--layer-file SRC:DEST:MODE]...
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time

EPOCH = 0  # reproducible: every timestamp written here is 1970-01-01


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_layer(specs: list[str]) -> bytes:
    """An uncompressed tar holding single files: SRC:DEST:MODE (DEST relative to /)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for spec in specs:
            src, dest, mode = spec.split(":")
            with open(src, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), int(mode, 8), EPOCH
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(args: argparse.Namespace) -> None:
    blobs: dict[str, str] = {}  # digest -> path of the blob on disk
    tmp = tempfile.mkdtemp(prefix="oci-", dir=os.path.dirname(os.path.abspath(args.output)))
    layers, diff_ids = [], []

    def add_layer_from(path: str) -> None:
        # diff_id: the uncompressed tar's digest; the blob: its gzip (mtime 0, so reproducible).
        raw, comp = hashlib.sha256(), hashlib.sha256()
        gz_path = os.path.join(tmp, f"layer{len(layers)}.tar.gz")
        with open(path, "rb") as src, open(gz_path, "wb") as dst:
            with gzip.GzipFile(fileobj=dst, mode="wb", mtime=EPOCH, compresslevel=1) as gz:
                while chunk := src.read(1 << 20):
                    raw.update(chunk)
                    gz.write(chunk)
        with open(gz_path, "rb") as f:
            while chunk := f.read(1 << 20):
                comp.update(chunk)
        digest = comp.hexdigest()
        blobs[digest] = gz_path
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": f"sha256:{digest}", "size": os.path.getsize(gz_path)})
        diff_ids.append(f"sha256:{raw.hexdigest()}")

    for path in args.layer_tar:
        add_layer_from(path)
    if args.layer_file:
        raw_path = os.path.join(tmp, "files.tar")
        with open(raw_path, "wb") as f:
            f.write(_file_layer(args.layer_file))
        add_layer_from(raw_path)

    config = {
        "architecture": "amd64", "os": "linux",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH)),
        "config": {k: v for k, v in {
            "Entrypoint": args.entrypoint or None, "Cmd": args.cmd or None,
            "Env": args.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "User": args.user, "WorkingDir": args.workdir,
        }.items() if v},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "envbranch hack/oci_image.py"}],
    }

    def add_json(obj: object) -> dict[str, object]:
        data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        digest = _sha(data)
        path = os.path.join(tmp, digest)
        with open(path, "wb") as f:
            f.write(data)
        blobs[digest] = path
        return {"digest": f"sha256:{digest}", "size": len(data)}

    cfg = add_json(config)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                "layers": layers}
    man = add_json(manifest)
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
                            "platform": {"architecture": "amd64", "os": "linux"},
                            "annotations": {"io.containerd.image.name": args.name,
                                            "org.opencontainers.image.ref.name": tag}}]}

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
        tar.addfile(info, io.BytesIO(data))

    partial = args.output + ".part"
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        for digest, path in sorted(blobs.items()):
            info = tar.gettarinfo(path, arcname=f"blobs/sha256/{digest}")
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = EPOCH, 0, 0, "", "", 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    os.replace(partial, args.output)
    for path in blobs.values():
        os.unlink(path)
    for name in os.listdir(tmp):
        os.unlink(os.path.join(tmp, name))
    os.rmdir(tmp)
    print(f"{args.output}: {args.name} manifest {man['digest']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--layer-tar", action="append", default=[])
    p.add_argument("--layer-file", action="append", default=[])
    build(p.parse_args())


if __name__ == "__main__":
    main()
