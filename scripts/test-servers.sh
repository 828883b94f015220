#!/usr/bin/env bash
# test-servers.sh — private, real mail servers on loopback for secintake's
# integration tests and benchmarks.
#
# Runs one Dovecot (IMAP, IMAPS, LMTP) and one Postfix (SMTP with STARTTLS,
# SMTPS) per caller-chosen directory, on free 127.0.0.1 ports, with every
# config, socket, queue, log and mailbox under that directory. Several
# instances can run side by side. Nothing here talks to the outside world:
# Postfix only delivers to Dovecot over LMTP.
#
# Subcommands (all but deliver need root):
#   install                     install Dovecot (apt) and an unpacked Postfix
#                               (apt-get download + dpkg -x, no system MTA)
#   start DIR [OWNER_PID]       start both servers under DIR, write DIR/env;
#                               with OWNER_PID, stop them when that pid exits
#   stop DIR                    stop both servers (idempotent)
#   stop-imap DIR | start-imap DIR   stop/start Dovecot only (same ports/data)
#   stop-smtp DIR | start-smtp DIR   stop/start Postfix only (same ports/data)
#   deliver DIR FILE RCPT [FROM]     submit FILE (or every file in directory
#                               FILE, or stdin for "-") over SMTP to RCPT
#
# DIR/env holds KEY=value lines (no quotes, no spaces), e.g.
#   IMAP_HOST=127.0.0.1  IMAP_PORT=  IMAPS_PORT=  LMTP_PORT=
#   SMTP_HOST=127.0.0.1  SMTP_PORT=  SMTPS_PORT=  AUTH_PORT=
#   CA_FILE=DIR/ca.pem   PASSWORD=secret  DIR=DIR
#
# Behaviour of the servers:
#   * IMAP: any user name, password "secret". Plain port offers STARTTLS,
#     IMAPS is implicit TLS. Mail for user@domain lives in
#     DIR/mail/domain/user/Maildir (owned by the secintake-test user).
#   * SMTP: accepts mail from 127.0.0.0/8 without AUTH (AUTH PLAIN/LOGIN is
#     offered too, any user / "secret", checked by Dovecot, so it fails while
#     IMAP is stopped). Mail for example.org, example.com and example.net is
#     handed to Dovecot LMTP; a recipient in any other domain is refused at
#     RCPT time, permanently ("554 5.7.1 Relay access denied"), or with
#     SECINTAKE_TEST_FOREIGN=defer temporarily ("450 4.4.0 ... outbound
#     delivery is disabled"). Mail accepted while Dovecot is down stays queued
#     and is retried every second or two. Concurrent LMTP deliveries mean
#     messages may land in a mailbox in a different order than submitted.
#   * Certificates: a fresh self-signed CA per start (DIR/ca.pem); the server
#     certificate is for DNS:localhost, IP:127.0.0.1 and IP:::1.
#
# Environment:
#   SECINTAKE_TEST_CACHE   where the unpacked Postfix lives
#                          (default /var/cache/secintake-test/postfix)
#   SECINTAKE_TEST_RUN     port reservation registry (default /run/secintake-test)
#   SECINTAKE_TEST_FOREIGN reject (default) | defer: reply to foreign recipients
#
# Written for Dovecot 2.3 (Debian bookworm: 2.3.19) and Postfix 3.7.

set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
CACHE=${SECINTAKE_TEST_CACHE:-/var/cache/secintake-test/postfix}
RUNREG=${SECINTAKE_TEST_RUN:-/run/secintake-test}
FOREIGN=${SECINTAKE_TEST_FOREIGN:-reject}
PASSWORD=secret
MAIL_USER=secintake-test        # owns the mailboxes
DOMAINS="example.org example.com example.net"
READY_TIMEOUT=20                # seconds to wait for the ports

# Prefer the system python (fast start-up) over a pyenv shim.
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi

# ---------------------------------------------------------------- helpers --

die() { printf 'test-servers: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $EUID -eq 0 ]] || die "must run as root"; }

# Run apt-get install quietly; run "apt-get update" and retry only when the
# failure looks like missing/stale package lists.
apt_install() {
    local log rc=0
    log=$(mktemp)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@" >"$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]] && grep -qE 'Unable to locate package|no installation candidate|Failed to fetch' "$log"; then
        echo "test-servers: apt-get install $* failed, running apt-get update" >&2
        rc=0
        apt-get update -q >"$log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                "$@" >"$log" 2>&1 || rc=$?
    fi
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get install $* failed"
    fi
    rm -f "$log"
}

# apt-get download PKG... into the current directory (same update-on-failure
# rule as apt_install).
apt_download() {
    local log rc=0
    log=$(mktemp)
    apt-get download -q "$@" >"$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]] && grep -qE 'Unable to locate package|no installation candidate|Failed to fetch|Can.t select' "$log"; then
        rc=0
        apt-get update -q >"$log" 2>&1 && apt-get download -q "$@" >"$log" 2>&1 || rc=$?
    fi
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get download $* failed"
    fi
    rm -f "$log"
}

# LD_LIBRARY_PATH for the unpacked Postfix: its private libraries plus any
# libraries we had to unpack next to it.
postfix_ld_path() {
    local p="$CACHE/usr/lib/postfix" d
    for d in "$CACHE"/usr/lib/*-linux-gnu* "$CACHE"/lib/*-linux-gnu*; do
        [[ -d $d ]] && p="$p:$d"
    done
    printf '%s' "$p"
}

# Is the pid alive and not a zombie?
pid_alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Start time (clock ticks since boot) of a pid, to detect pid reuse.
pid_starttime() {
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    read -r -a fields <<<"$stat"
    printf '%s' "${fields[19]}"
}

# Does process group $1 still have a live (non-zombie) member? Zombies are
# ignored: pid 1 in a container may take a while to reap them, and they hold
# no sockets or files.
group_alive() {
    local p
    for p in $(pgrep -g "$1" 2>/dev/null); do
        pid_alive "$p" && return 0
    done
    return 1
}

# Stop the daemon whose pid file is $1 and whose process name is $2. Both
# Dovecot and Postfix masters lead a process group holding all their
# children; SIGTERM goes to the whole group at once (what the masters do
# themselves on shutdown, minus Dovecot's wait for idle auth clients), then
# SIGKILL after 5 s.
stop_daemon() {
    local pidfile=$1 comm=$2 pid i
    [[ -f $pidfile ]] || return 0
    read -r pid <"$pidfile" || true
    if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" &&
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            group_alive "$pid" || break
            sleep 0.05
        done
        if group_alive "$pid"; then
            kill -KILL -- "-$pid" 2>/dev/null || true
            for ((i = 0; i < 40; i++)); do
                group_alive "$pid" || break
                sleep 0.05
            done
        fi
    fi
    rm -f "$pidfile"
}

# Resolve and validate DIR; sets the global DIR.
set_dir() {
    [[ -n ${1:-} ]] || die "missing DIR argument"
    if [[ ${2:-} == create ]]; then
        mkdir -p "$1"
    fi
    [[ -d $1 ]] || die "no such directory: $1"
    DIR=$(cd "$1" && pwd -P)
    [[ $DIR =~ ^[A-Za-z0-9._/+-]+$ ]] ||
        die "DIR must consist of [A-Za-z0-9._/+-] only (it goes into KEY=value lines): $DIR"
}

# Read DIR/env into ENV_* variables.
load_env() {
    local k v
    [[ -f $DIR/env ]] || die "$DIR/env not found; run: $0 start $DIR"
    while IFS='=' read -r k v; do
        [[ $k =~ ^[A-Z_]+$ ]] && printf -v "ENV_$k" '%s' "$v"
    done <"$DIR/env"
}

show_logs() {
    local f
    for f in "$DIR"/dovecot/start.log "$DIR"/dovecot/log "$DIR"/postfix/start.log "$DIR"/postfix/log; do
        [[ -s $f ]] || continue
        printf '==> %s (last 25 lines) <==\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

# Wait until every listed "kind:port" answers: kind is one of
#   imap  (greeting "* OK"), imaps (TLS verified against ca.pem for
#   "localhost", then "* OK"), smtp / lmtp (greeting "220"), smtps (TLS,
#   then "220"),
#   tcp (connect only).
# Returns non-zero (after printing what is not ready) on timeout.
wait_ready() {
    "$PY" - "$DIR/ca.pem" "$READY_TIMEOUT" "$@" <<'PY'
import socket, ssl, sys, time
ca, timeout, checks = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
deadline = time.monotonic() + timeout
ctx = None
def probe(kind, port):
    global ctx
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        if kind == "tcp":
            return True
        if kind in ("imaps", "smtps"):
            if ctx is None:
                ctx = ssl.create_default_context(cafile=ca)
            s = ctx.wrap_socket(s, server_hostname="localhost")
        greeting = s.recv(512)
        want = b"* OK" if kind.startswith("imap") else b"220"
        if not greeting.startswith(want):
            raise OSError("unexpected greeting %r" % greeting)
        s.sendall(b"a LOGOUT\r\n" if kind.startswith("imap") else b"QUIT\r\n")
        return True
    finally:
        s.close()
pending = [(c.split(":")[0], int(c.split(":")[1])) for c in checks]
last = {}
while pending:
    left = []
    for kind, port in pending:
        try:
            probe(kind, port)
        except Exception as e:  # not up yet (or broken): retry until deadline
            last[(kind, port)] = e
            left.append((kind, port))
    pending = left
    if pending:
        if time.monotonic() > deadline:
            for kind, port in pending:
                print("test-servers: %s port %d not ready: %s" % (kind, port, last[(kind, port)]),
                      file=sys.stderr)
            sys.exit(1)
        time.sleep(0.05)
PY
}

# ---------------------------------------------------------------- install --

ensure_users() {
    getent group postdrop >/dev/null || groupadd --system postdrop
    if ! getent passwd postfix >/dev/null; then
        if getent group postfix >/dev/null; then
            useradd --system -g postfix --no-create-home --home-dir /var/spool/postfix \
                --shell /usr/sbin/nologin --comment "Postfix (secintake tests)" postfix
        else
            useradd --system --user-group --no-create-home --home-dir /var/spool/postfix \
                --shell /usr/sbin/nologin --comment "Postfix (secintake tests)" postfix
        fi
    fi
    if ! getent passwd "$MAIL_USER" >/dev/null; then
        if getent group "$MAIL_USER" >/dev/null; then
            useradd --system -g "$MAIL_USER" --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin --comment "secintake test mailboxes" "$MAIL_USER"
        else
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin --comment "secintake test mailboxes" "$MAIL_USER"
        fi
    fi
}

have_dovecot() {
    [[ -x /usr/sbin/dovecot && -x /usr/bin/doveadm && -x /usr/lib/dovecot/imap &&
        -x /usr/lib/dovecot/imap-login && -x /usr/lib/dovecot/lmtp ]] &&
        getent passwd dovecot >/dev/null && getent passwd dovenull >/dev/null
}

# Restore whatever /usr/sbin/policy-rc.d was there before install_dovecot.
POLICY_BACKUP=""
restore_policy() {
    rm -f /usr/sbin/policy-rc.d
    if [[ -n $POLICY_BACKUP && -e $POLICY_BACKUP ]]; then
        mv -f "$POLICY_BACKUP" /usr/sbin/policy-rc.d
        rmdir "$(dirname "$POLICY_BACKUP")" 2>/dev/null || true
    fi
    POLICY_BACKUP=""
}

install_dovecot() {
    have_dovecot && return 0
    echo "test-servers: installing dovecot (apt)" >&2
    # A policy-rc.d that exits 101 stops the packages from starting services.
    if [[ -e /usr/sbin/policy-rc.d ]]; then
        POLICY_BACKUP=$(mktemp -d)/policy-rc.d
        mv -f /usr/sbin/policy-rc.d "$POLICY_BACKUP"
    fi
    trap restore_policy EXIT
    printf '#!/bin/sh\n# temporary, from secintake scripts/test-servers.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    apt_install dovecot-core dovecot-imapd dovecot-lmtpd
    restore_policy
    trap - EXIT
    # Make sure no system-wide Dovecot runs, nor starts at boot.
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
    elif command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper disable dovecot.service dovecot.socket >/dev/null 2>&1 || true
    fi
    update-rc.d dovecot disable >/dev/null 2>&1 || true
    stop_daemon /run/dovecot/master.pid dovecot
    have_dovecot || die "dovecot installed but binaries are missing"
}

have_postfix() {
    [[ -f $CACHE/.secintake-complete && -x $CACHE/usr/lib/postfix/sbin/master &&
        -x $CACHE/usr/sbin/postfix ]]
}

# Print the sonames the unpacked Postfix (in $1) cannot resolve.
postfix_missing_libs() {
    local root=$1 f ld
    ld="$root/usr/lib/postfix"
    for f in "$root"/usr/lib/*-linux-gnu* "$root"/lib/*-linux-gnu*; do
        [[ -d $f ]] && ld="$ld:$f"
    done
    for f in "$root"/usr/lib/postfix/sbin/* "$root"/usr/lib/postfix/*.so "$root"/usr/sbin/*; do
        [[ -f $f && ! -L $f ]] || continue
        [[ $(head -c 4 "$f" | od -An -c | tr -d ' ') == 177ELF ]] || continue
        LD_LIBRARY_PATH=$ld ldd "$f" 2>/dev/null | awk '/not found/ { print $1 }'
    done | sort -u
}

install_postfix() {
    have_postfix && return 0
    echo "test-servers: unpacking postfix into $CACHE" >&2
    local work stage missing deps dep pkg
    work=$(mktemp -d)
    stage="$work/root"
    # _apt must be able to write the download directory (avoids a warning).
    chown _apt "$work" 2>/dev/null || true
    (cd "$work" && apt_download postfix)
    dpkg -x "$work"/postfix_*.deb "$stage"

    # Unpack (not install) any library dependency that is not installed.
    missing=$(postfix_missing_libs "$stage")
    if [[ -n $missing ]]; then
        deps=$(dpkg-deb -f "$work"/postfix_*.deb Depends | tr ',' '\n' |
            sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep '^lib' || true)
        for dep in $deps; do
            pkg=${dep%%:*}
            if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
                (cd "$work" && apt_download "$pkg")
                dpkg -x "$work/${pkg}"_*.deb "$stage"
            fi
        done
        missing=$(postfix_missing_libs "$stage")
        [[ -z $missing ]] || die "postfix needs libraries that are not available: $missing"
    fi

    # Postfix wants these in its meta_directory.
    cp "$stage"/usr/share/postfix/dynamicmaps.cf "$stage"/etc/postfix/dynamicmaps.cf
    cp "$stage"/usr/share/postfix/makedefs.out "$stage"/etc/postfix/makedefs.out
    cp "$stage"/usr/share/postfix/main.cf.dist "$stage"/etc/postfix/main.cf.proto
    cp "$stage"/usr/share/postfix/master.cf.dist "$stage"/etc/postfix/master.cf.proto
    dpkg-deb -f "$work"/postfix_*.deb Version >"$stage/.secintake-complete"

    mkdir -p "$(dirname "$CACHE")"
    rm -rf "$CACHE"
    mv "$stage" "$CACHE"
    chown root:root "$CACHE"
    chmod 755 "$CACHE"
    rm -rf "$work"
    have_postfix || die "postfix unpack failed"
}

have_tools() {
    command -v openssl >/dev/null && command -v pgrep >/dev/null &&
        { [[ -x $PY ]] || command -v "$PY" >/dev/null; }
}

have_users() {
    getent passwd postfix >/dev/null && getent passwd "$MAIL_USER" >/dev/null &&
        getent group postdrop >/dev/null
}

cmd_install() {
    need_root
    # Fast path: everything is there (takes a few milliseconds).
    have_tools && have_users && have_dovecot && have_postfix && return 0
    # Serialize installs (parallel "start"s on a fresh machine). The lock fd
    # is closed again before any server is launched.
    local lock_fd missing=()
    mkdir -p "$RUNREG"
    exec {lock_fd}>"$RUNREG/install.lock"
    flock "$lock_fd"
    command -v openssl >/dev/null || missing+=(openssl)
    command -v pgrep >/dev/null || missing+=(procps)
    [[ -x $PY ]] || command -v "$PY" >/dev/null || missing+=(python3)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
    ensure_users
    install_dovecot
    install_postfix
    exec {lock_fd}>&-
}

# ------------------------------------------------------------------ start --

# Pick N free ports on 127.0.0.1 outside the ephemeral range (so client
# sockets cannot grab them while a server is stopped), and record them in
# $RUNREG so concurrent starts (and restarts) never collide. Prints them.
pick_ports() {
    mkdir -p "$RUNREG/ports"
    "$PY" - "$RUNREG" "$DIR" "$1" <<'PY'
import fcntl, os, random, socket, sys
reg, mydir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ports_dir = os.path.join(reg, "ports")
with open(os.path.join(reg, "lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    # Release the ports this DIR held before; find ports other DIRs hold.
    taken = set()
    for name in os.listdir(ports_dir):
        path = os.path.join(ports_dir, name)
        try:
            owner = open(path).read().strip()
        except OSError:
            continue
        if owner == mydir or not os.path.isdir(owner):
            os.unlink(path)          # ours from before, or its DIR is gone
        else:
            taken.add(int(name))
    eph_lo, eph_hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    candidates = [p for p in range(10000, 65536) if not eph_lo <= p <= eph_hi and p not in taken]
    random.shuffle(candidates)
    chosen = []
    for p in candidates:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        chosen.append(p)
        if len(chosen) == n:
            break
    if len(chosen) < n:
        sys.exit("test-servers: no free ports")
    for p in chosen:
        with open(os.path.join(ports_dir, str(p)), "w") as f:
            f.write(mydir + "\n")
    print(" ".join(map(str, chosen)))
PY
}

release_ports() {
    local f
    [[ -d $RUNREG/ports ]] || return 0
    for f in "$RUNREG"/ports/*; do
        [[ -f $f ]] || continue
        [[ $(cat "$f" 2>/dev/null) == "$DIR" ]] && rm -f "$f"
    done
    return 0
}

# A throwaway CA plus a server certificate for localhost / 127.0.0.1.
make_certs() {
    local t="$DIR/tls"
    rm -rf "$t"
    mkdir -m 700 "$t"
    cat >"$t/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl req -x509 -new -config "$t/openssl.cnf" -extensions v3_ca \
        -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/O=secintake tests/CN=secintake test CA" -days 3650 \
        -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
    openssl req -new -config "$t/openssl.cnf" \
        -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/O=secintake tests/CN=localhost" \
        -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 3650 \
        -extfile "$t/openssl.cnf" -extensions v3_server -out "$t/server.pem" 2>/dev/null
    chmod 600 "$t"/*.key
    cp "$t/ca.pem" "$DIR/ca.pem"
    chmod 644 "$DIR/ca.pem"
}

write_dovecot_conf() {
    local dh=""
    [[ -f /usr/share/dovecot/dh.pem ]] && dh="ssl_dh = </usr/share/dovecot/dh.pem"
    cat >"$DIR/dovecot/dovecot.conf" <<EOF
# Generated by scripts/test-servers.sh — Dovecot 2.3 syntax.
base_dir = $DIR/dovecot/run
state_dir = $DIR/dovecot/state
protocols = imap lmtp
listen = 127.0.0.1
log_path = $DIR/dovecot/log
auth_verbose = no
default_internal_user = dovecot
default_login_user = dovenull

ssl = yes
ssl_cert = <$DIR/tls/server.pem
ssl_key = <$DIR/tls/server.key
$dh

# Any user, password "secret"; plaintext auth allowed (tests use tls=none).
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {
  driver = static
  args = password=$PASSWORD
}
userdb {
  driver = static
  args = uid=$MAIL_USER gid=$MAIL_USER home=$DIR/mail/%d/%n allow_all_users=yes
}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
namespace inbox {
  inbox = yes
  separator = /
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
# SASL for Postfix's SMTP AUTH.
service auth {
  inet_listener {
    address = 127.0.0.1
    port = $AUTH_PORT
  }
}
# No growing delays after failed logins from 127.0.0.1.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
EOF
}

write_postfix_conf() {
    local relay="permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    [[ $FOREIGN == defer ]] || relay="reject_unauth_destination"
    cat >"$DIR/postfix/main.cf" <<EOF
# Generated by scripts/test-servers.sh — Postfix 3.7.
compatibility_level = 3.6
queue_directory = $DIR/postfix/queue
data_directory = $DIR/postfix/data
daemon_directory = $CACHE/usr/lib/postfix/sbin
command_directory = $CACHE/usr/sbin
meta_directory = $CACHE/etc/postfix
shlib_directory = $CACHE/usr/lib/postfix
sendmail_path = $CACHE/usr/sbin/sendmail
newaliases_path = $CACHE/usr/bin/newaliases
mailq_path = $CACHE/usr/bin/mailq
manpage_directory = $CACHE/usr/share/man
sample_directory = $CACHE/etc/postfix
html_directory = no
readme_directory = no
mail_owner = postfix
setgid_group = postdrop
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH=$(postfix_ld_path)
maillog_file = $DIR/postfix/log
maillog_file_prefixes = $DIR/postfix

myhostname = localhost
mydomain = localdomain
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
append_dot_mydomain = no
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtpd_peername_lookup = no

# Every address in these domains goes to Dovecot over LMTP.
virtual_mailbox_domains = $DOMAINS
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
# Nothing ever leaves. Other domains: "reject" mode refuses them as relaying
# (554); "defer" mode permits relaying from mynetworks, but the retry
# transport makes smtpd answer 450 at RCPT time.
smtpd_relay_restrictions = $relay
default_transport = retry:4.4.0 outbound delivery is disabled on this test server
relay_transport = \$default_transport

smtpd_tls_security_level = may
smtpd_tls_chain_files = $DIR/tls/server.key, $DIR/tls/server.pem
smtpd_tls_loglevel = 0
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$AUTH_PORT
smtpd_tls_auth_only = no

# Test throughput and fast retries.
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
smtpd_error_sleep_time = 0
in_flow_delay = 0
smtpd_delay_reject = yes
lmtp_destination_concurrency_limit = 20
default_process_limit = 100
message_size_limit = 52428800
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
transport_retry_time = 1s
EOF
    cat >"$DIR/postfix/master.cf" <<EOF
# Generated by scripts/test-servers.sh — no chroot, loopback listeners only.
# service             type  private unpriv chroot wakeup maxproc command
127.0.0.1:$SMTP_PORT  inet  n       -      n      -      -       smtpd
127.0.0.1:$SMTPS_PORT inet  n       -      n      -      -       smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
pickup     unix  n - n 60   1 pickup
cleanup    unix  n - n -    0 cleanup
qmgr       unix  n - n 300  1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -    - trivial-rewrite
bounce     unix  - - n -    0 bounce
defer      unix  - - n -    0 bounce
trace      unix  - - n -    0 bounce
verify     unix  - - n -    1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -    - proxymap
proxywrite unix  - - n -    1 proxymap
smtp       unix  - - n -    - smtp
relay      unix  - - n -    - smtp
showq      unix  n - n -    - showq
error      unix  - - n -    - error
retry      unix  - - n -    - error
discard    unix  - - n -    - discard
lmtp       unix  - - n -    - lmtp
anvil      unix  - - n -    1 anvil
scache     unix  - - n -    1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
    # Postfix sleeps (up to ~2 s) before reading a config file modified in the
    # current second, in case an editor is still writing it. Backdate them.
    touch -d "@$(($(date +%s) - 10))" "$DIR/postfix/main.cf" "$DIR/postfix/master.cf"
}

dovecot_running() {
    local pid
    [[ -f $DIR/dovecot/run/master.pid ]] || return 1
    read -r pid <"$DIR/dovecot/run/master.pid" || return 1
    pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dovecot ]]
}

postfix_running() {
    local pid
    [[ -f $DIR/postfix/queue/pid/master.pid ]] || return 1
    read -r pid <"$DIR/postfix/queue/pid/master.pid" || return 1
    pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == master ]]
}

# Launch Dovecot (it daemonizes; stdio must not hold the caller's pipes).
launch_dovecot() {
    dovecot_running && return 0
    /usr/sbin/dovecot -c "$DIR/dovecot/dovecot.conf" \
        </dev/null >"$DIR/dovecot/start.log" 2>&1
}

# "postfix start" runs check-fatal (creates the queue directories with the
# right owners, sanity-checks the queue) and then check-warn, which walks the
# whole config directory — here that includes the queue, so it takes ~2 s and
# logs bogus warnings. We run check-fatal ourselves and skip the rest with
# Postfix's own "quick-start" marker.
launch_postfix() {
    postfix_running && return 0
    local pf=("$CACHE/usr/sbin/postfix" -c "$DIR/postfix")
    {
        LD_LIBRARY_PATH=$(postfix_ld_path) "${pf[@]}" check-fatal &&
            touch "$DIR/postfix/queue/quick-start" &&
            LD_LIBRARY_PATH=$(postfix_ld_path) "${pf[@]}" start
    } </dev/null >"$DIR/postfix/start.log" 2>&1
}

imap_checks() { echo "imap:$ENV_IMAP_PORT" "imaps:$ENV_IMAPS_PORT" "lmtp:$ENV_LMTP_PORT" "tcp:$ENV_AUTH_PORT"; }
smtp_checks() { echo "smtp:$ENV_SMTP_PORT" "smtps:$ENV_SMTPS_PORT"; }

cmd_start() {
    need_root
    set_dir "${1:-}" create
    local owner=${2:-} p
    if [[ -n $owner ]]; then
        pid_alive "$owner" || die "OWNER_PID $owner is not running"
    fi
    cmd_install
    if dovecot_running || postfix_running; then
        die "servers already running in $DIR (stop them first)"
    fi
    stop_watchdog # a leftover one from an earlier start of this DIR
    # Unix-socket paths under base_dir must stay below 108 bytes.
    ((${#DIR} <= 70)) || die "DIR path too long for Dovecot's unix sockets (max 70 chars): $DIR"
    # Unprivileged server processes must be able to traverse DIR.
    chmod o+x "$DIR"
    p=$DIR
    while [[ $p != / ]]; do
        p=$(dirname "$p")
        [[ $(stat -c %A "$p") =~ [xt]$ ]] || die "$p is not traversable by others; put DIR under /tmp"
    done

    mkdir -p "$DIR/dovecot/run" "$DIR/dovecot/state" "$DIR/postfix/queue" "$DIR/mail"
    chown "$MAIL_USER:$MAIL_USER" "$DIR/mail"
    chmod 700 "$DIR/mail"

    read -r IMAP_PORT IMAPS_PORT LMTP_PORT SMTP_PORT SMTPS_PORT AUTH_PORT <<<"$(pick_ports 6)"
    [[ -n $AUTH_PORT ]] || die "port selection failed"
    make_certs
    write_dovecot_conf
    write_postfix_conf
    cat >"$DIR/env.tmp" <<EOF
IMAP_HOST=127.0.0.1
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
LMTP_PORT=$LMTP_PORT
SMTP_HOST=127.0.0.1
SMTP_PORT=$SMTP_PORT
SMTPS_PORT=$SMTPS_PORT
AUTH_PORT=$AUTH_PORT
CA_FILE=$DIR/ca.pem
PASSWORD=$PASSWORD
DIR=$DIR
EOF
    mv -f "$DIR/env.tmp" "$DIR/env"
    load_env

    # shellcheck disable=SC2046 # word splitting of the check list is intended
    if ! { launch_dovecot && launch_postfix && wait_ready $(imap_checks) $(smtp_checks); }; then
        show_logs
        stop_daemon "$DIR/postfix/queue/pid/master.pid" master
        stop_daemon "$DIR/dovecot/run/master.pid" dovecot
        die "servers in $DIR did not come up"
    fi

    if [[ -n $owner ]]; then
        # Detached watchdog: own session (setsid execs in place, as a
        # background job is no group leader, so $! is the watchdog's pid),
        # stdio on /dev/null so it holds none of the caller's pipes.
        setsid "$BASH" "$SELF" _watchdog "$DIR" "$owner" "$(pid_starttime "$owner")" \
            </dev/null >/dev/null 2>&1 &
        echo "$!" >"$DIR/watchdog.pid"
    fi
    echo "servers up in $DIR"
}

cmd_start_imap() {
    need_root
    set_dir "${1:-}"
    load_env
    # shellcheck disable=SC2046
    if ! { launch_dovecot && wait_ready $(imap_checks); }; then
        show_logs
        die "dovecot in $DIR did not come up"
    fi
}

cmd_start_smtp() {
    need_root
    set_dir "${1:-}"
    load_env
    # shellcheck disable=SC2046
    if ! { launch_postfix && wait_ready $(smtp_checks); }; then
        show_logs
        die "postfix in $DIR did not come up"
    fi
}

# ------------------------------------------------------------------- stop --

cmd_stop_imap() {
    need_root
    set_dir "${1:-}"
    stop_daemon "$DIR/dovecot/run/master.pid" dovecot
}

cmd_stop_smtp() {
    need_root
    set_dir "${1:-}"
    stop_daemon "$DIR/postfix/queue/pid/master.pid" master
}

# End DIR's watchdog, if any. (A watchdog that calls "stop" itself removes
# its pid file first, so it never kills itself here.)
stop_watchdog() {
    local pid
    [[ -f $DIR/watchdog.pid ]] || return 0
    read -r pid <"$DIR/watchdog.pid" || true
    rm -f "$DIR/watchdog.pid"
    # Matching the script path also catches a watchdog still being spawned.
    if [[ $pid != "$$" ]] && pid_alive "$pid" &&
        grep -qF "$SELF" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
}

cmd_stop() {
    need_root
    set_dir "${1:-}"
    stop_watchdog
    stop_daemon "$DIR/postfix/queue/pid/master.pid" master
    stop_daemon "$DIR/dovecot/run/master.pid" dovecot
    release_ports
}

# Internal: poll every second; when the owner pid is gone, stop DIR. If DIR
# itself disappears, kill the last known server process groups directly.
cmd_watchdog() {
    DIR=$1
    local owner=$2 start=$3 dpid="" ppid="" p i
    for ((i = 0; i < 100; i++)); do # wait for "start" to write watchdog.pid
        [[ -f $DIR/watchdog.pid ]] && break
        sleep 0.1
    done
    while :; do
        if [[ ! -d $DIR ]]; then
            for p in $dpid $ppid; do kill -TERM -- "-$p" 2>/dev/null || true; done
            sleep 2
            for p in $dpid $ppid; do kill -KILL -- "-$p" 2>/dev/null || true; done
            exit 0
        fi
        # Another stop/start took over.
        [[ $(cat "$DIR/watchdog.pid" 2>/dev/null) == "$$" ]] || exit 0
        if ! pid_alive "$owner" || [[ $(pid_starttime "$owner") != "$start" ]]; then
            break
        fi
        # Remember the current server process groups, in case DIR vanishes.
        dpid="" ppid=""
        if [[ -f $DIR/dovecot/run/master.pid ]]; then
            read -r dpid <"$DIR/dovecot/run/master.pid" || true
        fi
        if [[ -f $DIR/postfix/queue/pid/master.pid ]]; then
            read -r ppid <"$DIR/postfix/queue/pid/master.pid" || true
        fi
        sleep 1
    done
    rm -f "$DIR/watchdog.pid"
    exec "$BASH" "$SELF" stop "$DIR"
}

# ---------------------------------------------------------------- deliver --

cmd_deliver() {
    set_dir "${1:-}"
    local file=${2:-} rcpt=${3:-}
    [[ -n $file && -n $rcpt ]] || die "usage: $0 deliver DIR FILE RCPT [FROM]"
    load_env
    # FROM: 4th argument ("<>" or "" = null sender); default: the message's
    # From: address.
    local from_given=0 from=""
    if [[ $# -ge 4 ]]; then from_given=1; from=$4; fi
    # The script is passed with -c so that stdin stays free for FILE "-".
    local code
    read -r -d '' code <<'PY' || true
import email.parser, email.utils, os, re, smtplib, sys
port, path, rcpt, from_given, sender = sys.argv[1:6]
if path == "-":
    blobs = [sys.stdin.buffer.read()]
elif os.path.isdir(path):
    names = sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
    blobs = (open(os.path.join(path, n), "rb").read() for n in names)
else:
    blobs = [open(path, "rb").read()]
try:
    with smtplib.SMTP("127.0.0.1", int(port), timeout=60) as s:
        for data in blobs:
            data = re.sub(rb"\r?\n", b"\r\n", data)
            if from_given == "1":
                frm = "" if sender in ("", "<>") else sender
            else:
                hdr = email.parser.BytesHeaderParser().parsebytes(data)
                frm = email.utils.parseaddr(hdr.get("From", ""))[1] or "sender@example.com"
            s.sendmail(frm, [rcpt], data)
except (OSError, smtplib.SMTPException) as e:
    sys.exit("test-servers: deliver failed: %s" % e)
PY
    "$PY" -c "$code" "$ENV_SMTP_PORT" "$file" "$rcpt" "$from_given" "$from"
}

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$SELF" >&2
    exit 2
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    start-imap) cmd_start_imap "$@" ;;
    stop-imap) cmd_stop_imap "$@" ;;
    start-smtp) cmd_start_smtp "$@" ;;
    stop-smtp) cmd_stop_smtp "$@" ;;
    deliver) cmd_deliver "$@" ;;
    _watchdog) cmd_watchdog "$@" ;;
    *) usage ;;
    esac
}

main "$@"
