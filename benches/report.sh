#!/usr/bin/env bash
# Runs the comparison benches of issues 7 and 13 and writes BENCHMARKS.md (and
# BENCHMARKS-throughput.svg) in the repository root.
#
#   benches/report.sh            # full run: under 30 minutes on 2 cores (after the build)
#   benches/report.sh --quick    # quick run: under 6 minutes (after the build)
#
# The PostgreSQL, MySQL and Redis sections need NEXUS_POOL_PG_URL, NEXUS_POOL_MYSQL_URL and
# NEXUS_POOL_REDIS_URL, e.g.
#   NEXUS_POOL_PG_URL=postgres://postgres@127.0.0.1:5432/test benches/report.sh --quick
# and each is skipped (one line) without its variable. Every figure in BENCHMARKS.md comes from this one run.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

mode=""
for arg in "$@"; do
  case "$arg" in
    --quick) mode="--quick" ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
mode_name=${mode:+quick}
mode_name=${mode_name:-full}

out="$root/target/bench-report"
rm -rf "$out"
mkdir -p "$out"

benches=(peers contended oversubscribed postgres pg_statements diesel mysql redis spike)
bench_args=()
for b in "${benches[@]}"; do bench_args+=(--bench "$b"); done

echo "== building the benches (not counted in the run's time)"
# The benches are a package of their own (benches/peers), so that `cargo test` on the crate never
# builds the peers. Run the executables built here, so that sources changing under the run cannot
# trigger a rebuild.
peers="$root/benches/peers"
cargo bench --manifest-path "$peers/Cargo.toml" --no-run "${bench_args[@]}" 2>&1 | tee "$out/build.log"
declare -A exe
for b in "${benches[@]}"; do
  exe[$b]=$(sed -nE "s#^ *Executable benches/$b\.rs \((.*)\)\$#\1#p" "$out/build.log" | tail -1)
  # Cargo names the executable relative to the directory it ran in (this one) or, in some
  # versions, to the package it built: take whichever exists.
  case "${exe[$b]}" in
    /*|"") ;;
    *) if [ -x "$root/${exe[$b]}" ]; then exe[$b]="$root/${exe[$b]}"; else exe[$b]="$peers/${exe[$b]}"; fi ;;
  esac
  if [ -z "${exe[$b]}" ] || [ ! -x "${exe[$b]}" ]; then
    echo "could not find the executable of bench $b in the build output" >&2
    exit 1
  fi
done

if [ -z "${NEXUS_POOL_PG_URL:-}" ]; then
  echo "note: NEXUS_POOL_PG_URL is not set; the PostgreSQL section will be skipped"
fi
if [ -z "${NEXUS_POOL_MYSQL_URL:-}" ]; then
  echo "note: NEXUS_POOL_MYSQL_URL is not set; the MySQL section will be skipped"
fi
if [ -z "${NEXUS_POOL_REDIS_URL:-}" ]; then
  echo "note: NEXUS_POOL_REDIS_URL is not set; the Redis section will be skipped"
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
for b in "${benches[@]}"; do
  echo "== $b ($mode_name)"
  b_start=$(date +%s)
  "${exe[$b]}" --bench $mode --out "$out" 2>&1 | tee "$out/$b.log"
  echo "$(( $(date +%s) - b_start ))" > "$out/$b.seconds"
done
elapsed=$(( $(date +%s) - start ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ----- the machine and the versions --------------------------------------------------------------
model=$(lscpu 2>/dev/null | awk -F: '/^Model name/ { sub(/^[ \t]+/, "", $2); print $2; exit }')
cores=$(nproc)
mem=$(free -h 2>/dev/null | awk '/^Mem:/ { print $2 }')
kernel=$(uname -r)
rustc_v=$(rustc --version)
when=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo " (with uncommitted changes)" || true)

# Crate versions from Cargo.lock: name = "x" followed by version = "y".
versions=$(awk '
  /^\[\[package\]\]/ { name = "" }
  /^name = / { gsub(/"/, "", $3); name = $3 }
  /^version = / && name != "" { gsub(/"/, "", $3); v[name] = (name in v) ? v[name] ", " $3 : $3 }
  END {
    n = split("nexus-pool deadpool deadpool-postgres bb8 bb8-postgres r2d2 r2d2_postgres mobc tokio tokio-postgres postgres diesel deadpool-diesel crossbeam-queue event-listener async-io deadpool-redis bb8-redis mysql mysql_async redis", want, " ")
    for (i = 1; i <= n; i++) if (want[i] in v) printf "| %s | %s |\n", want[i], v[want[i]]
  }' benches/peers/Cargo.lock)

pg_server=""
if [ -n "${NEXUS_POOL_PG_URL:-}" ]; then
  # Host, port and database only: no user or password in the report.
  pg_where=$(printf '%s' "${NEXUS_POOL_PG_URL%%\?*}" | sed -E 's#^[a-z]+://([^@/]*@)?##')
  pg_server="PostgreSQL at \`$pg_where\` (server version in its section)"
fi

secs() { cat "$out/$1.seconds" 2>/dev/null || echo "?"; }

{
  cat <<EOF
# Benchmarks: nexus-pool against deadpool, bb8, r2d2 and mobc

Written by \`benches/report.sh${mode:+ --quick}\` ($mode_name run) on $when, at commit \`$commit\`$dirty.
Every number below comes from this one run; nothing is copied from elsewhere. Run it again with:

\`\`\`sh
export NEXUS_POOL_PG_URL=postgres://postgres@127.0.0.1:5432/test
export NEXUS_POOL_MYSQL_URL=mysql://root@127.0.0.1:3306/test NEXUS_POOL_REDIS_URL=redis://127.0.0.1:6379/
benches/report.sh          # full, < 30 min on 2 cores
benches/report.sh --quick  # quick, < 6 min
(cd benches/peers && cargo bench --bench peers -- --quick)  # or one part alone: peers, contended, oversubscribed, postgres, pg_statements, diesel, mysql, redis, spike
\`\`\`

The machines these run on have 2 cores whose speed (cross-core latency above all) changes by
several times from minute to minute. So every comparison interleaves the pools' runs round-robin
and quotes **ratios of samples taken close together** (the median of per-round ratios); absolute
figures from different minutes, or from different runs, are not comparable.

## Machine and versions

| | |
|---|---|
| CPU | $model |
| cores (\`nproc\`) | $cores |
| memory | $mem |
| kernel | $kernel |
| rustc | $rustc_v |
| profile | \`cargo bench\` (release, optimized) |
| database | ${pg_server:-not measured (NEXUS_POOL_PG_URL unset)} |
| load average (1, 5, 15 min) | $load_start at the start, $load_end at the end (other work on the machine shows here) |
| run time | ${elapsed} s (uncontended $(secs peers) s, contended $(secs contended) s, oversubscribed $(secs oversubscribed) s, PostgreSQL $(secs postgres) s, pg_statements $(secs pg_statements) s, Diesel $(secs diesel) s, MySQL $(secs mysql) s, Redis $(secs redis) s, spike $(secs spike) s), build excluded |

| crate | version (Cargo.lock) |
|---|---|
$versions

## Targets of issues 7 and 13

| target | measured in this run | |
|---|---|---|
EOF
  for b in "${benches[@]}"; do
    cat "$out/$b.targets.md" 2>/dev/null || true
  done
  echo
  # Hand-written explanations of the misses, with their profiles (not measured by this run).
  cat "$root/benches/MISSES.md"
  echo
  for b in "${benches[@]}"; do
    if [ -f "$out/$b.md" ]; then
      cat "$out/$b.md"
      echo
    fi
  done
  echo "## Raw output"
  echo
  for b in "${benches[@]}"; do
    echo "<details><summary><code>cargo bench --bench $b -- $mode</code></summary>"
    echo
    echo '```text'
    cat "$out/$b.log"
    echo '```'
    echo
    echo "</details>"
    echo
  done
} > "$root/BENCHMARKS.md"

if [ -f "$out/BENCHMARKS-throughput.svg" ]; then
  cp "$out/BENCHMARKS-throughput.svg" "$root/BENCHMARKS-throughput.svg"
fi

echo "== wrote BENCHMARKS.md and BENCHMARKS-throughput.svg ($mode_name run, ${elapsed} s)"
