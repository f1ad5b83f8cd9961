"""Sweeps in a row in one Python process (a notebook, a refine loop): how soon each starts training.

    python benchmarks/warm_session.py             # 3 sweeps in a row per system, peers' --quick workload
    python benchmarks/warm_session.py --sweeps 2 --systems sweep,sweep_cold

Systems, each in a fresh interpreter that runs the same sweep ``--sweeps`` times one after the
other, all into one MLflow store (as in a notebook: the first sweep creates it):

* ``sweep``       ``sweep.run(dict)`` with warm executors (the default on the sweep's own Ray).
* ``sweep_cold``  the same with ``resources.warm_workers: false`` (Tune's own trial processes).
* ``ray_reuse``   the Ray Tune docs recipe with ``reuse_actors=True``, ``Tuner.fit`` again each time.
* ``optuna``      Optuna alone (``n_jobs`` threads in this process), a new study each time.
* ``sweep_cli``   ``sweep up``, then ``sweep run FILE`` from the shell ``--sweeps`` times (each a
                  process of its own, run by the warm session), then ``sweep down``. Its first
                  sweep is timed from its ``sweep run``; ``sweep up``'s own time is printed apart.
* ``sweep_shell`` ``sweep run FILE`` from the shell with no session (``SWEEP_SESSION=0``): every
                  sweep a cold process, as before ``sweep up`` existed.

The workload is ``benchmarks/peers.py --quick`` (4k x 64 rows, 8 trials, <= 3 epochs, the
256-256 MLP, the same space and schedulers). For each sweep: **first epoch s**, from the call
(``sweep.run``, ``Tuner.fit``, ``study.optimize``) to the first ``epoch_begin`` in the traces, for
the first sweep from the interpreter's start; and its wall time. Issue 21's target: a warm second
sweep's first epoch within 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SYSTEMS = ("sweep", "sweep_cold", "ray_reuse", "optuna", "sweep_cli", "sweep_shell")
SHELL_SYSTEMS = ("sweep_cli", "sweep_shell")
WARM_FIRST_EPOCH_TARGET_S = 2.0


def run_in_a_row(system: str, sweeps: int, work: Path) -> list[tuple[float, float]]:
    """In this process: the system's sweep ``sweeps`` times; (called at, returned at) for each."""
    sys.path.insert(0, str(HERE))
    import peers

    size = peers.SIZES["quick"]
    if system in ("sweep", "sweep_cold"):
        os.environ["SWEEP_WARM_WORKERS"] = "1" if system == "sweep" else "0"
    times = []
    for index in range(sweeps):  # one MLflow store (work/mlflow.db) for the process's sweeps, as in a notebook
        called = time.time()
        if system in ("sweep", "sweep_cold"):
            peers.run_sweep(size, work, name=f"bench-sweep-{index}")
        elif system == "ray_reuse":
            peers.run_ray(size, work, reuse=True)
        else:
            peers.run_optuna(size, work)
        times.append((called, time.time()))
    return times


def run_from_the_shell(system: str, sweeps: int, work: Path, env: dict) -> tuple[list[tuple[float, float]], float | None]:
    """``sweep run FILE`` ``sweeps`` times as commands, in a warm session (``sweep_cli``) or not;
    (called at, returned at) for each, and ``sweep up``'s seconds."""
    import yaml

    sys.path.insert(0, str(HERE))
    import peers

    size = peers.SIZES["quick"]
    config = peers.sweep_config(size, "bench-shell", peers.data_config(size), {"builder": "mlp", "args": {"units": [256, 256]}})
    (work / "sweep.yaml").write_text(yaml.safe_dump(config))
    cli = [sys.executable, "-m", "sweep.cli"]
    common = ["--storage", str(work / "runs"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--quiet"]
    env = {**env, "SWEEP_SESSION_DIR": str(work / "session"), "SWEEP_SESSION": "1" if system == "sweep_cli" else "0"}
    up_s = None
    if system == "sweep_cli":
        started = time.time()
        subprocess.run([*cli, "up", "--num-cpus", str(size["slots"])], env=env, cwd=work, check=True, capture_output=True, timeout=600)
        up_s = time.time() - started
    times = []
    try:
        for index in range(sweeps):
            called = time.time()
            subprocess.run([*cli, "run", "sweep.yaml", "--name", f"bench-shell-{index}", *common], env=env, cwd=work, check=True, capture_output=True, timeout=1800)
            times.append((called, time.time()))
    finally:
        if system == "sweep_cli":
            subprocess.run([*cli, "down"], env=env, cwd=work, capture_output=True, timeout=300)
    return times, up_s


def launch(system: str, sweeps: int) -> dict:
    """``system`` in a fresh interpreter; each sweep's first-epoch delay and wall time."""
    with tempfile.TemporaryDirectory(prefix=f"warm-{system}-") as tmp:
        work = Path(tmp)
        (work / "trace").mkdir()
        env = {**os.environ, "SWEEP_TRACE_DIR": str(work / "trace"), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "RAY_AIR_NEW_OUTPUT": "0"}
        up_s = None
        if system in SHELL_SYSTEMS:
            try:
                times, up_s = run_from_the_shell(system, sweeps, work, env)
            except subprocess.CalledProcessError as exc:
                return {"system": system, "error": (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]}
            started = times[0][0]  # from the first `sweep run`, as a user who ran `sweep up` earlier sees it
        else:
            started = time.time()
            proc = subprocess.run([sys.executable, __file__, "--child", system, "--sweeps", str(sweeps), "--work", str(work)],
                                  env=env, cwd=work, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                return {"system": system, "error": proc.stderr.strip().splitlines()[-3:]}
            times = json.loads((work / "times.json").read_text())
        begins = sorted(e["t"] for e in _events(work / "trace") if e["event"] == "epoch_begin")
    rows = []
    for index, (called, returned) in enumerate(times):
        since = started if index == 0 else called
        first = next((t for t in begins if t >= called), None)
        rows.append({"first_epoch_s": None if first is None else first - since, "wall_s": returned - since})
    return {"system": system, "sweeps": rows, "up_s": up_s}


def _events(folder: Path) -> list[dict]:
    events = []
    for path in folder.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def print_table(results: list[dict]) -> None:
    sweeps = max((len(r.get("sweeps", [])) for r in results), default=0)
    head = ["system"] + [f"#{i + 1} 1st epoch s" for i in range(sweeps)] + [f"#{i + 1} wall s" for i in range(sweeps)]
    print(" | ".join(head))
    for result in results:
        if "error" in result:
            print(f"{result['system']} | error: {result['error']}")
            continue
        cells = [f"{r['first_epoch_s']:.2f}" if r["first_epoch_s"] is not None else "-" for r in result["sweeps"]]
        cells += [f"{r['wall_s']:.1f}" for r in result["sweeps"]]
        print(" | ".join([result["system"], *cells]))
    for result in results:
        if result.get("up_s") is not None:
            print(f"{result['system']}: `sweep up` took {result['up_s']:.1f} s (once, before its sweeps)")
    shell = next((r for r in results if r["system"] == "sweep_cli" and r.get("sweeps")), None)
    if shell:
        firsts = [r["first_epoch_s"] for r in shell["sweeps"] if r["first_epoch_s"] is not None]
        if firsts:
            median = statistics.median(firsts)
            verdict = "met" if median <= WARM_FIRST_EPOCH_TARGET_S else "NOT met"
            print(f"sweep_cli, `sweep run` from the shell with a warm session, first epoch (median): {median:.2f} s (target <= {WARM_FIRST_EPOCH_TARGET_S:g} s: {verdict})")
    warm = next((r for r in results if r["system"] == "sweep" and "sweeps" in r), None)
    if warm and len(warm["sweeps"]) > 1:
        later = statistics.median(r["first_epoch_s"] for r in warm["sweeps"][1:] if r["first_epoch_s"] is not None)
        verdict = "met" if later <= WARM_FIRST_EPOCH_TARGET_S else "NOT met"
        print(f"sweep, later sweeps' first epoch (median): {later:.2f} s (target <= {WARM_FIRST_EPOCH_TARGET_S:g} s: {verdict})")
        for peer in results:
            if peer is warm or "sweeps" not in peer or len(peer["sweeps"]) < 2:
                continue
            theirs = statistics.median(r["first_epoch_s"] for r in peer["sweeps"][1:] if r["first_epoch_s"] is not None)
            print(f"  vs {peer['system']}: {theirs:.2f} s ({later / theirs:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--sweeps", type=int, default=3, help="sweeps in a row per system (default 3)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        times = run_in_a_row(args.child, args.sweeps, Path(args.work))
        Path(args.work, "times.json").write_text(json.dumps(times))
        return 0
    results = [launch(system, args.sweeps) for system in args.systems.split(",")]
    print_table(results)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
