#!/bin/sh
# Outbound packet filter for a preview machine, applied by the image's entrypoint while it is
# still root, BEFORE it drops privileges to run the agent and the user's dev server.
#
#   egress.sh [--print] [COMMAND [ARG...]]
#
# Installs one nftables table, `inet preview_egress` (IPv4 and IPv6), whose output chain
# drops by default and accepts only:
#   - loopback;
#   - packets of connections already established (replies to inbound connections, such as the
#     orchestrator reaching the agent, and to the allowed outbound ones below);
#   - ICMPv6 neighbour discovery (without it IPv6 stops working altogether);
#   - DNS (UDP and TCP port 53) to the resolvers: PREVIEW_EGRESS_DNS (comma-separated
#     addresses), or else every `nameserver` in /etc/resolv.conf;
#   - TCP to the host:port pairs in PREVIEW_EGRESS_ALLOW, comma-separated:
#       registry.npmjs.org:443      a name, resolved once, now (A and AAAA records)
#       10.0.0.1:8080               an IPv4 address, or a network: 10.0.0.0/8:8080
#       [fdaa::3]:53                an IPv6 address in brackets, or a network: [fdaa::/16]:8080
# Everything else is refused at once (TCP reset, ICMP admin-prohibited), so a blocked connect()
# fails fast instead of hanging. The table replaces any previous one atomically (`nft -f`): the
# rules are either all in place or unchanged.
#
# Names are resolved when this runs; addresses a name gains later are not allowed until it runs
# again. Allow a network (e.g. the 6PN prefix) for peers whose addresses change.
#
# --print writes the ruleset to stdout and changes nothing. With a COMMAND, the script execs it
# once the rules are in place (e.g. `egress.sh setpriv --reuid=... -- python -m sandbox.agent`).
# Any error (an unresolvable name, a malformed entry, nft failing) exits non-zero before the
# command runs, so a machine never starts its workload without the filter.
set -eu
set -f # entries are split on commas and spaces; never glob them

TABLE=preview_egress
RESOLVE_TRIES=${PREVIEW_EGRESS_RESOLVE_TRIES:-3}

die() {
    echo "egress: $*" >&2
    exit 1
}

is_ipv4() {
    case $1 in
        "" | *[!0-9./]*) return 1 ;;
    esac
    # four dotted numbers, optionally /prefix
    echo "$1" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}(/[0-9]{1,2})?$'
}

is_ipv6() {
    case $1 in
        "" | *[!0-9A-Fa-f:./]*) return 1 ;;
        *:*) return 0 ;;
    esac
    return 1
}

is_port() {
    case $1 in
        "" | *[!0-9]*) return 1 ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

is_name() {
    case $1 in
        "" | *[!A-Za-z0-9.-]* | -* | .*) return 1 ;;
    esac
    return 0
}

# resolve NAME: print "4 ADDR" / "6 ADDR" lines (IPv4-mapped IPv6 answers are dropped).
resolve() {
    tries=0
    while :; do
        if answers=$(getent ahosts "$1" 2>/dev/null) && [ -n "$answers" ]; then
            break
        fi
        tries=$((tries + 1))
        [ "$tries" -lt "$RESOLVE_TRIES" ] || return 1
        sleep 1
    done
    echo "$answers" | while read -r addr _; do
        case $addr in
            ::ffff:*) ;;
            *:*) is_ipv6 "$addr" && echo "6 $addr" ;;
            *) is_ipv4 "$addr" && echo "4 $addr" ;;
        esac
    done | sort -u
}

# Set elements, one per line (joined, without duplicates, when the ruleset is written).
NL='
'
V4_ALLOW=""
V6_ALLOW=""
V4_DNS=""
V6_DNS=""

add_allow() { # FAMILY ADDR PORT
    if [ "$1" = 4 ]; then
        V4_ALLOW="$V4_ALLOW$2 . $3$NL"
    else
        V6_ALLOW="$V6_ALLOW$2 . $3$NL"
    fi
}

add_dns() { # ADDR
    if is_ipv4 "$1"; then
        V4_DNS="$V4_DNS$1$NL"
    elif is_ipv6 "$1"; then
        V6_DNS="$V6_DNS$1$NL"
    else
        die "resolver '$1' is not an IP address"
    fi
}

parse_entry() { # ENTRY
    entry=$1
    bracketed=""
    case $entry in
        \[*\]:*)
            host=${entry#\[}
            host=${host%%\]:*}
            port=${entry##*\]:}
            bracketed=1
            is_ipv6 "$host" || die "'$entry': '$host' is not an IPv6 address"
            ;;
        *:*:*) die "'$entry': write IPv6 addresses in brackets, e.g. [fdaa::3]:53" ;;
        *:*)
            host=${entry%:*}
            port=${entry##*:}
            ;;
        *) die "'$entry': expected host:port" ;;
    esac
    is_port "$port" || die "'$entry': '$port' is not a port (1-65535)"
    if [ -n "$bracketed" ]; then
        add_allow 6 "$host" "$port"
    elif is_ipv4 "$host"; then
        add_allow 4 "$host" "$port"
    elif is_name "$host"; then
        found=$(resolve "$host") || die "'$entry': cannot resolve '$host'"
        [ -n "$found" ] || die "'$entry': '$host' has no usable address"
        # Read the answers without a pipe so the allowlist survives (no subshell).
        while read -r family addr; do
            add_allow "$family" "$addr" "$port"
        done <<EOF
$found
EOF
    else
        die "'$entry': '$host' is not a host name or an IP address"
    fi
}

# --- DNS resolvers ---------------------------------------------------------------------------
if [ -n "${PREVIEW_EGRESS_DNS:-}" ]; then
    resolvers=$(echo "$PREVIEW_EGRESS_DNS" | tr ',' ' ')
else
    resolvers=$(sed -n 's/^[[:space:]]*nameserver[[:space:]]\{1,\}\([^[:space:]#]*\).*/\1/p' \
        /etc/resolv.conf 2>/dev/null || true)
fi
for resolver in $resolvers; do
    add_dns "${resolver%%%*}" # drop an IPv6 zone (fe80::1%eth0)
done

# --- allowlist -------------------------------------------------------------------------------
for entry in $(echo "${PREVIEW_EGRESS_ALLOW:-}" | tr ',' ' '); do
    parse_entry "$entry"
done

# --- the ruleset -----------------------------------------------------------------------------
elements() { # NAME TYPE LINES
    printf '    set %s {\n        type %s\n        flags interval\n' "$1" "$2"
    joined=$(printf '%s' "$3" | sort -u | sed '/^$/d' | paste -sd, - | sed 's/,/, /g')
    [ -z "$joined" ] || printf '        elements = { %s }\n' "$joined"
    printf '    }\n'
}

ruleset() {
    # Declaring the table first makes the delete succeed on a first run; together they make
    # a re-run replace the table instead of adding to it.
    printf 'table inet %s\ndelete table inet %s\n' "$TABLE" "$TABLE"
    printf 'table inet %s {\n' "$TABLE"
    elements dns4 ipv4_addr "$V4_DNS"
    elements dns6 ipv6_addr "$V6_DNS"
    elements allow4 "ipv4_addr . inet_service" "$V4_ALLOW"
    elements allow6 "ipv6_addr . inet_service" "$V6_ALLOW"
    cat <<'EOF'
    chain output {
        type filter hook output priority filter; policy drop;
        oif "lo" accept
        ct state established,related accept
        icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept
        ct state invalid drop
        meta l4proto { tcp, udp } th dport 53 ip daddr @dns4 accept
        meta l4proto { tcp, udp } th dport 53 ip6 daddr @dns6 accept
        ip daddr . tcp dport @allow4 accept
        ip6 daddr . tcp dport @allow6 accept
        counter meta l4proto tcp reject with tcp reset
        counter reject with icmpx admin-prohibited
    }
}
EOF
}

if [ "${1:-}" = "--print" ]; then
    ruleset
    exit 0
fi

command -v nft >/dev/null 2>&1 || die "nft not found (install Debian's nftables package)"
ruleset | nft -f - || die "nft refused the ruleset"

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
