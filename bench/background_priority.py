"""How much of a core the UI's Blender keeps while the background Blender works, with its priority lowered
as trellis_addon/blend_main.py does it (yield_cpu: nice 10 and, under Linux's autogroup scheduling, its
session's nice value too) and with nice 10 alone.

Stand-ins, no Blender: the foreground is this process spinning for a few seconds; the background is
`--busy N` processes spinning, each started in a session of its own as the worker pool starts every worker
(start_new_session). Prints the foreground's share of one core for each way (1.0: it never waited).

    python bench/background_priority.py [--busy 4] [--seconds 2.5]
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
LOWER = {
    "as started (no change)": "",
    "nice 10 only": "import os; os.nice(10)\n",
    "yield_cpu (nice 10 and the session's)": (
        f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'trellis_addon')!r})\n"
        "import blend_main; blend_main.yield_cpu()\n"),
}


def foreground_share(lower: str, busy: int, seconds: float) -> float:
    code = lower + SPIN.format(seconds=seconds + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", code], start_new_session=True) for _ in range(busy)]
    try:
        time.sleep(0.5)  # they have started and lowered themselves
        wall, cpu = time.monotonic(), time.process_time()
        while time.monotonic() - wall < seconds:
            pass
        return (time.process_time() - cpu) / (time.monotonic() - wall)
    finally:
        for p in procs:
            p.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seconds", type=float, default=2.5)
    args = parser.parse_args()
    autogroup = open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() \
        if os.path.exists("/proc/sys/kernel/sched_autogroup_enabled") else "absent"
    print(f"{os.cpu_count()} cores, {args.busy} busy background processes, autogroup: {autogroup}")
    for name, lower in LOWER.items():
        print(f"  {name}: the foreground got {foreground_share(lower, args.busy, args.seconds):.2f} of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
