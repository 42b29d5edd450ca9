"""Run training as N JAX processes on this machine (CPU, gloo collectives) — what the tests use.

    python launch/local_multiprocess.py --num-processes 2 --devices-per-process 4 \
        --config configs/train_tiny.py --workdir /tmp/run [--set key=value ...] [--max-steps N]

Each worker calls ``jax.distributed.initialize(coordinator_address="localhost:PORT", num_processes=N,
process_id=i)`` with ``--xla_force_host_platform_device_count`` devices, trains, and prints one line
``RESULT {json}`` (process id, losses per step, params checksum, restored step). ``--num-processes 1``
runs a single plain process (no coordinator).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def worker_env(devices: int) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
    env.setdefault("JAX_THREEFRY_PARTITIONABLE", "1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def worker_command(args, process_id: int, port: int | None) -> list[str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", args.config, "--workdir", args.workdir,
           "--num-processes", str(args.num_processes), "--devices-per-process", str(args.devices_per_process),
           "--process-id", str(process_id)]
    if port is not None:
        cmd += ["--port", str(port)]
    if args.max_steps is not None:
        cmd += ["--max-steps", str(args.max_steps)]
    for s in args.overrides:
        cmd += ["--set", s]
    return cmd


def launch(args, timeout: float = 300) -> list[dict]:
    """Start all workers, wait, return their RESULT dicts (raises with the logs on failure)."""
    port = free_port() if args.num_processes > 1 else None
    env = worker_env(args.devices_per_process)
    procs = [subprocess.Popen(worker_command(args, i, port), env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(args.num_processes)]
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append(out)
    results = []
    for i, (p, out) in enumerate(zip(procs, outs)):
        if p.returncode != 0:
            raise RuntimeError(f"worker {i} failed (rc {p.returncode}):\n{out[-4000:]}")
        results.append(parse_result(out))
    return results


def parse_result(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"no RESULT line in worker output:\n{out[-4000:]}")


def run_worker(args) -> int:
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.num_processes > 1:
        jax.distributed.initialize(coordinator_address=f"localhost:{args.port}", num_processes=args.num_processes,
                                   process_id=args.process_id)
    from cogvideox_jax.train.cli_train import load_config
    from cogvideox_jax.train.init_source import reads_shards
    from cogvideox_jax.train.trainer import Trainer, params_checksum

    cfg = load_config(args.config, args.overrides)
    trainer = Trainer(cfg, args.workdir)
    try:
        records = trainer.fit(args.max_steps)
    finally:
        trainer.close()
    result = {"process_id": jax.process_index(), "num_processes": jax.process_count(),
              "devices": jax.device_count(), "restored_step": trainer.restored_step,
              "losses": {str(r["step"]): r["loss"] for r in records},
              "params_checksum": params_checksum(trainer.state.params),
              "init_reads_shards": (reads_shards(trainer.init, trainer.spec.module)
                                    if trainer.init is not None else None)}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--num-processes", type=int, default=2)
    p.add_argument("--devices-per-process", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return run_worker(args)
    for r in launch(args):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
