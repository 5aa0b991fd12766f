"""JSON-lines protocol between the add-on and a worker process: the messages, the errors a job ends
with, and the typed options each kind of backend takes.

One JSON object per line, UTF-8. The worker's original stdout is the protocol channel; everything
else the worker or its libraries print goes to stderr, which the add-on writes to the job's log file.

Add-on -> worker (stdin):
  {"type": "job", "id": str, "backend": str, "mode": "generate" | "retexture",
   "input": {"rgba": path.npy, "name": str, "mesh": path.glb (retexture only)},
   "settings": {flat schema settings, seed resolved}, "output_dir": path,
   "options": HostedOptions | LocalOptions fields, "secrets": {e.g. api_key} (never logged),
   "threaded": bool (run beside other jobs on a thread of its own: hosted APIs, which wait on the network)}
  {"type": "preload", "backend": str}  import that backend's module now (a batch is about to start)
  {"type": "cancel", "id": str}      stop that job at the next check (no id: every running job)
  {"type": "shutdown"}               exit after the current job (EOF on stdin means the same)

Worker -> add-on (stdout):
  {"type": "hello", "protocol": 1, "pid": int, "python": str, "backends": [str]}
  {"type": "progress", "id", "stage": str, "step": int, "total": int, "fraction": 0..1, "text": str}
  {"type": "log", "id", "level": "info"|"warning", "text": str}
  {"type": "remote_task", "id", "provider": str, "task_id": str, ...}  a paid task was submitted
  {"type": "result", "id", "files": [path.glb], "seeds": [int], "cost": float|null,
   "cost_unit": "USD"|"CU" (absent: USD), "info": {}}
  {"type": "error", "id", "code": ErrorCode value, "message": str}   one line a user can act on
  {"type": "cancelled", "id"}
  {"type": "heartbeat", "id"}  the job is still running (sent at least every 5 s while it runs, waits
                               included: polling, sleeping, downloading); the add-on fails a job whose
                               worker sent nothing for 60 s (HEARTBEAT_TIMEOUT: stopped, hung or frozen)

Made by the add-on itself, never sent by a worker (its reader thread, when the process ended):
  {"type": "exit", "code": int, "log_tail": str}

The background Blender (trellis_addon/blend_worker.py) speaks this protocol too: its tasks (import, prepare)
and their answers are typed and documented in blender_protocol.py.
"""
from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields

PROTOCOL_VERSION = 1

TO_WORKER = ("job", "preload", "cancel", "shutdown")
FROM_WORKER = ("hello", "progress", "log", "remote_task", "result", "error", "cancelled", "heartbeat")
HEARTBEAT_TIMEOUT = 60.0  # s of silence from a worker after which the add-on fails its running jobs
FINAL = ("result", "error", "cancelled")  # a job's last message
EXIT = "exit"  # the add-on's own message for a worker process that ended


class Remedy(str, enum.Enum):
    """What the user (or the add-on) can do about an error."""
    RETRY = "retry"  # try again later: nothing is wrong with the request
    FIX_ACCOUNT = "fix_account"  # key, secret, balance or permissions: the add-on preferences / provider
    FIX_REQUEST = "fix_request"  # the image or a setting
    FIX_SETUP = "fix_setup"  # the local TRELLIS.2 environment
    REPORT = "report"  # a bug or an unexpected answer: the log has the details
    NONE = "none"  # cancelled: nothing to do


class ErrorCode(str, enum.Enum):
    """Every code a job may end with. The add-on acts on `remedy` (retry button, preferences button)."""
    BAD_INPUT = "bad_input"
    BAD_SETTINGS = "bad_settings"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    # hosted providers
    AUTH = "auth"
    BALANCE = "balance"
    FORBIDDEN = "forbidden"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    NETWORK = "network"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    REMOTE = "remote_error"
    BAD_OUTPUT = "bad_output"
    # the local GPU backend
    MISSING_PACKAGE = "missing_package"
    CUDA_OOM = "cuda_oom"
    NO_CUDA = "no_cuda"
    WEIGHTS = "weights"
    PYTHON = "python"
    # the add-on's own
    WORKER_EXIT = "worker_exit"

    @property
    def remedy(self) -> Remedy:
        return _REMEDIES.get(self, Remedy.REPORT)

    @classmethod
    def parse(cls, value) -> "ErrorCode":
        """The code of a message; INTERNAL for anything unknown (a newer or a hostile worker)."""
        try:
            return cls(value)
        except ValueError:
            return cls.INTERNAL


_REMEDIES = {
    ErrorCode.BAD_INPUT: Remedy.FIX_REQUEST, ErrorCode.BAD_SETTINGS: Remedy.FIX_REQUEST,
    ErrorCode.BAD_REQUEST: Remedy.FIX_REQUEST, ErrorCode.CANCELLED: Remedy.NONE,
    ErrorCode.AUTH: Remedy.FIX_ACCOUNT, ErrorCode.BALANCE: Remedy.FIX_ACCOUNT, ErrorCode.FORBIDDEN: Remedy.FIX_ACCOUNT,
    ErrorCode.NETWORK: Remedy.RETRY, ErrorCode.RATE_LIMIT: Remedy.RETRY, ErrorCode.TIMEOUT: Remedy.RETRY,
    ErrorCode.NOT_FOUND: Remedy.REPORT, ErrorCode.REMOTE: Remedy.RETRY, ErrorCode.BAD_OUTPUT: Remedy.REPORT,
    ErrorCode.MISSING_PACKAGE: Remedy.FIX_SETUP, ErrorCode.NO_CUDA: Remedy.FIX_SETUP,
    ErrorCode.WEIGHTS: Remedy.FIX_SETUP, ErrorCode.PYTHON: Remedy.FIX_SETUP, ErrorCode.CUDA_OOM: Remedy.FIX_REQUEST,
    ErrorCode.WORKER_EXIT: Remedy.RETRY,
}


class JobError(Exception):
    """A failure with a message the user can act on."""

    def __init__(self, code: ErrorCode | str, message: str):
        super().__init__(message)
        self.code = ErrorCode.parse(code.value if isinstance(code, ErrorCode) else code)


class Cancelled(Exception):
    """The job was cancelled (raised at the next check of its cancel flag)."""


# --- options ---------------------------------------------------------------------------------------

@dataclass
class HostedOptions:
    """job["options"] of a hosted backend. The tuning fields exist for tests and proxies."""
    base_url: str = ""  # "" : the registry's default; normalised by the HTTP client
    poll_timeout: float = 1200.0  # s: give up polling after this (the task stays resumable)
    resume_tasks: list = field(default_factory=list)  # [{"task_id", "seed", ...}]: poll, never submit again
    quote_only: bool = False  # answer the provider's cost quote instead of generating
    project_id: str = ""  # Scenario's project
    poll_first: float | None = None  # s; None: the provider's own default
    poll_factor: float = 1.5
    poll_cap: float = 10.0
    retry_tries: int = 4
    retry_base: float = 1.0
    retry_cap: float = 30.0
    download_tries: int = 3
    read_timeout: float = 60.0  # s: per socket read of a poll answer
    request_deadline: float = 120.0  # s: an API call's whole answer, whatever the server trickles
    max_download_bytes: int = 1024 ** 3  # a result file above this is refused (the add-on's preference)
    download_deadline: float = 300.0  # s: the least time a download may take ...
    download_rate: float = 100_000.0  # ... or its size at this many bytes/s, when longer
    inline_limit: int = 64 * 1024  # Runware: larger images go through imageUpload


@dataclass
class LocalOptions:
    """job["options"] of the local TRELLIS.2 backend."""
    model: str = "microsoft/TRELLIS.2-4B"
    low_vram: bool = True
    gpu: int = 0
    webp: bool = False


@dataclass
class NoOptions:
    """job["options"] of the offline preview backend."""


OPTION_TYPES = {"hosted": HostedOptions, "local": LocalOptions, "none": NoOptions}


def options_from(kind: str, data) -> HostedOptions | LocalOptions | NoOptions:
    """The typed options of a job message; ValueError naming the field for unknown names or wrong types."""
    cls = OPTION_TYPES[kind]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"options must be an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (known: {', '.join(known) or 'none'})")
    defaults = cls()
    out = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        if value is None and default is None:
            out[name] = None
            continue
        expected = type(default) if default is not None else float
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is bool and not isinstance(value, bool) or not isinstance(value, expected) \
                or (expected is int and isinstance(value, bool)):
            raise ValueError(f"option {name!r} must be {expected.__name__}, got {type(value).__name__}")
        out[name] = value
    return cls(**out)


def options_dict(options) -> dict:
    return asdict(options)


@dataclass(frozen=True)
class Job:
    """A job message as a backend gets it: checked by the worker (worker.decode_job), settings validated
    against the schema and the backend's limits, options typed. Backends trust it."""
    id: str
    backend: str
    mode: str  # "generate" | "retexture"
    input: dict  # {"rgba": path.npy, "name": str, "mesh": path.glb (retexture)}
    settings: dict  # every schema setting, validated
    output_dir: str
    options: HostedOptions | LocalOptions | NoOptions
    secrets: dict = field(default_factory=dict, repr=False)  # never logged
    threaded: bool = False


# --- lines -----------------------------------------------------------------------------------------

def encode(msg_type: str, **fields_) -> str:
    fields_["type"] = msg_type
    return json.dumps(fields_, separators=(",", ":")) + "\n"


def decode(line: str | bytes) -> dict:
    """Parse one protocol line; raises ValueError for anything that is not a typed JSON object."""
    msg = json.loads(line)
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ValueError(f"not a protocol message: {str(line)[:120]!r}")
    return msg

