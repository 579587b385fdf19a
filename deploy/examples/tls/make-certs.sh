#!/bin/sh
# Creates the example fleet's TLS files from the *.cnf requests next to this script:
#
#   deploy/examples/tls/make-certs.sh OUT_DIR
#
# OUT_DIR/fleet-ca.{crt,key}   the fleet CA (keep the key off the nodes)
# OUT_DIR/node<N>/             what goes into /etc/mxfleet/tls/ on node N:
#   fleet-ca.crt, peer.crt, peer.key      mutual TLS between peers, signed by the CA
#   smtp.key, smtp.csr                    STARTTLS for the node's MX name
#   example-org.key, example-org.csr      STARTTLS for mx-backup.example.org (shared)
#   smtp.crt, example-org.crt             test stand-ins signed by the fleet CA: replace
#                                         them with certificates a public CA signed for
#                                         the .csr files, or senders checking DANE or
#                                         MTA-STS will refuse the fleet.
# Keys are EC P-256, unencrypted (the node reads them at start), mode 0600: make them
# readable by the mxfleet user when installing.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$1
days=825
umask 077
mkdir -p "$out"

newkey() { # KEY: a new EC P-256 private key
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}
sign() { # CNF CSR CRT: signs CSR with the fleet CA, with CNF's [ext] extensions
    openssl x509 -req -in "$2" -CA "$out/fleet-ca.crt" -CAkey "$out/fleet-ca.key" \
        -CAcreateserial -days "$days" -extfile "$1" -extensions ext -out "$3"
}

if [ ! -f "$out/fleet-ca.crt" ]; then
    newkey "$out/fleet-ca.key"
    openssl req -x509 -config "$here/fleet-ca.cnf" -key "$out/fleet-ca.key" \
        -days 3650 -out "$out/fleet-ca.crt"
fi

# One key pair for mx-backup.example.org, the same on every node.
newkey "$out/example-org.key"
openssl req -new -config "$here/example-org.cnf" -key "$out/example-org.key" \
    -out "$out/example-org.csr"
sign "$here/example-org.cnf" "$out/example-org.csr" "$out/example-org.crt"

for node in 1 2 3 4 5; do
    dir=$out/node$node
    mkdir -p "$dir"
    cp "$out/fleet-ca.crt" "$dir/fleet-ca.crt"
    for cert in peer smtp; do
        newkey "$dir/$cert.key"
        openssl req -new -config "$here/node$node/$cert.cnf" -key "$dir/$cert.key" \
            -out "$dir/$cert.csr"
        sign "$here/node$node/$cert.cnf" "$dir/$cert.csr" "$dir/$cert.crt"
    done
    rm "$dir/peer.csr"
    cp "$out/example-org.key" "$out/example-org.csr" "$out/example-org.crt" "$dir/"
done
echo "written to $out"
