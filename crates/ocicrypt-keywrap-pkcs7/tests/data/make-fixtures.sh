#!/bin/sh
# Regenerates the fixed test keys, certificates and interop blobs in this directory with the
# OpenSSL command line tool and Debian's skopeo 1.9.3 (Go ocicrypt 1.0.3, go.mozilla.org/pkcs7).
# TEST KEYS ONLY: the private keys are public. Password of the encrypted keys: "password".
# Run from anywhere: ./make-fixtures.sh (needs the example image in examples/image).
set -eu
cd "$(dirname "$0")"
image="$(cd ../../../../examples/image && pwd)"
pw=pass:password
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Keys: RSA-2048 (PKCS#8 PEM), RSA-4096 (PKCS#1 DER), an EC key (not usable with pkcs7).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out rsa4096.pem
openssl rsa -in rsa4096.pem -traditional -outform DER -out rsa4096-pkcs1.der
openssl rsa -in rsa2048.pem -traditional -aes256 -passout "$pw" -out rsa2048-legacy-enc.pem
openssl pkcs8 -topk8 -v2 aes-256-cbc -in rsa2048.pem -passout "$pw" -out rsa2048-pbes2.pem
openssl pkcs8 -topk8 -v2 aes-256-cbc -in rsa2048.pem -passout "$pw" -outform DER -out rsa2048-pbes2.der
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec-p256.pem

# Certificates. Like Go's tests: a self-signed one, and a CA-issued one with the same serial.
openssl req -x509 -new -key rsa2048.pem -subj "/CN=ocicrypt-test self-signed/O=Example" \
    -set_serial 1 -days 36500 -out rsa2048-self.pem
openssl req -x509 -new -key rsa4096.pem -subj "/CN=ocicrypt-test CA" -set_serial 100 \
    -days 36500 -out ca.pem
openssl req -new -key rsa4096.pem -subj "/CN=ocicrypt-test leaf" -out "$tmp/leaf.csr"
openssl x509 -req -in "$tmp/leaf.csr" -CA ca.pem -CAkey rsa4096.pem -set_serial 1 \
    -days 36500 -out rsa4096-leaf.pem
openssl x509 -in rsa4096-leaf.pem -outform DER -out rsa4096-leaf.der
openssl req -x509 -new -key ec-p256.pem -subj "/CN=ocicrypt-test EC" -days 36500 -out ec-p256-cert.pem

# Go's bytes: skopeo encrypts every layer of the example image for rsa2048-self.pem;
# each layer's org.opencontainers.image.enc.keys.pkcs7 annotation is one blob.
skopeo --insecure-policy copy --encryption-key "pkcs7:$PWD/rsa2048-self.pem" \
    "oci:$image:latest" "oci:$tmp/enc:latest" >/dev/null
n=0
for blob in "$tmp"/enc/blobs/sha256/*; do
    grep -q 'enc.keys.pkcs7' "$blob" 2>/dev/null || continue
    for b64 in $(jq -r '.layers[]?.annotations["org.opencontainers.image.enc.keys.pkcs7"] // empty' "$blob"); do
        n=$((n + 1))
        printf '%s' "$b64" | base64 -d > "skopeo-$n.der"
    done
done
[ "$n" -gt 0 ] || { echo "no pkcs7 blob found" >&2; exit 1; }

# OpenSSL's bytes: standard EnvelopedData with AES-256-CBC, PKCS#1 v1.5 and RSAES-OAEP.
printf '%s' '{"symkey":"openssl-test"}' > "$tmp/msg"
openssl cms -encrypt -binary -aes-256-cbc -recip rsa2048-self.pem -outform DER \
    -in "$tmp/msg" -out openssl-aes256cbc.der
openssl cms -encrypt -binary -aes-128-cbc -recip rsa2048-self.pem \
    -keyopt rsa_padding_mode:oaep -outform DER -in "$tmp/msg" -out openssl-oaep.der
openssl cms -encrypt -binary -aes-128-cbc -recip rsa4096-leaf.pem \
    -keyopt rsa_padding_mode:oaep -keyopt rsa_oaep_md:sha256 -outform DER \
    -in "$tmp/msg" -out openssl-oaep-sha256.der
# GCM: OpenSSL 3.0 writes AES-GCM only as AuthEnvelopedData (RFC 5083), not EnvelopedData.
openssl cms -encrypt -binary -aes-128-gcm -recip rsa2048-self.pem -outform DER \
    -in "$tmp/msg" -out openssl-aes128gcm-authenveloped.der
