"""GUI smoke test, run inside a real Blender window:

    blender --factory-startup --python tests/gui/gui_smoke.py -- ZIP OUTDIR IMAGE

Installs the extension zip, shows the TRELLIS sidebar, generates through the modal operator (as the
Generate button does), cancels a job with a real Esc key press, checks the result and undo, asks
Scenario's test server for a quote and retextures a sphere (both modal), and saves
screenshots (ImageMagick's `import -window root`; Blender's own screenshot is black under Xvfb).
Writes OUTDIR/result.json and quits with exit code 0 on success. Every step runs from a
bpy.app.timers callback, so the window keeps drawing between steps.
"""
import importlib
import json
import os
import subprocess
import sys
import time
import traceback

import bpy

ZIP, OUT, IMAGE = sys.argv[sys.argv.index("--") + 1:][:3]
PKG = "bl_ext.user_default.trellis2"
STEP_TIMEOUT = 120
BENCH = os.environ.get("TRELLIS_GUI_BENCH") == "1"  # bench/gui_main_thread.py: a full-size job, no delay
result = {"ok": False, "steps": [], "errors": [], "screenshots": []}


def test_span(fn):
    """The test's own blocking calls (screenshots, xdotool): their time is not the add-on's stall."""
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            STALLS["test_spans"].append((started, time.perf_counter()))
    return timed


# Main-thread stalls, nothing of the add-on excluded: a 5 ms app timer records the gap between its calls
# (Blender's main thread was busy for the rest). Windows: from the click to the object in the scene.
STALL_TICK = 0.005
STALLS = {"last": None, "gaps": [], "test_spans": [], "windows": {}, "open": None, "floor": False}
# When each 3D View region last drew (draw handlers): each long stall says what Blender drew inside it.
DRAWS = {"viewport": [], "sidebar": [], "other editors": []}


def drew(name):
    DRAWS[name].append(time.perf_counter())


def settled(quiet=1.0, longest=20.0):
    """The editors drew nothing for `quiet` seconds (a change before, such as the set-up's settings or framing
    the view, has finished redrawing: the viewport's anti-aliasing draws several passes), or `longest` seconds
    passed. A measured window starts from a settled window, as a user's click does."""
    now = time.perf_counter()
    since = STALLS.setdefault("settling", now)  # the first call comes right after the step's action
    last = max([since] + [t[-1] for t in DRAWS.values() if t])
    if now - last >= quiet or now - since > longest:
        result.setdefault("settled", []).append(round(now - STALLS.pop("settling"), 2))
        return True
    return False


PLACING = []  # (start, end, what) of each results.import_job call (appending and placing a result) and each
# results.land_tick call that did a step ahead of placing it ("preloading": appended, images read, uploaded;
# objects loaded, normals computed)


def drawn_in(a, b):
    """What the main thread did in the gap (a, b): placing a result (its ms) and which editors drew."""
    placed = [f"{what} {(e - s) * 1000:.1f} ms" for s, e, what in PLACING if a <= s and e <= b]
    panels = sum(t for s, t in PANEL_DRAWS if a <= s <= b)
    placed += [f"our panels' Python {panels * 1000:.1f} ms"] if panels else []
    drawn = [name for name, times in DRAWS.items() if any(a <= t <= b for t in times)]
    return "+".join(placed + drawn) or "no 3D View draw"


def stall_tick():
    now = time.perf_counter()
    if STALLS["last"] is not None:
        queue = sys.modules.get(f"{PKG}.trellis_addon.queue")
        last = queue.manager.jobs[-1] if queue and queue.manager.jobs else None
        state = f"{last.state}: {last.text}" if last else ""  # the job as the gap ended
        STALLS["gaps"].append((STALLS["last"], now, state))
    STALLS["last"] = now
    if STALLS["floor"]:  # the floor: a sidebar redraw alone, every tick
        window, area, region = view3d()
        next(r for r in area.regions if r.type == "UI").tag_redraw()
    return STALL_TICK


def stall_window(name, start):
    """Open (start=True) or close a measured window."""
    if start:
        STALLS["open"] = (name, time.perf_counter())
        return
    opened_name, opened = STALLS["open"]
    closed, spans = time.perf_counter(), STALLS["test_spans"]
    kept = sorted((b - a - STALL_TICK, state, a - opened, drawn_in(a, b)) for a, b, state in STALLS["gaps"]
                  if a >= opened and b <= closed and not any(a < e and b > s for s, e in spans))
    gaps = [g for g, _, _, _ in kept]
    placing = [g for g, state, _, did in kept if not state.startswith("done") or "placing" in did] or [0.0]  # until
    # the object is placed: the gaps before, and the one that appended and placed it
    building = [g for g, state, _, _ in kept if state.startswith("building")] or [0.0]  # the background Blender's part
    STALLS["windows"][opened_name] = {"ticks": len(gaps), "max_ms": round(max(gaps) * 1000, 1),
                                      "p99_ms": round(gaps[int(0.99 * (len(gaps) - 1))] * 1000, 1),
                                      "median_ms": round(gaps[len(gaps) // 2] * 1000, 1),
                                      "longest": [(round(g * 1000, 1), s, round(t, 2), d) for g, s, t, d in kept[-4:]],
                                      "max_until_placed_ms": round(max(placing) * 1000, 1),
                                      "max_while_building_ms": round(max(building) * 1000, 1),
                                      "preloading_ms": [round((e - s) * 1000, 1) for s, e, what in PLACING
                                                        if what == "preloading" and opened <= s and e <= closed],
                                      "seconds": round(closed - opened, 2)}
    STALLS["open"] = None
    result["stalls"] = STALLS["windows"]


def floor(start):
    STALLS["floor"] = start
    stall_window("sidebar redraw alone (floor)", start)


@test_span
def screenshot(name):
    path = os.path.join(OUT, name)
    subprocess.run(["import", "-window", "root", path], check=True, timeout=30)
    result["screenshots"].append(name)


def view3d():
    window = bpy.context.window_manager.windows[0]
    area = max((a for a in window.screen.areas if a.type == "VIEW_3D"), key=lambda a: a.width * a.height)
    region = next(r for r in area.regions if r.type == "WINDOW")
    return window, area, region


def jobs():
    return importlib.import_module(f"{PKG}.trellis_addon.queue")


MODAL_TIMINGS = []  # (main-thread seconds, whether it lands the result) per timer callback of the modal operator,
# the last generate; landing: the job is importing or ended after it (the ticks ahead of placing, and placing)


def time_modal_callbacks():
    """Wrap the add-on's modal callback to time each timer tick (instrumentation stays in the test)."""
    modal_job = importlib.import_module(f"{PKG}.operators.modal_job").ModalJob
    original = modal_job.modal

    def timed(self, context, event):
        started = time.perf_counter()
        try:
            return original(self, context, event)
        finally:
            if event.type == "TIMER":
                job = self._job
                landing = job.state == jobs().IMPORTING or job.is_finished
                MODAL_TIMINGS.append((time.perf_counter() - started, landing))
    modal_job.modal = timed
    for panel in [c for c in bpy.types.Panel.__subclasses__() if c.__module__.startswith(PKG)]:
        panel.draw = timed_draw(panel.draw)
    results = importlib.import_module(f"{PKG}.trellis_addon.results")
    import_job = results.import_job

    def timed_import(*args, **kwargs):  # the result's append and placing on the main thread, profiled
        import cProfile
        import io
        import pstats
        profile = cProfile.Profile() if BENCH else None  # the benchmark keeps where the time went
        started = time.perf_counter()
        try:
            return profile.runcall(import_job, *args, **kwargs) if profile else import_job(*args, **kwargs)
        finally:
            PLACING.append((started, time.perf_counter(), "placing"))
            if profile:
                text = io.StringIO()
                pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(25)
                result.setdefault("placing_profiles", []).append(text.getvalue()[-6000:])
    results.import_job = timed_import
    land_tick = results.land_tick

    def timed_land_tick(job):
        started = time.perf_counter()
        did = land_tick(job)
        if did:
            PLACING.append((started, time.perf_counter(), "preloading"))
        return did
    results.land_tick = timed_land_tick
    landing = importlib.import_module(f"{PKG}.trellis_addon.landing")
    tick = landing.Landing.tick

    def recorded_tick(self):
        kind, name = self.steps[0] if self.steps else ("", "")
        did = tick(self)
        if kind == "append":
            LOADED_AHEAD.extend(bpy.data.objects[n].session_uid for n in self.objects)
        elif kind in ("read", "upload"):
            image = bpy.data.images.get(name)
            WARMED.append((kind, image.session_uid if image else None))
        return did
    landing.Landing.tick = recorded_tick


LOADED_AHEAD = []  # session_uid of each object appended in a tick ahead of placing it (landing.py)
WARMED = []  # (step, the image's session_uid) of each image decoded or uploaded in a tick ahead (landing.py)
PANEL_DRAWS = []  # (start, seconds) of each of the add-on's panel draw callbacks (its Python, in a sidebar redraw)


def timed_draw(draw):
    def timed(self, context):
        started = time.perf_counter()
        try:
            return draw(self, context)
        finally:
            PANEL_DRAWS.append((started, time.perf_counter() - started))
    return timed


def finish(ok):
    result["ok"] = ok
    with open(os.path.join(OUT, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("GUI SMOKE", "OK" if ok else "FAILED", json.dumps(result), flush=True)
    os._exit(0 if ok else 1)


def install():
    bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
    assert PKG in bpy.context.preferences.addons, "extension not enabled after install"
    time_modal_callbacks()
    bpy.context.preferences.addons[PKG].preferences.output_dir = os.path.join(OUT, "jobs")
    window, area, region = view3d()
    area.spaces.active.show_region_ui = True
    settings = bpy.context.scene.trellis2
    settings.image = bpy.data.images.load(IMAGE)
    if not BENCH:  # the benchmark keeps the Standard settings: a real-size job
        settings.resolution, settings.texture_size, settings.decimation_target = "512", "1024", 100000
    for obj in list(bpy.data.objects):  # the factory cube would hide the result
        bpy.data.objects.remove(obj)
    area.tag_redraw()


@test_span
def xdotool(*args):
    subprocess.run(["xdotool", *args], check=False, timeout=20)


def close_splash():
    xdotool("search", "--onlyvisible", "--class", "blender", "windowactivate", "--sync")
    xdotool("mousemove", "800", "500", "key", "Escape")


def on_trellis_tab():
    """Wait condition: click down the sidebar's tab strip, as a user would, until TRELLIS is active."""
    window, area, _ = view3d()
    ui = next(r for r in area.regions if r.type == "UI")
    if ui.active_panel_category == "TRELLIS":
        return True
    tries = state.setdefault("tab_clicks", 0)
    state["tab_clicks"] += 1
    if tries * 12 > ui.height:
        raise AssertionError("no TRELLIS tab in the sidebar")
    x = ui.x + ui.width - 10  # the tabs run down the sidebar's right edge
    y = window.height - (ui.y + ui.height) + 20 + tries * 12
    xdotool("mousemove", str(x), str(y), "click", "1")
    return False


def generate(delay):
    os.environ["TRELLIS_PREVIEW_DELAY"] = str(delay)  # inherited by the worker: progress stays visible
    MODAL_TIMINGS.clear()
    window, area, region = view3d()
    ui = next(r for r in area.regions if r.type == "UI")
    with bpy.context.temp_override(window=window, area=area, region=ui):
        assert bpy.ops.trellis.generate("INVOKE_DEFAULT") == {"RUNNING_MODAL"}


def last_job():
    return jobs().manager.jobs[-1]


def landed():
    """The last job is finished and its operator has ended (its undo step pushed)."""
    window = bpy.context.window_manager.windows[0]
    return last_job().is_finished and not any(op.bl_idname.startswith("TRELLIS_OT")
                                              for op in window.modal_operators)


def packed_images(obj):
    """The result's textures are in the file, as the glTF importer leaves them (no landing mark left)."""
    used = [n.image for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
    assert used and all(i.packed_file is not None and not i.keys() and not i.use_fake_user for i in used), \
        [(i.name, i.packed_file is not None, i.keys()) for i in used]


def press_escape():
    window, area, region = view3d()  # over the viewport, where the modal operator listens
    xdotool("mousemove", str(region.x + region.width // 2), str(window.height - region.y - region.height // 2),
            "key", "Escape")


def frame_result():
    window, area, region = view3d()
    area.spaces.active.shading.color_type = "TEXTURE"  # show the base-colour texture in Solid mode
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.view3d.view_selected()


def undo_removes_result():
    window, area, region = view3d()
    names = list(last_job().objects)
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.ed.undo()
    gone = all(n not in bpy.data.objects for n in names)
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.ed.redo()
    back = all(n in bpy.data.objects for n in names)
    assert gone and back, f"one undo step removes the result (gone={gone}) and redo restores it (back={back})"


def check_result():
    job = last_job()
    assert job.state == "done", f"job {job.state}: {job.error}"
    obj = bpy.data.objects[job.objects[0]]
    assert obj.type == "MESH" and len(obj.data.polygons) > 1000
    assert obj.users_collection[0].name == "TRELLIS"
    nodes = obj.active_material.node_tree.nodes
    assert any(n.type == "TEX_IMAGE" for n in nodes), "PBR textures imported"
    packed_images(obj)
    if not BENCH:  # the modal operator's ticks ahead of placing (landing.py)
        assert any(what == "preloading" for _, _, what in PLACING), "landed in ticks before placing"
        assert obj.session_uid in LOADED_AHEAD, "the viewport is open: the object was appended in a tick before"
    result["faces"] = len(obj.data.polygons)
    timings = sorted(t for t, landing in MODAL_TIMINGS if not landing)  # per modal callback while the job runs
    landing = [round(t * 1000, 1) for t, is_landing in MODAL_TIMINGS if is_landing]
    result["modal"] = {"calls": len(timings), "max_ms": round(timings[-1] * 1000, 3),
                       "p99_ms": round(timings[int(0.99 * (len(timings) - 1))] * 1000, 3), "landing_ms": landing,
                       "job_seconds": round(job.elapsed, 2), "settings": {
                           k: job.settings[k] for k in ("resolution", "texture_size", "decimation_target")}}


def assert_cancelled():
    job = last_job()
    assert job.state == "cancelled", f"Esc should cancel, job is {job.state}"
    deadline = time.monotonic() + 5  # the warm worker stops the job (and stays for the next one)
    while job.id in job.worker.busy and job.worker.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.id not in job.worker.busy or not job.worker.alive, "worker still on the job after Esc"


RUNWARE = {}


def start_runware():
    """Runware backend against the test server (in this Blender), with the cost confirmation on."""
    sys.path.insert(0, os.path.join(os.path.dirname(IMAGE), "tests"))
    from servers.runware_server import RunwareServer
    server = RUNWARE["server"] = RunwareServer(api_key="gui-key").__enter__()
    server.polls_to_finish = 1
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.runware_api_key, prefs.runware_url, prefs.confirm_above = "gui-key", server.url, 0.0
    bpy.context.preferences.system.use_online_access = True
    bpy.context.scene.trellis2.backend = "runware"
    RUNWARE["jobs"] = len(jobs().manager.jobs)
    window, area, region = view3d()
    ui = next(r for r in area.regions if r.type == "UI")
    with bpy.context.temp_override(window=window, area=area, region=ui):
        bpy.ops.trellis.generate("INVOKE_DEFAULT")  # asks first: the estimate is above 0


def confirm_cost():
    assert len(jobs().manager.jobs) == RUNWARE["jobs"], "nothing may start before the user confirms"
    assert RUNWARE["server"].requests == [], "nothing was sent before the confirmation"
    xdotool("key", "Return")


def runware_done():
    return len(jobs().manager.jobs) > RUNWARE["jobs"] and landed()


def check_runware():
    job = last_job()
    assert job.state == "done" and job.backend == "runware", f"{job.state}: {job.error}"
    spent = importlib.import_module(f"{PKG}.trellis_addon.spending").session.total("USD")
    assert job.cost and spent >= job.cost
    RUNWARE["server"].__exit__(None, None, None)


# The benchmark's heavy hosted jobs (TRELLIS_GUI_BENCH_HEAVY="327680x2048,1000000x4096": faces x texture
# side): a 4096² photo file, a result as large as asked served by the Runware test server.
HEAVY_RUNS = [tuple(int(v) for v in s.split("x")) for s in os.environ.get("TRELLIS_GUI_BENCH_HEAVY", "").split(",")
              if BENCH and s]
HEAVY = {}


def heavy_name(faces, px):
    return f"runware job {HEAVY.get('run', 0)}, 4096² photo to {faces}-face {px}² result, click to object"


def heavy_setup(faces, px):
    sys.path.insert(0, os.path.join(os.path.dirname(IMAGE), "tests"))
    from servers import meshes
    from servers.runware_server import RunwareServer
    glb, png = (importlib.import_module(f"{PKG}.backend.{m}") for m in ("glb", "png"))
    photo = os.path.join(OUT, "photo_4096.png")
    if not os.path.exists(photo):
        with open(photo, "wb") as f:
            f.write(png.encode_png(meshes.noisy_picture(4096, 3)))
    path = os.path.join(OUT, f"dense_{faces}_{px}.glb")
    made = meshes.dense_glb(glb, png, path, faces, px)
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    os.sync()  # the set-up's own writes (a 40 MB photo, the GLB) reach the disk before the measured window
    server = HEAVY["server"] = RunwareServer(api_key="gui-key", glb=data).__enter__()
    server.polls_to_finish = 1
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.runware_api_key, prefs.runware_url, prefs.confirm_above = "gui-key", server.url, 1000.0
    bpy.context.preferences.system.use_online_access = True
    bpy.context.scene.trellis2.backend = "runware"
    for name, value in json.loads(os.environ.get("TRELLIS_GUI_BENCH_FINISH") or "{}").items():
        setattr(bpy.context.scene.trellis2, name, value)  # Finish settings of the benchmark's heavy jobs
    HEAVY.update(photo=photo, jobs=len(jobs().manager.jobs), made=made, run=HEAVY.get("run", 0) + 1)
    result.setdefault("heavy", {})[heavy_name(faces, px)] = {
        "photo_bytes": os.path.getsize(photo), "photo_px": 4096, "result": made}


def heavy_generate(faces, px):
    builder = jobs().manager.builder
    HEAVY["warm"] = builder.worker is not None and builder.worker.alive
    stall_window(heavy_name(faces, px), True)
    window, area, region = view3d()
    ui = next(r for r in area.regions if r.type == "UI")
    import cProfile
    import io
    import pstats
    MODAL_TIMINGS.clear()
    profile = cProfile.Profile()
    started = time.perf_counter()
    with bpy.context.temp_override(window=window, area=area, region=ui):
        profile.enable()
        invoked = bpy.ops.trellis.generate("INVOKE_DEFAULT", image=HEAVY["photo"], force_new=True)
        profile.disable()
    took = time.perf_counter() - started
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(12)
    result["heavy"][heavy_name(faces, px)].update(invoke_ms=round(took * 1000, 1),
                                                  worker_was_warm=bool(HEAVY.get("warm")),
                                                  invoke_profile=text.getvalue()[-3000:])
    assert invoked == {"RUNNING_MODAL"}


VIEWPORT_DRAWS = []  # when the 3D View last drew (a draw handler): a window ends only after the object was drawn


def viewport_drawn():
    VIEWPORT_DRAWS[:] = [time.perf_counter()]


def heavy_done():
    """The job is finished and the viewport has drawn twice since (the new object's first draws are in the
    measured window)."""
    if not (len(jobs().manager.jobs) > HEAVY["jobs"] and landed()):
        HEAVY.pop("done_at", None)
        return False
    now = time.perf_counter()
    HEAVY.setdefault("done_at", now)
    HEAVY.setdefault("draws", 0)
    if VIEWPORT_DRAWS and VIEWPORT_DRAWS[0] > HEAVY["done_at"]:
        HEAVY["draws"], HEAVY["done_at"] = HEAVY["draws"] + 1, VIEWPORT_DRAWS[0]
    if HEAVY["draws"] >= 2 or now - HEAVY["done_at"] > 10:
        HEAVY.pop("done_at"), HEAVY.pop("draws")
        return True
    return False


def heavy_check(faces, px):
    stall_window(heavy_name(faces, px), False)
    job = last_job()
    assert job.state == "done", f"{job.state}: {job.error}"
    obj = bpy.data.objects[job.objects[0]]
    assert len(obj.data.polygons) == HEAVY["made"]["faces"]
    packed_images(obj)
    window, area, region = view3d()  # what Blender itself costs with the result in view, measured after
    with bpy.context.temp_override(window=window, area=area, region=region):
        started = time.perf_counter()
        bpy.ops.ed.undo_push(message="bench")  # an undo step as the operator's own (memfile)
        undo = time.perf_counter() - started
        started = time.perf_counter()
        bpy.ops.wm.redraw_timer(type="DRAW_WIN", iterations=3)
        draw = (time.perf_counter() - started) / 3
    finishing = importlib.import_module(f"{PKG}.trellis_addon.finishing")
    result["heavy"][heavy_name(faces, px)].update(
        finish=job.finish, finished="in the background" if job.built.get("snapshots") else "on the main thread",
        qa_line=finishing.qa_line(job.qa[0]) if job.qa else "not finished")
    result["heavy"][heavy_name(faces, px)].update(job_seconds=round(job.elapsed, 2), object=obj.name,
                                                  modal_max_ms=round(max(t for t, _ in MODAL_TIMINGS) * 1000, 1),
                                                  undo_push_ms=round(undo * 1000, 1),
                                                  window_redraw_ms=round(draw * 1000, 1))
    HEAVY["server"].__exit__(None, None, None)
    for name in [n for names in job.parts for n in names]:  # the next run starts from the same scene
        bpy.data.objects.remove(bpy.data.objects[name])


def heavy_steps():
    if HEAVY_RUNS:
        bpy.types.SpaceView3D.draw_handler_add(viewport_drawn, (), "WINDOW", "POST_PIXEL")
    steps = []
    for faces, px in HEAVY_RUNS:
        steps += [(f"heavy set-up {faces}x{px}", lambda f=faces, p=px: heavy_setup(f, p), settled),
                  (f"heavy job {faces}x{px}", lambda f=faces, p=px: heavy_generate(f, p), heavy_done),
                  (f"heavy result {faces}x{px}", lambda f=faces, p=px: heavy_check(f, p), None)]
    return steps


def open_popover(name):
    """A sub-panel as a popover (the Advanced one while Runware is chosen: every knob greyed out, with the
    note; Finish with its defaults)."""
    window, area, region = view3d()
    xdotool("mousemove", str(region.x + region.width // 3), str(window.height - region.y - region.height * 4 // 5))
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.wm.call_panel(name=name, keep_open=True)


EMPTY = {}


def add_image_empty():
    """A reference image standing to the left of the cursor, selected and active, as after Add ▸ Image."""
    os.environ["TRELLIS_PREVIEW_DELAY"] = "0.3"
    bpy.context.scene.trellis2.backend = "preview"
    empty = bpy.data.objects.new("Reference", None)
    empty.empty_display_type, empty.empty_display_size = "IMAGE", 1.5
    empty.data = bpy.data.images.load(IMAGE, check_existing=True)
    empty.location, empty.rotation_euler = (-4.0, 0.0, 0.0), (1.5708, 0.0, 0.0)
    bpy.context.scene.collection.objects.link(empty)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    empty.select_set(True)
    bpy.context.view_layer.objects.active = empty
    EMPTY["name"], EMPTY["jobs"] = empty.name, len(jobs().manager.jobs)
    window, area, region = view3d()
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.view3d.view_selected()


def right_click_empty():
    window, area, region = view3d()  # right-click in the viewport: the Object context menu (left-click select)
    xdotool("mousemove", str(region.x + region.width // 2), str(window.height - region.y - region.height // 2),
            "click", "3")


def choose_last_menu_entry():
    xdotool("key", "Up", "key", "Return")  # from the top, Up wraps to the last entry: ours, appended


def empty_job_done():
    return len(jobs().manager.jobs) > EMPTY["jobs"] and last_job().is_finished


def check_beside_empty():
    from mathutils import Vector
    job = last_job()
    assert job.state == "done" and job.anchor == EMPTY["name"], f"{job.state} {job.anchor!r}: {job.error}"
    obj = bpy.data.objects[job.objects[0]]
    lo_x = min((obj.matrix_world @ Vector(c)).x for c in obj.bound_box)
    assert lo_x > -4.0 + 0.75, f"placed right of the picture (starts at x={lo_x:.2f})"
    if not BENCH:  # the viewport shows Solid's Texture colour: only the base colour was decoded and uploaded ahead
        used = {n.image for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image}
        colour = [i.session_uid for i in used if not i.colorspace_settings.is_data]
        data = [i.session_uid for i in used if i.colorspace_settings.is_data]
        assert colour and data, [(i.name, i.colorspace_settings.name) for i in used]
        assert all((step, uid) in WARMED for uid in colour for step in ("read", "upload")), (colour, WARMED)
        signing = importlib.import_module(f"{PKG}.trellis_addon.signing")
        assert job.built.get("snapshots") and all(signing.still(s, job.built["verified"].get(s))
                                                  for s in job.built["snapshots"]), job.built
        assert not [uid for step, uid in WARMED if uid in data], "Solid draws no data image"
    window, area, region = view3d()
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.view3d.view_all()


def history_scanned():
    """Wait condition: the History panel's scan (file thread) has measured every entry."""
    history = importlib.import_module(f"{PKG}.trellis_addon.history")
    prefs = importlib.import_module(f"{PKG}.trellis_addon.prefs")
    shown = history.history.snapshot(prefs.jobs_root(), jobs().submit_io)
    results = [e for e in shown if e.state != history.OTHER]
    HISTORY["results"] = len(results)
    return len(results) >= 3 and history.history._measured


def open_history():
    """The History panel as a popover at the viewport's centre (wm.call_panel), as it draws in the sidebar."""
    window, area, region = view3d()
    xdotool("mousemove", str(region.x + region.width // 3), str(window.height - region.y - region.height * 4 // 5))
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.wm.call_panel(name="TRELLIS_PT_history", keep_open=True)


def close_history():
    xdotool("key", "Escape")
    assert HISTORY["results"] >= 3, f"History lists {HISTORY['results']} results"


HISTORY = {"results": 0}
SCENARIO = {}


def start_scenario():
    """Scenario against its test server: the sidebar shows Quote Cost (and greys what Scenario ignores)."""
    from servers.meshes import textured_box_glb
    from servers.scenario_server import ScenarioServer
    glb, png = (importlib.import_module(f"{PKG}.backend.{name}") for name in ("glb", "png"))
    server = SCENARIO["server"] = ScenarioServer(key="gui-sc-key", secret="gui-sc-secret",
                                                 glb=textured_box_glb(glb, png)).__enter__()
    server.polls_to_finish = 2
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.scenario_api_key, prefs.scenario_api_secret, prefs.scenario_url = "gui-sc-key", "gui-sc-secret", server.url
    bpy.context.scene.trellis2.backend = "scenario"
    bpy.context.scene.trellis2.number_results = 2


def quote_cost():
    SCENARIO["jobs"] = len(jobs().manager.jobs)
    window, area, region = view3d()
    ui = next(r for r in area.regions if r.type == "UI")
    with bpy.context.temp_override(window=window, area=area, region=ui):
        assert bpy.ops.trellis.quote_cost("INVOKE_DEFAULT") == {"RUNNING_MODAL"}


def quote_done():
    return len(jobs().manager.jobs) > SCENARIO["jobs"] and last_job().is_finished


def check_quote():
    job = last_job()
    assert job.state == "done" and job.is_quote, f"{job.state}: {job.error}"
    assert job.text == "Quote: 24 CU (2 × 12)", job.text
    assert SCENARIO["server"].jobs == {}, "a quote generates nothing"
    bpy.context.scene.trellis2.number_results = 1


def retexture_modal():
    """Retexture a sphere through the modal operator: Blender keeps drawing while the job runs."""
    window, area, region = view3d()
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.mesh.primitive_uv_sphere_add(segments=24, ring_count=12, location=(4.0, 0.0, 1.0))
        bpy.ops.ed.undo_push(message="Add sphere")  # a script's operator call pushes no undo step itself
    sphere = bpy.context.active_object
    SCENARIO["sphere"], SCENARIO["vertices"] = sphere.name, len(sphere.data.vertices)
    SCENARIO["jobs"] = len(jobs().manager.jobs)
    with bpy.context.temp_override(window=window, area=area, region=region):
        assert bpy.ops.trellis.retexture("INVOKE_DEFAULT") == {"RUNNING_MODAL"}, "retexture must not block"
    assert not last_job().is_finished


def check_retexture():
    job = last_job()
    assert job.state == "done" and job.mode == "retexture", f"{job.state}: {job.error}"
    sphere = bpy.data.objects[SCENARIO["sphere"]]
    assert len(sphere.data.vertices) == SCENARIO["vertices"] and sphere.active_material is not None
    assert bpy.context.view_layer.objects.active == sphere and sphere.select_get(), "still selected and active"
    packed_images(sphere)
    window, area, region = view3d()
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.ed.undo()
    undone = bpy.data.objects[SCENARIO["sphere"]].active_material is None
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.ed.redo()
    redone = bpy.data.objects[SCENARIO["sphere"]].active_material is not None
    assert undone and redone, f"one undo step takes the new material off (undone={undone}, redone={redone})"
    SCENARIO["server"].__exit__(None, None, None)

# (name, action, wait condition before the next step)
STEPS = [
    ("close splash", close_splash, None),
    ("install", install, on_trellis_tab),
    ("sidebar screenshot", lambda: screenshot("01_sidebar.png"), settled),
    ("generate (modal)", lambda: (stall_window("preview job, click to object", True), generate(0 if BENCH else 1.0)),
     lambda: last_job().stage in ("shape", "texture")),
    ("progress screenshot", lambda: screenshot("02_progress.png"), landed),
    ("result", lambda: (stall_window("preview job, click to object", False), check_result()), None),
    ("frame", frame_result, None),
    ("result screenshot", lambda: screenshot("03_result.png"), settled),
    ("sidebar redraw floor", lambda: floor(True), lambda: time.monotonic() - state["waiting_since"] > 2.0),
    ("floor measured", lambda: floor(False), None),
    ("undo is one step", undo_removes_result, None),
    ("generate to cancel", lambda: generate(5.0), lambda: last_job().stage == "mask"),
    ("cancel screenshot", lambda: screenshot("04_before_esc.png"), None),
    ("press Esc", press_escape, lambda: last_job().is_finished),
    ("cancelled", lambda: (assert_cancelled(), screenshot("05_cancelled.png")), None),
    ("runware asks to confirm the cost", start_runware, None),
    ("confirm screenshot", lambda: screenshot("06_confirm_cost.png"), settled),
    ("confirm", lambda: (stall_window("runware job, confirm to object", True), confirm_cost()), runware_done),
    ("runware result", lambda: (stall_window("runware job, confirm to object", False), check_runware()), None),
    ("cost screenshot", lambda: screenshot("07_cost.png"), None),
    *heavy_steps(),
    ("open Advanced (Runware)", lambda: open_popover("TRELLIS_PT_advanced"),
     lambda: time.monotonic() - state["waiting_since"] > 1.0),
    ("advanced screenshot", lambda: screenshot("07b_advanced_greyed.png"), None),
    ("close Advanced", lambda: xdotool("key", "Escape"), None),
    ("open Finish", lambda: open_popover("TRELLIS_PT_finish"), lambda: time.monotonic() - state["waiting_since"] > 1.0),
    ("finish screenshot", lambda: screenshot("07c_finish.png"), None),
    ("close Finish", lambda: xdotool("key", "Escape"), None),
    ("image empty", add_image_empty, None),
    ("right-click the image empty", right_click_empty, lambda: time.monotonic() - state["waiting_since"] > 1.5),
    ("context menu screenshot", lambda: screenshot("08_context_menu.png"), None),
    ("choose Generate 3D Mesh (TRELLIS.2)", choose_last_menu_entry, empty_job_done),
    ("result beside the empty", check_beside_empty, None),
    ("beside screenshot", lambda: screenshot("09_beside_empty.png"), None),
    ("history scanned", lambda: None, history_scanned),
    ("open History", open_history, lambda: time.monotonic() - state["waiting_since"] > 1.5),
    ("history screenshot", lambda: screenshot("10_history.png"), None),
    ("close History", close_history, None),
    ("scenario", start_scenario, None),
    ("quote (modal)", quote_cost, quote_done),
    ("quote", check_quote, None),
    ("quote screenshot", lambda: screenshot("11_quote.png"), None),
    ("retexture (modal)", retexture_modal, landed),
    ("retextured", check_retexture, None),
    ("retexture screenshot", lambda: screenshot("12_retexture.png"), None),
]


state = {"index": 0, "waiting_since": None}


def tick():
    try:
        index = state["index"]
        if index >= len(STEPS):
            finish(not result["errors"])
            return None
        name, action, wait = STEPS[index]
        if state["waiting_since"] is None:
            action()
            result["steps"].append(name)
            state["waiting_since"] = time.monotonic()
        if wait is not None and not wait():
            if time.monotonic() - state["waiting_since"] > STEP_TIMEOUT:
                raise TimeoutError(f"step {name!r} waited more than {STEP_TIMEOUT} s")
            return 0.1
        state["index"], state["waiting_since"] = index + 1, None
        return 0.5  # let the window redraw before the next step
    except Exception:
        result["errors"].append(traceback.format_exc())
        try:
            screenshot("99_failure.png")
        except Exception:
            pass
        finish(False)
        return None


os.makedirs(OUT, exist_ok=True)
bpy.app.timers.register(tick, first_interval=2.0, persistent=True)
bpy.app.timers.register(stall_tick, first_interval=1.0, persistent=True)
bpy.types.SpaceView3D.draw_handler_add(drew, ("viewport",), "WINDOW", "POST_PIXEL")
bpy.types.SpaceView3D.draw_handler_add(drew, ("sidebar",), "UI", "POST_PIXEL")
for space in (bpy.types.SpaceOutliner, bpy.types.SpaceProperties, bpy.types.SpaceDopeSheetEditor):
    space.draw_handler_add(drew, ("other editors",), "WINDOW", "POST_PIXEL")
