#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one call on a GPU machine, results under $OUT:
#   gpu.txt      the card, its driver, and its measured bf16 matmul ceiling
#   evo2.jsonl   benchmarks/bench_evo2.py: Evo 2 7B (random weights) windows/s and MFU by batch size
#   evo2_speed.jsonl  benchmarks/bench_evo2_speed.py: the speed-ups (conv, kernels, graphs, compile, fp8, all)
#                against eager on the demo's windows: windows/s at batch 16/32/64, MFU, cosine and
#                recall@10 against eager; evo2_speed.profile.txt: where the time goes with all on
#   search.jsonl benchmarks/bench_search.py on CUDA: streamed exact search against a plain fp16 matmul
#                at N = 100 k and 200 k (whole), and at 1 M (one eighth of the query grid; an H200-size GPU)
#   evo2_profile.profile.txt  where a batch's GPU time goes, by operator
#   search_ab.jsonl  the search of an earlier tree (.before/src) and of this one, taking turns on the same
#                embeddings: N = 100 k whole, and the 1 M chunk (1/8 of the query grid), each against its
#                plain fp16 products; make the earlier tree with
#                `mkdir .before && git archive REV src | tar -x -C .before` and carry `.before`
# Wheels of packages the machine lacks (evo2, vtx, biopython) may wait in .whl/; evoscan runs from src/.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_session.sh [card] [speed] [evo2] [search] [search100k] [search1m] [searchab]
#                                               [profile]
#   (default: card speed search100k, about 8 minutes)
set -u
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
step() { echo "== $(date +%T) $*"; }
want() { [ $# -eq 0 ] || [[ " $STEPS " == *" $1 "* ]]; }
STEPS="${*:-card speed search100k}"

want card && { step card
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 - <<'EOF' | tee -a "$OUT/gpu.txt"
import time, torch
a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(20): a @ b
torch.cuda.synchronize()
print(f"torch {torch.__version__}, bf16 8192^3 matmul: {20 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12:.0f} TFLOP/s")
EOF
}

want speed && { step "Evo 2 7B: eager against each speed-up and all together, on the demo's windows"
timeout 400 python3 benchmarks/bench_evo2_speed.py --model evo2_7b --no-flash-attn \
    --variants eager,conv,kernels,all,compile,fp8 --budget 280 --profile all --fp32-reference 256 \
    --out "$OUT/evo2_speed.jsonl" 2>>"$OUT/evo2_speed.log" || tail -20 "$OUT/evo2_speed.log"; }

want search100k && { step "search N=100k D=4096 fp16 vs fp16 matmul, one repeat"
timeout 90 python3 benchmarks/bench_search.py --n 100000 --dim 4096 --precision fp16 --memory 40000 --device cuda \
    --repeats 1 --skip-fp32-check --skip-peak --workdir /tmp | tee -a "$OUT/search.jsonl"; }

want evo2 && { step "Evo 2 7B"  # Vortex's Triton rotary first; the torch rotary if that kernel fails here
evo2() { timeout 200 python3 benchmarks/bench_evo2.py --model evo2_7b --no-flash-attn --batch-sizes 1,4,16,32,64 \
             --repeats 3 --out "$OUT/evo2.jsonl" "$@" 2>>"$OUT/evo2.log"; }
evo2 || { step "Evo 2 7B, torch rotary"; tail -5 "$OUT/evo2.log"; evo2 --torch-rotary; } || tail -20 "$OUT/evo2.log"; }

want search && { step "search N=100k D=4096 fp16 vs fp16 matmul"
timeout 180 python3 benchmarks/bench_search.py --n 100000 --dim 4096 --precision fp16 --memory 40000 --device cuda \
    --repeats 3 --workdir /tmp | tee -a "$OUT/search.jsonl"
step "search N=200k D=4096 fp16"
timeout 170 python3 benchmarks/bench_search.py --n 200000 --dim 4096 --precision fp16 --memory 40000 --device cuda \
    --skip-matmul --workdir /tmp | tee -a "$OUT/search.jsonl"; }

want search1m && { step "search N=1M D=4096 fp16, chunk 1/8 of the query grid"
timeout 400 python3 benchmarks/bench_search.py --n 1000000 --dim 4096 --precision fp16 --memory 100000 --device cuda \
    --chunk 1/8 --skip-peak --skip-fp32-check --workdir /tmp | tee -a "$OUT/search.jsonl"; }
want searchab && { step "search before (.before/src) and after (src), N=100k whole and N=1M chunk 1/8, fp16"
if [ -d .before/src/evoscan ]; then
    for shape in "100000 40000 before after" "1000000 100000 after before --chunk 1/8"; do
        set -- $shape  # N, --memory, the order of the two trees (turns alternate), options
        for side in "$3" "$4"; do
            src=$PWD/src; [ "$side" = before ] && src=$PWD/.before/src
            sync  # the embeddings file just written is flushed before either tree reads it
            PYTHONPATH=$src:$PYTHONPATH timeout 300 python3 benchmarks/bench_search.py --n "$1" --dim 4096 \
                --precision fp16 --memory "$2" "${@:5}" --device cuda --skip-peak --skip-fp32-check --workdir /tmp \
                --embeddings-file "/tmp/search_$1.h5" | sed "s/^{/{\"tree\": \"$side\", /" | tee -a "$OUT/search_ab.jsonl"
        done
        rm -f "/tmp/search_$1.h5"
    done
else
    echo "no .before/src: make it with git archive (see the top of this script) and carry .before"
fi; }
want profile && { step "where the time goes: Evo 2 7B batch 32 by operator; the search's passes over the file"
timeout 150 python3 benchmarks/bench_evo2.py --model evo2_7b --no-flash-attn --batch-sizes 32 --repeats 2 --profile 32 \
    --out "$OUT/evo2_profile.jsonl" 2>>"$OUT/evo2.log"
timeout 120 python3 benchmarks/bench_search.py --n 100000 --dim 4096 --precision fp16 --memory 40000 --device cuda \
    --phases --skip-peak --skip-fp32-check --workdir /tmp | tee -a "$OUT/search.jsonl"; }
step done
