"""Run backend.doctor with the configured TRELLIS.2 Python off the main thread; keep its last report."""
from __future__ import annotations

import json
import os
import subprocess
import threading

from .paths import EXTENSION_ROOT

state = {"running": False, "report": None, "error": None}


def start(setup: dict, options: dict) -> None:
    """Start a check in a background thread (setup, options: prefs.local_setup()); state["report"] is
    filled when it ends."""
    if state["running"]:
        return
    state.update(running=True, report=None, error=None)

    def work():
        try:
            out = subprocess.run([setup["python"], "-s", "-m", "backend.doctor", "--model", options["model"]],
                                 cwd=EXTENSION_ROOT, capture_output=True, text=True, timeout=300,
                                 env=dict(os.environ, **setup["env"]))
            lines = out.stdout.strip().splitlines()
            if not lines:
                raise RuntimeError(f"the check printed nothing (exit {out.returncode}): "
                                   f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}")
            state["report"] = json.loads(lines[-1])
        except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as exc:
            state["error"] = str(exc)
        finally:
            state["running"] = False
    threading.Thread(target=work, name="trellis-doctor", daemon=True).start()


def draw(layout) -> None:
    if state["running"]:
        layout.label(text="Checking…", icon="SORTTIME")
    if state["error"]:
        layout.label(text=state["error"], icon="ERROR")
    report = state["report"]
    if report:
        col = layout.column(align=True)
        col.label(text="Ready for local generation" if report["ready"] else "Not ready: fix the red items",
                  icon="CHECKMARK" if report["ready"] else "ERROR")
        for item in report["checks"]:
            icon = "CHECKBOX_HLT" if item["ok"] else ("CHECKBOX_DEHLT" if item["optional"] else "CANCEL")
            col.label(text=f"{item['name']}: {item['detail']}", icon=icon)
