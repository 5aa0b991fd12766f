"""Stand-in: the cache holds microsoft/TRELLIS.2-4B's pipeline.json."""
__version__ = "0.0-standin"


def try_to_load_from_cache(repo_id, filename, cache_dir=None, revision=None, repo_type=None):
    return f"/cache/{repo_id}/{filename}" if repo_id == "microsoft/TRELLIS.2-4B" else None
