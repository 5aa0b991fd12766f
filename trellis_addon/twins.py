"""A snapshot's images kept apart from its mesh. The background Blender saves each packed image twice in a
snapshot: as a packed copy of its own (a twin, named TWIN...) and, without its bytes, as the image the
materials use, which names its twin in a custom property. Appending the snapshot swaps each image for its
twin (adopt); for a big snapshot the UI's modal operator appends the twins in a tick before the one that
appends the mesh (append_ahead), so that one tick does not read both the pixels' bytes and the mesh. The
ticks after it, where a visible viewport draws textures, decode and upload the images it will draw, one
each: otherwise the viewport's first draw of the result does all of it at once, on the main thread."""
from __future__ import annotations

import io
import os
from typing import NamedTuple

import bpy

from ..backend import glb, image_header
from . import marks

TWIN = "trellis2_packed"  # an image's custom property naming its twin, and the start of a twin's name
PRELOAD_BYTES = 64 << 20  # a snapshot this big has its twins appended in a tick before its mesh (bench/
# main_thread_per_job.py: for a 1M-face result with 4096² textures that splits an 85 ms tick into 27 and
# 56 ms; for a 48 MB snapshot the second reading of the file costs more than the split saves)
MOST = 64  # twins taken from one snapshot at most


class Ahead(NamedTuple):
    owner: str  # the job that appended them (drop)
    here: dict  # {a twin's name in the snapshot: its name here}
    steps: list  # ("read" | "upload", its name here) left to take, a tick each (_warm)
    mark: str = ""  # marks.MARK's value on each
    brought: tuple = ()  # (id_type, name) of each


_AHEAD: dict[str, Ahead] = {}  # snapshot path: its twins appended ahead
EEVEE = ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT")


def drawn(shading_type: str, color_type: str, engine: str) -> str:
    """Which images a viewport with this shading draws: "all" (Material Preview, EEVEE's Rendered: every
    texture of the material), "colour" (Solid with Texture colour: the base colour, a colour image), or ""
    (none: Solid's other colours, Wireframe, Cycles and Workbench, which read their images themselves)."""
    if shading_type == "MATERIAL" or (shading_type == "RENDERED" and engine in EEVEE):
        return "all"
    return "colour" if shading_type == "SOLID" and color_type == "TEXTURE" else ""


def _view3d_areas():
    """(window, area) of every 3D viewport open in a window."""
    for window in getattr(bpy.context.window_manager, "windows", ()):
        if window.screen is not None:  # None: a window being opened or closed
            yield from ((window, area) for area in window.screen.areas if area.type == "VIEW_3D")


def viewports() -> set:
    """drawn() of every 3D viewport open in a window."""
    return {drawn(area.spaces.active.shading.type, area.spaces.active.shading.color_type, window.scene.render.engine)
            for window, area in _view3d_areas()} - {""}


def any_viewport() -> bool:
    """Whether a 3D viewport is open in a window (it draws a new result, whatever its shading); never without
    a window (-b, the bpy module: their window manager keeps the startup file's windows, undrawn)."""
    return not bpy.app.background and next(_view3d_areas(), None) is not None


def warm_steps(images: list, kinds: set) -> list:
    """("read"|"upload", image name) for each image the viewports will draw: its pixels decoded, then (in a
    window) its GPU texture made, a tick each."""
    chosen = [i for i in images if "all" in kinds or ("colour" in kinds and not i.colorspace_settings.is_data)]
    upload = not bpy.app.background  # no GPU there: gpu.texture.from_image crashes the bpy module
    return [(kind, i.name) for i in chosen for kind in ("read", "upload") if kind == "read" or upload]


def pictures(image) -> list:
    """(a name, (width, height) or None) of each picture the image decodes when drawn: its packed files' sizes
    from their headers (the bytes are copied out to be read: about 85 ms per 48 MB), a generated image's size
    for each of its tiles; none for an image that reads a file (the snapshot check refuses it) or has no
    pixels of its own (a viewer)."""
    name = f"image {image.name}"
    if len(image.packed_files):
        return [(name, image_header.size_of(io.BytesIO(p.packed_file.data[:glb.TEXTURE_HEAD])))
                for p in image.packed_files]
    if image.source == "GENERATED":
        return [(name, (image.generated_width, image.generated_height))] * max(1, len(image.tiles))
    return []


def pictures_problem(images) -> str:
    """glb.sizes_problem of the images' pictures (the background Blender's check of what a GLB brought)."""
    return glb.sizes_problem(p for i in images for p in pictures(i))


def _warm(steps: list) -> bool:
    """Take one step (warm_steps') of an append ahead; whether there was one."""
    if not steps:
        return False
    kind, name = steps.pop(0)
    image = bpy.data.images.get(name)
    if image is None or image.library is not None or image.packed_file is None or image.source != "FILE":
        return True  # a twin that reads a file (a crafted snapshot: the append refuses it) is not opened here
    try:
        if kind == "read":
            image.size[0]  # Blender reads (decodes) the pixels to know their size: what a first draw does
        else:
            import gpu  # only in a window: the viewport's own texture of the image, made now
            gpu.texture.from_image(image)
    except Exception as exc:  # noqa: BLE001 - a head start only: the first draw does what this could not
        print(f"TRELLIS: {kind} {image.name} ahead: {exc}")
    return True


def make(made: list) -> None:
    """A twin for every image packed from one file (before a snapshot is written); (image, twin, the image's
    bytes) added to made, for restore."""
    for index, image in enumerate([i for i in bpy.data.images if i.library is None and i.source == "FILE"
                                   and len(i.packed_files) == 1]):
        data = image.packed_file.data
        twin = image.copy()  # the bytes and every setting (colour space, alpha)
        twin.name = f"{TWIN}_{index}"
        image[TWIN] = twin.name
        made.append((image, twin, data))
        image.unpack(method="REMOVE")


def restore(made: list) -> None:
    """The images as they were before make (after the snapshot is written)."""
    for image, twin, data in made:
        image.pack(data=data, data_len=len(data))
        del image[TWIN]
        bpy.data.images.remove(twin)


def append_ahead(snapshot: str, owner: str = "") -> bool:
    """Append the snapshot's twins once (for owner: a job's id), with a fake user until adopt takes them, and
    then, a call each, decode and upload those the open viewports draw; whether this call did anything. The
    caller verified the snapshot; what is appended is checked with the rest of the snapshot."""
    if snapshot in _AHEAD:
        return _warm(_AHEAD[snapshot].steps)
    _AHEAD[snapshot] = Ahead(owner, {}, [])
    try:
        with bpy.data.libraries.load(snapshot, link=False) as (src, dst):
            names = [n for n in src.images if n.startswith(TWIN)][:MOST]
            dst.images = list(names)
    except (OSError, RuntimeError) as exc:  # the append says why when it tries the snapshot itself
        print(f"TRELLIS: {os.path.basename(snapshot)}: {exc}")
        return False
    # the Library this leaves is removed with the append's own (a removal redraws every editor, the viewport too)
    here = {name: image for name, image in zip(names, dst.images) if image is not None}
    for image in here.values():
        image.use_fake_user = True  # kept by an undo step or a save until the append takes it
    mark, brought = marks.put(here.values(), snapshot)
    steps = warm_steps(list(here.values()), viewports())
    _AHEAD[snapshot] = Ahead(owner, {name: image.name for name, image in here.items()}, steps, mark, brought)
    return bool(here)


def taken_ahead(snapshot: str) -> dict:
    """{a twin's name in the snapshot: the image} that append_ahead brought, handed over once."""
    entry = _AHEAD.pop(snapshot, Ahead("", {}, []))
    images = {name: bpy.data.images.get(other) for name, other in entry.here.items()}
    return {name: image for name, image in images.items() if image is not None}


def wanted(names, ahead: dict) -> list:
    """The twins of a snapshot's image names (src.images) that were not appended ahead."""
    return [n for n in names if n.startswith(TWIN) and n not in ahead][:MOST]


def drop(owner: str = "") -> None:
    """Remove the twins append_ahead brought for owner that no append took (its job failed or was cancelled
    between), those still carrying its mark and used by nothing else."""
    for snapshot, entry in list(_AHEAD.items()):
        if entry.owner == owner:
            del _AHEAD[snapshot]
            marks.remove(entry.mark, entry.brought)
            forget_library(snapshot)


def libraries_of(path: str) -> list:
    """The Library datablocks an append from this file leaves."""
    same = os.path.normpath(os.path.abspath(path))
    return [lib for lib in bpy.data.libraries if os.path.normpath(bpy.path.abspath(lib.filepath)) == same]


def forget_library(path: str) -> None:
    for lib in libraries_of(path):
        bpy.data.libraries.remove(lib)  # appended data is local: no reference to the file stays


def replaced(new: set, twins: dict) -> list:
    """(image, twin) for each image in new that adopt replaces by its twin (twins: by its name in the
    snapshot): the image names a twin that is packed, and holds no bytes itself."""
    pairs = []
    for image in [i for i in new if isinstance(i, bpy.types.Image) and isinstance(i.get(TWIN), str)]:
        twin = twins.get(image[TWIN])
        if twin is not None and twin.packed_file is not None and image.packed_file is None:
            pairs.append((image, twin))
    return pairs


def adopted(new: set, twins: dict) -> set:
    """new as adopt leaves it (what the snapshot check looks at before adopt has run)."""
    pairs = replaced(new, twins)
    taken = {t for _, t in pairs}
    return new - {i for i, _ in pairs} - {t for t in twins.values() if t not in taken}


def adopt(new: set, twins: dict) -> None:
    """Each image that names a twin replaced by it (replaced), the twin taking its name; twins no image took
    are removed. Both leave new. An image whose twin is missing stays as it is (the snapshot check refuses
    it: it reads a file). Each remap and removal redraws every editor, the viewport too."""
    taken = set()
    for image, twin in replaced(new, twins):
        name = image.name
        image.user_remap(twin)
        new.discard(image)
        bpy.data.images.remove(image)
        twin.name, twin.use_fake_user = name, False
        marks.clear([twin])
        taken.add(twin)
    unused = [t for t in twins.values() if t not in taken]
    new.difference_update(unused)
    bpy.data.batch_remove(unused)
