"""Sweeps: a TOML/JSON spec of contents × styles × hyperparameters, run as vmapped, sharded groups,
resumable, with a manifest and a contact sheet. Nothing finished is ever lost or recomputed.

Spec (TOML; JSON with the same keys works too)::

    [base]                 # StyleConfig fields shared by every job
    size = 256
    steps = 100

    [grid]                 # every combination (product) of these lists
    content = ["photo.jpg"]
    style = ["starry.jpg", ["starry.jpg", "scream.jpg"]]   # a nested list is a blend
    style_weight = [1.0, 10.0]
    seed = [0, 1]

    [zip]                  # lists of equal length taken together, then combined with the grid
    content_weight = [1.0, 2.0]
    tv_weight = [0.0, 0.1]

Paths are relative to the spec file. ``content`` and ``style`` are required (in base, grid or zip).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

from . import batch as batching
from ..io import files
from ..io import image as image_io
from . import cluster
from .. import interrupt
from .problem import prepare
from ..config import INITS, StyleConfig
from ..errors import JaxstyleError

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(StyleConfig))
JOB_KEYS = ("content", "style") + CONFIG_FIELDS
SECTIONS = ("base", "grid", "zip")
MANIFEST = "manifest.jsonl"
PROCESS_MANIFEST = "manifest.p{}.jsonl"  # one per process of a distributed sweep, merged at the end
SHEET = "contact_sheet.png"


@dataclasses.dataclass(frozen=True)
class SweepJob:
    id: str  # stable hash of everything that determines the image
    content: str
    styles: tuple[str, ...]
    config: StyleConfig
    swept: tuple  # ((key, value), …) of the swept parameters, for labels

    @property
    def filename(self) -> str:
        return f"{self.id}.png"


def load_spec(path: str | os.PathLike) -> dict:
    """Read a TOML or JSON spec file; one-line errors for unreadable or malformed files."""
    path = image_io.as_path(path, "sweep spec")
    if not path.is_file():
        raise JaxstyleError(f"sweep spec {str(path)!r} does not exist; check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise JaxstyleError(f"sweep spec {path.name} is not UTF-8 text; save it as UTF-8 TOML or JSON") from None
    except OSError as e:
        raise JaxstyleError(f"cannot read sweep spec {str(path)!r} ({e.strerror}); check its permissions") from None
    try:
        if path.suffix.lower() == ".json":
            spec = json.loads(text)
        else:
            import tomllib

            spec = tomllib.loads(text)
    except (ValueError, json.JSONDecodeError, RecursionError) as e:
        raise JaxstyleError(f"cannot parse sweep spec {path.name}: {(str(e).splitlines() or ['too deeply nested'])[0]}") from None
    if not isinstance(spec, dict):
        raise JaxstyleError(f"sweep spec {path.name} must be a table of sections ([base], [grid], [zip]), "
                            f"not a {type(spec).__name__}; see `jaxstyle sweep --help`")
    for section, table in spec.items():
        if section in SECTIONS and not isinstance(table, dict):
            raise JaxstyleError(f"[{section}] in sweep spec {path.name} must be a table of keys, not {table!r}")
    return spec


def _as_list(key: str, value, section: str) -> list:
    if not isinstance(value, list) or not value:
        raise JaxstyleError(f"[{section}] {key} must be a non-empty list of values to sweep")
    return value


def expand(spec: dict, root: str | os.PathLike, weights_sha256: str = "") -> list[SweepJob]:
    """All jobs of a spec, validated before any work: unknown keys, missing images, bad values."""
    root = Path(root)
    for section in spec:
        if section not in SECTIONS:
            raise JaxstyleError(f"unknown section [{section}] in sweep spec; use {', '.join(f'[{s}]' for s in SECTIONS)}")
    base, grid, zipped = (dict(spec.get(s, {})) for s in SECTIONS)
    for section, table in zip(SECTIONS, (base, grid, zipped)):
        for key in table:
            if key not in JOB_KEYS:
                raise JaxstyleError(f"unknown key {key!r} in [{section}]; valid keys: {', '.join(JOB_KEYS)}")
    grid_keys = list(grid)
    grid_values = [_as_list(k, grid[k], "grid") for k in grid_keys]
    zip_keys = list(zipped)
    zip_values = [_as_list(k, zipped[k], "zip") for k in zip_keys]
    if zip_values and len({len(v) for v in zip_values}) > 1:
        raise JaxstyleError("[zip] lists have different lengths: " + ", ".join(f"{k}={len(v)}" for k, v in zip(zip_keys, zip_values)))
    zip_rows = list(zip(*zip_values)) if zip_values else [()]
    jobs, seen = [], set()
    for combo in itertools.product(*grid_values):
        for row in zip_rows:
            swept = tuple(zip(grid_keys, combo)) + tuple(zip(zip_keys, row))
            values = {**base, **dict(swept)}
            job = _job(values, swept, root, weights_sha256)
            if job.id not in seen:  # a value listed twice (seed = [0, 0]) is one job, run once
                seen.add(job.id)
                jobs.append(job)
    return jobs


def _path(value, root: Path, what: str) -> str:
    if not isinstance(value, str):
        raise JaxstyleError(f"{what} must be a path string, not {value!r}")
    path = (root / value) if not os.path.isabs(value) else Path(value)
    if not path.is_file():
        raise JaxstyleError(f"{what} {value!r} does not exist (relative to {root}); fix the path in the spec")
    return str(path)


def _job(values: dict, swept: tuple, root: Path, weights_sha256: str) -> SweepJob:
    if "content" not in values or "style" not in values:
        raise JaxstyleError("sweep spec needs `content` and `style` (in [base], [grid] or [zip])")
    content = _path(values.pop("content"), root, "content image")
    style = values.pop("style")
    styles = tuple(_path(s, root, "style image") for s in (style if isinstance(style, list) else [style]))
    if isinstance(values.get("init"), str) and values["init"] not in INITS:  # a start image, relative to the spec
        values["init"] = _path(values["init"], root, "init image")
    if isinstance(values.get("content_mask"), str):  # masks too
        values["content_mask"] = _path(values["content_mask"], root, "content mask")
    if isinstance(values.get("style_masks"), (str, list)):
        masks = values["style_masks"] if isinstance(values["style_masks"], list) else values["style_masks"].split(",")
        values["style_masks"] = [_path(m.strip(), root, "style mask") for m in masks]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        config = StyleConfig(**fields)
    except TypeError as e:
        raise JaxstyleError(f"bad value in sweep spec: {e}") from None
    except JaxstyleError as e:
        raise JaxstyleError(f"job {dict(swept)}: {e}") from None
    identity = json.dumps({"content": content, "styles": styles, "config": dataclasses.asdict(config),
                           "weights": weights_sha256}, sort_keys=True, default=str)
    return SweepJob(hashlib.sha256(identity.encode()).hexdigest()[:16], content, styles, config, swept)


def _manifests(outdir: Path) -> list[Path]:
    """The merged manifest, then the per-process ones of a distributed run not merged yet."""
    return [outdir / MANIFEST] + sorted(outdir.glob(PROCESS_MANIFEST.format("*")))


def read_manifest(outdir: Path) -> dict[str, dict]:
    """Finished or failed entries by job id, from every manifest in the folder; a torn last line
    (a writer killed mid-append) is ignored."""
    entries = {}
    for path in _manifests(outdir):
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                entries[entry["id"]] = entry
    return entries


def _append(path: Path, entry: dict) -> None:
    """Append one line; a torn last line (a crash mid-append) is first ended, so it stays one bad
    line that :func:`read_manifest` skips and this entry stays whole."""
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    with open(path, "ab") as f:
        if f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def _merge_manifests(outdir: Path) -> None:
    """Fold the per-process manifests into the one manifest (written atomically), then remove them.
    Killed in between, the entries are in both places, and :func:`read_manifest` reads both."""
    parts = _manifests(outdir)[1:]
    if not parts:
        return
    entries = read_manifest(outdir)
    text = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries.values())
    files.atomic_write(outdir / MANIFEST, lambda tmp: Path(tmp).write_bytes(text.encode()))
    for part in parts:
        part.unlink()


def _fail(manifest: Path, job: SweepJob, reason: str) -> None:
    _append(manifest, {"id": job.id, "status": "failed", "reason": reason, "content": job.content,
                       "styles": job.styles, "config": dataclasses.asdict(job.config)})


def done_ids(outdir: Path) -> set[str]:
    """Jobs whose manifest line says ok and whose image file is complete and readable."""
    ok = set()
    for job_id, entry in read_manifest(outdir).items():
        if entry.get("status") == "ok" and (outdir / entry["image"]).is_file():
            ok.add(job_id)
    return ok


def _create_folder(outdir: Path) -> None:
    """Create the output folder if needed, check it can be written, remove our stale temp files."""
    if outdir.exists() and not outdir.is_dir():
        raise JaxstyleError(f"sweep output {str(outdir)!r} is a file, not a folder; name a new or existing folder")
    if not outdir.is_dir():
        if not outdir.parent.is_dir():
            raise JaxstyleError(f"output folder's parent {str(outdir.parent)!r} does not exist; create it first")
        image_io.check_writable(outdir, "sweep output")
        outdir.mkdir()
    image_io.check_writable(outdir / MANIFEST, "sweep manifest")
    image_io.check_writable(outdir / SHEET, "contact sheet")
    files.clean_stale_temps(outdir)  # only our own, left by a writer killed mid-write


def _output_folder(outdir, processes: cluster.Processes) -> Path:
    """Check (and, in process 0, create and clean) the output folder; with several processes, check
    that every one of them sees the same folder."""
    outdir = image_io.as_path(outdir, "sweep output folder")
    refused = None
    if processes.index == 0:
        try:
            _create_folder(outdir)
        except JaxstyleError as e:
            refused = e
    if processes.count == 1:
        if refused is not None:
            raise refused
        return outdir
    if not processes.all_true(refused is None):  # every process ends, not only process 0
        raise refused or JaxstyleError(f"process 0 could not prepare the output folder {str(outdir)!r}; see its message")
    mark = outdir / f".jaxstyle-process-{processes.index}"
    if outdir.is_dir():
        mark.write_text(str(processes.count))
    processes.barrier("jaxstyle sweep: folder marked")
    sees_all = all((outdir / f".jaxstyle-process-{i}").is_file() for i in range(processes.count))
    shared = processes.all_true(sees_all)
    mark.unlink(missing_ok=True)
    if not shared:
        raise JaxstyleError(f"the output folder {str(outdir)!r} is not shared by the {processes.count} processes "
                            f"(process {processes.index} {'does' if sees_all else 'does not'} see every process's "
                            "files there): put it on a filesystem every process mounts")
    return outdir


def run_sweep(spec_path: str | os.PathLike, outdir: str | os.PathLike, *, batch_size: int | None = None,
              weights=None, progress: Callable[[int, int], None] | None = None,
              processes: cluster.Processes = cluster.ALONE) -> dict:
    """Run (or resume) a sweep. Returns this process's counts: total, skipped, done, failed, groups.

    With several processes (``jaxstyle.run.cluster.start``), each runs the jobs :func:`cluster.assign`
    gives it (whole compiled groups where possible), appends to its own manifest
    (``manifest.p<i>.jsonl``: one writer per file, so lines never interleave, on any shared
    filesystem) and, at the end, process 0 merges the manifests and draws the contact sheet.
    """
    from ..model.weights import load_bundled

    weights = load_bundled() if weights is None else weights
    spec_path = Path(spec_path)
    jobs = expand(load_spec(spec_path), spec_path.parent, weights.sha256)
    outdir = _output_folder(outdir, processes)
    manifest = outdir / (MANIFEST if processes.count == 1 else PROCESS_MANIFEST.format(processes.index))
    finished = done_ids(outdir)

    # Alone, a finished job is not loaded again. Several processes load every job: the split of the
    # work must come out the same in each, whatever each has finished.
    loaded = [k for k, job in enumerate(jobs) if processes.count > 1 or job.id not in finished]
    runnable, shapes, decoded, broken = [], [], {}, {}  # each distinct file is decoded once
    for k in loaded:  # unreadable or unusable images are failures of their job, not of the sweep
        job = jobs[k]
        try:
            content_key = (job.content, job.config.size)  # photos are kept at the job's size, not at full size
            if content_key not in decoded:
                decoded[content_key] = image_io.load_image(job.content, job.config.size)
            for path in job.styles:
                if path not in decoded:
                    decoded[path] = image_io.load_image(path)
            content, _ = prepare(decoded[content_key], [decoded[p] for p in job.styles], job.config)
            runnable.append(k)
            shapes.append(content.shape)
        except JaxstyleError as e:
            broken[k] = (f"{e} (job {job.id}: content {Path(job.content).name}, "
                         f"style {', '.join(Path(p).name for p in job.styles)})")
    as_batch = [batching.Job(decoded[(jobs[k].content, jobs[k].config.size)],
                             tuple(decoded[p] for p in jobs[k].styles), jobs[k].config) for k in runnable]
    groups = batching.group_jobs(as_batch, shapes)
    mine = set(cluster.assign(groups, processes.count)[processes.index])
    mine_broken = [k for k in broken if k % processes.count == processes.index]
    not_loaded = len(jobs) - len(loaded)  # finished, alone
    counts = {"total": len(mine) + len(mine_broken) + not_loaded, "done": 0, "failed": 0, "groups": 0,
              "skipped": not_loaded + sum(jobs[runnable[i]].id in finished for i in mine)
                         + sum(jobs[k].id in finished for k in mine_broken)}

    def report():
        if progress is not None:
            progress(counts["skipped"] + counts["done"] + counts["failed"], counts["total"])

    report()
    for k in mine_broken:
        if jobs[k].id not in finished:
            _fail(manifest, jobs[k], broken[k])
            counts["failed"] += 1
            report()
    for group in groups:
        todo = [i for i in group if i in mine and jobs[runnable[i]].id not in finished]
        if not todo:
            continue
        counts["groups"] += 1
        t0 = time.perf_counter()

        def finished_one(n, result, todo=todo, t0=t0):
            job = jobs[runnable[todo[n]]]
            interrupt.check()
            if not all(math.isfinite(v) for v in result.terms.values()):
                _fail(manifest, job, f"the loss became non-finite ({result.terms['total']}): the optimisation diverged; "
                                     "lower lr or the weights")
                counts["failed"] += 1
                report()
                return
            image_io.save_image(result.image, outdir / job.filename)  # atomic
            _append(manifest, {"id": job.id, "status": "ok", "image": job.filename, "content": job.content,
                               "styles": job.styles, "swept": dict(job.swept), "config": dataclasses.asdict(job.config),
                               "terms": result.terms, "steps": len(result.history), "wall_s": time.perf_counter() - t0,
                               "batch_size": result.timings["batch_size"], "devices": result.timings["devices"],
                               "process": processes.index, "weights_sha256": weights.sha256})
            counts["done"] += 1
            report()

        batching.stylize_batch([as_batch[i] for i in todo], weights=weights, batch_size=batch_size,
                               on_result=finished_one, shapes=[shapes[i] for i in todo])
    processes.barrier("jaxstyle sweep: all jobs done")
    if processes.index == 0:
        _merge_manifests(outdir)
        write_sheet(jobs, outdir)
    return counts


def _label(value) -> str:
    if isinstance(value, str):
        return Path(value).stem
    if isinstance(value, list):
        return "+".join(_label(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_sheet(jobs: list[SweepJob], outdir: Path) -> Path | None:
    """Contact sheet of the finished jobs: columns by the last swept parameter, rows by the rest."""
    ok = done_ids(outdir)
    if not jobs:
        return None
    varying = {k for k in dict(jobs[0].swept) if len({json.dumps(dict(j.swept)[k]) for j in jobs}) > 1}
    rows, cols, cells = [], [], {}
    for job in jobs:
        *rest, last = [(k, v) for k, v in job.swept if k in varying] or [("job", job.id)]
        row = ", ".join(f"{k}={_label(v)}" for k, v in rest) or " "
        col = f"{last[0]}={_label(last[1])}"
        rows += [row] if row not in rows else []
        cols += [col] if col not in cols else []
        if job.id in ok:
            cells[row, col] = image_io.load_image(outdir / job.filename)
    from ..io.sheet import contact_sheet

    grid = [[cells.get((r, c)) for c in cols] for r in rows]
    sheet = contact_sheet(grid, rows, cols, cell=160)
    return image_io.save_pil(sheet, outdir / SHEET)
