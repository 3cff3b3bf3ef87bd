#!/bin/sh
# mkca.sh DIR — test certificates for the integration tests (openssl CLI only).
#
#   ca.pem, ca.key               the test CA (EC P-256)
#   server.pem, server.key       CN localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1,
#                                DNS:gemini-looper.test (a name only tests/it/test_dns.py
#                                resolves, with a DNS server of its own),
#                                signed by the test CA
#   other-ca.pem, other-ca.key   a second, unrelated CA
#   bad-server.pem/.key          same names as server.pem, signed by the OTHER CA
#                                (must be refused by a client that trusts ca.pem)
#   wronghost.pem/.key           signed by the test CA, SAN DNS:example.invalid only
#                                (must fail hostname verification for localhost)
#
# Idempotent: when every file is already there nothing is regenerated, so a
# running server keeps its certificate. Concurrent runs are serialised with
# flock(1) when available; files are generated in a private temporary
# directory and renamed into place.
set -eu

dir=${1:?usage: mkca.sh DIR}
mkdir -p "$dir"

files="ca.pem ca.key server.pem server.key other-ca.pem other-ca.key
bad-server.pem bad-server.key wronghost.pem wronghost.key"

complete() {
	for f in $files; do
		[ -s "$dir/$f" ] || return 1
	done
	return 0
}

if command -v flock >/dev/null 2>&1; then
	exec 9>"$dir/.mkca.lock"
	flock 9
fi

complete && exit 0

tmp=$(mktemp -d "$dir/.mkca.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	    -out "$tmp/$1" 2>/dev/null
	chmod 600 "$tmp/$1"
}

# ca NAME CN
ca() {
	key "$1.key"
	openssl req -x509 -new -key "$tmp/$1.key" -sha256 -days 3650 \
	    -subj "/O=gemini-looper tests/CN=$2" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -addext "subjectKeyIdentifier=hash" \
	    -out "$tmp/$1.pem" 2>/dev/null
}

# leaf NAME CANAME CN SAN
leaf() {
	key "$1.key"
	openssl req -new -key "$tmp/$1.key" -subj "/O=gemini-looper tests/CN=$3" \
	    -out "$tmp/$1.csr" 2>/dev/null
	cat >"$tmp/$1.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$4
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
	serial=0x$(openssl rand -hex 16)
	openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/$2.pem" -CAkey "$tmp/$2.key" \
	    -set_serial "$serial" -days 825 -sha256 -extfile "$tmp/$1.ext" \
	    -out "$tmp/$1.pem" 2>/dev/null
	rm -f "$tmp/$1.csr" "$tmp/$1.ext"
}

ca ca "gemini-looper test CA"
ca other-ca "gemini-looper OTHER test CA"
leaf server ca localhost "DNS:localhost,DNS:gemini-looper.test,IP:127.0.0.1,IP:::1"
leaf bad-server other-ca localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf wronghost ca example.invalid "DNS:example.invalid"

# Keys first, so that a reader that sees a certificate also finds its key.
for f in ca.key other-ca.key server.key bad-server.key wronghost.key \
    ca.pem other-ca.pem server.pem bad-server.pem wronghost.pem; do
	mv -f "$tmp/$f" "$dir/$f"
done
