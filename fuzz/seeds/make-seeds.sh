#!/bin/sh
# Copies the third-party-made vectors of the workspace into fuzz/seeds/TARGET/ as starting
# inputs: CMS EnvelopedData from skopeo and `openssl cms`, OpenPGP messages from skopeo, and
# the JWE blobs of the skopeo-made images (decoded from their layer annotations).
# Run from the repository root: sh fuzz/seeds/make-seeds.sh
set -eu
seeds=fuzz/seeds
mkdir -p "$seeds/pkcs7_unwrap" "$seeds/pgp_unwrap" "$seeds/jwe_unwrap"
for f in crates/ocicrypt-keywrap-pkcs7/tests/data/skopeo-*.der crates/ocicrypt-keywrap-pkcs7/tests/data/openssl-*.der; do
    cp "$f" "$seeds/pkcs7_unwrap/$(basename "$f")"
done
for f in crates/ocicrypt-keywrap-pgp/tests/data/skopeo-*.bin; do
    cp "$f" "$seeds/pgp_unwrap/$(basename "$f")"
done
python3 - "$seeds/jwe_unwrap" <<'PY'
import base64, json, os, sys
out = sys.argv[1]
root = "tests/vectors/skopeo"
for v in sorted(os.listdir(root)):
    layout = os.path.join(root, v)
    index = os.path.join(layout, "index.json")
    if not os.path.isfile(index):
        continue
    m = json.load(open(index))["manifests"][0]["digest"].split(":")[1]
    manifest = json.load(open(os.path.join(layout, "blobs", "sha256", m)))
    for i, layer in enumerate(manifest["layers"]):
        value = layer.get("annotations", {}).get("org.opencontainers.image.enc.keys.jwe", "")
        for j, blob in enumerate(b for b in value.split(",") if b):
            with open(os.path.join(out, f"{v}-layer{i}-{j}.json"), "wb") as f:
                f.write(base64.b64decode(blob))
PY
