"""Kill -9 anywhere, resume to the same result: the real ``python -m hybridrec.train`` is
killed at several points (after a checkpoint, during a checkpoint write, during the run
folder's write, at random), resumed each time, and ends with the metrics of a run that was
never interrupted; a half-written run folder is never taken for a finished one."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybridrec.data.errors import DataError
from hybridrec.run import load_run

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "kg" / "examples"
ARGS = ["--interactions", str(EX / "interactions.csv"), "--items", str(EX / "items.csv"),
        "--kg", str(EX / "graph.ttl"), "--item-iri", "iri", "--item-categorical", "genre",
        "--no-text", "--no-baselines", "--quiet", "--epochs", "8", "--ratios", "0.6,0.2,0.2",
        "--set", "train.patience=100", "--set", "train.batch_size=8",
        "--set", "model.mf_lightgcn_epochs=5", "--set", "model.mf_regularization=1",
        "--set", "train.valid_metric=ndcg@5",
        # Wide enough that a checkpoint takes a few ms to write (a window to kill it in).
        "--set", "model.hidden_channels=256"]


def _start(out: Path, resume: bool, env: dict) -> subprocess.Popen:
    """The real command, in its own process."""
    return subprocess.Popen([sys.executable, "-m", "hybridrec.train", *ARGS, "--out", str(out),
                             *(["--resume"] if resume else [])],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """Poll ``ready()`` as fast as possible and kill -9 the process the moment it holds;
    ``False`` if the process ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the training process hung")
    return False


def _metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    return {f"{part}.{k}": v for part in ("test", "valid") for k, v in metrics[part].items()
            if isinstance(v, (int, float))}


def test_kill_9_at_any_point_then_resume_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    from hybridrec.train import main

    monkeypatch.setenv("HYBRIDREC_CACHE_DIR", str(tmp_path / "cache"))
    straight = tmp_path / "straight"
    assert main(ARGS + ["--out", str(straight)]) == 0  # never interrupted, in this process
    expected = _metrics(straight)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out, ckpt = tmp_path / "run", tmp_path / "run.ckpt"
    rng = random.Random(0)
    first_checkpoint: list[float] = []

    def during_an_epoch() -> bool:  # a random moment after the first checkpoint
        if not first_checkpoint and (ckpt / "checkpoint.safetensors").exists():
            first_checkpoint.append(time.monotonic() + rng.uniform(0.0, 0.3))
        return bool(first_checkpoint) and time.monotonic() > first_checkpoint[0]

    def during_a_checkpoint_write() -> bool:
        return (ckpt / "checkpoint.safetensors.tmp").exists()

    def during_the_run_folder_write() -> bool:
        return any(p.name.startswith("run.tmp-") for p in os.scandir(tmp_path))

    kills = []
    for resume, ready in ((False, during_an_epoch), (True, during_a_checkpoint_write),
                          (True, during_the_run_folder_write)):
        proc = _start(out, resume, env)
        killed = _kill_when(proc, ready)
        kills.append((ready.__name__, killed))
        if not killed:
            assert proc.returncode == 0, proc.stderr.read()
        # Never a half-written run folder in place of a finished one: none, or one that
        # loads whole.
        if out.exists():
            try:
                load_run(out)
            except DataError as err:
                pytest.fail(f"a half-written run folder after a kill {ready.__name__}: {err}")
    assert all(killed for _, killed in kills), kills
    assert not out.exists() and ckpt.is_dir()  # every kill came before a finished run

    assert main(ARGS + ["--out", str(out), "--resume"]) == 0  # the last resume, here
    # It continued from the checkpoint the last kill left (all epochs done), not from scratch.
    assert "Resumed from" in (out / "train.log").read_text()
    got = _metrics(out)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    # Nothing left behind: the checkpoint and the killed save's temporary twin are gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "straight"]
