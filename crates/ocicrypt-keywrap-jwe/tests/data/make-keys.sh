#!/bin/sh
# Regenerates the fixed test keys in this directory with the OpenSSL command line tool.
# TEST KEYS ONLY: the private keys are public. Password of the encrypted keys: "password".
# Made with OpenSSL 3.0; run from this directory: ./make-keys.sh
set -eu
cd "$(dirname "$0")"
pw=pass:password

# RSA-2048: PKCS#8 PEM, PKIX PEM, PKCS#1 PEM (private and public), DER, encrypted.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.pem
openssl pkey -in rsa2048.pem -pubout -out rsa2048.pub.pem
openssl rsa -in rsa2048.pem -traditional -out rsa2048-pkcs1.pem
openssl rsa -in rsa2048.pem -RSAPublicKey_out -out rsa2048-pkcs1.pub.pem
openssl pkey -in rsa2048.pem -outform DER -out rsa2048.der
openssl pkey -in rsa2048.pem -pubout -outform DER -out rsa2048.pub.der
# Legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED; DEK-Info: AES-256-CBC).
openssl rsa -in rsa2048.pem -traditional -aes256 -passout "$pw" -out rsa2048-legacy-enc.pem
# PKCS#8 EncryptedPrivateKeyInfo, PBES2 with AES-256-CBC.
openssl pkcs8 -topk8 -v2 aes-256-cbc -in rsa2048.pem -passout "$pw" -out rsa2048-pbes2.pem
openssl pkcs8 -topk8 -v2 aes-256-cbc -in rsa2048.pem -passout "$pw" -outform DER -out rsa2048-pbes2.der

# RSA-1024 (Go ocicrypt's tests use one).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pem
openssl pkey -in rsa1024.pem -pubout -out rsa1024.pub.pem

# EC: P-256 as SEC1 PEM (and legacy-encrypted), P-384 as PKCS#8 PEM, P-521 as SEC1 DER.
openssl ecparam -name prime256v1 -genkey -noout -out ec-p256-sec1.pem
openssl pkey -in ec-p256-sec1.pem -pubout -out ec-p256.pub.pem
openssl ec -in ec-p256-sec1.pem -aes256 -passout "$pw" -out ec-p256-legacy-enc.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec-p384.pem
openssl pkey -in ec-p384.pem -pubout -out ec-p384.pub.pem
openssl ecparam -name secp521r1 -genkey -noout -outform DER -out ec-p521-sec1.der
openssl ec -inform DER -in ec-p521-sec1.der -pubout -outform DER -out ec-p521.pub.der

# Keys JWE cannot use: a certificate, an Ed25519 key, a secp256k1 key.
openssl req -x509 -new -key rsa2048.pem -subj /CN=ocicrypt-test -days 36500 -out cert.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
openssl ecparam -name secp256k1 -genkey -noout -out ec-secp256k1.pem
