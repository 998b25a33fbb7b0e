#!/usr/bin/env bash
# Makes the skopeo (Go ocicrypt) interop vectors in this folder from oci:examples/image:latest.
#
# Needs: skopeo (Debian 12's 1.9.3, built with ocicrypt 1.0.3: jwe, pkcs7 and pgp only),
# openssl, python3 (standard library only, for the JSON bookkeeping).
#
#   keys/<name>-private.pem   PKCS#8 PEM "PRIVATE KEY" (skopeo 1.9.3 rejects "EC PRIVATE KEY")
#   keys/<name>-public.pem    PKIX PEM "PUBLIC KEY"
#   <vector>/                 an OCI image layout, tag `latest`, written by `skopeo copy`
#   <vector>/expected.json    what a decryptor must find (plaintext digests, media types, ...)
#   README.md                 the vectors, the tool versions and the exact commands
#
# Keys are kept if they exist (pass --new-keys to make new ones); the vectors are always
# rewritten, and because JWE encryption is randomized every run changes their bytes.
# After writing, every vector is decrypted again with skopeo and its layer digests compared
# with the source image, and decrypting with a wrong key must fail.
#
# Usage: tests/vectors/skopeo/make-vectors.sh [--new-keys]      (`cargo xtask vectors`)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"
out="tests/vectors/skopeo"
src="oci:examples/image:latest"

new_keys=false
for arg in "$@"; do
    case "$arg" in
        --new-keys) new_keys=true ;;
        *) echo "usage: $0 [--new-keys]" >&2; exit 2 ;;
    esac
done

for tool in skopeo openssl python3; do
    command -v "$tool" >/dev/null || { echo "make-vectors: $tool is missing" >&2; exit 1; }
done

# `--insecure-policy`: do not depend on /etc/containers/policy.json (local layouts only).
skopeo=(skopeo --insecure-policy)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- keys -------------------------------------------------------------------------------
mkdir -p "$out/keys"
keygen() { # name, openssl genpkey arguments...
    local name="$1"; shift
    local priv="$out/keys/$name-private.pem" pub="$out/keys/$name-public.pem"
    if $new_keys || [[ ! -f "$priv" ]]; then
        openssl genpkey -quiet "$@" -out "$priv"
        echo "made $priv"
    fi
    openssl pkey -in "$priv" -pubout -out "$pub"
}
keygen rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
keygen rsa4096 -algorithm RSA -pkeyopt rsa_keygen_bits:4096
keygen p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
keygen p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
keygen p521 -algorithm EC -pkeyopt ec_paramgen_curve:P-521
cat >"$out/keys/README.md" <<'EOF'
# Vector keys: PUBLIC, TEST-ONLY

**THESE ARE PUBLIC TEST KEYS, COMMITTED ON PURPOSE. NEVER USE THEM FOR ANYTHING REAL.**

Made by `../make-vectors.sh` with `openssl genpkey`: private keys are unencrypted PKCS#8
PEM (`BEGIN PRIVATE KEY`), public keys PKIX PEM (`BEGIN PUBLIC KEY`).
EOF

# --- vectors ----------------------------------------------------------------------------
# name | recipients (space-separated key names) | extra skopeo copy flags | description
vectors=(
    "jwe-rsa2048|rsa2048||every layer, one RSA-2048 recipient (RSA-OAEP)"
    "jwe-rsa4096|rsa4096||every layer, one RSA-4096 recipient (RSA-OAEP)"
    "jwe-p256|p256||every layer, one EC P-256 recipient (ECDH-ES+A256KW)"
    "jwe-p384|p384||every layer, one EC P-384 recipient (ECDH-ES+A256KW)"
    "jwe-p521|p521||every layer, one EC P-521 recipient (ECDH-ES+A256KW)"
    "jwe-two-recipients|rsa2048 p256||every layer, two recipients in one call (one JWE, general JSON)"
    "jwe-layer-top|rsa2048|--encrypt-layer -1|only the top layer (index -1), one RSA-2048 recipient"
)

# Layer digests and media types of the manifest that `name` in index.json points to.
layers_of() { # layout-dir
    python3 - "$1" <<'EOF'
import json, sys
root = sys.argv[1]
index = json.load(open(f"{root}/index.json"))
(desc,) = [m for m in index["manifests"]
           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest"]
manifest = json.load(open(f"{root}/blobs/sha256/{desc['digest'].split(':', 1)[1]}"))
for layer in manifest["layers"]:
    print(layer["digest"], layer["mediaType"])
EOF
}

commands=()
run() { # records the command (relative paths) for the README, then runs it
    commands+=("$*")
    "$@"
}

for entry in "${vectors[@]}"; do
    IFS='|' read -r name recipients extra _description <<<"$entry"
    dir="$out/$name"
    rm -rf "$dir"
    args=()
    for r in $recipients; do args+=(--encryption-key "jwe:$out/keys/$r-public.pem"); done
    # shellcheck disable=SC2206 # `extra` is meant to split into flags
    args+=($extra)
    echo "== $name"
    run skopeo --insecure-policy copy --quiet "${args[@]}" "$src" "oci:$dir:latest"

    # Self-check: each recipient alone decrypts to the original layer digests.
    for r in $recipients; do
        rm -rf "$work/dec"
        "${skopeo[@]}" copy --quiet --decryption-key "$out/keys/$r-private.pem" \
            "oci:$dir:latest" "oci:$work/dec:latest"
        if ! diff <(layers_of examples/image) <(layers_of "$work/dec"); then
            echo "make-vectors: $name: decrypting with $r did not give back the source layers" >&2
            exit 1
        fi
    done
    # ... and a key that is not a recipient does not.
    wrong=rsa4096
    [[ " $recipients " == *" rsa4096 "* ]] && wrong=p384
    rm -rf "$work/dec"
    if "${skopeo[@]}" copy --quiet --decryption-key "$out/keys/$wrong-private.pem" \
        "oci:$dir:latest" "oci:$work/dec:latest" 2>"$work/err"; then
        echo "make-vectors: $name: $wrong (not a recipient) decrypted it" >&2
        exit 1
    fi
    if ! grep -q "none of the private keys could be used" "$work/err"; then
        echo "make-vectors: $name: decrypting with $wrong failed for another reason:" >&2
        cat "$work/err" >&2
        exit 1
    fi

    python3 - "$dir" "$name" "$recipients" "$extra" <<'EOF'
import base64, json, sys

root, name, recipients, extra = sys.argv[1:]
src = "examples/image"

def manifest_of(layout):
    index = json.load(open(f"{layout}/index.json"))
    (desc,) = [m for m in index["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest"]
    return desc, json.load(open(f"{layout}/blobs/sha256/{desc['digest'].split(':', 1)[1]}"))

def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

_, plain = manifest_of(src)
desc, enc = manifest_of(root)
layers = []
for i, (p, e) in enumerate(zip(plain["layers"], enc["layers"], strict=True)):
    ann = e.get("annotations", {})
    layer = {
        "index": i,
        "encrypted": e["mediaType"].endswith("+encrypted"),
        "media_type": e["mediaType"],
        "digest": e["digest"],
        "size": e["size"],
        "plaintext_media_type": p["mediaType"],
        "plaintext_digest": p["digest"],
        "plaintext_size": p["size"],
    }
    if layer["encrypted"]:
        layer["schemes"] = sorted(k.rsplit(".", 1)[1] for k in ann
                                  if k.startswith("org.opencontainers.image.enc.keys."))
        pub = json.loads(base64.b64decode(ann["org.opencontainers.image.enc.pubopts"]))
        layer["cipher"] = pub["cipher"]
        blobs = [json.loads(base64.b64decode(b))
                 for b in ann["org.opencontainers.image.enc.keys.jwe"].split(",")]
        jwe = []
        for blob in blobs:
            protected = json.loads(b64url(blob["protected"]))
            recips = blob.get("recipients") or [{"header": blob.get("header", {})}]
            jwe.append({
                "form": "general" if "recipients" in blob else "flattened",
                "enc": protected.get("enc"),
                "alg": [protected.get("alg") or r.get("header", {}).get("alg") for r in recips],
            })
        layer["jwe_blobs"] = jwe
    else:
        assert e["digest"] == p["digest"], "an unencrypted layer changed"
    layers.append(layer)

expected = {
    "comment": "Made by tests/vectors/skopeo/make-vectors.sh; see README.md. TEST-ONLY keys.",
    "vector": name,
    "source": "oci:examples/image:latest",
    "image": f"oci:tests/vectors/skopeo/{name}:latest",
    "manifest_digest": desc["digest"],
    "recipients": [f"keys/{r}-public.pem" for r in recipients.split()],
    "decryption_keys": [f"keys/{r}-private.pem" for r in recipients.split()],
    "skopeo_extra_flags": extra.split(),
    "layers": layers,
}
with open(f"{root}/expected.json", "w") as f:
    json.dump(expected, f, indent=2)
    f.write("\n")
EOF
done

# --- README -----------------------------------------------------------------------------
{
    echo "# skopeo (Go ocicrypt) interop vectors"
    echo
    echo "**Made with PUBLIC TEST-ONLY keys (\`keys/\`). Never use those keys for anything real.**"
    echo
    echo "Written by \`make-vectors.sh\` (rerun: \`cargo xtask vectors\`; add \`--new-keys\` for new keys)"
    echo "from \`oci:examples/image:latest\` (two tar+gzip layers, see \`examples/make-image.py\`)."
    echo "Each \`<vector>/\` is an OCI image layout with tag \`latest\` as \`skopeo copy\` wrote it, plus"
    echo "\`<vector>/expected.json\`: per layer the encrypted and plaintext media types, digests and"
    echo "sizes, the key-wrap schemes and the JWE shape, so tests need no skopeo to know the answer."
    echo "After writing, the script decrypted every vector again with \`skopeo --decryption-key\` (each"
    echo "recipient's key alone) and got back the source layer digests; a non-recipient key failed."
    echo
    echo "Tools:"
    echo
    echo "- \`$(skopeo --version)\` (Debian 12; built with containers/ocicrypt 1.0.3)"
    echo "- \`$(openssl version)\`"
    echo
    echo "| vector | recipients | what |"
    echo "|---|---|---|"
    for entry in "${vectors[@]}"; do
        IFS='|' read -r name recipients _extra description <<<"$entry"
        echo "| \`$name\` | $recipients | $description |"
    done
    echo
    echo "Decryption keys: \`keys/<recipient>-private.pem\`. Commands (from the repository root):"
    echo
    echo '```sh'
    for c in "${commands[@]}"; do echo "$c"; done
    echo '```'
} >"$out/README.md"

echo "make-vectors: wrote ${#vectors[@]} vectors into $out, all self-checked"
