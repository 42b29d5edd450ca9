"""Save and restore a params pytree with orbax."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def save_params(path: str, params) -> None:
    """Write ``params`` to the (new) directory ``path`` with orbax's standard handler."""
    path = os.path.abspath(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)


def restore_params(path: str, target=None):
    """Restore params from ``path``.

    ``target``: an optional pytree of arrays / ``jax.ShapeDtypeStruct`` (with shardings) to
    restore onto; without it the arrays come back as saved.
    """
    path = os.path.abspath(path)
    with ocp.StandardCheckpointer() as ckptr:
        if target is None:
            return ckptr.restore(path)
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        return ckptr.restore(path, abstract)
