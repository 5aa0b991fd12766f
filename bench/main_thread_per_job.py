"""Main-thread time per job under the bpy module, one run: the start of a job from a 4096² photo file
(request.prepare + queueing: with the background Blender, only the file check and its header; without it, the
image read, downsize, hash, prepared input and thumbnail), and the end of a job with a large result
(results.import_job: link and place what the ticks ahead took from the .blend the background Blender saved, as
the UI's modal operator does with a viewport open: results.land_tick, the snapshot appended into no scene and
checked, its mesh's normals computed, a tick each; and the same snapshot appended and placed in one tick, the
order alternating from round to round) against a bare
import_scene.gltf of the same GLB; a retexture job's start (the object copied into a .blend for the background
Blender against its glTF export here) and end (the transferred UVs copied against the transfer). Goal: each at
most 0.1 x the main-thread path it replaces. With --textured the ticks ahead also read (decode) each image, a
tick each, as where a viewport draws textures (viewports.kinds taken as Material Preview; the bpy module has
no window, so no GPU texture is made: that tick is the window's alone). The snapshot is signed by the
background Blender and verified in a thread before the job is placed (signing.py): none of that is on the
main thread; its time is shown apart.

    .venv/bin/python bench/main_thread_per_job.py [--faces 327680] [--texture 2048] [--rounds 3] [--textured]
"""
import argparse
import importlib
import os
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "bl_ext.user_default.trellis2"
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")]


def wait(manager, job, states, seconds=300.0):
    """Poll the background Blender (never the queue's pump: no job is started) until the job leaves states."""
    end = time.monotonic() + seconds
    while job.state in states and time.monotonic() < end:
        manager.builder.poll()
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=327680)
    parser.add_argument("--texture", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--textured", action="store_true", help="a viewport draws textures: images read ahead")
    args = parser.parse_args()
    from runware_bytes import bench_blender, photo_png
    work, glb_path, faces, queue, prefs = bench_blender("trellis-main-thread-", args.faces, args.texture)
    import bpy
    request = importlib.import_module(f"{PKG}.trellis_addon.request")
    results = importlib.import_module(f"{PKG}.trellis_addon.results")
    manager, builder = queue.manager, queue.manager.builder
    photo = os.path.join(work, "photo.png")
    photo_png(photo)
    bpy.ops.wm.read_homefile(use_empty=True)
    settings = request.resolve_settings(bpy.context.scene.trellis2.to_settings(), {"seed": 1})
    settings.pop("backend", None)

    def start(background: bool) -> float:
        builder.enabled = background
        began = time.perf_counter()
        job = manager.add(request.prepare(request.Request(image=photo, backend="preview", settings=settings,
                                                          force_new=True)))
        took = time.perf_counter() - began
        wait(manager, job, (queue.PREPARING,))
        assert job.state == queue.QUEUED, job.error
        job.cancel()
        return took

    start(True)  # the background Blender started once (a session keeps it warm)
    starts = {True: [], False: []}
    for _ in range(args.rounds):
        for background in (True, False):
            starts[background].append(start(background))

    bare, placed, ahead, single, reads, normals, hashed = [], [], [], [], [], [], []
    importer, signing, landing = (importlib.import_module(f"{PKG}.trellis_addon.{m}")
                                  for m in ("importer", "signing", "landing"))
    prefs_module = importlib.import_module(f"{PKG}.trellis_addon.prefs")
    landing.viewports.any_open = lambda: True  # as in a window: appended and normals made ahead
    if args.textured:
        landing.viewports.kinds = lambda: {"all"}
    kinds, tick = [], landing.Landing.tick

    def recorded_tick(self):  # what each tick did: "append", "read", "normals"
        if self.steps:
            kinds.append(self.steps[0][0])
        return tick(self)
    landing.Landing.tick = recorded_tick

    def place(job, preload: bool) -> None:
        """Append and place the result: with preload, in the ticks ahead that a window's modal operator takes
        (results.land_tick); without, all in one tick."""
        bpy.ops.wm.read_homefile(use_empty=True)
        if preload:
            ticks = []
            kinds.clear()
            while True:
                began = time.perf_counter()
                if not results.land_tick(job):
                    break
                ticks.append(time.perf_counter() - began)
            assert ticks and kinds[0] == "append" and len(kinds) == len(ticks), kinds
            ahead.append(ticks[0])
            for out, kind in ((reads, "read"), (normals, "normals")):
                out.append([t for t, k in zip(ticks, kinds) if k == kind])
        began = time.perf_counter()
        results.import_job(bpy.context, job)
        (placed if preload else single).append(time.perf_counter() - began)
        assert job.state == queue.DONE and len(bpy.data.objects[job.objects[0]].data.polygons) == faces

    for index in range(args.rounds):
        bpy.ops.wm.read_homefile(use_empty=True)
        began = time.perf_counter()
        bpy.ops.import_scene.gltf(filepath=glb_path)
        bare.append(time.perf_counter() - began)
        bpy.ops.wm.read_homefile(use_empty=True)
        folder = os.path.join(work, f"result-{index}")
        os.makedirs(folder)
        result = shutil.copy(glb_path, os.path.join(folder, "result_0.glb"))
        builder.enabled = True
        jobs = [manager.add(queue.Job(name="photo", backend="preview", settings=settings, output_dir=folder,
                                      rgba_path="", result={"files": [result], "seeds": [1], "cost": 0.0},
                                      state=queue.IMPORTING))]
        assert jobs[0].state == queue.BUILDING
        builder.start(jobs[0])
        wait(manager, jobs[0], (queue.BUILDING,))
        assert jobs[0].state == queue.IMPORTING, jobs[0].error
        jobs.append(manager.add(queue.Job(name="photo", backend="preview", settings=settings, output_dir=folder,
                                          rgba_path="", result={"files": [result], "seeds": [1], "cost": 0.0},
                                          state=queue.IMPORTING)))  # the same snapshot, appended the other way
        builder.start(jobs[1])  # its snapshot signed already: only verified, in a thread
        wait(manager, jobs[1], (queue.BUILDING,))
        assert jobs[1].state == queue.IMPORTING, jobs[1].error
        for job, preload in zip(jobs, (index % 2 == 0, index % 2 == 1)):  # which way first alternates
            place(job, preload)
        snapshot_mb = os.path.getsize(importer.snapshot_path(result)) / 2 ** 20
        began = time.perf_counter()
        assert signing.verify(importer.snapshot_path(result), prefs_module.signing_key())[0] is not None
        hashed.append(time.perf_counter() - began)
    builder.stop()

    meshfile = importlib.import_module(f"{PKG}.trellis_addon.meshfile")
    copied, exported = [], []  # a retexture job's start: the object to the background Blender vs its glTF export
    bpy.ops.wm.read_homefile(use_empty=True)
    side = max(4, int(round((args.faces / 2) ** 0.5)))
    bpy.ops.mesh.primitive_uv_sphere_add(segments=side, ring_count=side)
    sphere = bpy.context.active_object
    sphere.modifiers.new("Bevel", "BEVEL")  # evaluated on either path
    for index in range(args.rounds):
        began = time.perf_counter()
        meshfile.write_mesh_blend(bpy.context, sphere, os.path.join(work, f"mesh-{index}.blend"))
        copied.append(time.perf_counter() - began)
        began = time.perf_counter()
        meshfile.export_mesh(bpy.context, sphere, os.path.join(work, f"mesh-{index}.glb"))
        exported.append(time.perf_counter() - began)
    sphere_faces = len(sphere.data.polygons)
    sphere.modifiers.clear()
    # a retexture job's end: the result's UVs transferred onto the sphere (the background Blender's work now)
    # against copying the transferred values and the material (the main thread's)
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=glb_path)
    source = next(o for o in bpy.data.objects if o not in before and o.type == "MESH")
    meshfile.fit(source, sphere)
    transferred, copied_uvs = [], []
    for _ in range(args.rounds):
        done, target = sphere.copy(), sphere.copy()
        done.data, target.data = sphere.data.copy(), sphere.data.copy()
        for obj in (done, target):
            bpy.context.scene.collection.objects.link(obj)
        began = time.perf_counter()
        meshfile.transfer(bpy.context, source, done)
        transferred.append(time.perf_counter() - began)
        began = time.perf_counter()
        assert meshfile.copy_transferred(done, source, target)
        copied_uvs.append(time.perf_counter() - began)

    def ms(values):
        return f"median {statistics.median(values) * 1000:.1f} ms (" + ", ".join(
            f"{v * 1000:.1f}" for v in values) + ")"
    size = os.path.getsize(photo) / 1e6
    print(f"job start from a 4096² photo ({size:.1f} MB PNG), main thread, {args.rounds} rounds:")
    print(f"  image read in the background Blender: {ms(starts[True])}")
    print(f"  image read on the main thread:        {ms(starts[False])}")
    print(f"  ratio: {statistics.median(starts[True]) / statistics.median(starts[False]):.3f} (goal <= 0.1)")
    print(f"result of {faces} faces with {args.texture}² textures, main thread, {args.rounds} rounds:")
    total = [p + a for p, a in zip(placed, ahead)]  # the reads and the normals are not counted: a bare import
    # leaves them to the viewport's first draw as well
    print(f"  the snapshot: {snapshot_mb:.1f} MiB; its signature verified (in a thread, before the job is placed; "
          f"the main thread free meanwhile): {ms(hashed)}")
    print(f"  appended into no scene and checked, a tick ahead:      {ms(ahead)}")
    if args.textured:
        for n in range(len(reads[0])):
            print(f"  then image {n} read (decoded), a tick of its own:       {ms([r[n] for r in reads])} (out of the "
                  "first draw, which does it otherwise; not counted below)")
    print(f"  then its mesh's normals computed, a tick:              {ms([sum(n) for n in normals])} (out of "
          "the first draw, which does it otherwise; not counted below)")
    print(f"  then the result linked and placed:                     {ms(placed)}")
    print(f"  main-thread time per result, appending and placing:    {ms(total)}")
    print(f"  the same snapshot appended and placed in one tick:     {ms(single)}")
    print(f"  bare import_scene.gltf of the same GLB:                {ms(bare)}")
    longest = [max(p, a) for p, a in zip(placed, ahead)]  # the reads and normals apart, as above
    print(f"  ratio: {statistics.median(total) / statistics.median(bare):.3f} (goal <= 0.1); longest tick "
          f"{ms(longest)} against {ms(single)} in one tick")
    print(f"retexture job start for a {sphere_faces}-face sphere with a Bevel modifier, main thread, {args.rounds} "
          "rounds:")
    print(f"  the object copied into a .blend for the background Blender: {ms(copied)}")
    print(f"  its glTF export here:                                     {ms(exported)}")
    print(f"  ratio: {statistics.median(copied) / statistics.median(exported):.3f} (goal <= 0.1)")
    print(f"retexture job end for that sphere from the {faces}-face result, main thread, {args.rounds} rounds:")
    print(f"  the UVs and material the background Blender transferred, copied: {ms(copied_uvs)}")
    print(f"  the UV transfer here:                                            {ms(transferred)}")
    print(f"  ratio: {statistics.median(copied_uvs) / statistics.median(transferred):.3f} (goal <= 0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
