"""Orbax checkpoints of the whole training state (async), with keep-last-N + keep-best retention.

One checkpoint step holds three items:
  ``state``  the ``TrainState`` (params, optimizer state, EMA, step, RNG) — ``StandardSave``;
  ``data``   the data iterator's state (JSON, e.g. ``{"position": 123, "seed": 0}``);
  ``meta``   JSON: loss, config name, mesh shape at save time.
Restore takes an abstract state whose leaves carry the *target* shardings, so a checkpoint written
on one mesh restores onto another. Orbax writes into a temporary directory and renames it only when
every host has finished (``…orbax-checkpoint-tmp-…``); an interrupted write is never listed as a
step and is cleaned up by the next manager.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp

from cogvideox_jax import paths
from orbax.checkpoint import checkpoint_managers as ocm


def _loss_metric(metrics) -> float:
    return float(metrics["loss"])


class Checkpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for ``TrainState`` + data state + metadata."""

    def __init__(self, directory: str, *, keep_last: int = 3, keep_best: int = 1, async_save: bool = True,
                 save_every: int | None = None):
        self.directory = paths.absolute(directory)
        policies = [ocm.LatestN(n=max(keep_last, 1))]
        if keep_best:
            policies.append(ocm.BestN(get_metric_fn=_loss_metric, reverse=True, n=keep_best,
                                      keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            save_interval_steps=save_every or 1,
            create=True,
            cleanup_tmp_directories=True,  # remove leftovers of interrupted writes
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "meta"))

    # ------------------------------------------------------------------ save
    def save(self, step: int, state, data_state: dict | None = None, metrics: dict | None = None,
             meta: dict | None = None, force: bool = False) -> bool:
        """Start an (async) save; returns whether a checkpoint is being written at ``step``."""
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        meta = dict(meta or {}, **{"metrics": metrics, "step": int(step)})
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state or {}),
                                  meta=ocp.args.JsonSave(meta))
        return self.manager.save(int(step), args=args, metrics=metrics if "loss" in metrics else None,
                                 force=force)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    # --------------------------------------------------------------- restore
    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def best_step(self) -> int | None:
        best = None
        for s in self.all_steps():
            loss = self.read_meta(s).get("metrics", {}).get("loss")
            if loss is not None and (best is None or loss < best[0]):
                best = (loss, s)
        return None if best is None else best[1]

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, abstract_state, step: int | None = None) -> tuple[Any, dict, dict]:
        """``(state, data_state, meta)`` at ``step`` (default: the newest intact step), placed on the
        shardings of ``abstract_state`` (a pytree of ``jax.ShapeDtypeStruct(shape, dtype, sharding=…)``).

        Without ``step``, a damaged newest checkpoint (a truncated or missing file) is moved aside to
        ``damaged-<step>-<time>`` (kept, not deleted) with a one-line note, and the next newer one is
        tried. A checkpoint that is intact but does not fit ``abstract_state`` is an error, not damage."""
        if step is not None:
            return self._restore(abstract_state, step)
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
        for s in reversed(steps):
            try:
                return self._restore(abstract_state, s)
            except Exception as e:  # noqa: BLE001 - orbax / TensorStore raise many kinds
                damage = self.damage(s)
                if damage is None:
                    raise
                aside = self._move_aside(s)
                print(f"checkpoint step {s} in {self.directory} is damaged ({damage}); moved it to {aside} and "
                      f"trying the step before it", file=sys.stderr, flush=True)
                del e
        raise FileNotFoundError(f"no intact checkpoint left in {self.directory}: every step was damaged and moved "
                                "aside (damaged-*); start over in a new workdir or repair them")

    def _restore(self, abstract_state, step: int):
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["data"] or {}), dict(out["meta"] or {})

    def damage(self, step: int) -> str | None:
        """Why ``step`` cannot be read as it was written (its own metadata as the target), or ``None``."""
        import numpy as np

        path = paths.join(self.directory, str(step))
        try:
            for name in ("data", "meta"):
                json.loads(paths.read_text(paths.join(path, name, "metadata")))
            with ocp.PyTreeCheckpointer() as ckptr:
                state = paths.join(path, "state")
                tree = ckptr.metadata(state).item_metadata.tree
                args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
                ckptr.restore(state, args=ocp.args.PyTreeRestore(item=tree, restore_args=args))
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return f"{type(e).__name__}: {first[:200]}"
        return None

    def _move_aside(self, step: int) -> str:
        import time

        from jax.experimental import multihost_utils

        src = paths.join(self.directory, str(step))
        dst = paths.join(self.directory, f"damaged-{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        if jax.process_index() == 0:
            paths.as_path(src).rename(dst)
        multihost_utils.sync_global_devices(f"checkpoint_move_aside_{step}")
        self.manager.reload()
        return dst


def abstract_with_shardings(tree, shardings):
    """``ShapeDtypeStruct`` leaves with the given target shardings (for restore onto any mesh)."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
