"""The providers' published TRELLIS.2 parameter tables (copied into tests/data), parsed:
{name: {"type", "min", "max", "allowed"}} with numbers as floats and allowed values as strings."""
from __future__ import annotations

import os
import re

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")

_EMPIRIO_ROW = re.compile(r"^([a-z0-9_]+?)(image|enum|integer|number|boolean)(yes|no)(.*)$")


def empiriolabs() -> dict:
    table = {}
    with open(os.path.join(DATA, "empiriolabs-trellis2.txt"), encoding="utf-8") as f:
        rows = f.read().split("ParameterTypeRequiredDefaultDescription", 1)[1].split("\nNotes", 1)[0]
    for line in rows.splitlines():
        match = _EMPIRIO_ROW.match(line.strip())
        if not match:
            continue
        name, kind, _, rest = match.groups()
        entry = {"type": kind, "min": None, "max": None, "allowed": None}
        ranged = re.search(r"Range: ([\d.]+) – ([\d.]+)", rest)
        if ranged:
            entry["min"], entry["max"] = float(ranged.group(1)), float(ranged.group(2))
        allowed = re.search(r"Allowed: (.*)$", rest)
        if allowed:
            entry["allowed"] = [v.strip() for v in allowed.group(1).split(",")]
        table[name] = entry
    return table


_SCENARIO_ROW = re.compile(r"\| `(\w+)`\s*\| (\w+)\s*\| (Yes|No)\s*\| ([^|]*)\| ([^|]*)\| ([^|]*)\| ([^|]*)\|")


def scenario(model: str) -> dict:
    """The table of `model` ("model_trellis-2" or "model_trellis-2-retexture")."""
    with open(os.path.join(DATA, "scenario-trellis2.txt"), encoding="utf-8") as f:
        text = f.read()
    section = text.split(f"**Model ID:** `{model}`", 1)[1].split("## ", 1)[0]
    table = {}
    for name, kind, _, _, lo, hi, allowed in _SCENARIO_ROW.findall(section):
        lo, hi, allowed = lo.strip(), hi.strip(), allowed.strip()
        table[name] = {"type": kind, "min": float(lo) if lo not in ("-", "") else None,
                       "max": float(hi) if hi not in ("-", "") else None,
                       "allowed": [v.strip(" `") for v in allowed.split(",")] if allowed not in ("-", "") else None}
    return table
