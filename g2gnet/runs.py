"""A run directory (SPEC §6) and the only code that reads or writes one: config.json, env.json,
metrics.jsonl, summary.json, checkpoint.pt.

Writing: a process holds an exclusive lock on the directory while it trains, so two processes
never write one run. Checkpoints and JSON files are written atomically (temp + rename), so a kill
at any moment leaves the last good ones. ``env.json`` keeps the first start and every resume.
Reading: every file is checked on load (types of the summary, JSON lines of the metrics), and a
bad file is one ``G2GError`` naming it. Checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import Config
from .errors import G2GError
from .version import __version__

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "g2gnet-checkpoint-v1"
RUN_FILES = ("config.json", "env.json", "metrics.jsonl", "summary.json", CHECKPOINT)
_LOCK = ".lock"


def _git(args: list[str]) -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_digest() -> str:
    """SHA-256 over the package's source files (path and bytes): names the code that ran even
    where the checkout's git history is missing or stale (e.g. a copy on a remote machine)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".cpp", ".h") and p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def environment(device: str) -> dict:
    """Where and with what a run was made: code version, versions, hardware, command line."""
    dirty = _git(["status", "--porcelain", "--untracked-files=no"])
    env = {
        "g2gnet": __version__,
        "git_sha": _git(["rev-parse", "HEAD"]),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "source_sha256": source_digest(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _os_error(e: OSError, path: Path, doing: str) -> G2GError:
    return G2GError(f"cannot {doing} {path}: {e.strerror or type(e).__name__}")


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise _os_error(e, path, "write") from None


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise G2GError(f"{path} not found") from None
    except OSError as e:
        raise _os_error(e, path, "read") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise G2GError(f"{path} is not valid JSON: {e}") from None


def read_config(path: str | Path) -> Config:
    """The config of a run directory, or of a ``config.json`` given directly."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    data = read_json(path)
    try:
        return Config.from_dict(data)
    except G2GError as e:
        raise G2GError(f"{path}: {e}") from None


def _read_metrics(path: Path, drop_torn_tail: bool = False) -> list[dict]:
    """The epoch records of ``metrics.jsonl``. A torn last line (an append cut by a kill) is
    dropped when ``drop_torn_tail``; any other bad line is an error naming it."""
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise _os_error(e, path, "read") from None
    records = []
    last = max((i for i, l in enumerate(lines) if l.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode())
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("not an epoch record")
        except (ValueError, UnicodeDecodeError) as e:
            if drop_torn_tail and i == last and not line.endswith(b"}"):
                break
            raise G2GError(f"{path}, line {i + 1}: {str(e).splitlines()[0] if str(e) else 'unreadable'}") from None
        records.append(record)
    return records


# summary.json keys a report relies on, with their types.
_SUMMARY_NUMBERS = ("test_acc", "active_params", "seconds_per_epoch")


def _check_summary(summary, path: Path) -> dict:
    if not isinstance(summary, dict):
        raise G2GError(f"{path} is not a summary (a JSON object)")
    for key in _SUMMARY_NUMBERS:
        value = summary.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise G2GError(f"{path}: {key} is {value!r}, expected a number")
    density = summary.get("density")
    if density is not None and (isinstance(density, bool) or not isinstance(density, (int, float))):
        raise G2GError(f"{path}: density is {density!r}, expected a number or null")
    return summary


@dataclass
class RunRecord:
    """A finished run as read back: its checked config, summary and per-epoch metrics."""

    path: Path
    config: Config
    summary: dict
    metrics: list[dict] = field(default_factory=list)
    env: dict = field(default_factory=dict)


def read_run(path: str | Path) -> RunRecord:
    """Read one finished run directory (config.json and summary.json present), checking each file."""
    path = Path(path)
    config = read_config(path)
    summary = _check_summary(read_json(path / "summary.json"), path / "summary.json")
    metrics = _read_metrics(path / "metrics.jsonl")
    env_path = path / "env.json"
    env = read_json(env_path) if env_path.exists() else {}
    return RunRecord(path, config, summary, metrics, env if isinstance(env, dict) else {})


def find_runs(paths: list[Path]) -> list[RunRecord]:
    """Finished run directories at or below the given paths, read and checked."""
    dirs: list[Path] = []
    for p in paths:
        if not p.exists():
            raise G2GError(f"{p} does not exist")
        if (p / "summary.json").exists():
            dirs.append(p)
        else:
            dirs.extend(sorted(s.parent for s in p.rglob("summary.json")))
    if not dirs:
        raise G2GError(f"no finished runs (summary.json) under {', '.join(map(str, paths))}")
    return [read_run(d) for d in dirs]


def default_run_dir(cfg: Config) -> Path:
    """``runs/DATASET-MODEL-sSEED-TIME``: a new directory for every run started without --out."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.name}-s{cfg.train.seed}-{stamp}"


class RunDir:
    """One run's directory, opened for writing by one process at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_file = None

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    # -- opening ----------------------------------------------------------------------------
    def open(self, config: Config, resume: bool) -> None:
        """Create the directory (or check that a resumed one holds the same config) and lock it.

        A run may resume on another device or thread count (not part of its identity); its
        config.json keeps the first start's. Nothing is written to an existing run here: a resume
        that fails later loses nothing.
        """
        p = self.path
        if p.exists() and not p.is_dir():
            raise G2GError(f"--out {p} is a file, not a directory")
        cfg_path = p / "config.json"
        if resume and not cfg_path.exists():
            raise G2GError(f"cannot resume {p}: it holds no run (no config.json); drop --resume to start one")
        if not resume and cfg_path.exists():
            raise G2GError(f"run directory {p} already holds a run; pass --resume to continue it or choose "
                           "another --out")
        if not resume and p.exists():
            stale = [f for f in RUN_FILES if (p / f).exists()]
            if stale:
                raise G2GError(f"{p} holds {', '.join(stale)} but no config.json (not a run g2g can continue); "
                               "choose another --out")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _os_error(e, p, "create the run directory") from None
        self._lock()
        if resume:
            old = read_config(cfg_path)
            diff = _diff({**old.identity(), "seed": old.train.seed}, {**config.identity(), "seed": config.train.seed})
            if diff:
                self.close()
                raise G2GError(f"cannot resume {p}: its config differs in {', '.join(diff)}")
        else:
            write_json_atomic(cfg_path, config.to_dict())

    def _lock(self) -> None:
        path = self.path / _LOCK
        try:
            f = open(path, "a+")
        except OSError as e:
            raise _os_error(e, self.path, "write to the run directory") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            f.close()
            raise G2GError(f"run directory {self.path} is in use by {owner}") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}")
        f.flush()
        self._lock_file = f

    def close(self) -> None:
        """Release the lock (also released by the OS when the process dies)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def record_start(self, device: str, resumed_epoch: int | None, processes: int = 1) -> None:
        """env.json: the first start's environment, plus one entry per resume."""
        env_path = self.path / "env.json"
        now = {**environment(device), "processes": processes}
        if resumed_epoch is None or not env_path.exists():
            write_json_atomic(env_path, {**now, "resumes": []})
            return
        env = read_json(env_path)
        if not isinstance(env, dict):
            raise G2GError(f"{env_path} is not an environment record")
        env.setdefault("resumes", []).append({**now, "from_epoch": resumed_epoch})
        write_json_atomic(env_path, env)

    # -- during training --------------------------------------------------------------------
    def log(self, record: dict) -> None:
        path = self.path / "metrics.jsonl"
        try:
            with open(path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        except OSError as e:
            raise _os_error(e, path, "append to") from None

    def metrics(self) -> list[dict]:
        return _read_metrics(self.path / "metrics.jsonl")

    def truncate_metrics(self, epochs_done: int) -> None:
        """Keep the epoch records up to the checkpoint a resumed run starts from (and drop a
        line torn by a kill)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        keep = [r for r in _read_metrics(path, drop_torn_tail=True) if r["epoch"] <= epochs_done]
        try:
            path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
        except OSError as e:
            raise _os_error(e, path, "write") from None

    def finish(self, summary: dict) -> None:
        write_json_atomic(self.path / "summary.json", summary)

    def save_checkpoint(self, state: dict) -> None:
        state = {"format": CHECKPOINT_FORMAT, **state}
        tmp = self.checkpoint_path.with_name(CHECKPOINT + ".tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.checkpoint_path)
        except OSError as e:
            kept = " (the previous checkpoint is kept)" if self.has_checkpoint() else ""
            raise G2GError(f"cannot write checkpoint {self.checkpoint_path}: {e.strerror or e}{kept}") from None

    def load_checkpoint(self, map_location: str = "cpu") -> dict:
        return load_checkpoint(self.checkpoint_path, map_location)


class TensorBoard:
    """A TensorBoard mirror of a run's metrics (``RUN/tensorboard/``); metrics.jsonl stays the
    record. Needs the optional ``tensorboard`` package (``pip install 'g2gnet[tensorboard]'``)."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise G2GError("--tensorboard needs the tensorboard package (pip install 'g2gnet[tensorboard]')") from None
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log_epoch(self, record: dict) -> None:
        for key, value in record.items():
            if key not in ("epoch", "dst") and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, record["epoch"])
        self.writer.flush()

    def log_update(self, update: dict) -> None:
        """Per DST update and layer: density, intra-ensemble fraction, changed and ever active."""
        for layer, stats in update["layers"].items():
            for key, value in stats.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"dst/{layer}/{key}", value, update["step"])
        self.writer.add_scalar("dst/fraction", update["fraction"], update["step"])

    def close(self) -> None:
        self.writer.close()


def _diff(old: dict, new: dict) -> list[str]:
    return [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _first_line(e: BaseException, limit: int = 300) -> str:
    """The exception as one line: whitespace collapsed, cut at a word boundary."""
    line = " ".join(str(e).split())
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Load a g2gnet checkpoint safely; unreadable or foreign files are a G2GError."""
    path = Path(path)
    if not path.exists():
        raise G2GError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/foreign pickles
        raise G2GError(f"checkpoint {path} is unreadable ({_first_line(e)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise G2GError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return state


def load_state(module, state: dict, what: str) -> None:
    """``module.load_state_dict(state)`` with a mismatch as one line (missing / unexpected keys)."""
    if not isinstance(state, dict):
        raise G2GError(f"{what} holds no state dict")
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, G2GError):
            raise
        raise G2GError(f"{what} does not match this run ({_first_line(e)})") from None
