#!/usr/bin/env bash
# The exact search of a revision against this tree's, side by side: the two take turns, 3 runs each,
# on the same random embeddings (benchmarks/bench_search.py, one file for both), so machine load hits
# both alike. Prints each run's search seconds.
#
#   bash benchmarks/ab_search.sh REV [bf16|fp32] [N] [DIM]      e.g. bash benchmarks/ab_search.sh HEAD~1 fp32 20000 462
set -eu
rev=$1 precision=${2:-bf16} n=${3:-20000} dim=${4:-2080}
repo=$(cd "$(dirname "$0")/.." && pwd)
old=$(mktemp -d) data=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$old"; rm -rf "$data"' EXIT
git -C "$repo" worktree add -q --detach "$old" "$rev"
for rep in 1 2 3; do
    for side in "$rev" this; do
        src=$repo/src; [ "$side" = this ] || src=$old/src
        PYTHONPATH=$src "$repo/.venv/bin/python" "$repo/benchmarks/bench_search.py" --n "$n" --dim "$dim" \
            --precision "$precision" --embeddings-file "$data/emb.h5" --skip-matmul --skip-peak --skip-fp32-check \
            | python3 -c "import json, sys; print('$side', json.load(sys.stdin)['search_s'])"
    done
done
