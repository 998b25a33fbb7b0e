#!/bin/sh
# Captures what containerd 1.6 (Debian) sends a stream processor on file descriptor 3: runs
# the end-to-end test (tests/tests/containerd.rs), whose decoder wrapper keeps each payload,
# and keeps the one for the JWE image encrypted by us. Needs root, containerd and
# docker-registry. Run from the repository root: sh tests/vectors/containerd/capture.sh
set -eu
OCICRYPT_KEEP_PAYLOAD="$(pwd)/tests/vectors/containerd/payload-jwe.bin" \
    cargo test -p ocicrypt-tests --test containerd
