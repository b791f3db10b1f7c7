#!/usr/bin/env bash
# Generates the TEST-ONLY certificates in this directory. See README.md.
#
#   ./gen.sh          # create whatever is missing (idempotent)
#   ./gen.sh --force  # regenerate everything
#
# Outputs:
#   ca.pem / ca.key                  test CA (RSA 2048, 10 years)
#   gateway.crt / gateway.key        server cert for localhost, 127.0.0.1, ::1
#                                    (RSA 2048, PKCS#8 key, full chain: leaf + CA)
#   gateway.pkcs1.key                gateway.key in PKCS#1 form
#   gateway-ec.crt / gateway-ec.key  same names, ECDSA P-256, SEC1 key
set -euo pipefail
cd "$(dirname "$0")"

DAYS=3650
SUBJ_CA="/O=oidc-gateway test/CN=oidc-gateway test CA"
SAN="DNS:localhost,IP:127.0.0.1,IP:::1"

if [[ "${1:-}" == "--force" ]]; then
  rm -f ca.pem ca.key ca.srl gateway.crt gateway.key gateway.pkcs1.key gateway-ec.crt gateway-ec.key
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/leaf.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT

if [[ ! -f ca.pem || ! -f ca.key ]]; then
  echo "creating test CA"
  openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days "$DAYS" \
    -subj "$SUBJ_CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -keyout ca.key -out ca.pem 2>/dev/null
  # a new CA invalidates the leaves
  rm -f gateway.crt gateway.key gateway-ec.crt gateway-ec.key
fi

# leaf NAME KEYGEN-ARGS...
leaf() {
  local name=$1; shift
  if [[ -f "$name.crt" && -f "$name.key" ]]; then
    return
  fi
  echo "creating $name.crt"
  "$@" >"$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "/O=oidc-gateway test/CN=localhost" -out "$tmp/$name.csr"
  openssl x509 -req -in "$tmp/$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$tmp/leaf.ext" -out "$tmp/$name.leaf" 2>/dev/null
  cat "$tmp/$name.leaf" ca.pem >"$name.crt"
}

# RSA, PKCS#8 ("BEGIN PRIVATE KEY")
leaf gateway openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048
# ECDSA P-256, SEC1 ("BEGIN EC PRIVATE KEY")
leaf gateway-ec openssl ecparam -name prime256v1 -genkey -noout

# the RSA key again in PKCS#1 form ("BEGIN RSA PRIVATE KEY"), to test that format
if [[ ! -f gateway.pkcs1.key || gateway.key -nt gateway.pkcs1.key ]]; then
  openssl rsa -in gateway.key -traditional -out gateway.pkcs1.key 2>/dev/null
fi

rm -f ca.srl
chmod 644 ./*.pem ./*.crt ./*.key
echo "certs ok"
