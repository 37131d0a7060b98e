# shellcheck shell=bash
# deploy/lib/pki.sh: the local deployment's certificates with the openssl CLI (sourced, not run).
#
# Keys are EC P-256, written with umask 077 (mode 0600). A node certificate names
# its node: "node-ID" in the site named primary (and in a deployment of one
# site), "node-ID@SITE" in any other site (node/src/config.h), so that a node of
# one site never passes for the node of the same id in the other. It carries
# that name as CN and as a subjectAltName DNS name (the name nodes check when
# they dial each other) besides IP:127.0.0.1 and DNS:localhost, and
# extendedKeyUsage serverAuth + clientAuth: a node is a TLS server for clients
# and peers and a TLS client towards its peers (mutual TLS).

SV_PKI_CA_DAYS=3650
SV_PKI_NODE_DAYS=825

# sv_pki_make_ca CA_DIR: create CA_DIR/ca.key (0600) and the self-signed
# CA_DIR/ca.pem. CA_DIR must exist. Returns non-zero (openssl's message on
# stderr) on failure.
sv_pki_make_ca()
{
    local dir=$1
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$dir/ca.key" 2>/dev/null) || { echo "pki: cannot create the CA key" >&2; return 1; }
    openssl req -x509 -new -sha256 -days "$SV_PKI_CA_DAYS" -key "$dir/ca.key" \
        -subj "/CN=ShardVault local CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem" || { echo "pki: cannot create the CA certificate" >&2; return 1; }
}

# sv_pki_make_node_cert CA_DIR NODE_DIR ID [SAN,...] [SITE]: create
# NODE_DIR/node.key (0600) and NODE_DIR/node.pem signed by CA_DIR/ca.pem. The
# optional fourth argument adds subjectAltNames (e.g. IP:10.88.0.11 for a node
# in a network namespace; "" for none). The optional fifth names the node's
# site ([a-z0-9-], 1..31 bytes): the certificate then names node-ID@SITE, or
# node-ID when SITE is primary or not given. NODE_DIR must exist. Returns
# non-zero on failure.
sv_pki_make_node_cert()
{
    local ca=$1 dir=$2 id=$3 extra=${4:+, $4} site=${5-} name ext serial
    name=node-$id
    if [[ -n $site && $site != primary ]]; then
        [[ $site =~ ^[a-z0-9-]{1,31}$ ]] ||
            { echo "pki: bad site name '$site' (1..31 of a-z, 0-9, -)" >&2; return 1; }
        name=node-$id@$site
    fi
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$dir/node.key" 2>/dev/null) ||
        { echo "pki: cannot create the key of $name" >&2; return 1; }
    ext=$dir/node.ext
    cat >"$ext" <<EXT || return 1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:$name$extra
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
    # A random 127-bit serial: positive, unique without a serial file.
    serial=$(openssl rand -hex 16) || return 1
    serial=$(printf '%x%s' $((0x${serial:0:1} & 7)) "${serial:1}")
    if ! openssl req -new -sha256 -key "$dir/node.key" -subj "/CN=$name" |
        openssl x509 -req -sha256 -days "$SV_PKI_NODE_DAYS" -CA "$ca/ca.pem" \
            -CAkey "$ca/ca.key" -set_serial "0x$serial" -extfile "$ext" \
            -out "$dir/node.pem" 2>"$dir/openssl.err"; then
        cat "$dir/openssl.err" >&2
        echo "pki: cannot sign the certificate of $name" >&2
        rm -f "$ext" "$dir/openssl.err"
        return 1
    fi
    rm -f "$ext" "$dir/openssl.err"
}
