"""What Blender's glTF importer would allocate for a GLB's document, and the extensions it uses, checked
(validate_glb in glb.py calls these after glb_document.check_references): every accessor's elements lie inside
its bufferView (so inside the file), an accessor without one (zeros: no bytes in the file pay for them) is
small, sparse data lies inside its views, and the meshes' vertices and indices together stay under a bound
derived from the Face Budget's range (backend/schema.py). Extensions outside EXTENSIONS are refused."""
from __future__ import annotations

from . import schema
from .glb_document import _index, _items, _objects, _shown, _whole

# What the importer allocates for the meshes, from the Face Budget's range (schema.py): a result has about as
# many faces as its Face Budget, at most FACE_BUDGET_MAX. Twice that is accepted (TRELLIS.2 fills holes after
# simplifying; a retextured result keeps the geometry it was sent, so retexturing a mesh of more than MAX_FACES
# faces ends as a bad result); three indices a face, and at most three vertices a face (every vertex split:
# TRELLIS.2's UV seams, a GLB of unshared triangles). Counted per use: the primitives that name the same
# accessor are each imported, so each counts (a small accessor named by a thousand primitives is a thousand
# copies), and a primitive's vertices once more for each of its morph targets.
FACE_BUDGET_MAX = int(schema.BY_NAME["decimation_target"].max)
MAX_FACES = 2 * FACE_BUDGET_MAX
MAX_INDICES = 3 * MAX_FACES
MAX_VERTICES = 3 * MAX_FACES
# Every accessor use together (vertex attributes, morph targets, indices, skins, animation samplers): a
# result's vertex has three attributes (POSITION, NORMAL, TEXCOORD_0) besides its share of the indices;
# eight a vertex leaves room for tangents, colours, a second UV map, joints and weights.
MAX_ELEMENTS = 8 * MAX_VERTICES
# An accessor without a bufferView is count elements of zeros (glTF: for sparse data, such as a morph target's
# unchanged vertices): nothing in the file pays for them, so only the count bounds what the importer makes,
# np.zeros((count, components)). No producer of results writes one (TRELLIS.2's export, write_glb, the
# providers); 65 536 elements of the largest type (MAT4 of floats, 64 bytes) are 4 MiB.
MAX_ZERO_COUNT = 1 << 16

COMPONENT_SIZES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}  # BYTE ... FLOAT
TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
SPARSE_INDEX_TYPES = (5121, 5123, 5125)  # UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT

# Extensions a result may use (extensionsUsed, extensionsRequired, and any object's "extensions"; Blender's
# importer acts on a primitive's or a node's extension whether the file declares it or not). TRELLIS.2's
# export (trimesh) writes none, or EXT_texture_webp with WebP textures (the local backend's option); the
# providers run TRELLIS.2 and document no other; write_glb and the test servers write none. Beside it, the
# ones Blender's importer reads that only describe materials, textures, lights and integer attributes: data
# the checks here bound like any other (images by their headers, accessors by their bufferViews).
# Refused:
# - KHR_draco_mesh_compression: the importer decodes the stream in a native library (libextern_draco) inside
#   the user's Blender, a hostile stream straight into C++; and it then sets the accessors' counts to what the
#   stream decodes to, so no bound checked here holds. Nobody we take results from writes it.
# - EXT_meshopt_compression: compressed bufferViews decode to sizes these checks cannot see, and Blender's
#   importer does not read it (its fallback buffers have no bytes in a GLB).
# - KHR_texture_basisu: KTX2 pictures, which Blender's importer does not decode and whose size the header
#   check cannot read.
# - EXT_mesh_gpu_instancing: the importer makes one object for each of an accessor's elements;
#   KHR_animation_pointer: animates any property. Nothing in a result is instanced or animated.
EXTENSIONS = frozenset({
    "EXT_texture_webp", "KHR_texture_transform", "KHR_mesh_quantization", "KHR_lights_punctual",
    "KHR_materials_anisotropy", "KHR_materials_clearcoat", "KHR_materials_emissive_strength",
    "KHR_materials_ior", "KHR_materials_pbrSpecularGlossiness", "KHR_materials_sheen", "KHR_materials_specular",
    "KHR_materials_transmission", "KHR_materials_unlit", "KHR_materials_variants", "KHR_materials_volume",
})


def element_size(kind: str, component: int) -> int:
    """Bytes of one element of an accessor's type and componentType (glTF 2.0: a matrix's columns start on
    4-byte boundaries, so MAT2 and MAT3 of bytes or shorts are padded)."""
    size, components = COMPONENT_SIZES[component], TYPE_COMPONENTS[kind]
    if kind in ("MAT2", "MAT3") and size < 4:
        rows = 2 if kind == "MAT2" else 3
        return rows * (-(-rows * size // 4) * 4)
    return size * components


def _fits(views: list, index: int, offset: int, count: int, size: int, where: str, base: str) -> None:
    """ValueError unless count elements of `size` bytes from offset (the bufferView's byteStride apart, where it
    has one) lie inside bufferView `index`: the bytes the importer reads (np.frombuffer) for them."""
    view = views[index]
    stride = view.get("byteStride") or size
    need = offset + stride * (count - 1) + size if count else offset
    if need > view["byteLength"]:
        raise ValueError(f"{base}: {where} needs {need} bytes of bufferView {index}, which holds "
                         f"{view['byteLength']}")


def _component(item: dict, key: str, allowed, where: str, base: str) -> int:
    value = item.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{base}: {where} has {key} {_shown(value)}, not one glTF defines")
    return value


def check_accessors(doc: dict, base: str) -> list[int]:
    """ValueError unless every accessor's count x element size (its componentType's size x its type's
    components, its bufferView's byteStride apart) lies inside its bufferView (check_references put the
    bufferViews inside their buffers, and those inside the file), an accessor without a bufferView (zeros) has
    at most MAX_ZERO_COUNT elements, and a sparse accessor's count is at most the accessor's, its indices and
    values inside their bufferViews. Returns each accessor's count."""
    views, counts = doc.get("bufferViews", []), []
    for n, accessor in enumerate(_items(doc, "accessors", base)):
        where = f"accessor {n}"
        component = _component(accessor, "componentType", COMPONENT_SIZES, where, base)
        kind = accessor.get("type")
        if not isinstance(kind, str) or kind not in TYPE_COMPONENTS:
            raise ValueError(f"{base}: {where} has type {_shown(kind)}, not one glTF defines")
        count, size = _whole(accessor, "count", where, base), element_size(kind, component)
        offset = _whole(accessor, "byteOffset", where, base, default=0)
        if accessor.get("bufferView") is None:
            if count > MAX_ZERO_COUNT:
                raise ValueError(f"{base}: {where} has no bufferView and a count of {count}: the importer would make "
                                 f"that many elements of zeros; at most {MAX_ZERO_COUNT} are accepted")
        else:
            _fits(views, accessor["bufferView"], offset, count, size, where, base)
        sparse = accessor.get("sparse")
        if sparse is not None:
            _objects(sparse, f"{where}'s sparse", base, dict)
            sparse_count = _whole(sparse, "count", f"{where}'s sparse", base)
            if sparse_count > count:
                raise ValueError(f"{base}: {where}'s sparse count {sparse_count} is over its count {count}")
            for part in ("indices", "values"):
                what = f"{where}'s sparse {part}"
                _objects(sparse.get(part), what, base, dict)
                _index(sparse[part], "bufferView", len(views), what, base, required=True)
                part_size = size if part == "values" else COMPONENT_SIZES[
                    _component(sparse[part], "componentType", SPARSE_INDEX_TYPES, what, base)]
                _fits(views, sparse[part]["bufferView"], _whole(sparse[part], "byteOffset", what, base, default=0),
                      sparse_count, part_size, what, base)
        counts.append(count)
    return counts


def _uses(mapping, counts: list[int], where: str, base: str) -> list[int]:
    """The counts of the accessors a {name: accessor index} mapping names (a primitive's attributes, a target)."""
    _objects(mapping, where, base, dict)
    for key in mapping:
        _index(mapping, key, len(counts), where, base, required=True)
    return [counts[index] for index in mapping.values()]


def check_meshes(doc: dict, counts: list[int], base: str) -> None:
    """ValueError unless the vertices and indices the importer makes for all the meshes' primitives together
    (each use counted: a primitive's vertices once, and once more for each morph target) are at most
    MAX_VERTICES and MAX_INDICES, and every accessor use together (attributes, targets, indices, skins,
    animation samplers) at most MAX_ELEMENTS."""
    vertices = indices = elements = 0
    for m, mesh in enumerate(_items(doc, "meshes", base)):
        primitives = mesh.get("primitives", [])
        _objects(primitives, f"mesh {m}'s primitives", base)
        for p, primitive in enumerate(primitives):
            where = f"mesh {m} primitive {p}"
            attributes = _uses(primitive.get("attributes", {}), counts, f"{where}'s attributes", base)
            targets = primitive.get("targets", [])
            _objects(targets, f"{where}'s targets", base)
            morphs = [c for t, target in enumerate(targets) for c in _uses(target, counts, f"{where}'s target {t}",
                                                                           base)]
            _index(primitive, "indices", len(counts), where, base)
            index_count = counts[primitive["indices"]] if primitive.get("indices") is not None else 0
            vertices += max(attributes, default=0) * (1 + len(targets))
            indices += index_count
            elements += sum(attributes) + sum(morphs) + index_count
    for n, skin in enumerate(_items(doc, "skins", base)):
        _index(skin, "inverseBindMatrices", len(counts), f"skin {n}", base)
        elements += counts[skin["inverseBindMatrices"]] if skin.get("inverseBindMatrices") is not None else 0
    for n, animation in enumerate(_items(doc, "animations", base)):
        samplers = animation.get("samplers", [])
        _objects(samplers, f"animation {n}'s samplers", base)
        for s, sampler in enumerate(samplers):
            for key in ("input", "output"):
                _index(sampler, key, len(counts), f"animation {n} sampler {s}", base, required=True)
                elements += counts[sampler[key]]
    budget = f"(the Face Budget goes up to {FACE_BUDGET_MAX} faces)"
    if vertices > MAX_VERTICES:
        raise ValueError(f"{base}: its meshes have {vertices} vertices together; at most {MAX_VERTICES} are "
                         f"accepted {budget}")
    if indices > MAX_INDICES:
        raise ValueError(f"{base}: its meshes have {indices} indices together; at most {MAX_INDICES} are accepted "
                         f"{budget}")
    if elements > MAX_ELEMENTS:
        raise ValueError(f"{base}: its accessors are used for {elements} elements together; at most "
                         f"{MAX_ELEMENTS} are accepted {budget}")


def _extension_name(name, where: str, base: str) -> None:
    if not isinstance(name, str) or name not in EXTENSIONS:
        raise ValueError(f"{base}: {where} names the extension {_shown(name)}, which is not accepted (only "
                         f"{', '.join(sorted(EXTENSIONS))})")


def check_extensions(doc: dict, base: str) -> None:
    """ValueError unless extensionsUsed and extensionsRequired are lists of names in EXTENSIONS, and so is every
    key of every "extensions" object in the document (outside "extras", which is the producer's own data)."""
    for key in ("extensionsUsed", "extensionsRequired"):
        names = doc.get(key, [])
        if not isinstance(names, list):
            raise ValueError(f"{base}: {key} is not a list")
        for name in names:
            _extension_name(name, key, base)
    stack = [doc]  # parse_json bounded its depth and size; walked without recursion all the same
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if key == "extras":
                    continue
                if key == "extensions":
                    _objects(value, "an extensions entry", base, dict)
                    for name in value:
                        _extension_name(name, "an extensions object", base)
                stack.append(value)
