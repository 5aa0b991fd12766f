"""A backend registered from outside (TRELLIS_EXTRA_BACKENDS) that reports the environment variables it
can see: third-party code in a worker must not find the keys."""
import os

MAPPINGS: dict = {}


def run(job, ctx) -> dict:
    return {"files": [], "seeds": [], "cost": None, "info": {"environ": sorted(os.environ)}}
