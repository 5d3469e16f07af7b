"""What each table, view and column of a footprint DB holds, with units: shown by datasette
(`footprint report --datasette-metadata > metadata.json; datasette footprint.db -m metadata.json`)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# column -> (unit for datasette (a Pint unit) or None, description); shared by every table that has the column
COLUMNS: dict[str, tuple[str | None, str]] = {
    "run_id": (None, "the run (runs.id)"),
    "device_id": (None, "the device (devices.id)"),
    "span_id": (None, "the span (spans.id)"),
    "name": (None, "name given to the run, span or device"),
    "status": (None, "running, completed, failed or interrupted (a 'running' run whose process is gone is "
                     "reported as incomplete)"),
    "exit_code": (None, "the command's exit code, for `footprint run`"),
    "created_at": ("s", "when the run was created, epoch seconds (UTC)"),
    "started_at": ("s", "first counter read, epoch seconds (UTC)"),
    "ended_at": ("s", "last counter read, epoch seconds (UTC); empty while running or after a crash"),
    "started_at_iso": (None, "started_at as ISO 8601, UTC"),
    "ended_at_iso": (None, "ended_at as ISO 8601, UTC"),
    "heartbeat_at": ("s", "last flush to the DB, epoch seconds: tells a crashed run from a live one"),
    "host": (None, "host name of the machine"),
    "pid": (None, "process id of the profiled process"),
    "command": (None, "the command line, as a JSON list (`footprint run`)"),
    "interval_s": ("s", "seconds between reads of the hardware counters"),
    "country": (None, "ISO 3166 alpha-3 country of the carbon intensity, when known"),
    "carbon_g_per_kwh": ("g/kWh", "carbon intensity used, grams CO2e per kWh"),
    "carbon_source": (None, "where the carbon intensity came from, and why it was chosen"),
    "region": (None, "cloud region as provider:region, when given"),
    "pue": (None, "data-centre power usage effectiveness, multiplies energy for CO2e and cost (1.0 unless given)"),
    "price_kwh": (None, "electricity price per kWh, in currency"),
    "price_hour": (None, "instance price per hour, in currency"),
    "currency": (None, "currency of the prices"),
    "job_id": (None, "distributed jobs: the job all ranks share"),
    "rank": (None, "distributed jobs: the global rank"),
    "node": (None, "distributed jobs: the node it ran on"),
    "meta": (None, "JSON object: os, python, cpu_count, ram_total_gb, cpu_packages, embodied (on, lifetime_years, "
                   "utilisation: how embodied CO2e is amortised), expect (the steps the workload expects), gpus_used "
                   "(NVML indices of the GPUs the run's processes used; the others measured were idle) with "
                   "gpus_used_source (nvml-processes or torch), and anything the caller added"),
    "kind": (None, "device kind (cpu, ram, gpu, or another) or token kind (tokens, prompt, generated)"),
    "idx": (None, "index of the device among those of its kind"),
    "source": (None, "what measured it: nvml, amdsmi, rapl, or estimate:... for labelled estimates"),
    "measured": (None, "1 when read from a hardware counter, 0 for an estimate"),
    "update_period_s": ("s", "how often the counter updates; windows shorter than this are unreliable"),
    "uuid": (None, "the device's UUID (GPUs)"),
    "power_limit_w": ("W", "the device's power limit"),
    "note": (None, "how the figure is made, and its caveats"),
    "baseline_w": ("W", "idle power measured before the run (--baseline)"),
    "t": ("s", "time of the read or event, epoch seconds (UTC)"),
    "energy_j": ("J", "energy in joules (in samples: cumulative since the probe opened)"),
    "power_w": ("W", "power reported by the device at the read, if it reports one"),
    "mark": (None, "1 for a read at a run or span boundary (never compacted away)"),
    "parent_id": (None, "the enclosing span (spans.id), empty at the top"),
    "n": (None, "number of tokens"),
    "id": (None, "primary key"),
    "message": (None, "what happened"),
    "first_t": ("s", "the device's first read, epoch seconds"),
    "last_t": ("s", "the device's last read, epoch seconds"),
    "devices": (None, "number of devices of this kind"),
    "duration_s": ("s", "seconds from start to end (a span still open ends at the run's end)"),
    "energy_j_cpu": ("J", "CPU energy (packages), joules"),
    "energy_j_ram": ("J", "RAM energy, joules"),
    "energy_j_gpu": ("J", "GPU energy, all GPUs, joules"),
    "energy_j_other": ("J", "energy of every other device kind, joules (run_energy / span_energy list each)"),
    "energy_j_total": ("J", "energy of every component, joules (before PUE); a node meter is not added in"),
    "energy_j_node": ("J", "whole-node energy (wall meter, BMC, battery, phone: devices of kind node), joules, "
                           "when one was read"),
    "unattributed_j": ("J", "energy_j_node - energy_j_total: what no component counter sees (fans, PSU loss, "
                            "disks, NICs); negative when components over-count"),
    "energy_basis": (None, "node when kWh, CO2e and J/token come from energy_j_node, components when from "
                           "energy_j_total"),
    "kwh": ("kWh", "energy_j_node (when read) or energy_j_total, in kWh (before PUE)"),
    "co2e_g": ("g", "grams CO2e: kWh × PUE × carbon intensity"),
    "tokens": (None, "tokens counted (for a span: in it and its sub-spans)"),
    "j_per_token": ("J", "joules per token (energy_j_node, or energy_j_total without a node meter, / tokens)"),
    "tokens_per_s": (None, "tokens per second of the run"),
    "path": (None, "the span's names from the top, joined by '/' (train/epoch/step)"),
    "limit_w": ("W", "GPU power limit, watts"),
    "steps": (None, "training steps profiled at this limit; empty when it was set for the whole run"),
    "time_s": ("s", "duration of the profiled steps (the slowest rank's), seconds"),
    "gpus": (None, "number of GPUs, over all ranks, whose energy is summed"),
    "score": (None, "the objective per step (J, s or Zeus' cost in J), lower is better; empty: ruled out"),
    "objective": (None, "what the tuner minimised: energy, time, cost (eta=...), least energy within X % slowdown"),
    "chosen": (None, "1 for the limit kept for the rest of the run"),
    "previous_w": ("W", "the GPU's power limit before this change"),
    "action": (None, "set, or restored (the original limit put back)"),
    "actor": (None, "who made the change: footprint run, tuner, or watchdog (after the tuner's process died)"),
    "restore_command": (None, "the command that puts the original limit back by hand"),
    "value": (None, "the quality score (higher is better)"),
    "metric": (None, "what the quality measures, as the workload names it (accuracy, exp(-NLL)...)"),
    "sweep_id": (None, "the sweep (sweeps.id)"),
    "params": (None, "JSON object: each parameter's name and its list of values, in grid order"),
    "repeats": (None, "runs per point"),
    "options": (None, "JSON object: the options every point's run is given (interval, baseline, cooldown, "
                      "quality_from, kill_group, economics)"),
    "point_index": (None, "position of the point in the grid (every combination of the values, the last "
                          "parameter varying fastest), from 0"),
    "point": (None, "JSON object: each parameter's name and its value at this point"),
    "repeat": (None, "which run of the point this is, from 1"),
}

TABLES: dict[str, tuple[str, dict[str, tuple[str | None, str]]]] = {
    "runs": ("One row per profiled run: what it was and the settings its figures use.", {}),
    "devices": ("Each device a run read, with where its figures come from.",
                {"name": (None, "device model"), "host": (None, "host the device is on")}),
    "samples": ("Reads of each device's cumulative energy counter over time. Energy between two instants is the "
                "difference of two reads: see the *_figures views, which do that for you.", {}),
    "spans": ("Named phases of a run (nested through parent_id).", {}),
    "tokens": ("Token counts, per run and span.", {"kind": (None, "tokens, prompt or generated")}),
    "events": ("What happened during a run: probe errors, devices that stopped.", {}),
    "requests": ("Requests served under `footprint serve` or its ASGI middleware: counts and timings only, never "
                 "their content.", {
                     "started_at": ("s", "when the request's head arrived, epoch seconds (UTC)"),
                     "first_token_at": ("s", "when the first streamed token went to the client (streams only)"),
                     "ended_at": ("s", "when the response ended, failed or the client went away"),
                     "model": (None, "the model the request asked for"),
                     "endpoint": (None, "the path, e.g. /v1/chat/completions"),
                     "status": (None, "HTTP status sent to the client; 499 when the client disconnected, 502 "
                                      "when the upstream failed"),
                     "stream": (None, "1 for a streamed (server-sent events) response"),
                     "prompt_tokens": (None, "prompt tokens, from the response's usage"),
                     "completion_tokens": (None, "completion tokens: from usage, or counted (usage_source)"),
                     "usage_source": (None, "reported: the server's usage; counted: streamed chunks with text "
                                            "counted by footprint (the server sent no usage); none"),
                     "error": (None, "what went wrong, if anything"),
                 }),
    "request_energy": ("Each request's share of the run's energy per device kind (docs/serving.md: an "
                       "attribution, not a measurement, when requests overlap), written when the run ends.", {
                           "request_id": (None, "the request (requests.id); empty: the idle energy, when no "
                                                "request was active"),
                           "energy_j": ("J", "joules attributed"),
                       }),
    "power_limits": ("GPU power limits a run used: each limit the tuner profiled (energy and time of the same "
                     "number of steps) and the one it chose, or the one `footprint run --power-limit` set.",
                     {"source": (None, "profiled, profile:<path> (a saved profile reused), or --power-limit"),
                      "energy_j": ("J", "GPU energy of the profiled steps, summed over GPUs and ranks"),
                      "t": ("s", "end of the profiling window, or when the limit was set, epoch seconds")}),
    "power_limit_changes": ("Every change footprint made to a GPU's power limit, and its restoration.",
                            {"idx": (None, "the GPU's NVML index (what nvidia-smi -i takes)"),
                             "limit_w": ("W", "the limit the GPU was given")}),
    "quality": ("Quality scores of runs (run.set_quality, or the file a sweep's point wrote); a run's quality is "
                "its latest row.",
                {"source": (None, "where the score came from: set_quality, or file:PATH (FOOTPRINT_QUALITY_FILE)"),
                 "t": ("s", "when it was recorded, epoch seconds (UTC)")}),
    "sweeps": ("One row per `footprint sweep`: a command run over a grid of parameter values.",
               {"status": (None, "running, completed or interrupted (a 'running' sweep whose process is gone "
                                 "is reported as incomplete)"),
                "command": (None, "the command as a JSON list, with {name} placeholders"),
                "pid": (None, "process id of the footprint sweep that runs it (a resume takes it over)"),
                "name": (None, "name given to the sweep")}),
    "sweep_points": ("Each run of a sweep's points, in the order they ran.",
                     {"run_id": (None, "the point's run (runs.id); empty when footprint could not start it"),
                      "status": (None, "completed, failed or interrupted"),
                      "exit_code": (None, "the point's exit code"),
                      "started_at": ("s", "when the point was started, epoch seconds (UTC)"),
                      "ended_at": ("s", "when the point ended, epoch seconds (UTC)")}),
    "device_energy": ("Each device's energy over its run: last read minus first read.", {}),
    "run_energy": ("Each run's energy per device kind.",
                   {"measured": (None, "1 when every device of this kind was measured, 0 if one was estimated")}),
    "run_figures": ("Each run's figures as `footprint report` gives them (with the intensity and PUE it recorded): "
                    "energy per component, kWh, CO2e, tokens, J/token, ISO times.", {}),
    "span_energy": ("Each span's energy per device, interpolated between the reads around its start and end.", {}),
    "span_figures": ("Each span's figures as `footprint report` gives them: energy per component, kWh, CO2e, "
                     "tokens (with its sub-spans'), J/token, ISO times.", {}),
}


def datasette_metadata(database: str, columns: dict[str, list[str]]) -> dict[str, Any]:
    """datasette's metadata.json for a DB named `database` (its file name without .db), describing the tables
    and views in `columns` (name -> its columns)."""
    tables: dict[str, Any] = {}
    for table, cols in columns.items():
        description, own = TABLES.get(table, ("", {}))
        known = {c: own.get(c) or COLUMNS.get(c) or (None, "") for c in cols}
        tables[table] = {
            "description": description,
            "columns": {c: d for c, (_, d) in known.items()},
            "units": {c: u for c, (u, _) in known.items() if u},
        }
    return {"title": "footprint", "description": "Energy, carbon and cost per token, recorded by footprint.",
            "databases": {database: {"tables": tables}}}
