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
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm


def _loss_metric(metrics) -> float:
    return float(metrics["loss"])


class Checkpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for ``TrainState`` + data state + metadata."""

    def __init__(self, directory: str, *, keep_last: int = 3, keep_best: int = 1, async_save: bool = True,
                 save_every: int | None = None):
        self.directory = os.path.abspath(directory)
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
        """``(state, data_state, meta)`` at ``step`` (default latest), placed on the shardings of
        ``abstract_state`` (a pytree of ``jax.ShapeDtypeStruct(shape, dtype, sharding=…)``)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["data"] or {}), dict(out["meta"] or {})


def abstract_with_shardings(tree, shardings):
    """``ShapeDtypeStruct`` leaves with the given target shardings (for restore onto any mesh)."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def dump_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)
