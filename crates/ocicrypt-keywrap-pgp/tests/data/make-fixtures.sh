#!/bin/sh
# Regenerates the OpenPGP test keys and interop blobs in this directory with GnuPG 2.2 (in a
# throwaway GNUPGHOME) and Debian's skopeo 1.9.3 (Go ocicrypt 1.0.3, x/crypto/openpgp).
# TEST KEYS ONLY: the secret keys are public. Passphrase of carol's keys: "carol-pass".
# Run from anywhere: ./make-fixtures.sh (needs the example image in examples/image).
set -eu
cd "$(dirname "$0")"
image="$(cd ../../../../examples/image && pwd)"
tmp="$(mktemp -d)"
trap 'gpgconf --homedir "$tmp/gnupg" --kill all 2>/dev/null || true; rm -rf "$tmp"' EXIT
export GNUPGHOME="$tmp/gnupg"
mkdir -m 700 "$GNUPGHOME"
g() { gpg --batch --quiet --pinentry-mode loopback "$@"; }

# alice: RSA-3072 primary (sign, certify) + RSA-3072 encryption subkey, no passphrase.
g --passphrase '' --quick-generate-key 'Alice Example <alice@example.com>' rsa3072 sign never
alice="$(gpg --list-keys --with-colons alice@example.com | awk -F: '/^fpr/ {print $10; exit}')"
g --passphrase '' --quick-add-key "$alice" rsa3072 encr never
# bob: ed25519 primary + cv25519 encryption subkey, no passphrase.
g --passphrase '' --quick-generate-key 'Bob Example <bob@example.com>' ed25519 sign never
bob="$(gpg --list-keys --with-colons bob@example.com | awk -F: '/^fpr/ {print $10; exit}')"
g --passphrase '' --quick-add-key "$bob" cv25519 encr never
# carol: ed25519 + cv25519, protected with a passphrase.
g --passphrase carol-pass --quick-generate-key 'Carol <carol@example.com>' ed25519 sign never
carol="$(gpg --list-keys --with-colons carol@example.com | awk -F: '/^fpr/ {print $10; exit}')"
g --passphrase carol-pass --quick-add-key "$carol" cv25519 encr never

# dave: RSA-2048 + RSA-2048, a second recipient for skopeo. Go's x/crypto/openpgp (skopeo
# 1.9.3) encrypts only to RSA and ElGamal keys (ECDH: "has no encryption keys") and rejects
# EdDSA keys in the keyring (public key type 22), so bob and carol are not for skopeo.
g --passphrase '' --quick-generate-key 'Dave Example <dave@example.com>' rsa2048 sign never
dave="$(gpg --list-keys --with-colons dave@example.com | awk -F: '/^fpr/ {print $10; exit}')"
g --passphrase '' --quick-add-key "$dave" rsa2048 encr never

# erin: cv25519 whose preferences leave AES-256 out (AES-192, AES-128).
g --passphrase '' --default-preference-list 'AES192 AES SHA256 Uncompressed' \
    --quick-generate-key 'Erin <erin@example.com>' ed25519 sign never
erin="$(gpg --list-keys --with-colons erin@example.com | awk -F: '/^fpr/ {print $10; exit}')"
g --passphrase '' --quick-add-key "$erin" cv25519 encr never

for who in alice bob carol dave erin; do
    gpg --batch --export "$who@example.com" > "$who.pub.gpg"
    gpg --batch --armor --export "$who@example.com" > "$who.pub.asc"
    pass=''
    [ "$who" = carol ] && pass=carol-pass
    g --passphrase "$pass" --export-secret-keys "$who@example.com" > "$who.sec.gpg"
    g --passphrase "$pass" --armor --export-secret-keys "$who@example.com" > "$who.sec.asc"
done
# The encryption subkeys' key ids, as the blobs name them.
for who in alice bob carol dave erin; do
    gpg --list-keys --with-colons "$who@example.com" | awk -F: '$1 == "sub" {print $5}' > "$who.subkeyid"
done

# Go's bytes: skopeo encrypts every layer of the example image for pgp recipients looked up
# in $GNUPGHOME (a second home with only the keys Go can read, as one EdDSA key in the
# keyring makes skopeo fail); each layer's org.opencontainers.image.enc.keys.pgp annotation is one blob.
skopeo_blobs() { # name recipient...
    name="$1"
    shift
    args=""
    for r in "$@"; do args="$args --encryption-key pgp:$r"; done
    rm -rf "$tmp/enc"
    # shellcheck disable=SC2086
    skopeo --insecure-policy copy $args "oci:$image:latest" "oci:$tmp/enc:latest" >/dev/null
    n=0
    for blob in "$tmp"/enc/blobs/sha256/*; do
        grep -q 'enc.keys.pgp' "$blob" 2>/dev/null || continue
        for b64 in $(jq -r '.layers[]?.annotations["org.opencontainers.image.enc.keys.pgp"] // empty' "$blob"); do
            n=$((n + 1))
            printf '%s' "$b64" | base64 -d > "skopeo-$name-$n.bin"
        done
    done
    [ "$n" -gt 0 ] || { echo "no pgp blob found" >&2; exit 1; }
}
mkdir -m 700 "$tmp/gnupg-go"
gpg --batch --quiet --homedir "$tmp/gnupg-go" --import alice.pub.gpg dave.pub.gpg
rm -f skopeo-*.bin
GNUPGHOME="$tmp/gnupg-go" skopeo_blobs alice alice@example.com
GNUPGHOME="$tmp/gnupg-go" skopeo_blobs dave dave@example.com
GNUPGHOME="$tmp/gnupg-go" skopeo_blobs alice-dave alice@example.com dave@example.com
gpgconf --homedir "$tmp/gnupg-go" --kill all 2>/dev/null || true

# GnuPG's bytes with its default settings (it may compress, and picks the cipher).
rm -f gpg-*.bin
printf '%s' '{"symkey":"gpg-test"}' > gpg-msg.json
gpg --batch --trust-model always --recipient bob@example.com --output gpg-bob.bin \
    --encrypt gpg-msg.json
gpg --batch --trust-model always --recipient alice@example.com --compress-algo zlib \
    --output gpg-alice-zlib.bin --encrypt gpg-msg.json
