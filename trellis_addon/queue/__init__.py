"""The job queue: worker processes (process), a job's state machine (job), the manager with its slots
and warm workers (manager) and the file thread (files)."""
from .files import flush_records, submit_io
from .job import (BUILDING, CANCELLED, DONE, FAILED, FINISHED_STATES, IMPORTING, PREPARING, QUEUED, RESULT_LISTENERS,
                  RUNNING, STARTING, Job)
from .manager import manager
from .process import WorkerProcess, WorkerSpec

__all__ = ["BUILDING", "CANCELLED", "DONE", "FAILED", "FINISHED_STATES", "IMPORTING", "PREPARING", "QUEUED",
           "RESULT_LISTENERS", "RUNNING", "STARTING", "Job", "WorkerProcess", "WorkerSpec", "flush_records", "manager",
           "submit_io"]
