"""python -m bench [--only NAME ...] [--rows N,N,...]: run the benches, one JSON line per figure on stdout."""

import argparse
import importlib
import os
import sys
import time
import traceback

from bench import measure

BENCHES = ("serving", "capture", "batch", "drift", "local_http", "pipeline", "registry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=BENCHES, metavar="NAME",
                        help=f"run only this bench (repeatable): {', '.join(BENCHES)}")
    parser.add_argument("--rows", metavar="N,N,...",
                        help="the pipeline bench's row counts (default: 10000,100000,1000000)")
    args = parser.parse_args(argv)
    if args.rows:
        from bench.pipeline import ROWS_VARIABLE

        os.environ[ROWS_VARIABLE] = args.rows
    selected = args.only or list(BENCHES)

    # The figures keep the real stdout; whatever else writes to it (the functions log to stdout,
    # libraries print) goes to stderr, so stdout is exactly one JSON line per figure.
    sys.stdout.flush()
    measure.out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    failed = []
    started = time.perf_counter()
    for name in selected:
        began = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").run()
        except Exception:  # noqa: BLE001 - one broken bench must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        measure.note(f"{name}: {time.perf_counter() - began:.1f} s")
    measure.note(f"all: {time.perf_counter() - started:.1f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
