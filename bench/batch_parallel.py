"""Batch figures, one run: `trellis batch` of 20 images on the Runware test server with 1 s simulated
processing per task, --jobs 1 vs --jobs 4 (goal: >= 3.5x), and the Blender process's memory (RSS)
after each finished job (goal: no growth per job).

    .venv/bin/python bench/batch_parallel.py [--images 20] [--latency 1.0] [--runs 1,4]
        [--heavy FACESxPX]

--runs lists the batches to time, each JOBS or JOBS:IMPORT_WORKERS (--import-workers; unset: the CLI's
default); each is compared with the first. --heavy serves a result as large as TRELLIS.2's (a sphere of
about FACES triangles with PX² textures) instead of the test server's small one, e.g.
`--images 8 --heavy 200000x2048 --runs 2:0,2:2` times importing and finishing in this Blender against two
background Blenders.

The batch runs as its own Blender process through scripts/trellis_cli.py (the `blender -c trellis`
handler); the extension is built with Blender's tool and installed into a temporary user folder.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
KEY = "rw-bench-key"


def install_extension(user_dir: str) -> None:
    env = dict(os.environ, BLENDER_USER_RESOURCES=user_dir)
    zip_path = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_extension.py"),
                               "--output-dir", os.path.join(user_dir, "dist")],
                              check=True, capture_output=True, text=True, env=env).stdout.split()[-1]
    code = ("import bpy; bpy.ops.extensions.package_install_files(filepath=%r, repo='user_default', "
            "enable_on_install=True); bpy.ops.wm.save_userpref()" % zip_path)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_batch(images: str, outdir: str, jobs: int, env: dict, workers: int | None = None
              ) -> tuple[float, list[float], str]:
    """(wall seconds, RSS in MiB after each finished job, summary line)"""
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "trellis_cli.py"), "--online-mode", "batch", images,
           "-o", outdir, "--jobs", str(jobs), "--backend", "runware", "--seed", "1", "--force-new",
           *(["--import-workers", str(workers)] if workers is not None else [])]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    after_job, summary = [], ""
    for line in proc.stdout:
        if re.match(r"trellis: \[\d+/\d+\]", line):
            after_job.append(rss_mib(proc.pid))
        if "batch finished" in line:
            summary = line.strip()
    proc.wait()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"batch --jobs {jobs} --import-workers {workers} failed (exit {proc.returncode}): {summary}")
    import json
    with open(os.path.join(outdir, "manifest.jsonl")) as f:
        durations = [json.loads(line)["duration"] for line in f]
    print(f"--jobs {jobs}: job duration mean {sum(durations) / len(durations):.2f} s, max {max(durations):.2f} s")
    return wall, after_job, summary


def label(run: tuple[int, int | None]) -> str:
    jobs, workers = run
    return f"--jobs {jobs}" + (f" --import-workers {workers}" if workers is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--latency", type=float, default=1.0, help="simulated processing seconds per task")
    parser.add_argument("--runs", default="1,4", help="batches to time: JOBS or JOBS:IMPORT_WORKERS, comma-separated")
    parser.add_argument("--heavy", default="", metavar="FACESxPX", help="serve a result this large")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (manifests, job folders)")
    args = parser.parse_args()
    runs = [(int(r.split(":")[0]), int(r.split(":")[1]) if ":" in r else None) for r in args.runs.split(",")]
    from servers.runware_server import RunwareServer

    work = tempfile.mkdtemp(prefix="trellis-bench-batch-")
    try:
        user = os.path.join(work, "user")
        install_extension(user)
        images = os.path.join(work, "in")
        os.makedirs(images)
        from PIL import Image
        source = Image.open(os.path.join(ROOT, "examples", "mushroom.png")).convert("RGBA")
        for i in range(args.images):  # different pictures: identical ones would come from the cache
            variant = source.copy()
            variant.putpixel((i, 0), (i, 255 - i, 7, 255))
            variant.save(os.path.join(images, f"img{i:02d}.png"))
        served = {}
        if args.heavy:
            from servers import meshes

            from backend import glb, png
            faces, px = (int(v) for v in args.heavy.lower().split("x"))
            path = os.path.join(work, "heavy.glb")
            made = meshes.dense_glb(glb, png, path, faces, px)
            served["glb"] = open(path, "rb").read()
            print(f"serving a {made['faces']}-face result with {px}² textures ({len(served['glb']) / 1e6:.1f} MB GLB)")
        results, server_cpu = {}, {}
        with RunwareServer(api_key=KEY, **served) as server:
            server.polls_to_finish, server.task_seconds = 0, args.latency
            env = dict(os.environ, BLENDER_USER_RESOURCES=user, RUNWARE_API_KEY=KEY, TRELLIS_RUNWARE_URL=server.url)
            for n, run in enumerate(runs):
                cpu = time.process_time()
                results[run] = run_batch(images, os.path.join(work, f"out{n}"), run[0], env, run[1])
                server_cpu[run] = time.process_time() - cpu
        for run, (wall, _, summary) in results.items():
            print(f"{label(run)}: {wall:.2f} s wall for {args.images} images ({summary.split(': ', 1)[-1]}); "
                  f"the test server itself used {server_cpu[run]:.2f} s of CPU on this machine")
        inside = {run: float(re.search(r"finished in ([\d.]+) s", results[run][2]).group(1)) for run in runs}
        first = runs[0]
        for run in runs[1:]:
            print(f"speed-up {label(run)} vs {label(first)}: {results[first][0] / results[run][0]:.2f}x for the whole "
                  f"process, {inside[first] / inside[run]:.2f}x for the batch itself ({inside[first]:.1f} s vs "
                  f"{inside[run]:.1f} s, as it prints; without Blender's start and exit)")
        for run, (_, rss, _) in results.items():
            if len(rss) >= 4:
                half = len(rss) // 2
                first_half, last = sum(rss[:half]) / half, sum(rss[half:]) / (len(rss) - half)
                slope = (rss[-1] - rss[1]) / max(1, len(rss) - 2)
                print(f"{label(run)}: Blender RSS after job 1: {rss[0]:.1f} MiB, after job {len(rss)}: "
                      f"{rss[-1]:.1f} MiB; mean first half {first_half:.1f} vs second half {last:.1f} MiB; "
                      f"{slope:+.2f} MiB per job from job 2 on (the batch's own process)")
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
