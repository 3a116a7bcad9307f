"""A run directory (SPEC §6): config.json, env.json, metrics.jsonl, summary.json, checkpoint.pt.

Reports are built from these files alone. Checkpoints are written atomically (temp + rename)
and read with ``weights_only=True``, so a kill at any moment leaves the last good one intact.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from .errors import G2GError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "g2gnet-checkpoint-v1"


def _git(args: list[str]) -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(device: str) -> dict:
    """Where and with what a run was made: code version, versions, hardware, command line."""
    from . import __version__

    dirty = _git(["status", "--porcelain", "--untracked-files=no"])
    env = {
        "g2gnet": __version__,
        "git_sha": _git(["rev-parse", "HEAD"]),
        "git_dirty": bool(dirty) if dirty is not None else None,
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


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise G2GError(f"{path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise G2GError(f"{path} is not valid JSON: {e}") from None


class RunDir:
    """One run's directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def start(self, config: dict, device: str, resume: bool) -> None:
        """Create the directory, or check that a resumed one was made with the same config."""
        cfg_path = self.path / "config.json"
        if cfg_path.exists():
            if not resume:
                raise G2GError(f"run directory {self.path} already holds a run; pass --resume to continue it "
                               "or choose another --out")
            old = read_json(cfg_path)
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            if diff:
                raise G2GError(f"cannot resume {self.path}: its config differs in {', '.join(diff)}")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg_path, config)
        write_json_atomic(self.path / "env.json", environment(device))

    def log(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop epoch records written after the checkpoint a resumed run starts from."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        keep = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l).get("epoch", 0) <= epochs_done]
        path.write_text("".join(l + "\n" for l in keep))

    def finish(self, summary: dict) -> None:
        write_json_atomic(self.path / "summary.json", summary)

    def save_checkpoint(self, state: dict) -> None:
        state = {"format": CHECKPOINT_FORMAT, **state}
        tmp = self.checkpoint_path.with_name(CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self, map_location: str = "cpu") -> dict:
        return load_checkpoint(self.checkpoint_path, map_location)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    """Load a g2gnet checkpoint safely; unreadable or foreign files are a G2GError."""
    path = Path(path)
    if not path.exists():
        raise G2GError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/foreign pickles
        raise G2GError(f"checkpoint {path} is unreadable: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise G2GError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return state
