"""``cogvideox-jax train --config configs/train_<name>.py [--set key=value ...]``.

The config file defines ``get_config()`` returning a ``TrainConfig``; ``--set`` overrides fields by
dotted path (``optimizer.lr=2e-5``, ``stages.0.steps=100``, ``lora.rank=64``). Multi-host: on TPU pods
nothing extra is needed; on CPU/GPU clusters pass ``--coordinator host:port --num-processes N
--process-id i``.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys


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
    p.add_argument("--workdir", default="runs/train", help="checkpoints/ and logs/ go here (a local folder or gs://...)")
    p.add_argument("--init", default=None, metavar="PATH",
                   help="start from these weights (= --set init_from=PATH): a diffusers CogVideoX pipeline folder, "
                        "its transformer/ folder, a `cogvideox-jax convert` checkpoint or a train workdir (its "
                        "latest step); the architecture comes from PATH (model=auto, or a preset that must agree)")
    p.add_argument("--init-lora", default=None, metavar="FILE",
                   help="LoRA runs: continue a published diffusers / PEFT LoRA (= --set init_lora=FILE)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many global steps")
    p.add_argument("--coordinator", default=None, help="host:port of process 0 (CPU/GPU multi-process)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--local-devices", type=int, default=None, help="CPU only: simulated devices per process")
    from cogvideox_jax import compile_cache

    compile_cache.add_arguments(p)
    p.set_defaults(run=compile_cache.wrap(run))
    return p


def run(args) -> int:
    from cogvideox_jax.parallel.distributed import initialize

    initialize(args.coordinator, args.num_processes, args.process_id, local_device_count=args.local_devices)
    from cogvideox_jax.train.trainer import Trainer

    extra = ([f"init_from={args.init}"] if args.init else []) + ([f"init_lora={args.init_lora}"] if args.init_lora else [])
    cfg = load_config(args.config, list(args.overrides) + extra)
    cfg = fit_mesh_to_devices(cfg)
    from cogvideox_jax.errors import CheckpointFormatError, WeightMismatchError
    from cogvideox_jax.train.init_source import InitError
    from cogvideox_jax.train.trainer import NonFiniteTrainingError

    try:
        trainer = Trainer(cfg, args.workdir)
        try:
            trainer.fit(args.max_steps)
        finally:
            trainer.close()
    except (InitError, NonFiniteTrainingError, WeightMismatchError, CheckpointFormatError, FileNotFoundError) as e:
        print(f"cogvideox-jax train: error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


def fit_mesh_to_devices(cfg):
    """A config whose mesh asks for more devices than this machine has (the tiny configs' ``data=2`` on a
    one-device laptop) runs on a shrunk mesh, with a note; see ``parallel/mesh.py: fit_mesh_spec``."""
    import dataclasses

    import jax

    from cogvideox_jax.parallel.mesh import fit_mesh_spec

    if cfg.mesh_dcn:
        return cfg
    mesh = fit_mesh_spec(cfg.mesh, jax.device_count())
    if mesh != cfg.mesh:
        if jax.process_index() == 0:
            print(f"note: mesh {cfg.mesh!r} needs more than the {jax.device_count()} device(s) here; "
                  f"using {mesh!r}", flush=True)
        cfg = dataclasses.replace(cfg, mesh=mesh)
    return cfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cogvideox-jax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
