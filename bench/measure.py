"""Timing and reporting shared by the benches: medians of interleaved runs, one JSON line per figure."""

import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import TextIO

# Where the JSON lines go: python -m bench points this at the real stdout and sends
# everything else written to file descriptor 1 (Lambda logs, library chatter) to stderr.
out: TextIO = sys.stdout


def note(message: str) -> None:
    """Progress and context, on stderr (stdout carries only the figures)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _per_call_ms(fn: Callable[[], object], number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - started) * 1000 / number


def compare(ours: Callable[[], object], baseline: Callable[[], object], *, repeat: int, number: int = 1,
            warmup: int = 3) -> tuple[float, float]:
    """Median milliseconds per call of `ours` and `baseline`.

    Both are warmed up, then timed `repeat` times each (`number` calls per sample),
    alternating which goes first, so a noisy neighbour slows both sides alike. The
    garbage collector is paused while a sample runs, as timeit does.
    """
    for _ in range(warmup):
        ours()
        baseline()
    ours_ms: list[float] = []
    baseline_ms: list[float] = []
    gc.collect()
    enabled = gc.isenabled()
    try:
        for i in range(repeat):
            pairs = [(ours, ours_ms), (baseline, baseline_ms)]
            if i % 2:
                pairs.reverse()
            for fn, samples in pairs:
                gc.disable()
                try:
                    samples.append(_per_call_ms(fn, number))
                finally:
                    if enabled:
                        gc.enable()
    finally:
        if enabled:
            gc.enable()
    return statistics.median(ours_ms), statistics.median(baseline_ms)


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def emit(bench: str, figure: str, ours: float, baseline: float, goal: str) -> dict:
    """Print one figure as one JSON line on the figures stream, and return it."""
    line = {
        "bench": bench,
        "figure": figure,
        "ours": _significant(ours),
        "baseline": _significant(baseline),
        "ratio": _significant(ours / baseline) if baseline > 0 else None,
        "goal": goal,
    }
    print(json.dumps(line), file=out, flush=True)
    return line
