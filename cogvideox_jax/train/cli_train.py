"""``cogvideox-jax train --config configs/train_<name>.py [--set key=value ...]``.

The config file defines ``get_config()`` returning a ``TrainConfig``; ``--set`` overrides fields by
dotted path (``optimizer.lr=2e-5``, ``stages.0.steps=100``, ``lora.rank=64``). Multi-host: on TPU pods
nothing extra is needed; on CPU/GPU clusters pass ``--coordinator host:port --num-processes N
--process-id i``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os


def load_config(path: str, overrides=()):
    from configs.train_config import apply_overrides

    spec = importlib.util.spec_from_file_location(f"_train_config_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return apply_overrides(mod.get_config(), overrides)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train or fine-tune the transformer", description=__doc__)
    p.add_argument("--config", required=True, help="python file with get_config() -> TrainConfig")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", default="runs/train", help="checkpoints/ and logs/ go here")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many global steps")
    p.add_argument("--coordinator", default=None, help="host:port of process 0 (CPU/GPU multi-process)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--local-devices", type=int, default=None, help="CPU only: simulated devices per process")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from cogvideox_jax.train.distributed import initialize

    initialize(args.coordinator, args.num_processes, args.process_id, local_device_count=args.local_devices)
    from cogvideox_jax.train.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    os.makedirs(args.workdir, exist_ok=True)
    trainer = Trainer(cfg, args.workdir)
    try:
        trainer.fit(args.max_steps)
    finally:
        trainer.close()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cogvideox-jax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
