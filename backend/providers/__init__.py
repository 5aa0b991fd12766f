"""One module per backend (registry.BackendInfo.module): its ``run(job, ctx)`` and ``MAPPINGS``, plus what the
hosted ones share: mapping.py (how a provider names and limits settings), http.py (the one HTTP client) and
hosted.py (what a hosted job does around it). Imported on first use by registry.load, never here."""
