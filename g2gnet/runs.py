"""A run directory (SPEC §6) and the only code that reads or writes one: config.json, env.json,
metrics.jsonl, summary.json, checkpoint.pt (their records are typed in ``records``).

Writing: a process holds an exclusive lock on the directory while it trains, so two processes
never write one run. Nothing is written before a start has passed every check that can fail (so
a failed start leaves nothing that blocks a corrected retry); then checkpoints and JSON files are
written atomically (temp + rename; a failed write removes its temp file), so a kill or a full
disk at any moment leaves the last good ones. ``env.json`` keeps the first start and every resume.
Reading: every file is checked on load, and a bad file is one ``G2GError`` naming it.
Checkpoints load with ``weights_only=True``. ``RunDir.status()`` is the one answer to "is this
run done, running elsewhere, resumable or new".
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from .config import Config
from .errors import G2GError
from .records import Checkpoint, DSTUpdate, EpochRecord, Summary
from .version import __version__

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "g2gnet-checkpoint-v1"
RUN_FILES = ("config.json", "env.json", "metrics.jsonl", "summary.json", CHECKPOINT)
_LOCK = ".lock"  # held by the process that trains the run
_CLAIM = ".claim"  # held by the sweep that starts a worker on the run (from before the worker locks)

RunStatus = Literal["done", "busy", "partial", "new"]


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


def code_version(start: dict) -> str | None:
    """The code of one start or resume in env.json: its source digest (or, for runs made before
    the digest was recorded, its git commit and whether the tree was dirty)."""
    if start.get("source_sha256"):
        return str(start["source_sha256"])
    if start.get("git_sha"):
        return f"git {start['git_sha']}" + (" dirty" if start.get("git_dirty") else "")
    return None


def _os_error(e: OSError, path: Path, doing: str) -> G2GError:
    return G2GError(f"cannot {doing} {path}: {e.strerror or type(e).__name__}")


_FULL = 1 << 20  # bytes free below which a failed write is blamed on a full disk


def _why_not_written(e: BaseException, path: Path) -> str:
    """Why a write failed, in words: torch.save reports a full disk as a RuntimeError of its zip
    writer ("unexpected pos ..."), so the free space is asked before the partial file goes."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    try:
        st = os.statvfs(path.parent)
        if st.f_bavail * st.f_frsize < _FULL:
            return "No space left on device"
    except OSError:
        pass
    return _first_line(e)


def _write_atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``; on any failure (a kill included) the temp file is
    removed, so nothing but the previous ``path`` is left. Raises the original exception."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    try:
        _write_atomic(path, lambda tmp: tmp.write_text(text))
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
    """The epoch records of ``metrics.jsonl`` as JSON objects. A torn last line (an append cut by
    a kill or a full disk) is dropped when ``drop_torn_tail``; any other bad line is an error."""
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


def read_metrics(path: str | Path) -> list[EpochRecord]:
    """The checked epoch records of a run directory's metrics.jsonl."""
    path = Path(path) / "metrics.jsonl"
    return [EpochRecord.from_dict(r, f"{path}, epoch {r['epoch']}") for r in _read_metrics(path)]


@dataclass
class RunRecord:
    """A finished run as read back: its checked config, summary, per-epoch metrics and environment.

    ``summary`` and ``metrics`` may be given as plain dicts (they are checked and converted)."""

    path: Path
    config: Config
    summary: Summary
    metrics: list[EpochRecord] = field(default_factory=list)
    env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.summary, Summary):
            self.summary = Summary.from_dict(self.summary, str(self.path / "summary.json"))
        self.metrics = [m if isinstance(m, EpochRecord) else EpochRecord.from_dict(m, str(self.path / "metrics.jsonl"))
                        for m in self.metrics]

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def starts(self) -> list[dict]:
        """env.json's first start and then every resume, in order."""
        first = {k: v for k, v in self.env.items() if k != "resumes"}
        resumes = self.env.get("resumes")
        return ([first] if first else []) + [r for r in (resumes if isinstance(resumes, list) else [])
                                              if isinstance(r, dict)]

    @property
    def code_versions(self) -> list[str]:
        """The distinct code versions (``code_version``) its starts ran, in order."""
        out: list[str] = []
        for start in self.starts:
            v = code_version(start)
            if v is not None and v not in out:
                out.append(v)
        return out

    @property
    def mixed_code(self) -> bool:
        """True when the run was resumed under other code than it started with (SPEC §9: a run
        that mixes code versions says so)."""
        return len(self.code_versions) > 1


def read_summary(path: str | Path) -> Summary:
    """A finished run's summary.json, checked."""
    file = Path(path) / "summary.json"
    return Summary.from_dict(read_json(file), str(file))


def read_run(path: str | Path) -> RunRecord:
    """Read one finished run directory (config.json and summary.json present), checking each file."""
    path = Path(path)
    config = read_config(path)
    summary = read_summary(path)
    metrics = read_metrics(path)
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


def config_differences(old: Config, new: Config) -> list[str]:
    """The keys (``Config.flat`` names, seed included) in which two runs' identities differ, each
    as ``key OLD, not NEW``: device and threads say where a run ran, not what it is."""
    a, b = ({**c.identity(), "seed": c.train.seed} for c in (old, new))
    return [f"{k} {_show(a.get(k))}, not {_show(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _try_lock(f, tries: int) -> bool:
    # A status probe (another sweep asking) holds a lock for microseconds: a start that meets
    # one tries again shortly rather than calling a free run busy.
    for i in range(tries):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if i + 1 < tries:
                time.sleep(0.05)
    return False


def _held(path: Path) -> bool:
    """Whether another open file holds the lock on ``path`` (asked without waiting)."""
    try:
        with open(path) as f:
            return not _try_lock(f, 1)
    except OSError:  # no lock file: nobody ever held it
        return False


class RunDir:
    """One run's directory, opened for writing by one process at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_file = None
        self._claim_file = None
        self.checkpoint_epoch: int | None = None  # the epoch of the checkpoint on disk, once known

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    # -- questions anyone may ask ----------------------------------------------------------------
    def status(self) -> RunStatus:
        """done (summary.json) | busy (a live process trains it, or a sweep is starting it) |
        partial (a run that can resume) | new."""
        if (self.path / "summary.json").exists():
            return "done"
        if self._lock_file is None and _held(self.path / _LOCK):
            return "busy"
        if self._claim_file is None and _held(self.path / _CLAIM):
            return "busy"
        return "partial" if (self.path / "config.json").exists() else "new"

    def holder(self) -> str:
        """Who holds the run (``pid N on HOST``), as its lock file says."""
        try:
            return (self.path / _LOCK).read_text().strip() or "another process"
        except OSError:
            return "another process"

    def config(self) -> Config | None:
        """The run's config.json, None before a start has written it."""
        return read_config(self.path) if (self.path / "config.json").exists() else None

    def differences(self, config: Config) -> list[str]:
        """How this run's configuration differs from ``config`` (empty: the same run, or no run yet)."""
        old = self.config()
        return [] if old is None else config_differences(old, config)

    def last_code_version(self) -> str | None:
        """The code version of the run's latest start or resume (env.json), None before one."""
        path = self.path / "env.json"
        env = read_json(path) if path.exists() else {}
        if not isinstance(env, dict):
            return None
        resumes = [r for r in env.get("resumes") or [] if isinstance(r, dict)]
        return code_version(resumes[-1] if resumes else env)

    def kept(self) -> str:
        """What a stopped run keeps, for the one line that says why it stopped."""
        if self.checkpoint_epoch is None:
            return "no epoch had finished, so there is no checkpoint"
        return (f"the checkpoint after epoch {self.checkpoint_epoch} is kept ({self.checkpoint_path}); "
                f"continue with --resume --out {self.path}")

    # -- a sweep's claim ---------------------------------------------------------------------------
    def claim(self) -> bool:
        """Claim the run for a worker this process is about to start (False: another sweep holds
        it). Held until ``close``; another sweep sees the run as busy meanwhile."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _os_error(e, self.path, "write to the run directory") from None
        self._claim_file = self._locked(_CLAIM, "a")
        return self._claim_file is not None

    # -- opening -----------------------------------------------------------------------------------
    def open(self, config: Config, resume: bool) -> None:
        """Create the directory, lock it, and check that a resumed one holds the same config.

        A run may resume on another device or thread count (not part of its identity); its
        config.json keeps the first start's. Nothing is written here (``begin`` writes), so a
        start that fails before ``begin`` loses nothing and blocks no retry.
        """
        p = self.path
        if p.exists() and not p.is_dir():
            raise G2GError(f"--out {p} is a file, not a directory")
        cfg_path = p / "config.json"
        if resume and not cfg_path.exists():
            raise G2GError(f"cannot resume {p}: it holds no run (no config.json); drop --resume to start one")
        if resume and (p / "summary.json").exists() and not self.has_checkpoint():
            raise G2GError(f"cannot resume {p}: it has already finished (summary.json) and keeps no checkpoint; "
                           "nothing to resume")
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
            diff = config_differences(read_config(cfg_path), config)
            if diff:
                self.close()
                raise G2GError(f"cannot resume {p}: its config differs in {'; '.join(diff)}")

    def _locked(self, name: str, mode: str):
        """The directory's file ``name`` opened and exclusively locked, or None while another
        process holds it."""
        try:
            f = open(self.path / name, mode)
        except OSError as e:
            raise _os_error(e, self.path, "write to the run directory") from None
        if not _try_lock(f, 5):
            f.close()
            return None
        return f

    def _lock(self) -> None:
        f = self._locked(_LOCK, "a+")
        if f is None:
            raise G2GError(f"run directory {self.path} is in use by {self.holder()}")
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}")
        f.flush()
        self._lock_file = f

    def close(self) -> None:
        """Release the lock and the claim (also released by the OS when the process dies)."""
        for name in ("_lock_file", "_claim_file"):
            f = getattr(self, name)
            if f is not None:
                f.close()
                setattr(self, name, None)

    def begin(self, config: Config, device: str, resumed_epoch: int | None, processes: int = 1) -> str | None:
        """Write what a start writes, once everything that can fail before training has passed:
        config.json (a new run) and env.json (the first start's environment, or one more resume
        entry). Returns the previous code version when a resume runs other code than the last
        start (the entry records ``code_changed``), else None."""
        env_path = self.path / "env.json"
        now = {**environment(device), "processes": processes}
        if resumed_epoch is None or not env_path.exists():
            if resumed_epoch is None:
                write_json_atomic(self.path / "config.json", config.to_dict())
            write_json_atomic(env_path, {**now, "resumes": []})
            return None
        env = read_json(env_path)
        if not isinstance(env, dict):
            raise G2GError(f"{env_path} is not an environment record")
        before = self.last_code_version()
        changed = before is not None and before != code_version(now)
        env.setdefault("resumes", []).append({**now, "from_epoch": resumed_epoch, "code_changed": changed})
        write_json_atomic(env_path, env)
        return before if changed else None

    # -- during training ---------------------------------------------------------------------------
    def log(self, record: EpochRecord) -> None:
        path = self.path / "metrics.jsonl"
        try:
            with open(path, "a") as f:
                f.write(_metrics_line(record.to_dict()))
        except OSError as e:  # a torn line is dropped on --resume
            raise G2GError(f"{_os_error(e, path, 'append to')}; {self.kept()}") from None

    def resumable_metrics(self, epochs_done: int) -> list[dict]:
        """The epoch records a resume from the checkpoint after ``epochs_done`` keeps (a line torn
        by a kill dropped, records of later epochs left out), or a G2GError when they are not
        exactly epochs 1..``epochs_done``: a resume would finish with epochs missing from its
        record (or repeated in it)."""
        path = self.path / "metrics.jsonl"
        keep = [r for r in _read_metrics(path, drop_torn_tail=True) if r["epoch"] <= epochs_done]
        epochs = [r["epoch"] for r in keep]
        if epochs != list(range(1, epochs_done + 1)):
            lost = sorted(set(range(1, epochs_done + 1)) - set(epochs))
            what = (f"has no record of epoch(s) {_ranges(lost)}" if lost else
                    f"holds the epochs {_ranges(epochs)} out of order or twice")
            raise G2GError(f"cannot resume {self.path}: its checkpoint is after epoch {epochs_done} but "
                           f"{path.name} {what}; the run's per-epoch record cannot be completed (start it "
                           "again in another --out)")
        return keep

    def truncate_metrics(self, keep: list[dict]) -> None:
        """Rewrite metrics.jsonl as ``keep``, the records ``resumable_metrics`` checked (those up to
        the checkpoint a resumed run starts from, without a line torn by a kill), atomically: a
        failed write leaves it as it was."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        text = "".join(_metrics_line(r) for r in keep)
        try:
            _write_atomic(path, lambda tmp: tmp.write_text(text))
        except OSError as e:
            raise G2GError(f"{_os_error(e, path, 'write')}; {self.kept()}") from None

    def finish(self, summary: Summary) -> None:
        try:
            write_json_atomic(self.path / "summary.json", summary.to_dict())
        except G2GError as e:  # a --resume of the final checkpoint writes the summary
            raise G2GError(f"{e}; {self.kept()}") from None

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        state = {"format": CHECKPOINT_FORMAT, **checkpoint.to_dict()}
        try:
            _write_atomic(self.checkpoint_path, lambda tmp: torch.save(state, tmp))
        except (OSError, RuntimeError) as e:
            why = _why_not_written(e, self.checkpoint_path)
            raise G2GError(f"cannot write checkpoint {self.checkpoint_path} after epoch {checkpoint.epoch}: "
                           f"{why}; {self.kept()}") from None
        self.checkpoint_epoch = checkpoint.epoch

    def load_checkpoint(self, map_location: str = "cpu") -> Checkpoint:
        ckpt = load_checkpoint(self.checkpoint_path, map_location)
        self.checkpoint_epoch = ckpt.epoch
        return ckpt


class TensorBoard:
    """A TensorBoard mirror of a run's metrics (``RUN/tensorboard/``); metrics.jsonl stays the
    record. Needs the optional ``tensorboard`` package (``pip install 'g2gnet[tensorboard]'``)."""

    def __init__(self, run_dir: Path) -> None:
        self.writer = self.writer_class()(str(Path(run_dir) / "tensorboard"))

    @staticmethod
    def writer_class():
        """The SummaryWriter class; checked before a run writes anything."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise G2GError("--tensorboard needs the tensorboard package (pip install 'g2gnet[tensorboard]')") from None
        return SummaryWriter

    def log_epoch(self, record: EpochRecord) -> None:
        for key, value in record.to_dict().items():
            if key not in ("epoch", "dst") and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, record.epoch)
        self.writer.flush()

    def log_update(self, update: DSTUpdate) -> None:
        """Per DST update and layer: density, intra-ensemble fraction, changed and ever active."""
        for layer, stats in update.layers.items():
            for key, value in stats.to_dict().items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"dst/{layer}/{key}", value, update.step)
        self.writer.add_scalar("dst/fraction", update.fraction, update.step)

    def close(self) -> None:
        self.writer.close()


def _metrics_line(record: dict) -> str:
    """One epoch record as metrics.jsonl holds it."""
    return json.dumps(record, sort_keys=True) + "\n"


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3, 5``."""
    parts: list[tuple[int, int]] = []
    for n in numbers:
        if parts and parts[-1][1] == n - 1:
            parts[-1] = (parts[-1][0], n)
        else:
            parts.append((n, n))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def _first_line(e: BaseException, limit: int = 300) -> str:
    """The exception as one line: whitespace collapsed, cut at a word boundary."""
    line = " ".join(str(e).split())
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def _unreadable(e: BaseException) -> str:
    """Why torch could not load a file, without torch's advice to load it unsafely: its safe
    unpickler's refusal carries a paragraph about ``weights_only=False`` before the reason."""
    text = str(e)
    if "Weights only load failed" in text:
        reason = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else ""
        reason = next((l.strip() for l in reason.splitlines() if l.strip()), "")
        reason = reason.split(". ")[0].rstrip(".") if reason else "not a file of tensors and plain data"
        return f"corrupt or not a PyTorch checkpoint: {reason}"
    return _first_line(e)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Load a g2gnet checkpoint safely; unreadable or foreign files are a G2GError."""
    path = Path(path)
    if not path.exists():
        raise G2GError(f"checkpoint {path} not found")
    if str(map_location).startswith("cuda") and not torch.cuda.is_available():
        raise G2GError(f"cannot load {path} onto {map_location}: CUDA is not available; use cpu")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing or not
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/foreign pickles
        raise G2GError(f"checkpoint {path} is unreadable ({_unreadable(e)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise G2GError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return Checkpoint.from_dict(state, f"checkpoint {path}")


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
