#!/usr/bin/env python3
"""Writes examples/image/: a tiny OCI image layout used by the demo and the tests.

The layout holds one linux/amd64 image tagged `latest` (index.json annotation
`org.opencontainers.image.ref.name`), with two small tar+gzip layers.

The output is deterministic: tar entries have fixed owners, modes and mtimes, gzip headers
carry mtime 0 and no file name, and the file contents are derived from fixed seeds. (The
compressed bytes depend on the zlib that Python links; rerunning with another zlib may give
other digests, which is harmless but shows up as a diff.)

Python 3 standard library only. Usage: python3 examples/make-image.py [OUTPUT_DIR]
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MTIME = 1_700_000_000  # fixed file mtime inside the layers (2023-11-14)
CREATED = "2023-11-14T22:13:20Z"  # the same instant, for the image config

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def pseudo_random(seed: bytes, n: int) -> bytes:
    """n bytes of SHA-256 counter-mode output: incompressible but reproducible."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


# (path, mode, contents or None for a directory), in archive order.
LAYERS = [
    [
        ("etc/", 0o755, None),
        ("etc/os-release", 0o644, b'NAME="ocicrypt example"\nID=ocicrypt-example\nVERSION_ID=1\n'),
        ("etc/motd", 0o644, b"This image exists to be encrypted and decrypted by tests.\n"),
        ("usr/", 0o755, None),
        ("usr/share/", 0o755, None),
        ("usr/share/example/", 0o755, None),
        ("usr/share/example/random.bin", 0o644, pseudo_random(b"ocicrypt layer 1", 3000)),
    ],
    [
        ("app/", 0o755, None),
        ("app/README.txt", 0o644, b"The second layer of the ocicrypt example image.\n" * 20),
        ("app/run.sh", 0o755, b"#!/bin/sh\ncat /etc/motd\nexec sha256sum /usr/share/example/random.bin\n"),
        ("app/data.bin", 0o644, pseudo_random(b"ocicrypt layer 2", 2000)),
    ],
]


def make_tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, mode, data in entries:
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mode = mode
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def to_json(value) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


class Layout:
    def __init__(self, root: str):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")

    def put(self, media_type: str, data: bytes) -> dict:
        digest = sha256(data)
        with open(os.path.join(self.blobs, digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "image")
    if os.path.isdir(root):
        shutil.rmtree(root)
    layout = Layout(root)
    os.makedirs(layout.blobs)

    layers, diff_ids = [], []
    for entries in LAYERS:
        tar = make_tar(entries)
        diff_ids.append(sha256(tar))
        layers.append(layout.put(MT_LAYER, gzip_bytes(tar)))

    config = {
        "created": CREATED,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/app/run.sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": "examples/make-image.py: layer 1 (etc, usr)"},
            {"created": CREATED, "created_by": "examples/make-image.py: layer 2 (app)"},
        ],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": layout.put(MT_CONFIG, to_json(config)),
        "layers": layers,
    }
    manifest_desc = layout.put(MT_MANIFEST, to_json(manifest))
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [manifest_desc]}

    with open(os.path.join(root, "oci-layout"), "wb") as f:
        f.write(b'{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(root, "index.json"), "wb") as f:
        f.write(to_json(index))

    print(f"wrote {root}")
    print(f"  manifest {manifest_desc['digest']}")
    for i, layer in enumerate(layers):
        print(f"  layer {i} {layer['digest']} ({layer['size']} bytes)")


if __name__ == "__main__":
    main()
