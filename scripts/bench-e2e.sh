#!/usr/bin/env bash
# bench-e2e.sh — end-to-end benchmark of secintake on the private Dovecot + Postfix.
#
#   sudo scripts/bench-e2e.sh            (needs root, like scripts/test-servers.sh)
#
# 1. Starts a private server pair in a fresh /tmp dir, builds the release binary, and
#    generates (once; cached in target/bench-mix-N, regenerated when gen-mix.py changes)
#    a realistic mix of N messages with scripts/gen-mix.py.
# 2. Loads the mix straight into the security mailbox's Maildir new/ (bytes untouched,
#    Dovecot-style names, same owner and mode as Dovecot's own files), checks EXISTS over
#    IMAP, times a bare imaplib fetch of everything for comparison, then RUNS times:
#    fresh database + freshly loaded mailbox, `/usr/bin/time -v secintake once`, and checks
#    that every message is \Seen, recorded in SQLite, its mail sent, and delivered by Postfix.
# 3. IDLE latency: empty mailbox, `secintake run` with debug logs, REPORTS reports submitted
#    one at a time over SMTP; times submit -> ack accepted by the MTA (from the daemon log),
#    IDLE wake -> ack accepted, submit -> ack file in the reporter's Maildir.
# 4. Prints a report; results (JSON, logs) are kept in target/bench-e2e/<time>/.
#
# Environment: BENCH_COUNT (10000), BENCH_RUNS (3), BENCH_REPORTS (30), BENCH_SETTLE (35:
#              seconds to wait between runs, see reset_mail),
#              BENCH_KEEP=1 keeps the server dir in /tmp (servers are stopped anyway),
#              BENCH_LOCAL=0 skips the reference `secintake ingest` of the mix as local files,
#              BENCH_BATCH (200: the daemon's default batch_size) sets the IMAP batch size.

set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
COUNT=${BENCH_COUNT:-10000}
RUNS=${BENCH_RUNS:-3}
REPORTS=${BENCH_REPORTS:-30}
CHUNK=500
if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=python3; fi
HELPER=$ROOT/scripts/bench-e2e.py
SERVERS=$ROOT/scripts/test-servers.sh
MAIL_USER=secintake-test
SEC=sec-bench@example.org
REPORTER=reporter-bench@example.com

say() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench-e2e: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (it starts the private servers and writes their Maildirs)"
[[ -x /usr/bin/time ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing"

DIR=$(mktemp -d /tmp/sib-XXXXXX)
((${#DIR} <= 70)) || die "temp dir path too long: $DIR"
RES=$DIR/results
mkdir -p "$RES"
DAEMON_PID=""
SERVERS_UP=0
OUTDIR=$ROOT/target/bench-e2e/$(date +%Y%m%d-%H%M%S)

cleanup() {
    local rc=$?
    set +e
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        sleep 1
        kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    ((SERVERS_UP)) && "$SERVERS" stop "$DIR" >/dev/null 2>&1
    mkdir -p "$OUTDIR"
    cp -a "$RES"/. "$OUTDIR"/ 2>/dev/null
    cp "$DIR"/postfix/log "$OUTDIR"/postfix.log 2>/dev/null
    cp "$DIR"/dovecot/log "$OUTDIR"/dovecot.log 2>/dev/null
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        say "kept $DIR"
    else
        rm -rf "$DIR"
    fi
    say "results and logs in $OUTDIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------- setup --

say "starting Dovecot + Postfix in $DIR"
"$SERVERS" start "$DIR" $$ >/dev/null
SERVERS_UP=1
# shellcheck disable=SC1091 # KEY=value lines, no spaces
source "$DIR/env"
MAILROOT=$DIR/mail
SEC_MAILDIR=$MAILROOT/example.org/sec-bench/Maildir
ACK_DIR=$MAILROOT/example.com/reporter-bench/Maildir/new
QUEUE=$DIR/postfix/queue
CFG=$DIR/bench.toml
DB=$DIR/bench.db

say "building the release binary"
(cd "$ROOT" && cargo build --release --quiet)
# Run a private copy: target/ is shared, and someone else's build may replace the binary mid-run.
cp "$ROOT/target/release/secintake" "$DIR/secintake"
BIN=$DIR/secintake
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD)
DIRTY=$(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock | awk '{print $2}' | tr '\n' ' ')
[[ -z $DIRTY ]] || say "measuring HEAD $COMMIT plus uncommitted changes in: $DIRTY"

MIX=$ROOT/target/bench-mix-$COUNT
STAMP="count=$COUNT deliverable gen-mix=$(sha256sum "$ROOT/scripts/gen-mix.py" | cut -c1-16)"
if [[ -f $MIX/.stamp && $(cat "$MIX/.stamp") == "$STAMP" ]] &&
    [[ $(find "$MIX" -maxdepth 1 -name '*.eml' | wc -l) -eq $COUNT ]]; then
    say "reusing the mix in $MIX"
else
    say "generating $COUNT messages into $MIX"
    rm -rf "$MIX.tmp"
    "$PY" "$ROOT/scripts/gen-mix.py" --count "$COUNT" --out "$MIX.tmp" --quiet --deliverable >&2
    [[ $(find "$MIX.tmp" -maxdepth 1 -name '*.eml' | wc -l) -eq $COUNT ]] ||
        die "gen-mix.py did not write $COUNT messages"
    echo "$STAMP" >"$MIX.tmp/.stamp"
    rm -rf "$MIX"
    mv "$MIX.tmp" "$MIX"
fi
MIX_MB=$(du -sm "$MIX" | cut -f1)
"$PY" "$HELPER" domains "$MIX" >"$RES/domains.json"
"$PY" "$HELPER" config "$ROOT/config/demo.toml" "$CFG" "$IMAP_PORT" "$SMTP_PORT" "$DIR" >/dev/null

queue_files() { find "$QUEUE"/{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l; }

# Empties every mailbox and the database; leaves the security mailbox holding the mix
# ("full") or nothing ("empty"). Dovecot creates the Maildir at the first login; the mix
# is then copied into new/ with the owner and mode of Dovecot's own files.
reset_mail() {
    local what=$1 i exists owner
    for ((i = 0; i < 600; i++)); do # never wipe under an LMTP delivery in flight
        [[ $(queue_files) -eq 0 ]] && break
        sleep 0.1
    done
    # Moved aside, deleted at exit: on ext4 without a journal (this machine's disk), creating
    # files shortly after mass deletions is slow (the inode allocator skips inodes deleted in
    # the last ~30 s, one by one), and the next run's Postfix queue files and Maildir
    # deliveries would pay for this run's cleanup.
    local trash
    trash="$DIR/trash/$(date +%s%N)"
    mkdir -p "$trash"
    if compgen -G "${MAILROOT:?}/*" >/dev/null; then
        mv "$MAILROOT"/* "$trash"/
        # A fresh Postfix queue as well: its directories keep the size they grew to for the
        # last run's 13,000 queue files (ext4 directories never shrink), and Postfix got
        # slower run after run (880 -> 650 mails/s).
        "$SERVERS" stop-smtp "$DIR" >/dev/null
        mv "$QUEUE" "$trash/postfix-queue"
        mkdir -p "$QUEUE"
        "$SERVERS" start-smtp "$DIR" >/dev/null
        # Postfix deleted a queue file for every mail of the last run: let those inodes age
        # past the allocator's window, so that this run starts where the first one did.
        sync
        sleep "${BENCH_SETTLE:-35}"
    fi
    rm -f "$DB" "$DB-wal" "$DB-shm"
    exists=$("$PY" "$HELPER" imap-exists "$IMAP_PORT" "$SEC" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["exists"])')
    [[ $exists == 0 ]] || die "fresh mailbox holds $exists messages"
    [[ -d $SEC_MAILDIR/new ]] || die "Dovecot did not create $SEC_MAILDIR"
    "$PY" "$HELPER" imap-exists "$IMAP_PORT" "$REPORTER" >/dev/null # the ack Maildir exists too
    [[ $what == full ]] || return 0
    owner=$(stat -c %u:%g "$SEC_MAILDIR/new")
    "$PY" "$HELPER" load "$MIX" "$SEC_MAILDIR" "${owner%:*}" "${owner#*:}" >"$RES/load.json"
    chown -R "$MAIL_USER:$MAIL_USER" "$SEC_MAILDIR"
    exists=$("$PY" "$HELPER" imap-exists "$IMAP_PORT" "$SEC" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["exists"])')
    [[ $exists == "$COUNT" ]] || die "INBOX EXISTS is $exists after loading, expected $COUNT"
    say "mailbox loaded: EXISTS $exists ($(cat "$RES/load.json"))"
}

# --------------------------------------------------------------------- bare IMAP fetch --

reset_mail full
say "bare imaplib fetch of all $COUNT messages"
"$PY" "$HELPER" imap-fetch "$IMAP_PORT" "$SEC" "$CHUNK" >"$RES/imap-fetch.json"
say "  $(cat "$RES/imap-fetch.json")"

# ------------------------------------------------- pipeline alone (no servers), for reference --

if [[ ${BENCH_LOCAL:-1} == 1 ]]; then
    say "reference: secintake ingest over the mix as local files (file transport, no servers)"
    mkdir -p "$DIR/local"
    "$PY" "$HELPER" config "$ROOT/config/demo.toml" "$DIR/local/local.toml" 0 0 "$DIR/local" local >/dev/null
    rc=0
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$RES/local-timev.txt" "$BIN" --config "$DIR/local/local.toml" ingest "$MIX" \
        >"$RES/local-ingest.out" 2>"$RES/local-ingest.err" || rc=$?
    t1=$(date +%s.%N)
    "$PY" -c 'import json,sys; print(json.dumps({"seconds": round(float(sys.argv[1]) - float(sys.argv[2]), 3), "exit": int(sys.argv[3]), "summary": open(sys.argv[4]).read().splitlines()[-2:]}))' \
        "$t1" "$t0" "$rc" "$RES/local-ingest.out" >"$RES/local-ingest.json"
    say "  $(cat "$RES/local-ingest.json")"
    rm -rf "$DIR/local/outbox"
fi

# -------------------------------------------------------------------------- full drain --

for ((run = 1; run <= RUNS; run++)); do
    reset_mail full
    say "run $run/$RUNS: secintake once"
    rc=0
    conns0=$(grep -c 'smtpd.*: connect from' "$DIR/postfix/log" || true)
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$RES/run$run-timev.txt" "$BIN" --config "$CFG" once \
        >"$RES/run$run-once.out" 2>"$RES/run$run-once.err" || rc=$?
    t1=$(date +%s.%N)
    wall=$("$PY" -c "print(round($t1 - $t0, 3))")
    say "  exit $rc, wall ${wall}s: $(tail -n 1 "$RES/run$run-once.out")"
    "$PY" "$HELPER" once-parse "$RES/run$run-once.out" "$RES/run$run-timev.txt" "$wall" >"$RES/run$run-once.json"
    "$PY" "$HELPER" imap-unseen "$IMAP_PORT" "$SEC" >"$RES/run$run-imap.json"
    "$PY" "$HELPER" db "$DB" >"$RES/run$run-db.json"
    expected=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["recipient_copies_sent"])' "$RES/run$run-db.json")
    "$PY" "$HELPER" wait-delivered "$MAILROOT" sec-bench "$expected" "$QUEUE" 120 >"$RES/run$run-maildir.json"
    conns1=$(grep -c 'smtpd.*: connect from' "$DIR/postfix/log" || true)
    "$PY" "$HELPER" run-assemble "$RES" "$run" "$COUNT" "$((conns1 - conns0))" >&2
done

# ------------------------------------------------------------------------ IDLE latency --

reset_mail empty
say "IDLE latency: secintake run + $REPORTS reports, one at a time"
RUST_LOG=secintake=debug "$BIN" --config "$CFG" run >"$RES/daemon.log" 2>&1 &
DAEMON_PID=$!
sleep 2
kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon died: $(tail -n 20 "$RES/daemon.log")"
"$PY" "$HELPER" latency "$SMTP_PORT" "$SEC" "$REPORTER" "$ACK_DIR" "$REPORTS" "$RES/submits.json" >&2
sleep 1
kill -TERM "$DAEMON_PID"
for ((i = 0; i < 200; i++)); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$DAEMON_PID" 2>/dev/null; then
    say "  the daemon did not exit within 20 s of SIGTERM; killing it"
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
fi
daemon_exit=0
wait "$DAEMON_PID" || daemon_exit=$?
DAEMON_PID=""
say "  daemon exit status $daemon_exit"
"$PY" "$HELPER" latency-parse "$RES/daemon.log" "$RES/submits.json" >"$RES/latency.json"
"$PY" "$HELPER" imap-unseen "$IMAP_PORT" "$SEC" >"$RES/latency-imap.json"
"$PY" "$HELPER" db "$DB" >"$RES/latency-db.json"
"$PY" "$HELPER" latency-check "$RES" "$REPORTS" "$daemon_exit" >&2

# ------------------------------------------------------------------------------ report --

cat >"$RES/meta.json" <<EOF
{"commit": "$COMMIT", "dirty": "$DIRTY", "binary_sha256": "$(sha256sum "$BIN" | cut -c1-16)", "cpus": $(nproc), "count": $COUNT, "mix_mb": $MIX_MB, "mix_dir": "$MIX",
 "chunk": $CHUNK, "daemon_exit": $daemon_exit}
EOF
echo
"$PY" "$HELPER" summary "$RES" | tee "$RES/report.txt"
