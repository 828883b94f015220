#!/usr/bin/env bash
# End-to-end ingest benchmark: `secintake ingest` of a generated security@ mix into a fresh
# database (WAL, synchronous=FULL, batched commits), with the outbox drained to files after.
#
#   scripts/bench-ingest.sh [--count N] [--runs R] [--work DIR] [--bin PATH] [--keep]
#
# Builds the release binary, generates N messages (default 10000) with scripts/gen-mix.py into
# WORK/mix-N (kept and reused on later runs), then R times (default 3): writes a config (a copy
# of config/demo.toml with the database, outbox and Maildir in a fresh WORK/run-K folder,
# absolute paths) and runs `/usr/bin/time -v target/release/secintake --config CFG ingest DIR`.
# Prints per run and the median: messages, wall seconds, messages/s, peak RSS (MiB), database
# size, and how the wall time splits between the ingest proper and the outbox drain that
# `ingest` runs afterwards (timed from when each phase's output line appears).
#
# --bin runs another build of secintake (e.g. a candidate fix) instead of building this tree.
# The run folders (database, outbox files) are deleted at the end, not before each run, so no
# run pays for the file system reclaiming the last one's 10,000+ files; --keep keeps them.
#
# Targets (from the issue): >= 5,000 messages/s and peak RSS < 64 MiB for 10,000 messages.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

count=10000
runs=3
work="${TMPDIR:-/tmp}/secintake-bench-ingest"
bin=
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --count) count=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --bin) bin=$(realpath "$2"); shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time (/usr/bin/time is missing)" >&2
    apt-get install -y -qq time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
fi

if [ -z "$bin" ]; then
    cargo build --release --locked --bin secintake
    bin=$root/target/release/secintake
fi
echo "binary: $bin"

mkdir -p "$work"
work=$(cd "$work" && pwd)
mix=$work/mix-$count
if [ ! -f "$mix.done" ] || [ scripts/gen-mix.py -nt "$mix.done" ]; then
    rm -rf "$mix" "$mix.done"
    python3 scripts/gen-mix.py --count "$count" --out "$mix"
    touch "$mix.done"
else
    echo "reusing $mix"
fi
mix_bytes=$(du -sb "$mix" | cut -f1)
# Runs left over from an interrupted or --keep invocation are moved aside, and deleted with
# this invocation's at the end: deleting them now would slow the runs below (see above).
stale=$work/stale.$$
if compgen -G "$work/run-*" > /dev/null; then
    mkdir -p "$stale"
    mv "$work"/run-* "$stale"/
fi

results=$work/results.tsv
: > "$results"
for k in $(seq 1 "$runs"); do
    run=$work/run-$k
    mkdir -p "$run"
    # demo.toml with every path made absolute and pointed into the run folder.
    awk -v run="$run" '
        /^\[/ { section = $0 }
        section == "[mailbox]"  && /^path *=/ { print "path = \"" run "/Maildir\""; next }
        section == "[smtp]"     && /^dir *=/  { print "dir = \"" run "/outbox\""; next }
        section == "[database]" && /^path *=/ { print "path = \"" run "/secintake.db\""; next }
        { print }
    ' config/demo.toml > "$run/secintake.toml"
    grep -q "$run/secintake.db" "$run/secintake.toml" || { echo "config rewrite failed" >&2; exit 1; }

    sync
    start=$(date +%s.%N)
    set +e
    /usr/bin/time -v -o "$run/time.txt" "$bin" --config "$run/secintake.toml" ingest "$mix" \
        2> "$run/stderr.log" \
        | python3 -c '
import re, sys, time
out = open(sys.argv[1], "w")
ingested = mailed = None
for line in sys.stdin:
    now = time.time()
    out.write(line)
    if ingested is None and re.match(r"\d+ messages: ", line):
        ingested = now
    if line.startswith("mail: "):
        mailed = now
print(f"{ingested or 0:.3f} {mailed or 0:.3f}")
' "$run/stdout.log" > "$run/phases.txt"
    status=${PIPESTATUS[0]}
    set -e
    read -r t_ingested t_mailed < "$run/phases.txt"

    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$run/time.txt")
    rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$run/time.txt")
    messages=$(grep -E '^[0-9]+ messages: ' "$run/stdout.log" | awk '{ print $1 }')
    summary=$(grep -E '^[0-9]+ messages: ' "$run/stdout.log" || true)
    mail=$(grep -E '^mail: ' "$run/stdout.log" || true)
    db_bytes=$(stat -c %s "$run/secintake.db")
    wal_bytes=$(stat -c %s "$run/secintake.db-wal" 2>/dev/null || echo 0)
    outbox_files=$(find "$run/outbox" -name '*.eml' 2>/dev/null | wc -l)
    outbox_bytes=$(du -sb "$run/outbox" 2>/dev/null | cut -f1 || echo 0)
    ingest_s=$(python3 -c "print(f'{max(0.0, $t_ingested - $start):.2f}')")
    drain_s=$(python3 -c "print(f'{max(0.0, $t_mailed - $t_ingested):.2f}')")
    rate=$(python3 -c "print(f'{${messages:-0} / $wall:.0f}')")
    rss_mib=$(python3 -c "print(f'{$rss_kb / 1024:.1f}')")
    db_mib=$(python3 -c "print(f'{$db_bytes / 1048576:.1f}')")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "${messages:-0}" "$wall" "$rate" "$rss_mib" \
        "$db_mib" "$ingest_s" "$drain_s" "$status" >> "$results"
    echo "run $k: exit $status; $summary"
    echo "run $k: $mail; $outbox_files files, $((outbox_bytes / 1048576)) MiB in the outbox folder"
    echo "run $k: ${messages:-0} messages in ${wall}s = $rate msg/s (ingest ${ingest_s}s + outbox drain ${drain_s}s);" \
        "peak RSS $rss_mib MiB; database $db_mib MiB (+ WAL $((wal_bytes / 1048576)) MiB)"
    if [ "$status" -ne 0 ]; then
        echo "run $k: secintake exited $status; last lines of $run/stderr.log:" >&2
        tail -5 "$run/stderr.log" >&2
    fi
done

echo
echo "mix: $count messages, $((mix_bytes / 1048576)) MiB in $mix"
python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cols = ["run", "messages", "wall_s", "msg_per_s", "peak_rss_mib", "db_mib", "ingest_s", "drain_s", "exit"]
print("\t".join(cols))
for r in rows:
    print("\t".join(r))
med = lambda i: statistics.median(float(r[i]) for r in rows)
print(f"median of {len(rows)}: {med(3):.0f} msg/s, wall {med(2):.2f} s (ingest {med(6):.2f} s + outbox drain "
      f"{med(7):.2f} s), peak RSS {med(4):.1f} MiB, database {med(5):.1f} MiB")
print("targets: >= 5000 msg/s:", "met" if med(3) >= 5000 else "MISSED",
      "| peak RSS < 64 MiB:", "met" if med(4) < 64 else "MISSED")
EOF
if [ "$keep" = 1 ]; then
    echo "kept: $work/run-1 .. run-$runs"
else
    rm -rf "$work"/run-*
fi
rm -rf "$stale"
sync
