"""Local backend overheads with the stand-in pipeline (tests/standins), one run:

1. Submit -> first sampling step, first job (pays the model load, fixed at --load seconds) vs second job
   (model kept loaded; goal <= 0.2 s).
2. Protocol cost per progress event: a job with 50 steps per stage vs 1 step per stage (the stand-in's
   steps cost nothing), difference divided by the extra events.

    .venv/bin/python bench/local_warm.py [--load 3]
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "unit")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=float, default=3.0)
    args = parser.parse_args()
    import pathlib
    from test_local_worker import LocalWorker
    from test_worker import read_until

    worker = LocalWorker(pathlib.Path(tempfile.mkdtemp()), TRELLIS_STANDIN_LOAD_SECONDS=str(args.load))
    read_until(worker.proc, {"hello"})

    def to_first_step(**settings):
        started = time.perf_counter()
        worker.job(**settings)
        while True:
            msg = read_until(worker.proc, {"progress", "result", "error"})[-1]
            if msg["type"] != "progress" or msg["stage"] == "sparse_structure":
                first = time.perf_counter() - started
                break
        worker.finish()
        return first

    first, second = to_first_step(resolution=512), to_first_step(resolution=512)
    print(f"submit -> first sampling step: first job {first:.3f} s (model load {args.load:g} s), "
          f"second job {second:.3f} s (goal <= 0.2 s)")

    def timed(steps):
        overrides = {f"{s}_override": True for s in ("sparse_structure", "shape_slat", "tex_slat")}
        overrides.update({f"{s}_steps": steps for s in ("sparse_structure", "shape_slat", "tex_slat")})
        started = time.perf_counter()
        worker.job(resolution=1024, **overrides)
        messages = worker.finish()
        return time.perf_counter() - started, sum(m["type"] == "progress" for m in messages)

    timed(1)
    small_t, small_n = min(timed(1) for _ in range(3))
    big_t, big_n = min(timed(50) for _ in range(3))
    per_event = (big_t - small_t) / (big_n - small_n)
    print(f"progress events: {big_n} vs {small_n} per job, {big_t:.3f} s vs {small_t:.3f} s: "
          f"{per_event * 1e6:.0f} µs per event")
    worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
