#!/bin/sh
# bench/run-presets.sh: `margin-worker bench` for the synthetic presets.
#
#   bench/run-presets.sh [PRESET ...]        (default: every preset below)
#
# Writes one JSON file per preset (the bench's --json output) and a Markdown
# table of all of them into bench/results/<host>-<UTC date>/, and prints the
# table. Figures are medians of REPS repetitions; the machine calibration is
# measured once and cached (see `margin-worker bench --help`).
#
# Environment: MARGIN_WORKER (the binary; default build/worker/margin-worker),
# THREADS (default: online cores), REPS (default 3), OUT (result directory),
# RECALIBRATE=1 (measure the machine again first).
#
# Big presets run a few layers (--layers) and are scaled to the whole model;
# their prompt and batch sizes are smaller so a run stays within minutes on
# a 2-core machine, and they take more repetitions: the difference between
# a 1- and a 2-layer model is small beside a large output head, so noise
# weighs more. Run on a quiet machine: other work lowers every figure (see
# the spread column and the ! flags).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
worker=${MARGIN_WORKER:-$root/build/worker/margin-worker}
threads=${THREADS:-$(nproc)}
reps=${REPS:-3}
out=${OUT:-$root/bench/results/$(hostname -s)-$(date -u +%Y%m%dT%H%M%SZ)}

# preset | arguments
presets='
llama-110m|--batch 1,8,32 --prompt-len 128 --gen-len 64
qwen2-0.5b|--layers 4 --batch 1,8,32 --prompt-len 128 --gen-len 32
llama2-7b|--layers 1 --batch 1,8 --prompt-len 64 --gen-len 64 --reps 5
llama3-8b|--layers 1 --batch 1,8 --prompt-len 64 --gen-len 64 --reps 5
qwen2-7b|--layers 1 --batch 1,8 --prompt-len 64 --gen-len 64 --reps 5
'

if [ ! -x "$worker" ]; then
	echo "run-presets.sh: $worker not found; build first (ninja -C build)" >&2
	exit 1
fi
mkdir -p "$out"
wanted="$*"
recal=
[ "${RECALIBRATE:-0}" = 1 ] && recal=--recalibrate

echo "$presets" | while IFS='|' read -r name args; do
	[ -n "$name" ] || continue
	if [ -n "$wanted" ]; then
		case " $wanted " in *" $name "*) ;; *) continue ;; esac
	fi
	echo "== $name: margin-worker bench --arch $name --threads $threads --reps $reps $args" >&2
	# A preset's own options come last and win (e.g. more --reps).
	# shellcheck disable=SC2086 # $args is a list of options
	"$worker" bench --arch "$name" --threads "$threads" --reps "$reps" $args $recal --json \
		>"$out/$name.json"
	recal=
done

table="$out/bench.md"
{
	echo "| model | layers run | batch | prefill tok/s | prefill % roofline | decode tok/s | spread | GFLOP/s | % roofline | % bandwidth | peak RSS MB |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	for f in "$out"/*.json; do
		[ -e "$f" ] || continue
		if command -v jq >/dev/null 2>&1; then
			jq -r '. as $r | .runs[] | "| \($r.model.name) | \($r.model.layers_run) of \($r.model.n_layers)\(if $r.model.scaled then " (scaled)" else "" end) | \(.batch) | \(.prefill_tok_s|floor) | \(.prefill_roofline_pct|floor)% | \(.decode_tok_s*10|floor/10)\(if .unreliable_reps > 0 then " !" else "" end) | \(.decode_spread_pct|floor)% | \(.gflops*10|floor/10) | \(.roofline_pct|floor)% | \(.bandwidth_pct|floor)% | \(.peak_rss_mb|floor) |"' "$f"
		else
			echo "| $(basename "$f" .json) | (install jq for the table; see the JSON) ||||||||||"
		fi
	done
	if command -v jq >/dev/null 2>&1; then
		f=$(ls "$out"/*.json | head -n 1)
		jq -r '.machine as $m | "\nmachine (\($m.threads) threads, calibrated \($m.measured_at), spread \($m.spread_pct|floor)%): f32 FMA peak \($m.fma_gflops*10|floor/10) GFLOP/s (\($m.fma_kind)), int8 peak \($m.int8_gops*10|floor/10) GOP/s (\($m.int8_kind)), read bandwidth \($m.bandwidth_gbs*10|floor/10) GB/s; OpenBLAS sgemm \($m.sgemm_gflops*10|floor/10) GFLOP/s with its \($m.blas_core) core, for reference"' "$f"
		echo "spread: (max - min) / median of decode tok/s over the repetitions (large: a disturbed machine);"
		echo "!: scaled figures where more layers were not slower in some repetition (unreliable)"
	fi
} >"$table"
cat "$table"
echo "results in $out" >&2
