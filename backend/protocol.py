"""JSON-lines protocol between the add-on and a worker process.

One JSON object per line, UTF-8. The worker's original stdout is the protocol channel; everything
else the worker or its libraries print goes to stderr, which the add-on writes to the job's log file.

Add-on -> worker (stdin):
  {"type": "job", "id": str, "backend": str, "input": {"rgba": path.npy, "name": str},
   "settings": {flat schema settings, seed resolved}, "output_dir": path,
   "options": {backend options, e.g. base_url}, "secrets": {e.g. api_key}}  (secrets are never logged)
   "mode": "generate" (default) | "retexture" (input also has "mesh": path.glb, the mesh to re-texture)
   "threaded": bool (run beside other jobs on a thread of its own: hosted APIs, which wait on the network)
  {"type": "preload", "backend": str}  import that backend's module now (a batch is about to start)
  {"type": "cancel", "id": str}      stop the running job at the next check (no id: every running job)
  {"type": "shutdown"}               exit after the current job (EOF on stdin means the same)

Worker -> add-on (stdout):
  {"type": "hello", "protocol": 1, "pid": int, "python": str, "backends": [str]}
  {"type": "progress", "id", "stage": str, "step": int, "total": int, "fraction": 0..1, "text": str}
  {"type": "log", "id", "level": "info"|"warning", "text": str}
  {"type": "remote_task", "id", "provider": str, "task_id": str, ...}  a paid task was submitted
  {"type": "result", "id", "files": [path.glb], "seeds": [int], "cost": float|null,
   "cost_unit": "USD"|"CU" (absent: USD), "info": {}}
  {"type": "error", "id", "code": str, "message": str}   one line a user can act on
  {"type": "cancelled", "id"}
"""
from __future__ import annotations

import json

PROTOCOL_VERSION = 1

# Error codes a backend may report.
BAD_INPUT = "bad_input"
BAD_SETTINGS = "bad_settings"
CANCELLED = "cancelled"
INTERNAL = "internal"


def encode(msg_type: str, **fields) -> str:
    fields["type"] = msg_type
    return json.dumps(fields, separators=(",", ":")) + "\n"


def decode(line: str | bytes) -> dict:
    """Parse one protocol line; raises ValueError for anything that is not a typed JSON object."""
    msg = json.loads(line)
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ValueError(f"not a protocol message: {str(line)[:120]!r}")
    return msg
