"""The training state pytree and how it is created and sharded on a mesh.

``params`` is the trainable tree: the full transformer params, or for LoRA only the LoRA tree
(then ``frozen`` holds the base params, which get no gradient and no optimizer state).
``rng`` is a fixed base key; every step derives its randomness as ``fold_in(rng, step)``, so a
restored run replays exactly.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cogvideox_jax.train import lora as lora_lib
from cogvideox_jax.train.ema import init_ema


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    frozen: Any
    opt_state: Any
    ema: Any
    rng: jax.Array


def create_train_state(params, optimizer: optax.GradientTransformation, rng, *, frozen=None,
                       use_ema: bool = False) -> TrainState:
    """A fresh state (``frozen=None`` → ``{}``; EMA of the trainable params when ``use_ema``)."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen if frozen is not None else {},
                      opt_state=optimizer.init(params), ema=init_ema(params) if use_ema else {}, rng=rng)


def state_shardings(abstract_state: TrainState, optimizer, param_shardings_tree, mesh: Mesh,
                    frozen_shardings=None) -> TrainState:
    """Shardings for every leaf: params/EMA as ``param_shardings_tree``, optimizer moments like their
    params (``optax.tree_map_params``), scalars (step, counts, rng) replicated."""
    repl = NamedSharding(mesh, PartitionSpec())
    opt = optax.tree_map_params(optimizer, lambda _p, s: s, abstract_state.opt_state, param_shardings_tree,
                                transform_non_params=lambda _: repl)
    ema = param_shardings_tree if abstract_state.ema else {}
    return TrainState(step=repl, params=param_shardings_tree,
                      frozen=frozen_shardings if frozen_shardings is not None else {},
                      opt_state=opt, ema=ema, rng=repl)


def replicated(mesh: Mesh, tree):
    repl = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda _: repl, tree)


def model_params(state: TrainState, lora_scale: float | None):
    """The params the model runs on (LoRA merged in when ``lora_scale`` is set)."""
    if lora_scale is None:
        return state.params
    return lora_lib.merge_lora(state.frozen, state.params, lora_scale)
