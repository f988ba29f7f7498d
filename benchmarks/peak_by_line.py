"""Where an `evoscan` command's memory peaks: runs the command in this process while a thread
samples the resident memory every 50 ms, and keeps, per evoscan code location on the stack (the
innermost three frames), the largest value seen there. Prints the top locations (MiB) on stderr
every 30 s and at the end, also when stopped with Ctrl-C. (docs/scaling.md: the check's motif
control, the ivf index's training.)

    python benchmarks/peak_by_line.py search --windows w.h5 --embeddings e.h5 --index ivf -o n.h5
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time

from evoscan.cli import main

PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


def resident_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE_MIB


def where(frame) -> str:
    """The innermost three evoscan frames of a stack, file:function:line."""
    places = []
    while frame is not None and len(places) < 3:
        code = frame.f_code
        if f"{os.sep}evoscan{os.sep}" in code.co_filename:
            places.append(f"{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(places) or "(outside evoscan)"


def report(peaks: dict, top: int) -> None:
    for place, mib in sorted(peaks.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{mib:8.0f} MiB  {place}", file=sys.stderr)
    print("--", file=sys.stderr, flush=True)


def run(args: list[str]) -> None:
    peaks: dict[str, float] = collections.defaultdict(float)
    main_thread, finished = threading.get_ident(), threading.Event()

    def sample() -> None:
        last = time.monotonic()
        while not finished.wait(0.05):
            frame = sys._current_frames().get(main_thread)
            place = where(frame)
            peaks[place] = max(peaks[place], resident_mib())
            if time.monotonic() - last > 30:
                report(peaks, 6)
                last = time.monotonic()

    threading.Thread(target=sample, daemon=True).start()
    sys.argv = ["evoscan", *args]
    try:
        main()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        finished.set()
        report(peaks, 25)


if __name__ == "__main__":
    run(sys.argv[1:])
