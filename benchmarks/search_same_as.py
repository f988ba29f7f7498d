"""Does this tree's exact search give what a revision's gave? Both trees search the same random
embeddings (benchmarks/bench_search.py's, genes of 80 windows) in a child process each, over
precisions, decoy counts and memory budgets (held and streamed databases, indices and masks of
excluded pairs, database blocks crossing the statistics pass's reads); every entry and all three
similarity sums are compared bit for bit.

    python benchmarks/search_same_as.py REV      e.g. python benchmarks/search_same_as.py 3642ae1
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CASES = [(3000, 1024, 1, ("fp32", "bf16", "fp16")), (2500, 512, 3, ("fp32", "bf16", "fp16")),
         (9000, 256, 1, ("fp32", "bf16")), (9100, 128, 2, ("fp32", "bf16"))]
# The child's code is a plain string (no str.format braces, which nf-core lint takes for Jinja);
# its inputs come as arguments: the tree's src, the output pickle, the benchmarks folder, the folder
# of embeddings and the cases as JSON.
CHILD = """
import json, pickle, sys, h5py
sys.path[:0] = [sys.argv[1], sys.argv[3]]
from evoscan.search import SearchParams, search
import bench_search as b
out = dict()
for n, dim, decoys, precisions in json.loads(sys.argv[5]):
    path = sys.argv[4] + "/e%d.h5" % n
    ws = b.window_set(n)
    for precision in precisions:
        for memory in (2048, 64):
            with h5py.File(path) as f:
                nb = search(f, ws, SearchParams(top_k=10, precision=precision, memory_mb=memory))
            out[(n, decoys, precision, memory)] = (nb.entries, nb.decoy_scores, nb.window_sums,
                                                   nb.window_decoy_sums, nb.decoy_sums)
pickle.dump(out, open(sys.argv[2], "wb"))
"""


def main() -> None:
    rev = sys.argv[1]
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_search

    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(old), rev], check=True)
        try:
            for n, dim, decoys, _ in CASES:
                bench_search.write_embeddings(Path(tmp) / f"e{n}.h5", n, dim, decoys, seed=n)
            results = []
            for src in (old / "src", REPO / "src"):
                subprocess.run([sys.executable, "-c", CHILD, str(src), f"{tmp}/{len(results)}.pkl",
                                str(REPO / "benchmarks"), tmp, json.dumps(CASES)], check=True)
                results.append(pickle.load(open(f"{tmp}/{len(results)}.pkl", "rb")))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=True)
    differ = 0
    for key, before in results[0].items():
        after = results[1][key]
        same = before[0].equals(after[0]) and all(np.array_equal(x, y) for x, y in zip(before[1:], after[1:]))
        differ += not same
        print(f"N {key[0]}, {key[1]} decoys, {key[2]}, --memory {key[3]}: {'identical' if same else 'DIFFERENT'}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
