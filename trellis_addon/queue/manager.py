"""The job queue: slots, warm workers and which kind of worker a job runs on (from the registry row's
`worker`: GPU jobs one at a time on the persistent TRELLIS.2 worker, hosted jobs on threads of a shared
pooled worker, offline jobs on a pooled worker each)."""
from __future__ import annotations

import atexit
import os
import time

from ...backend import protocol, registry
from .. import entry_lock, prefs
from . import files
from . import job as job_module
from .builder import Builder
from .process import WorkerProcess, WorkerSpec, python_worker

POOL_IDLE_SECONDS = 60.0  # a warm pooled worker exits after this long without a job
SHARED_JOBS_PER_WORKER = 8  # hosted jobs one pooled worker runs at once, each on its own thread
KEEP_FINISHED = 20  # finished jobs the panel can still show


class JobManager:
    max_parallel = 3  # hosted and offline jobs running at once (preference); GPU ones run one at a time

    def __init__(self):
        self.jobs: list[job_module.Job] = []
        self._persistent: WorkerProcess | None = None  # the GPU worker
        self._pool: list[WorkerProcess] = []  # warm workers in Blender's Python
        self.builder = Builder()  # imports results in a background Blender

    # --- the queue ---------------------------------------------------------------------------------
    def add(self, job: job_module.Job) -> job_module.Job:
        """Queue a job (a cached answer waits as IMPORTING); pump() starts it when a slot is free."""
        self.jobs.append(job)
        job.build_wanted = self.builder.wanted
        if job.state == job_module.IMPORTING and self.builder.wanted(job):  # a cached answer without its .blend
            job.state, job.text = job_module.BUILDING, "Importing in the background"
        if job.state == job_module.PREPARING:  # its image is read in the background Blender
            self.builder.prepare(job)
        finished = [j for j in self.jobs if j.is_finished]
        for old in finished[:-KEEP_FINISHED]:
            self.jobs.remove(old)
        return job

    def enqueue(self, job: job_module.Job, max_parallel: int | None = None) -> job_module.Job:
        self.add(job)
        self.pump(max_parallel)
        return job

    def active(self) -> list[job_module.Job]:
        return [j for j in self.jobs if not j.is_finished]

    def running(self) -> list[job_module.Job]:
        return [j for j in self.jobs if j.state in (job_module.STARTING, job_module.RUNNING)]

    def queued_ahead(self, job: job_module.Job) -> int:
        return [j for j in self.jobs if j.state == job_module.QUEUED].index(job)

    def get(self, job_id: str) -> job_module.Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    @staticmethod
    def cap(max_parallel: int | None = None) -> int:
        p = prefs.get()
        return max(1, max_parallel or (p.max_parallel_jobs if p else JobManager.max_parallel))

    def pump(self, max_parallel: int | None = None) -> list[job_module.Job]:
        """Start queued jobs, oldest first, while slots are free: one GPU job at a time, up to
        max_parallel (else the preference) others. Never blocks on a worker."""
        limit = self.cap(max_parallel)
        self.reap_idle()
        running = self.running()
        gpu_busy = any(j.on_gpu for j in running)
        others = sum(not j.on_gpu for j in running)
        started = []
        for job in [j for j in self.jobs if j.state == job_module.QUEUED]:
            if job.on_gpu:
                if gpu_busy:
                    continue
                gpu_busy = True
            else:
                if others >= limit:
                    continue
                others += 1
            try:
                job.start(self.worker_for(job))
            except Exception as exc:  # a worker that cannot start fails its job, not the queue
                job.fail(f"Could not start the worker: {exc}", protocol.ErrorCode.WORKER_EXIT)
                continue
            started.append(job)
        return started

    def poll_all(self, max_parallel: int | None = None) -> list[job_module.Job]:
        """Apply every job's messages, then pump(): a slot freed now is refilled at once. The jobs that
        changed."""
        changed = [j for j in self.jobs if j.poll()]
        for job in self.jobs:
            if job.state == job_module.BUILDING and job.id not in self.builder.tasks:
                self.builder.start(job)
        changed += [j for j in self.builder.poll() if j not in changed]
        self.pump(max_parallel)
        return changed

    def cancel_all(self) -> None:
        for job in self.active():
            job.cancel()

    # --- workers -----------------------------------------------------------------------------------
    def worker_for(self, job: job_module.Job) -> WorkerProcess:
        """The warm worker the job's registry row asks for."""
        if job.on_gpu:
            return self.persistent_worker(gpu_spec())
        return self.pooled_worker(pool_spec(), job)

    def persistent_worker(self, spec: WorkerSpec) -> WorkerProcess:
        """The GPU worker for the spec, started when there is none, it died, or the configuration changed."""
        worker = self._persistent
        if worker is None or not worker.alive or worker.key != spec.key:
            if worker is not None and worker.alive:
                worker.close_stdin()  # configuration changed: the old one exits
            self._persistent = worker = WorkerProcess(spec).start()
        return worker

    def pooled_worker(self, spec: WorkerSpec, job: job_module.Job | None = None) -> WorkerProcess:
        """A warm worker for the spec, or a new one. A job that shares_worker joins one already running
        such jobs (up to SHARED_JOBS_PER_WORKER); any other gets an idle worker to itself."""
        self._pool = [w for w in self._pool if w.alive]
        candidates = [w for w in self._pool if w.key == spec.key and not w.stopping]
        if job is not None and job.shares_worker:
            for worker in candidates:
                sharing = worker.serving()
                if 0 < len(sharing) < SHARED_JOBS_PER_WORKER and all(j.shares_worker for j in sharing):
                    return worker
        for worker in candidates:
            if not worker.busy:
                return worker
        worker = WorkerProcess(spec).start()
        self._pool.append(worker)
        return worker

    def prewarm(self, backend: str) -> None:
        """Start the pooled worker a batch's jobs will use, its backend module imported, while the first
        images are read."""
        if registry.get(backend).worker != registry.GPU:
            self.pooled_worker(pool_spec()).send(protocol.encode("preload", backend=backend))

    def reap_idle(self, seconds: float = POOL_IDLE_SECONDS) -> None:
        """Let pooled workers that waited `seconds` without a job exit (EOF), before any new job."""
        now = time.monotonic()
        for worker in list(self._pool):
            if not worker.alive or (worker.idle_since is not None and now - worker.idle_since > seconds):
                worker.close_stdin()
                self._pool.remove(worker)

    def unload(self) -> bool:
        """Stop the GPU worker (frees GPU memory); True if one was running."""
        worker, self._persistent = self._persistent, None
        if worker is None or not worker.alive:
            return False
        worker.close_stdin()  # EOF: it cancels what it runs and exits
        return True

    def shutdown(self, wait: float = 0.0) -> None:
        """Blender stops or the add-on is disabled: never a cancel of a submitted hosted task (its job.json
        says "interrupted", the next start resumes it); other jobs are cancelled, every worker gets EOF
        (waited for up to `wait` seconds), then the records are flushed and the entry locks released."""
        workers = [w for w in [self._persistent, *self._pool, *self.builder.workers] if w is not None]
        self.builder.stop()
        for job in self.active():
            job.interrupt()
        self.unload()
        self.reap_idle(seconds=-1.0)
        end = time.monotonic() + wait
        for worker in workers if wait else ():
            worker.close_stdin()
            worker.wait_exit(max(0.0, end - time.monotonic()))
        files.flush_records()
        entry_lock.release_all()

    def stop_workers(self, timeout: float = 5.0) -> None:
        """At exit: shutdown(), waiting for every worker and its reader thread, so no thread reads a pipe
        while the interpreter is torn down (bpy 4.2 crashed)."""
        self.shutdown(wait=timeout)
        self.jobs.clear()


def pool_spec() -> WorkerSpec:
    """Blender's own Python. A worker started under other TRELLIS_* variables (test and debug switches)
    or before another backend was registered is not reused."""
    switches = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("TRELLIS_")))
    extra = registry.extra_rows()
    env = {registry.EXTRA_ENV: extra} if extra else {}
    return python_worker(log_path=os.path.join(prefs.jobs_root(), "worker-pool.log"), env=env,
                         key=("blender-python", switches, extra))


def gpu_spec() -> WorkerSpec:
    """The user's TRELLIS.2 Python, the model kept loaded (prefs.AccessError without one)."""
    setup, _ = prefs.local_setup()
    key = (setup["python"], tuple(sorted(setup["env"].items())), setup["idle_exit"])
    return python_worker(log_path=os.path.join(prefs.jobs_root(), "local-worker.log"), python=setup["python"],
                         env=setup["env"], isolated=False, idle_exit=setup["idle_exit"], key=key)


manager = JobManager()
atexit.register(manager.stop_workers)  # every process: UI, scripts, `blender -c trellis`
