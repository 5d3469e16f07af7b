"""The recorder's SQLite file: schema, writes, and the SQL queries reports are built from.

One file (WAL mode) holds every run; readers (reports, `footprint watch`, datasette) work while a
run writes. Writes are short transactions with a busy timeout so many writers can share a file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from footprint.common.errors import FootprintError
from footprint.probes.base import Device

TYPE_CHECKING = False  # importing typing costs start-up time; annotations need it only when checked
if TYPE_CHECKING:
    from typing import Any

# 2: the views below (a schema-1 DB gets them when a writer opens it); 3: new tables only (requests, power
# limits, sweeps, quality) and node figures in the views
SCHEMA_VERSION = 3
DEFAULT_DB = "footprint.db"
ENV_DB = "FOOTPRINT_DB"
MEMORY = ":memory:"  # Store(MEMORY): a private in-memory database, for tests and throwaway runs
BUSY_TIMEOUT_MS = 60_000  # writers; readers wait less (footprint.core.dbfile)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,            -- running | completed | failed | interrupted (incomplete is derived)
    exit_code INTEGER,
    created_at REAL NOT NULL,
    started_at REAL,                 -- first counter read
    ended_at REAL,                   -- last counter read
    heartbeat_at REAL,               -- last flush: tells a crashed run from a live one
    host TEXT,
    pid INTEGER,
    command TEXT,                    -- JSON list, for `footprint run`
    interval_s REAL,
    country TEXT,
    carbon_g_per_kwh REAL,
    carbon_source TEXT,
    region TEXT,                     -- cloud region (provider:region), when given
    pue REAL,                        -- data-centre power usage effectiveness (1.0 unless given)
    price_kwh REAL,                  -- electricity price per kWh
    price_hour REAL,                 -- instance price per hour
    currency TEXT,
    job_id TEXT,                     -- distributed jobs: the job all ranks share
    rank INTEGER,                    -- its global rank
    node TEXT,                       -- the node (host) it ran on
    meta TEXT                        -- JSON object
);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT,
    source TEXT NOT NULL,
    measured INTEGER NOT NULL,
    update_period_s REAL,
    uuid TEXT,
    power_limit_w REAL,
    note TEXT,
    host TEXT,
    baseline_w REAL                  -- idle power measured before the run (--baseline), if asked
);
CREATE INDEX IF NOT EXISTS devices_run ON devices(run_id);
CREATE TABLE IF NOT EXISTS samples (
    device_id INTEGER NOT NULL REFERENCES devices(id),
    t REAL NOT NULL,                 -- wall-clock seconds of the read
    energy_j REAL NOT NULL,          -- cumulative since the probe opened
    power_w REAL,
    mark INTEGER NOT NULL DEFAULT 0  -- 1: a read at a run/span boundary, never compacted away
);
CREATE INDEX IF NOT EXISTS samples_device_t ON samples(device_id, t);
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    parent_id INTEGER REFERENCES spans(id),
    name TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS spans_run ON spans(run_id);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    span_id INTEGER REFERENCES spans(id),
    t REAL NOT NULL,
    n INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'tokens'
);
CREATE INDEX IF NOT EXISTS tokens_run ON tokens(run_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    device_id INTEGER REFERENCES devices(id),
    t REAL NOT NULL,
    kind TEXT NOT NULL,              -- e.g. probe-error
    message TEXT
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    started_at REAL NOT NULL,        -- request head received
    first_token_at REAL,             -- first streamed token sent on (streams only)
    ended_at REAL NOT NULL,          -- response ended, failed or the client went away
    model TEXT,
    endpoint TEXT,                   -- e.g. /v1/chat/completions
    status INTEGER,                  -- HTTP status (499: the client disconnected)
    stream INTEGER NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    usage_source TEXT,               -- reported (the server's usage) | counted (streamed chunks) | none
    error TEXT
);
CREATE INDEX IF NOT EXISTS requests_run ON requests(run_id, started_at);
CREATE TABLE IF NOT EXISTS request_energy (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    request_id INTEGER REFERENCES requests(id),   -- NULL: the idle energy, with no request active
    kind TEXT NOT NULL,
    energy_j REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS request_energy_run ON request_energy(run_id);
CREATE TABLE IF NOT EXISTS power_limits (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    t REAL NOT NULL,                 -- end of its profiling window, or when --power-limit set it
    limit_w REAL NOT NULL,           -- the GPU power limit (W), the same on every GPU of the run
    steps INTEGER,                   -- training steps profiled at it (NULL: set for the whole run)
    energy_j REAL,                   -- GPU energy of those steps, summed over GPUs and ranks
    time_s REAL,                     -- their duration (the slowest rank's)
    gpus INTEGER,                    -- GPUs (all ranks) the energy covers
    score REAL,                      -- the objective per step, lower is better (NULL: ruled out)
    objective TEXT,                  -- energy | time | cost (eta=...) | least energy within X % slowdown
    chosen INTEGER NOT NULL DEFAULT 0,  -- 1: the limit kept for the rest of the run
    source TEXT                      -- profiled | profile:<path> (a saved profile) | --power-limit
);
CREATE INDEX IF NOT EXISTS power_limits_run ON power_limits(run_id);
CREATE TABLE IF NOT EXISTS power_limit_changes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    t REAL NOT NULL,
    idx INTEGER NOT NULL,            -- the GPU's NVML index (what nvidia-smi -i takes)
    limit_w REAL,                    -- the limit it was given (W)
    previous_w REAL,                 -- the limit it had before (W)
    action TEXT NOT NULL,            -- set | restored
    actor TEXT,                      -- footprint run | tuner | watchdog
    restore_command TEXT             -- the command that puts the original limit back by hand
);
CREATE TABLE IF NOT EXISTS quality (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    t REAL NOT NULL,
    value REAL NOT NULL,             -- higher is better, the latest row of a run counts
    metric TEXT,                     -- what the value measures, as the workload names it (accuracy...)
    source TEXT NOT NULL             -- set_quality, file:PATH (FOOTPRINT_QUALITY_FILE), ...
);
CREATE INDEX IF NOT EXISTS quality_run ON quality(run_id);
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,            -- running | completed | interrupted (incomplete is derived)
    created_at REAL NOT NULL,
    host TEXT,
    pid INTEGER,                     -- the process running it (a resume takes it over)
    command TEXT NOT NULL,           -- JSON list, with {name} placeholders
    params TEXT NOT NULL,            -- JSON object: parameter name -> list of values, in grid order
    repeats INTEGER NOT NULL,        -- runs per point
    options TEXT                     -- JSON object: the options every point's run is given
);
CREATE TABLE IF NOT EXISTS sweep_points (
    id INTEGER PRIMARY KEY,
    sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
    run_id INTEGER REFERENCES runs(id), -- empty when footprint could not even start the run
    point_index INTEGER NOT NULL,    -- position of the point in the grid, from 0
    point TEXT NOT NULL,             -- JSON object: parameter name -> value
    repeat INTEGER NOT NULL,         -- which run of the point, from 1
    status TEXT NOT NULL,            -- completed | failed | interrupted
    exit_code INTEGER,
    started_at REAL,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS sweep_points_sweep ON sweep_points(sweep_id);
"""


# the columns a served request is recorded with (besides its id and run)
REQUEST_COLUMNS = ("started_at", "first_token_at", "ended_at", "model", "endpoint", "status", "stream",
                   "prompt_tokens", "completion_tokens", "usage_source", "error")


def _iso(col: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {col}, 'unixepoch')"


def _interpolated(p: str) -> str:
    """Cumulative energy at {p}_t from the samples around it ({p}0_t/e before, {p}1_t/e after), as
    footprint.common.units.interpolate and Store.energy_at compute it."""
    return (f"CASE WHEN {p}0_e IS NOT NULL AND {p}1_e IS NOT NULL THEN "
            f"CASE WHEN {p}1_t <= {p}0_t THEN CASE WHEN {p}_t >= {p}1_t THEN {p}1_e ELSE {p}0_e END "
            f"ELSE {p}0_e + ({p}1_e - {p}0_e) * ({p}_t - {p}0_t) / ({p}1_t - {p}0_t) END "
            f"ELSE COALESCE({p}0_e, {p}1_e) END")


def _around(p: str, t: str) -> str:
    one = "SELECT {c} FROM samples s WHERE s.device_id = b.device_id AND s.t {op} {t} ORDER BY s.t {o} LIMIT 1"
    return ", ".join(f"({one.format(c=c, op=op, t=t, o=o)}) AS {p}{i}_{c[0]}"
                     for i, op, o in ((0, "<=", "DESC"), (1, ">=", "ASC")) for c in ("t", "energy_j"))


# Per-kind columns: cpu, ram and gpu, then every other kind summed (kinds are open-ended; run_energy and
# span_energy list each kind). The total adds them in that order, as the read model does. A `node` device (a
# whole-machine meter) is no component: it has its own column, and kWh, CO2e and J/token use it when present.
_KINDS = "".join(f"SUM(CASE WHEN kind = '{k}' THEN energy_j END) AS energy_j_{k}, "
                 for k in ("cpu", "ram", "gpu", "node"))
_OTHER = "SUM(CASE WHEN kind NOT IN ('cpu', 'ram', 'gpu', 'node') THEN energy_j END) AS energy_j_other"
_BASIS = "COALESCE(energy_j_node, energy_j_total)"
_NODE_COLUMNS = ("energy_j_node, energy_j_node - energy_j_total AS unattributed_j, "
                 "CASE WHEN energy_j_node IS NOT NULL THEN 'node' ELSE 'components' END AS energy_basis")
_TOTAL = ("CASE WHEN COALESCE(e.energy_j_cpu, e.energy_j_ram, e.energy_j_gpu, e.energy_j_other) IS NULL THEN NULL "
          "ELSE COALESCE(e.energy_j_cpu, 0) + COALESCE(e.energy_j_ram, 0) + COALESCE(e.energy_j_gpu, 0) "
          "+ COALESCE(e.energy_j_other, 0) END")
_PUE = "COALESCE(NULLIF(r.pue, 0), 1.0)"

# name -> SELECT. Figures use what each run recorded (its intensity and PUE), as `footprint report` does
# without report-time overrides; energies in J, kWh, grams CO2e, epoch seconds and ISO 8601 UTC times.
VIEWS: dict[str, str] = {
    "device_energy": """
        SELECT d.id AS device_id, d.run_id, d.kind, d.idx, d.name, d.source, d.measured,
               (SELECT MIN(t) FROM samples s WHERE s.device_id = d.id) AS first_t,
               (SELECT MAX(t) FROM samples s WHERE s.device_id = d.id) AS last_t,
               (SELECT energy_j FROM samples s WHERE s.device_id = d.id ORDER BY t DESC LIMIT 1)
             - (SELECT energy_j FROM samples s WHERE s.device_id = d.id ORDER BY t ASC LIMIT 1) AS energy_j
        FROM devices d""",
    "run_energy": """
        SELECT run_id, kind, SUM(energy_j) AS energy_j, COUNT(*) AS devices, MIN(measured) AS measured
        FROM device_energy GROUP BY run_id, kind HAVING SUM(energy_j) IS NOT NULL""",
    "run_figures": f"""
        WITH e AS (SELECT run_id, {_KINDS}{_OTHER}, MIN(first_t) AS first_t, MAX(last_t) AS last_t
                   FROM (SELECT * FROM device_energy ORDER BY run_id, kind, idx, device_id) GROUP BY run_id),
             k AS (SELECT run_id, SUM(n) AS tokens FROM tokens GROUP BY run_id),
             f AS (SELECT r.id AS run_id, r.name, r.status, r.exit_code, r.host, r.job_id, r.rank, r.node,
                          COALESCE(r.started_at, e.first_t) AS started_at, COALESCE(r.ended_at, e.last_t) AS ended_at,
                          e.energy_j_cpu, e.energy_j_ram, e.energy_j_gpu, e.energy_j_other, {_TOTAL} AS energy_j_total,
                          e.energy_j_node, r.country, r.region, r.carbon_g_per_kwh, {_PUE} AS pue, k.tokens
                   FROM runs r LEFT JOIN e ON e.run_id = r.id LEFT JOIN k ON k.run_id = r.id)
        SELECT run_id, name, status, exit_code, host, job_id, rank, node, started_at, ended_at,
               {_iso("started_at")} AS started_at_iso, {_iso("ended_at")} AS ended_at_iso,
               ended_at - started_at AS duration_s,
               energy_j_cpu, energy_j_ram, energy_j_gpu, energy_j_other, energy_j_total, {_NODE_COLUMNS},
               {_BASIS} / 3600000.0 AS kwh, country, region, carbon_g_per_kwh, pue,
               {_BASIS} / 3600000.0 * pue * carbon_g_per_kwh AS co2e_g, tokens,
               CASE WHEN tokens THEN {_BASIS} / tokens END AS j_per_token,
               CASE WHEN tokens AND ended_at - started_at THEN tokens / (ended_at - started_at) END AS tokens_per_s
        FROM f""",
    "span_energy": f"""
        WITH b AS (SELECT sp.id AS span_id, sp.run_id, d.id AS device_id, d.kind, d.idx,
                          sp.started_at AS a_t, COALESCE(sp.ended_at, rf.ended_at) AS z_t
                   FROM spans sp JOIN devices d ON d.run_id = sp.run_id JOIN run_figures rf ON rf.run_id = sp.run_id),
             p AS (SELECT b.*, {_around("a", "b.a_t")}, {_around("z", "b.z_t")} FROM b)
        SELECT span_id, run_id, device_id, kind, idx,
               CASE WHEN z_t IS NOT NULL THEN ({_interpolated("z")}) - ({_interpolated("a")}) END AS energy_j
        FROM p""",
    "span_figures": f"""
        WITH RECURSIVE tree(root, id) AS (SELECT id, id FROM spans UNION ALL
                                          SELECT tree.root, s.id FROM spans s JOIN tree ON s.parent_id = tree.id),
             named(id, path) AS (SELECT id, name FROM spans WHERE parent_id IS NULL
                                 UNION ALL SELECT s.id, named.path || '/' || s.name FROM spans s
                                 JOIN named ON s.parent_id = named.id),
             k AS (SELECT tree.root AS span_id, SUM(t.n) AS tokens FROM tree JOIN tokens t ON t.span_id = tree.id
                   GROUP BY tree.root),
             e AS (SELECT span_id, {_KINDS}{_OTHER}
                   FROM (SELECT * FROM span_energy ORDER BY span_id, kind, idx, device_id) GROUP BY span_id),
             f AS (SELECT sp.id AS span_id, sp.run_id, sp.name, sp.parent_id, named.path, sp.started_at,
                          sp.ended_at, COALESCE(sp.ended_at, rf.ended_at) - sp.started_at AS duration_s,
                          e.energy_j_cpu, e.energy_j_ram, e.energy_j_gpu, e.energy_j_other, {_TOTAL} AS energy_j_total,
                          e.energy_j_node, r.carbon_g_per_kwh, {_PUE} AS pue, k.tokens
                   FROM spans sp JOIN runs r ON r.id = sp.run_id JOIN run_figures rf ON rf.run_id = sp.run_id
                   LEFT JOIN named ON named.id = sp.id LEFT JOIN e ON e.span_id = sp.id
                   LEFT JOIN k ON k.span_id = sp.id)
        SELECT span_id, run_id, name, parent_id, path, started_at, ended_at,
               {_iso("started_at")} AS started_at_iso, {_iso("ended_at")} AS ended_at_iso, duration_s,
               energy_j_cpu, energy_j_ram, energy_j_gpu, energy_j_other, energy_j_total, {_NODE_COLUMNS},
               {_BASIS} / 3600000.0 AS kwh, carbon_g_per_kwh, pue,
               {_BASIS} / 3600000.0 * pue * carbon_g_per_kwh AS co2e_g, tokens,
               CASE WHEN tokens THEN {_BASIS} / tokens END AS j_per_token
        FROM f""",
}

def default_db_path() -> str:
    return os.environ.get(ENV_DB) or DEFAULT_DB


def connect(path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False) -> sqlite3.Connection:
    """Open (and if asked, create) a footprint DB, checking it is one this version understands.

    `readonly` opens it without writing anything, for reports (see footprint.core.dbfile)."""
    from footprint.core import dbfile

    if str(path) == MEMORY:
        memory = sqlite3.connect(MEMORY, isolation_level=None, check_same_thread=False)
        with transaction(memory):
            _apply_schema(memory)
        return memory
    p = Path(path)
    conn: sqlite3.Connection | None = None
    try:
        conn, _ = dbfile.open_connection(p, create=create, readonly=readonly)
        conn.execute(f"PRAGMA busy_timeout = {int(dbfile.busy_timeout_s(readonly) * 1000)}")
        retry_busy(lambda c: _set_up(c, p, readonly), conn, dbfile.busy_timeout_s(readonly))
    except FootprintError:
        if conn is not None:
            conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise dbfile.explain(exc, p, readonly=readonly) from None
    return conn


def retry_busy(func: object, conn: sqlite3.Connection, timeout_s: float) -> None:
    """Run `func(conn)`, retrying while SQLite answers busy without waiting in its busy handler.

    Changing the journal mode of a new file (and reading a WAL file another process is just converting)
    returns SQLITE_BUSY at once, so writers opening the same new DB together need this backoff.
    """
    assert callable(func)
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            func(conn)
            return
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if ("locked" not in msg and "busy" not in msg) or time.monotonic() + delay > deadline:
                raise
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _set_up(conn: sqlite3.Connection, p: Path, readonly: bool) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise FootprintError(
            f"{p} was written by a newer footprint (schema {version}, this one reads {SCHEMA_VERSION}); "
            "upgrade footprint-profiler"
        )
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version == 0 and tables and "runs" not in tables:
        raise FootprintError(f"{p} is a SQLite database but not a footprint one")
    if readonly:
        if "runs" not in tables:
            raise FootprintError(f"no runs recorded in {p} (it holds no footprint data yet)")
        return
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across process crashes
    if version < SCHEMA_VERSION:
        with transaction(conn):  # BEGIN IMMEDIATE: one creator at a time, the others wait, then skip
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                _apply_schema(conn)


def _apply_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing: tables (never changed once made) and views (made again, so a migration from an
    older schema, which only adds views, also brings them up to date)."""
    for stmt in SCHEMA.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    for name in reversed(VIEWS):  # dependents first
        conn.execute(f"DROP VIEW IF EXISTS {name}")
    for name, select in VIEWS.items():
        conn.execute(f"CREATE VIEW {name} AS {select.strip()}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# table -> {column: how to shift it}: ids are renumbered past what the target already holds
SHIFTS: dict[str, dict[str, str]] = {
    "runs": {"id": "runs"},
    "devices": {"id": "devices", "run_id": "runs"},
    "samples": {"device_id": "devices"},
    "spans": {"id": "spans", "run_id": "runs", "parent_id": "spans"},
    "tokens": {"id": "tokens", "run_id": "runs", "span_id": "spans"},
    "events": {"id": "events", "run_id": "runs", "device_id": "devices"},
    "requests": {"id": "requests", "run_id": "runs"},
    "request_energy": {"run_id": "runs", "request_id": "requests"},
    "power_limits": {"id": "power_limits", "run_id": "runs"},
    "power_limit_changes": {"id": "power_limit_changes", "run_id": "runs"},
    "quality": {"id": "quality", "run_id": "runs"},
    "sweeps": {"id": "sweeps"},
    "sweep_points": {"id": "sweep_points", "sweep_id": "sweeps", "run_id": "runs"},
}


_NUMERIC = "('real', 'integer')"
_BAD_SAMPLE = (f"(typeof(s.t) NOT IN {_NUMERIC} OR typeof(s.energy_j) NOT IN {_NUMERIC} "
               f"OR (s.power_w IS NOT NULL AND typeof(s.power_w) NOT IN {_NUMERIC}))")
_BAD_ROW = {
    "tokens": "typeof(n) != 'integer' OR typeof(t) NOT IN " + _NUMERIC,
    "spans": f"typeof(started_at) NOT IN {_NUMERIC} OR (ended_at IS NOT NULL AND typeof(ended_at) NOT IN {_NUMERIC})",
}


class transaction:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so busy waits happen at BEGIN."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class Store:
    """Writes and reads one footprint DB: the only place with SQL. Thread-safe: one lock around its connection.

    `Store("run.db")` opens (and creates) a file; `Store(":memory:")` a private in-memory database.
    `query(sql)` stays available for ad-hoc reads (as in sqlite-utils); footprint's own code uses the
    named methods below.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True,
                 readonly: bool = False) -> None:
        self.path = str(path if path is not None else default_db_path())
        self.conn = connect(self.path, create=create and not readonly, readonly=readonly)
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------

    def create_run(self, name: str, *, created_at: float, host: str, pid: int,
                   command: Sequence[str] | None = None, interval_s: float | None = None,
                   country: str | None = None, carbon_g_per_kwh: float | None = None,
                   carbon_source: str | None = None, region: str | None = None, pue: float = 1.0,
                   price_kwh: float | None = None, price_hour: float | None = None, currency: str | None = None,
                   job_id: str | None = None, rank: int | None = None, node: str | None = None,
                   meta: dict[str, Any] | None = None) -> int:
        with self.lock, transaction(self.conn) as c:
            cur = c.execute(
                "INSERT INTO runs (name, status, created_at, heartbeat_at, host, pid, command, interval_s, "
                "country, carbon_g_per_kwh, carbon_source, region, pue, price_kwh, price_hour, currency, job_id, "
                "rank, node, meta) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, created_at, created_at, host, pid, json.dumps(list(command)) if command else None,
                 interval_s, country, carbon_g_per_kwh, carbon_source, region, pue, price_kwh, price_hour,
                 currency, job_id, rank, node, json.dumps(meta or {})),
            )
            return int(cur.lastrowid or 0)

    def add_devices(self, run_id: int, devices: Iterable[Device], host: str) -> dict[str, int]:
        ids: dict[str, int] = {}
        with self.lock, transaction(self.conn) as c:
            for d in devices:
                cur = c.execute(
                    "INSERT INTO devices (run_id, kind, idx, name, source, measured, update_period_s, uuid, "
                    "power_limit_w, note, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, d.kind, d.index, d.name, d.source, int(d.measured), d.update_period_s, d.uuid,
                     d.power_limit_w, d.note, host),
                )
                ids[d.key] = int(cur.lastrowid or 0)
        return ids

    def write_batch(self, run_id: int, samples: Sequence[tuple[int, float, float, float | None, int]],
                    events: Sequence[tuple[int | None, float, str, str]], heartbeat: float) -> None:
        """One transaction: samples, events and the run's heartbeat."""
        with self.lock, transaction(self.conn) as c:
            if samples:
                c.executemany("INSERT INTO samples (device_id, t, energy_j, power_w, mark) VALUES (?, ?, ?, ?, ?)",
                              samples)
            if events:
                c.executemany(
                    "INSERT INTO events (run_id, device_id, t, kind, message) VALUES (?, ?, ?, ?, ?)",
                    [(run_id, *e) for e in events],
                )
            c.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (heartbeat, run_id))

    def set_baseline(self, device_id: int, watts: float) -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("UPDATE devices SET baseline_w = ? WHERE id = ?", (watts, device_id))

    def power_series(self, device_id: int, *, points: int = 120) -> list[tuple[float, float]]:
        """(t, mean power since the previous point) for a device, at most `points` of them.

        Computed from cumulative energy, so it is right whatever the probe's own power readings, and
        found by index seeks on an even time grid, so it costs the same for 100 or 10 million samples.
        """
        # one aggregate per subquery: SQLite answers a lone MIN or MAX with one index seek, but both in one
        # SELECT with a scan of the device's every sample (1.3 s for 10 million)
        ends = self.query("SELECT (SELECT MIN(t) FROM samples WHERE device_id = ?), "
                          "(SELECT MAX(t) FROM samples WHERE device_id = ?)", (device_id, device_id))
        t0, t1 = ends[0][0], ends[0][1]
        if t0 is None or t1 <= t0:
            return []
        picked: list[tuple[float, float]] = []
        with self.lock:
            for k in range(points + 1):
                row = self.conn.execute(
                    "SELECT t, energy_j FROM samples WHERE device_id = ? AND t >= ? ORDER BY t LIMIT 1",
                    (device_id, t0 + (t1 - t0) * k / points)).fetchone()
                if row is not None and (not picked or row[0] > picked[-1][0]):
                    picked.append((float(row[0]), float(row[1])))
        return [(b[0], (b[1] - a[1]) / (b[0] - a[0])) for a, b in zip(picked, picked[1:], strict=False)]

    def update_meta(self, run_id: int, patch: dict[str, Any], *, keep: bool = False) -> None:
        """Set top-level keys of the run's meta (JSON object), keeping the others (and with `keep`, the keys it
        has already): read and written in one transaction, so two processes of a run (its owner and a child that
        joined it) never lose each other's."""
        with self.lock, transaction(self.conn) as c:
            row = c.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise FootprintError(f"no run with id {run_id} in {self.path}")
            try:
                meta = json.loads(row[0]) if row[0] else {}
            except ValueError:
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            meta.update({k: v for k, v in patch.items() if not (keep and k in meta)})
            c.execute("UPDATE runs SET meta = ? WHERE id = ?", (json.dumps(meta), run_id))

    def add_event(self, run_id: int, t: float, kind: str, message: str) -> None:
        """One event of the run (not a device's), written at once."""
        with self.lock, transaction(self.conn) as c:
            c.execute("INSERT INTO events (run_id, device_id, t, kind, message) VALUES (?, NULL, ?, ?, ?)",
                      (run_id, t, kind, message))

    def set_started(self, run_id: int, started_at: float) -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("UPDATE runs SET started_at = ? WHERE id = ?", (started_at, run_id))

    def finish_run(self, run_id: int, *, status: str, exit_code: int | None, ended_at: float | None) -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("UPDATE runs SET status = ?, exit_code = ?, ended_at = ? WHERE id = ?",
                      (status, exit_code, ended_at, run_id))

    def start_span(self, run_id: int, name: str, parent_id: int | None, t: float) -> int:
        with self.lock, transaction(self.conn) as c:
            cur = c.execute("INSERT INTO spans (run_id, parent_id, name, started_at) VALUES (?, ?, ?, ?)",
                            (run_id, parent_id, name, t))
            return int(cur.lastrowid or 0)

    def end_span(self, span_id: int, t: float) -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("UPDATE spans SET ended_at = ? WHERE id = ?", (t, span_id))

    def add_tokens(self, run_id: int, span_id: int | None, t: float, n: int, kind: str = "tokens") -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("INSERT INTO tokens (run_id, span_id, t, n, kind) VALUES (?, ?, ?, ?, ?)",
                      (run_id, span_id, t, n, kind))

    def add_requests(self, run_id: int, requests: Sequence[dict[str, Any]]) -> None:
        """Record finished requests (dicts keyed by the `requests` columns) and their prompt and generated tokens
        (kinds 'prompt' and 'generated', at the request's end), in one transaction."""
        cols = REQUEST_COLUMNS
        with self.lock, transaction(self.conn) as c:
            for r in requests:
                c.execute(f"INSERT INTO requests (run_id, {', '.join(cols)}) VALUES (?{', ?' * len(cols)})",
                          (run_id, *(r.get(k) for k in cols)))
                for kind, key in (("prompt", "prompt_tokens"), ("generated", "completion_tokens")):
                    if r.get(key):
                        c.execute("INSERT INTO tokens (run_id, span_id, t, n, kind) VALUES (?, NULL, ?, ?, ?)",
                                  (run_id, r["ended_at"], int(r[key]), kind))

    def set_request_energy(self, run_id: int, rows: Sequence[tuple[int | None, str, float]]) -> None:
        """Replace the run's attributed energies: (request id or None for idle, device kind, J)."""
        with self.lock, transaction(self.conn) as c:
            c.execute("DELETE FROM request_energy WHERE run_id = ?", (run_id,))
            c.executemany("INSERT INTO request_energy (run_id, request_id, kind, energy_j) VALUES (?, ?, ?, ?)",
                          [(run_id, *r) for r in rows])
    def add_power_limits(self, run_id: int, rows: Sequence[dict[str, Any]]) -> None:
        """Profiled (or set) GPU power limits of a run: dicts with the power_limits columns but id and run_id."""
        cols = ("t", "limit_w", "steps", "energy_j", "time_s", "gpus", "score", "objective", "chosen", "source")
        with self.lock, transaction(self.conn) as c:
            c.executemany(f"INSERT INTO power_limits (run_id, {', '.join(cols)}) VALUES (?{', ?' * len(cols)})",
                          [(run_id, *(r.get(k) for k in cols)) for r in rows])

    def add_power_limit_change(self, run_id: int, *, t: float, idx: int, limit_w: float | None,
                               previous_w: float | None, action: str, actor: str,
                               restore_command: str | None = None) -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("INSERT INTO power_limit_changes (run_id, t, idx, limit_w, previous_w, action, actor, "
                      "restore_command) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (run_id, t, idx, limit_w, previous_w, action, actor, restore_command))

    def power_limits(self, run_id: int) -> list[dict[str, Any]]:
        """The run's power_limits rows in the order they were recorded ([] in a DB from before schema 3)."""
        return self._rows_if_table("SELECT * FROM power_limits WHERE run_id = ? ORDER BY id", (run_id,))

    def power_limit_changes(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows_if_table("SELECT * FROM power_limit_changes WHERE run_id = ? ORDER BY t, id", (run_id,))

    def _rows_if_table(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            return [dict(r) for r in self.query(sql, params)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # an older DB opened read-only: it has none of these rows
                return []
            raise
    def add_quality(self, run_id: int, t: float, value: float, *, metric: str | None = None,
                    source: str = "set_quality") -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("INSERT INTO quality (run_id, t, value, metric, source) VALUES (?, ?, ?, ?, ?)",
                      (run_id, t, value, metric, source))

    def create_sweep(self, name: str, *, created_at: float, host: str, pid: int, command: Sequence[str],
                     params: dict[str, list[str]], repeats: int, options: dict[str, Any]) -> int:
        with self.lock, transaction(self.conn) as c:
            cur = c.execute(
                "INSERT INTO sweeps (name, status, created_at, host, pid, command, params, repeats, options) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (name, created_at, host, pid, json.dumps(list(command)), json.dumps(params), repeats,
                 json.dumps(options)))
            return int(cur.lastrowid or 0)

    def set_sweep_status(self, sweep_id: int, status: str, *, pid: int | None = None) -> None:
        """A sweep's status; with `pid`, the process that now runs it (a resume)."""
        with self.lock, transaction(self.conn) as c:
            c.execute("UPDATE sweeps SET status = ?, pid = COALESCE(?, pid) WHERE id = ?", (status, pid, sweep_id))

    def add_sweep_point(self, sweep_id: int, *, run_id: int | None, point_index: int, point: dict[str, str],
                        repeat: int, status: str, exit_code: int | None, started_at: float,
                        ended_at: float) -> None:
        with self.lock, transaction(self.conn) as c:
            c.execute("INSERT INTO sweep_points (sweep_id, run_id, point_index, point, repeat, status, exit_code, "
                      "started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (sweep_id, run_id, point_index, json.dumps(point), repeat, status, exit_code, started_at,
                       ended_at))

    def compact(self, run_id: int, *, since: float, until: float, bucket_s: float) -> int:
        """Thin the periodic samples of [since, until) to the last one per device per `bucket_s`.

        Energies are cumulative, so totals and every boundary (marks are kept) stay exact; only the
        time resolution of old power curves drops. Returns the number of samples removed.
        """
        with self.lock, transaction(self.conn) as c:
            cur = c.execute(
                """
                DELETE FROM samples WHERE rowid IN (
                    SELECT s.rowid FROM samples s JOIN devices d ON d.id = s.device_id
                    WHERE d.run_id = :run AND s.mark = 0 AND s.t >= :since AND s.t < :until
                      AND s.rowid NOT IN (
                        SELECT MAX(s2.rowid) FROM samples s2 JOIN devices d2 ON d2.id = s2.device_id
                        WHERE d2.run_id = :run AND s2.t >= :since AND s2.t < :until
                        GROUP BY s2.device_id, CAST((s2.t - :since) / :bucket AS INTEGER)))
                """,
                {"run": run_id, "since": since, "until": until, "bucket": bucket_s},
            )
            return cur.rowcount

    def merge_from(self, source: str | os.PathLike[str]) -> tuple[int, int, int]:
        """Copy every run of the footprint DB at `source` (a path, or a read-only URI) into this one, renumbering
        ids past what this one holds. A run already here (same host, pid, creation time and name) is skipped if
        its copy is as recent as the source's, and replaced if the source has moved on (it was merged while still
        recording), so merging twice never double-counts and re-merging brings a run up to date.
        Returns (copied, skipped, updated); `copied` includes the updated ones."""
        conn = self.conn
        same = ("m.host IS s.host AND m.pid IS s.pid AND m.created_at = s.created_at AND m.name = s.name")
        current = ("m.status IS s.status AND m.heartbeat_at IS s.heartbeat_at AND m.ended_at IS s.ended_at "
                   "AND m.exit_code IS s.exit_code")
        with self.lock:
            conn.execute("ATTACH DATABASE ? AS src", (os.fspath(source),))
            try:
                with transaction(conn):
                    skipped = int(conn.execute(
                        f"SELECT COUNT(*) FROM src.runs s WHERE EXISTS (SELECT 1 FROM main.runs m WHERE {same} "
                        f"AND {current})").fetchone()[0])
                    stale = [int(r[0]) for r in conn.execute(
                        f"SELECT m.id FROM main.runs m JOIN src.runs s ON {same} WHERE NOT ({current})")]
                    for run_id in stale:  # an older copy of a run that has moved on: the source's replaces it
                        self._delete_run(run_id)
                    conn.execute(f"CREATE TEMP TABLE keep AS SELECT id FROM src.runs s WHERE NOT EXISTS "
                                 f"(SELECT 1 FROM main.runs m WHERE {same})")
                    self._sweeps_to_copy()
                    offsets = {t: conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM main.{t}").fetchone()[0]
                               for t in {t for shifts in SHIFTS.values() for t in shifts.values()}}
                    for table, shifts in SHIFTS.items():
                        cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
                        src_cols = {r[1] for r in conn.execute(f"PRAGMA src.table_info({table})")}
                        if not src_cols:  # a table the source's older schema does not have
                            continue
                        exprs = []
                        for c in cols:
                            if c not in src_cols:
                                exprs.append("NULL")
                            elif table == "sweep_points" and c == "run_id":
                                # its run may have been copied before (skipped now): found by identity, not offset
                                exprs.append(f"(SELECT m.id FROM main.runs m JOIN src.runs s ON {same} "
                                             "WHERE s.id = t.run_id)")
                            elif c in shifts:
                                exprs.append(f"t.{c} + {int(offsets[shifts[c]])}")
                            else:
                                exprs.append(f"t.{c}")
                        where = {
                            "runs": "t.id IN (SELECT id FROM temp.keep)",
                            "samples": "t.device_id IN (SELECT id FROM src.devices WHERE run_id IN "
                                       "(SELECT id FROM temp.keep))",
                            "sweeps": "t.id IN (SELECT id FROM temp.keep_sweeps)",
                            "sweep_points": "t.sweep_id IN (SELECT id FROM temp.keep_sweeps)",
                        }.get(table, "t.run_id IN (SELECT id FROM temp.keep)")
                        conn.execute(f"INSERT INTO main.{table} ({', '.join(cols)}) "
                                     f"SELECT {', '.join(exprs)} FROM src.{table} t WHERE {where}")
                    copied = int(conn.execute("SELECT COUNT(*) FROM temp.keep").fetchone()[0])
                    conn.execute("DROP TABLE temp.keep")
                    conn.execute("DROP TABLE temp.keep_sweeps")
            finally:
                conn.execute("DETACH DATABASE src")
        return copied, skipped, len(stale)

    def _sweeps_to_copy(self) -> None:
        """Merge, inside its transaction: temp.keep_sweeps gets the source's sweeps to copy. A sweep is the same
        one when its host, creation time and name match (a resume changes its pid); one already here that has
        moved on since (more points, another status) is removed first and copied again, points and all."""
        c = self.conn
        c.execute("CREATE TEMP TABLE keep_sweeps (id INTEGER)")
        if not c.execute("SELECT 1 FROM src.sqlite_master WHERE type = 'table' AND name = 'sweeps'").fetchone():
            return
        same = "m.host IS s.host AND m.created_at = s.created_at AND m.name = s.name"
        points = "(SELECT COUNT(*) FROM {db}.sweep_points p WHERE p.sweep_id = {t}.id)"
        for (stale,) in c.execute(
                f"SELECT m.id FROM main.sweeps m JOIN src.sweeps s ON {same} WHERE m.status IS NOT s.status "
                f"OR {points.format(db='main', t='m')} != {points.format(db='src', t='s')}").fetchall():
            c.execute("DELETE FROM sweep_points WHERE sweep_id = ?", (stale,))
            c.execute("DELETE FROM sweeps WHERE id = ?", (stale,))
        c.execute(f"INSERT INTO temp.keep_sweeps SELECT id FROM src.sweeps s WHERE NOT EXISTS "
                  f"(SELECT 1 FROM main.sweeps m WHERE {same})")

    def _delete_run(self, run_id: int) -> None:
        """Remove a run and everything that hangs off it (inside the caller's transaction)."""
        c = self.conn
        c.execute("DELETE FROM samples WHERE device_id IN (SELECT id FROM devices WHERE run_id = ?)", (run_id,))
        # dependents first; a sweep's points stay: a sweep is merged by its own identity (_sweeps_to_copy)
        for table in reversed([t for t, sh in SHIFTS.items() if sh.get("run_id") == "runs" and t != "sweep_points"]):
            c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        c.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- reads ----------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            self.conn.row_factory = sqlite3.Row
            try:
                return list(self.conn.execute(sql, params))
            finally:
                self.conn.row_factory = None

    def run_row(self, run_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def run_name(self, run_id: int) -> str | None:
        rows = self.query("SELECT name FROM runs WHERE id = ?", (run_id,))
        return str(rows[0][0]) if rows else None

    def run_status(self, run_id: int) -> str | None:
        """The status column (running, completed, failed, interrupted), None for no such run."""
        rows = self.query("SELECT status FROM runs WHERE id = ?", (run_id,))
        return str(rows[0][0]) if rows else None

    def run_started_at(self, run_id: int) -> float | None:
        rows = self.query("SELECT started_at FROM runs WHERE id = ?", (run_id,))
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def running_runs(self) -> list[sqlite3.Row]:
        """Runs whose status says running (the caller tells live ones from crashed ones)."""
        return self.query("SELECT * FROM runs WHERE status = 'running' ORDER BY id")

    def run_devices(self, run_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM devices WHERE run_id = ? ORDER BY kind, idx, id", (run_id,))

    def latest_samples(self, device_id: int, n: int = 2) -> list[tuple[float, float]]:
        """The device's last `n` samples as (t, energy_j), newest first."""
        rows = self.query("SELECT t, energy_j FROM samples WHERE device_id = ? ORDER BY t DESC LIMIT ?",
                          (device_id, n))
        return [(float(r[0]), float(r[1])) for r in rows]

    def first_sample(self, device_id: int) -> tuple[float, float] | None:
        rows = self.query("SELECT t, energy_j FROM samples WHERE device_id = ? ORDER BY t LIMIT 1", (device_id,))
        return (float(rows[0][0]), float(rows[0][1])) if rows else None

    def spans(self, run_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM spans WHERE run_id = ? ORDER BY started_at, id", (run_id,))

    def token_totals(self, run_id: int) -> tuple[dict[int | None, int], dict[str, int]]:
        """(tokens per span id, None for the run itself; tokens per kind)."""
        by_span = {r[0]: int(r[1]) for r in self.query(
            "SELECT span_id, SUM(n) FROM tokens WHERE run_id = ? GROUP BY span_id", (run_id,))}
        by_kind = {str(r[0]): int(r[1]) for r in self.query(
            "SELECT kind, SUM(n) FROM tokens WHERE run_id = ? GROUP BY kind ORDER BY kind", (run_id,))}
        return by_span, by_kind

    def tokens_total(self, run_id: int) -> int:
        return int(self.query("SELECT COALESCE(SUM(n), 0) FROM tokens WHERE run_id = ?", (run_id,))[0][0])

    def events(self, run_id: int) -> list[dict[str, Any]]:
        """The run's events in time order: t, kind, message and the device ('gpu:0') where one is named."""
        return [dict(r) for r in self.query(
            "SELECT e.t, e.kind, e.message, d.kind || ':' || d.idx AS device FROM events e "
            "LEFT JOIN devices d ON d.id = e.device_id WHERE e.run_id = ? ORDER BY e.t", (run_id,))]

    def run_quality(self, run_ids: Sequence[int]) -> dict[int, tuple[float, str | None, str]]:
        """Per run that has one, its latest quality: (value, metric, source)."""
        if not run_ids or not self.has_table("quality"):  # a schema-2 DB opened read-only has none
            return {}
        marks = ",".join("?" * len(run_ids))
        rows = self.query(f"SELECT run_id, value, metric, source FROM quality WHERE run_id IN ({marks}) "
                          "ORDER BY t, id", list(run_ids))
        return {int(r[0]): (float(r[1]), r[2], str(r[3])) for r in rows}  # the latest row wins

    def has_table(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def last_run_id(self) -> int:
        """The highest run id so far, 0 in an empty DB."""
        return int(self.query("SELECT COALESCE(MAX(id), 0) FROM runs")[0][0])

    def run_of_process(self, pid: int, host: str, after_id: int) -> int | None:
        """The run a process (pid on host) created after run `after_id`: how a sweep finds its point's run."""
        rows = self.query("SELECT id FROM runs WHERE pid = ? AND host IS ? AND id > ? ORDER BY id LIMIT 1",
                          (pid, host, after_id))
        return int(rows[0][0]) if rows else None

    def sweep_row(self, sweep_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM sweeps WHERE id = ?", (sweep_id,))
        return rows[0] if rows else None

    def sweep_point_rows(self, sweep_id: int) -> list[sqlite3.Row]:
        """Every recorded run of a sweep's points, in the order they ran."""
        return self.query("SELECT * FROM sweep_points WHERE sweep_id = ? ORDER BY id", (sweep_id,))

    def resolve_sweep(self, ref: str) -> int:
        """A sweep id, or 'last'."""
        has = self.has_table("sweeps")
        rows = self.query("SELECT MAX(id) FROM sweeps") if has else []
        if ref in ("last", "latest"):
            if not rows or rows[0][0] is None:
                raise FootprintError(f"no sweeps recorded in {self.path}")
            return int(rows[0][0])
        if ref.isascii() and ref.isdigit() and int(ref) < 2**63 and has \
                and self.query("SELECT 1 FROM sweeps WHERE id = ?", (int(ref),)):
            return int(ref)
        raise FootprintError(f"no sweep with id '{ref}' in {self.path}")

    def last_job_id(self) -> str | None:
        rows = self.query("SELECT job_id FROM runs WHERE job_id IS NOT NULL ORDER BY id DESC LIMIT 1")
        return str(rows[0][0]) if rows else None

    def job_run_ids(self, job_id: str) -> list[int]:
        return [int(r[0]) for r in self.query("SELECT id FROM runs WHERE job_id = ? ORDER BY id", (job_id,))]

    def requests(self, run_id: int) -> list[sqlite3.Row]:
        """The run's served requests, in start order (an older DB has none)."""
        if not self._has_table("requests"):
            return []
        return self.query("SELECT * FROM requests WHERE run_id = ? ORDER BY started_at, id", (run_id,))

    def request_counts(self, run_ids: Sequence[int]) -> dict[int, int]:
        """How many requests each run served (runs with none are left out)."""
        if not run_ids or not self._has_table("requests"):
            return {}
        marks = ",".join("?" * len(run_ids))
        return {int(r[0]): int(r[1]) for r in self.query(
            f"SELECT run_id, COUNT(*) FROM requests WHERE run_id IN ({marks}) GROUP BY run_id", list(run_ids))}

    def series(self, device_id: int, *, since: float | None = None, until: float | None = None,
               ) -> list[tuple[float, float]]:
        """A device's cumulative (t, energy J) samples in time order, from the last one at or before `since` to the
        first one at or after `until` (so the window is covered), or all of them."""
        lo = "" if since is None else " AND t >= COALESCE((SELECT MAX(t) FROM samples WHERE device_id = :d " \
            "AND t <= :since), :since)"
        hi = "" if until is None else " AND t <= COALESCE((SELECT MIN(t) FROM samples WHERE device_id = :d " \
            "AND t >= :until), :until)"
        rows = self.query(f"SELECT t, energy_j FROM samples WHERE device_id = :d{lo}{hi} ORDER BY t, rowid",
                          {"d": device_id, "since": since, "until": until})
        return [(float(r[0]), float(r[1])) for r in rows]

    def _has_table(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def sample_rows(self, run_ids: Sequence[int]) -> list[sqlite3.Row]:
        """Every sample of these runs with its device, in time order (for data frames)."""
        marks = ", ".join("?" * len(run_ids))
        return self.query(
            "SELECT d.run_id, d.kind, d.idx AS device_index, d.source, s.t, s.energy_j, s.power_w, s.mark "
            f"FROM samples s JOIN devices d ON d.id = s.device_id WHERE d.run_id IN ({marks}) "
            "ORDER BY d.run_id, d.kind, d.idx, s.t", tuple(run_ids))

    # -- integrity: values a hand-edited or damaged DB can hold (SQLite columns take any type) ----------------

    def damaged_endpoint(self, run_ids: Sequence[int]) -> tuple[Any, ...] | None:
        """(run_id, kind, idx, t, energy_j, power_w) of a device's first or last sample that holds a non-number."""
        if not run_ids:
            return None
        marks = ",".join("?" * len(run_ids))
        rows = self.query(
            f"""
            SELECT d.run_id, d.kind, d.idx, s.t, s.energy_j, s.power_w FROM devices d JOIN samples s
              ON s.rowid IN ((SELECT rowid FROM samples WHERE device_id = d.id ORDER BY t LIMIT 1),
                             (SELECT rowid FROM samples WHERE device_id = d.id ORDER BY t DESC LIMIT 1))
            WHERE d.run_id IN ({marks}) AND {_BAD_SAMPLE}
            LIMIT 1
            """, list(run_ids))
        return tuple(rows[0]) if rows else None

    def damaged_sample(self, run_ids: Sequence[int] | None = None) -> tuple[Any, ...] | None:
        """Like damaged_endpoint, for any sample (a full scan)."""
        ids = list(run_ids or ())
        only = f" AND d.run_id IN ({','.join('?' * len(ids))})" if ids else ""
        rows = self.query(f"SELECT d.run_id, d.kind, d.idx, s.t, s.energy_j, s.power_w FROM samples s "
                          f"JOIN devices d ON d.id = s.device_id WHERE {_BAD_SAMPLE}{only} LIMIT 1", ids)
        return tuple(rows[0]) if rows else None

    def damaged_row(self, table: str, run_ids: Sequence[int] | None = None) -> int | None:
        """The run id of a row of `table` ('tokens' or 'spans') that holds a non-number where a number belongs."""
        ids = list(run_ids or ())
        only = f" AND run_id IN ({','.join('?' * len(ids))})" if ids else ""
        rows = self.query(f"SELECT run_id FROM {table} WHERE ({_BAD_ROW[table]}){only} LIMIT 1", ids)
        return int(rows[0][0]) if rows else None

    def columns(self) -> dict[str, list[str]]:
        """Every table and view of the DB with its columns, in schema order."""
        names = [str(r[0]) for r in self.query(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite%' "
            "ORDER BY type, rowid")]
        return {n: [str(r[1]) for r in self.query(f"PRAGMA table_info({n})")] for n in names}

    def run_ids(self, limit: int | None = None) -> list[int]:
        sql = "SELECT id FROM runs ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [int(r[0]) for r in self.query(sql)]

    def resolve_run(self, ref: str) -> int:
        """A run id, 'last', or a run name (its latest run)."""
        if ref in ("last", "latest"):
            ids = self.run_ids(1)
            if not ids:
                raise FootprintError(f"no runs recorded in {self.path}")
            return ids[0]
        if ref.isascii() and ref.isdigit() and int(ref) < 2**63:  # '²' is a digit to isdigit(), not to int()
            if self.query("SELECT 1 FROM runs WHERE id = ?", (int(ref),)):
                return int(ref)
            raise FootprintError(f"no run with id {ref} in {self.path} (see `footprint runs`)")
        rows = self.query("SELECT id FROM runs WHERE name = ? ORDER BY id DESC LIMIT 1", (ref,))
        if rows:
            return int(rows[0]["id"])
        raise FootprintError(f"no run with id or name '{ref}' in {self.path} (see `footprint runs`)")

    def device_totals(self, run_id: int) -> list[sqlite3.Row]:
        """Per device: energy between its first and last sample, found through the (device, t) index (four
        index seeks per device, so the cost does not grow with the number of samples)."""
        return self.query(
            """
            SELECT d.*,
                   (SELECT MIN(t) FROM samples s WHERE s.device_id = d.id) AS first_t,
                   (SELECT MAX(t) FROM samples s WHERE s.device_id = d.id) AS last_t,
                   (SELECT energy_j FROM samples s WHERE s.device_id = d.id ORDER BY t DESC LIMIT 1)
                 - (SELECT energy_j FROM samples s WHERE s.device_id = d.id ORDER BY t ASC LIMIT 1) AS energy_j
            FROM devices d WHERE d.run_id = ? ORDER BY d.kind, d.idx, d.id
            """,
            (run_id,),
        )

    def reading_stored_since(self, run_id: int, t: float, *, mark: bool = False) -> bool:
        """Whether the run has a sample taken at or after t (with `mark`, a boundary read, which covers every
        device): what a process that joined the run waits for before it reads its figures."""
        return bool(self.query(
            "SELECT 1 FROM devices d JOIN samples s ON s.device_id = d.id WHERE d.run_id = ? AND s.t >= ?"
            + (" AND s.mark = 1" if mark else "") + " LIMIT 1", (run_id, t)))

    def energy_at(self, device_id: int, t: float) -> float | None:
        """Cumulative energy of a device at instant t, interpolated between the samples around it."""
        from footprint.common.units import interpolate

        before = self.query("SELECT t, energy_j FROM samples WHERE device_id = ? AND t <= ? ORDER BY t DESC LIMIT 1",
                            (device_id, t))
        after = self.query("SELECT t, energy_j FROM samples WHERE device_id = ? AND t >= ? ORDER BY t ASC LIMIT 1",
                           (device_id, t))
        if before and after:
            return interpolate(t, before[0][0], before[0][1], after[0][0], after[0][1])
        if before:
            return float(before[0][1])
        if after:
            return float(after[0][1])
        return None
