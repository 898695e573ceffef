"""Background jobs (trials): a row in ``jobs`` with status and progress, the work in a thread.

:meth:`JobRunner.submit` stores a ``queued`` row and runs ``work(progress)`` in a worker thread, where
``progress(done, total)`` updates the row (throttled to one write per 0.2 s, and always the last one);
``work`` returns a mapping (kept as the job's ``result`` JSON; its ``run_id``, when present, becomes
``result_run_id``).  An exception marks the job ``failed`` with its message.  Jobs still running when the
service stops are marked ``failed`` ("interrupted") on the next start.

Examples
--------
>>> import os, tempfile, time
>>> from medtwin.io.storage import make_engine, upgrade
>>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "j.db")); upgrade(engine)
>>> runner = JobRunner(engine)
>>> def work(progress):
...     progress(1, 2); progress(2, 2)
...     return {"answer": 42}
>>> job = runner.submit("demo", {"n": 2}, "ada", work)
>>> runner.wait(job, timeout=10)["status"], runner.get(job)["done"], runner.get(job)["result"]
('done', 2, {'answer': 42})
>>> runner.shutdown(); engine.dispose()
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import sqlalchemy as sa

from medtwin.io.service_tables import jobs_table

__all__ = ["JobRunner"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class JobRunner:
    """Runs jobs in a thread pool and keeps their status in the ``jobs`` table."""

    def __init__(self, engine, *, max_workers: int = 2):
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="medtwin-job")
        self._stop = threading.Event()
        with engine.begin() as conn:  # jobs of a previous process that died or stopped
            conn.execute(jobs_table.update().where(jobs_table.c.status.in_(("queued", "running")))
                         .values(status="failed", error="interrupted: the service stopped", updated_at=_now()))

    def _update(self, job_id: str, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(updated_at=_now(), **values))

    def submit(self, kind: str, spec: dict, owner: str, work) -> str:
        """Store a queued job and start ``work(progress)`` in a worker thread; return the job id."""
        job_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(jobs_table.insert().values(id=job_id, kind=kind, status="queued", done=0, total=None,
                                                    spec=json.dumps(spec, default=str), owner=owner,
                                                    created_at=_now(), updated_at=_now()))
        self._pool.submit(self._run, job_id, work)
        return job_id

    def _run(self, job_id: str, work) -> None:
        last = [0.0]

        def progress(done: int, total: int | None = None) -> None:
            if self._stop.is_set():
                raise InterruptedError("the service is stopping")
            now = time.monotonic()
            if now - last[0] >= 0.2 or (total is not None and done >= total):
                last[0] = now
                self._update(job_id, done=int(done), total=None if total is None else int(total))

        try:
            self._update(job_id, status="running")
            result = work(progress) or {}
            self._update(job_id, status="done", result=json.dumps(result, default=str),
                         result_run_id=result.get("run_id"))
        except Exception as exc:  # noqa: BLE001 - a failed job is a status, not a crashed worker
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])

    def get(self, job_id: str) -> dict | None:
        """The job as a dict (spec and result parsed), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["spec"] = json.loads(out["spec"])
        out["result"] = json.loads(out["result"]) if out["result"] else None
        return out

    def wait(self, job_id: str, timeout: float = 60.0) -> dict | None:
        """Poll until the job is done or failed (or *timeout* s); return it."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job["status"] in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.02)

    def shutdown(self) -> None:
        """Ask running jobs to stop (at their next progress call) and wait for the threads."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
