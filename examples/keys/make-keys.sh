#!/usr/bin/env bash
# Makes the PUBLIC TEST-ONLY RSA-2048 key pair in this folder with the openssl CLI.
# The committed keys were made by this script; rerunning it makes a different pair (and
# then the vectors under tests/vectors/ that use these keys no longer match).
#
#   TEST-ONLY-rsa-private.pem  PKCS#8 PEM ("BEGIN PRIVATE KEY"), unencrypted
#   TEST-ONLY-rsa-public.pem   PKIX / SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out TEST-ONLY-rsa-private.pem
openssl pkey -in TEST-ONLY-rsa-private.pem -pubout -out TEST-ONLY-rsa-public.pem
chmod 0644 TEST-ONLY-rsa-private.pem TEST-ONLY-rsa-public.pem
openssl version
