"""Two processes run the vnnews_process DAG's mapped task callable at the same time on one
backlog: every article is processed exactly once between them.

tests/test_process.py shows the same for two `vnnews process` commands; this runs
the code Airflow runs in each mapped task instance (``vnnews_process.process``),
each worker in its own interpreter as on two Celery workers. Both load the NLP
models first and then start together, so they really compete for batches.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from test_dags import airflow_env
from test_process import add_articles, assert_consistent, stages

pytestmark = pytest.mark.slow

ARTICLES = 60
BATCH = 2

#: One mapped task instance, run by hand: load the models, say so, wait for the start
#: signal, then call the task's function with the worker number (its map index).
WORKER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
from pipeline import nlp
import vnnews_process
nlp.models()
worker, folder = int(sys.argv[1]), Path(sys.argv[2])
(folder / f"ready{worker}").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
print(json.dumps(vnnews_process.process.function(worker)))
"""


def test_two_mapped_workers_process_each_article_once(database_url, conn, tmp_path) -> None:
    add_articles(conn, ARTICLES)
    env = airflow_env(tmp_path, DATABASE_URL=database_url, VNNEWS_PROCESS_BATCH_SIZE=str(BATCH))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(n), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready{n}").exists() for n in range(2)):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
        time.sleep(0.05)
    (tmp_path / "go").touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    counts = [r["articles"] for r in results]
    print("articles per worker:", counts)
    assert sum(counts) == ARTICLES, counts  # none processed twice, none skipped
    assert all(counts), counts  # both took batches from the shared backlog
    assert sum(r["batches"] for r in results) == ARTICLES // BATCH
    assert stages(conn) == {"processed": ARTICLES}
    assert_consistent(conn)
