"""What a backend is: label, modes, prices, cost unit, credentials, URL, capabilities. The only place
such facts live; the add-on's properties, preferences, spending guard, worker choice and the CLI are
derived from these rows.

A backend's module (``backend.providers.<module>``, or any importable module for one registered from
outside) has ``run(job, ctx) -> dict`` and ``MAPPINGS`` ({mode: providers.mapping.Mapping}, or {} when
it takes every schema setting itself).

Backends registered from outside the package (``register``) reach worker processes through the
TRELLIS_EXTRA_BACKENDS environment variable (JSON rows, see ``extra_rows``), so a worker started after
the registration knows them too.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from dataclasses import asdict, dataclass, field

EXTRA_ENV = "TRELLIS_EXTRA_BACKENDS"

# How a backend's jobs are run (capabilities the add-on's queue acts on).
POOLED = "pooled"  # a warm worker in Blender's own Python, one job at a time (offline, CPU)
SHARED = "shared"  # hosted: several jobs on threads of one warm worker (they wait on the network)
GPU = "gpu"  # a persistent worker in the user's TRELLIS.2 Python, model kept loaded; one job at a time


@dataclass(frozen=True)
class Credential:
    name: str  # key in job["secrets"] and suffix of the preference: "<backend>_<name>"
    label: str  # "API Key"
    env: str  # environment variable used when the preference is empty
    description: str


@dataclass(frozen=True)
class BackendInfo:
    id: str
    label: str
    description: str
    module: str  # "runware" (backend.providers.runware) or a dotted module path for outside backends
    is_ai: bool = True  # False for the offline stand-in
    worker: str = POOLED  # POOLED | SHARED | GPU
    prices: dict = field(default_factory=dict)  # resolution -> rough price per result, for the spending guard
    cost_unit: str = "USD"  # what its costs count: USD, or Scenario's creative units ("CU")
    modes: tuple = ("generate",)  # "generate" (image to mesh), "retexture" (mesh + image)
    model: str = ""  # the model's id (part of history's cache key)
    can_quote: bool = False  # answers a cost quote without generating (HostedOptions.quote_only)
    credentials: tuple = ()  # Credential rows: preferences and secrets
    default_url: str = ""  # API root, ending in the API's version path
    url_env: str = ""  # environment variable overriding the URL
    site: str = ""  # where a user gets a key or tops up

    @property
    def needs_network(self) -> bool:
        return self.worker == SHARED

    @property
    def short_label(self) -> str:
        return self.label.split(" (")[0]

    @property
    def options_kind(self) -> str:
        """Which protocol options type its jobs carry: "hosted", "local" or "none"."""
        return {SHARED: "hosted", GPU: "local"}.get(self.worker, "none")

    def estimate_cost(self, settings: dict) -> float:
        if not self.prices:
            return 0.0
        return self.prices[settings["resolution"]] * settings["number_results"]

    def url_pref(self) -> str:
        return f"{self.id}_url"

    def credential_pref(self, credential: Credential) -> str:
        return f"{self.id}_{credential.name}"


def _key(env: str, site: str) -> Credential:
    return Credential("api_key", "API Key", env, f"Key from {site}. Stored in your Blender preferences, never in "
                                                 f".blend files. Empty: the {env} environment variable")


BUILTIN = (
    BackendInfo("preview", "Preview (no AI)",
                "Offline stand-in, not TRELLIS.2: inflates the image's foreground into a textured "
                "2.5-D mesh. Needs no GPU, network or key", "preview", is_ai=False),
    BackendInfo("runware", "Runware (cloud)",
                "TRELLIS.2 on Runware's hosted API, about $0.03 per model at 1024. Needs an API key "
                "and online access; a submitted task is billed even if cancelled", "runware", worker=SHARED,
                # Runware bills by processing time: $0.0256 listed for 1024, $0.02-0.055 in its examples.
                prices={512: 0.02, 1024: 0.03, 1536: 0.05}, model="microsoft:trellis-2@4b",
                credentials=(_key("RUNWARE_API_KEY", "runware.ai"),),
                default_url="https://api.runware.ai/v1", url_env="TRELLIS_RUNWARE_URL", site="runware.ai"),
    BackendInfo("empiriolabs", "EmpirioLabs (cloud)",
                "TRELLIS.2 on EmpirioLabs' hosted API, about $0.25 per model at 1024 ($0.025 at 512). Needs an "
                "API key and online access; a submitted job is billed even if cancelled", "empiriolabs",
                worker=SHARED, prices={512: 0.025, 1024: 0.249, 1536: 0.499},  # its published price list
                model="trellis-2-4b", credentials=(_key("EMPIRIOLABS_API_KEY", "empiriolabs.ai"),),
                default_url="https://api.empiriolabs.ai/v1", url_env="TRELLIS_EMPIRIOLABS_URL",
                site="empiriolabs.ai"),
    BackendInfo("scenario", "Scenario (cloud)",
                "TRELLIS.2 on Scenario's hosted API, paid in creative units (CU); can also retexture a mesh. "
                "Needs an API key and secret and online access", "scenario", worker=SHARED, cost_unit="CU",
                modes=("generate", "retexture"), model="model_trellis-2", can_quote=True,
                credentials=(_key("SCENARIO_API_KEY", "app.scenario.com"),
                             Credential("api_secret", "API Secret", "SCENARIO_API_SECRET",
                                        "The secret that goes with the Scenario key. Empty: the SCENARIO_API_SECRET "
                                        "environment variable")),
                default_url="https://api.cloud.scenario.com/v1", url_env="TRELLIS_SCENARIO_URL",
                site="app.scenario.com"),
    BackendInfo("local", "Local GPU (TRELLIS.2)",
                "TRELLIS.2 on your NVIDIA GPU (24 GB+), in your TRELLIS.2 environment's Python: free, private, "
                "no upload. The model stays loaded between jobs", "local_trellis2", worker=GPU,
                modes=("generate", "retexture"), model="microsoft/TRELLIS.2-4B"),
)

BACKENDS: list[BackendInfo] = list(BUILTIN)
BY_ID: dict[str, BackendInfo] = {b.id: b for b in BACKENDS}
_EXTRA: list[BackendInfo] = []


def register(info: BackendInfo) -> BackendInfo:
    """Add a backend from outside the package (its module importable in the worker, e.g. a plugin). Workers
    started afterwards know it too (EXTRA_ENV). Raises ValueError for a taken id."""
    if info.id in BY_ID:
        raise ValueError(f"backend id {info.id!r} is taken")
    BACKENDS.append(info)
    BY_ID[info.id] = info
    _EXTRA.append(info)
    return info


def unregister(backend_id: str) -> None:
    info = BY_ID.pop(backend_id, None)
    if info in _EXTRA:
        _EXTRA.remove(info)
        BACKENDS.remove(info)


def extra_rows() -> str:
    """The outside backends as the JSON a worker's environment carries ("" when there are none)."""
    return json.dumps([asdict(b) for b in _EXTRA]) if _EXTRA else ""


def _load_extra_from_env() -> None:
    text = os.environ.get(EXTRA_ENV, "")
    if not text:
        return
    for row in json.loads(text):
        row["credentials"] = tuple(Credential(**c) for c in row.get("credentials") or ())
        row["modes"] = tuple(row.get("modes") or ("generate",))
        row["prices"] = {int(k): v for k, v in (row.get("prices") or {}).items()}
        if row["id"] not in BY_ID:
            register(BackendInfo(**row))


_load_extra_from_env()


def get(backend_id: str) -> BackendInfo:
    info = BY_ID.get(backend_id)
    if info is None:
        raise KeyError(f"unknown backend {backend_id!r} (known: {', '.join(BY_ID)})")
    return info


def load(backend_id: str):
    """The backend's module (imported on first use): a module of backend.providers by name, a dotted module
    path, or the path of a .py file, loaded as backend.providers.<id> so that it imports this package
    relatively exactly like the built-in providers (`from . import hosted, http`)."""
    module = get(backend_id).module
    if module.endswith(".py"):
        name = f"{__package__}.providers.{backend_id}"
        if name not in sys.modules:
            importlib.import_module(f"{__package__}.providers")
            spec = importlib.util.spec_from_file_location(name, module)
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[name] = loaded
            try:
                spec.loader.exec_module(loaded)
            except BaseException:
                del sys.modules[name]
                raise
        return sys.modules[name]
    return importlib.import_module(module if "." in module else f"{__package__}.providers.{module}")


def mapping(backend_id: str, mode: str = "generate"):
    """How the backend names and limits the schema's settings in this mode (providers.mapping.Mapping,
    from its module's MAPPINGS), or None when it takes every setting itself."""
    return (getattr(load(backend_id), "MAPPINGS", None) or {}).get(mode)


def ignored(backend_id: str, mode: str = "generate") -> tuple:
    """The schema settings the backend ignores in this mode (for the UI)."""
    found = mapping(backend_id, mode)
    return found.ignored() if found else ()


def check(backend_id: str, settings: dict, mode: str = "generate") -> None:
    """Raise schema.SettingError (mapping.ProviderLimitError) for a value the backend does not take."""
    found = mapping(backend_id, mode)
    if found is not None:
        found.check(settings)
