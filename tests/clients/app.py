"""A real application for zdm's tests: psycopg 3 with server-side prepared statements
(prepare_threshold=0) and a connection pool, on one version of the schema (its
search_path), running a fixed set of statements at a bounded rate from several threads
until a stop file appears. Prints one JSON line: operations run (in all, and by statement)
and every error seen.

    app.py DSN SEARCH_PATH SPEC_JSON STOP_FILE

SPEC_JSON: {"statements": [SQL, ...], "first_id": N, "max_rid": M, "rate": OPS_PER_S,
"threads": T}. Each SQL may use %(id)s (a fresh id, first_id upwards) and %(rid)s (a
random id in 1..max_rid).
"""

import itertools
import json
import os
import random
import sys
import threading
import time

import psycopg
from psycopg_pool import ConnectionPool


def main():
    dsn, search_path, spec_text, stop_file = sys.argv[1:5]
    spec = json.loads(spec_text)
    statements = spec["statements"]
    ids = itertools.count(spec["first_id"])
    id_lock = threading.Lock()
    errors = []
    ops = [0]
    by_statement = [0] * len(statements)
    ops_lock = threading.Lock()

    def configure(conn):
        # Every connection of the pool is on this version, and prepares every statement.
        conn.prepare_threshold = 0
        with conn.cursor() as cur:
            cur.execute(f"SET search_path TO {search_path}")
        conn.commit()

    pool = ConnectionPool(
        dsn,
        min_size=2,
        max_size=spec["threads"],
        configure=configure,
        kwargs={"prepare_threshold": 0},
        open=True,
        timeout=30,
    )
    interval = spec["threads"] / spec["rate"]

    def worker(n):
        rng = random.Random(n)
        while not os.path.exists(stop_file):
            index = rng.randrange(len(statements))
            sql = statements[index]
            with id_lock:
                fresh = next(ids)
            params = {"id": fresh, "rid": rng.randint(1, spec["max_rid"])}
            started = time.monotonic()
            try:
                with pool.connection() as conn:
                    with conn.cursor() as cur:
                        cur.execute(sql, params, prepare=True)
                        if cur.description is not None:
                            cur.fetchall()
                with ops_lock:
                    ops[0] += 1
                    by_statement[index] += 1
            except Exception as error:  # every failure is a finding
                errors.append(f"{type(error).__name__}: {error} [{sql}]")
            time.sleep(max(0.0, interval - (time.monotonic() - started)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pool.close()
    print(
        json.dumps(
            {
                "ops": ops[0],
                "by_statement": by_statement,
                "error_count": len(errors),
                "errors": errors[:20],
            }
        )
    )


if __name__ == "__main__":
    main()
