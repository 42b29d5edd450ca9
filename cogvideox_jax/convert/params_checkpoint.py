"""Save and restore a params pytree with orbax."""
from __future__ import annotations

import json
import logging
import os
import re
import sys

import jax
import orbax.checkpoint as ocp

from cogvideox_jax.errors import CheckpointFormatError

# tensorstore's read errors start with an absl status code: "OUT_OF_RANGE: Error reading ...", "NOT_FOUND: ..."
_STATUS_ERROR = re.compile(r"^[A-Z_]{4,}: ")


def save_params(path: str, params) -> None:
    """Write ``params`` to the (new) directory ``path`` with orbax's standard handler."""
    path = os.path.abspath(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)


def restore_params(path: str, target=None):
    """Restore params from ``path``.

    ``target``: an optional pytree of arrays / ``jax.ShapeDtypeStruct`` (with shardings) to
    restore onto; without it the arrays come back as saved.

    A missing, truncated or overwritten file of the checkpoint is a ``CheckpointFormatError`` naming
    ``path`` (not orbax's raw tensorstore error), and the asyncio noise orbax's aborted reads leave
    behind ("Event loop is closed", "Task exception was never retrieved") is not printed.
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise CheckpointFormatError(f"cannot restore the params in {path!r}: the folder is missing")
    _silence_aborted_reads()  # before the restore: the noise can come while the failure is still being raised
    try:
        with ocp.StandardCheckpointer() as ckptr:
            if target is None:
                return ckptr.restore(path)
            abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
            return ckptr.restore(path, abstract)
    except (OSError, ValueError) as e:
        if not (isinstance(e, (OSError, json.JSONDecodeError)) or _STATUS_ERROR.match(str(e))):
            raise  # e.g. a target whose shapes differ from the saved ones: orbax's own message says so
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointFormatError(
            f"cannot restore the params in {path!r}: a file in it is truncated, missing or overwritten "
            f"({first[:300]})") from e


def _is_aborted_read_noise(exc) -> bool:
    return isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)


class _AbortedReadLogFilter(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for the reads a failed restore left running."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if "exception was never retrieved" in record.getMessage() and (
                exc is None or _is_aborted_read_noise(exc) or _STATUS_ERROR.match(str(exc))):
            return False
        return True


_silenced = False


def _silence_aborted_reads() -> None:
    """When a restore fails, orbax's still-running tensorstore reads complete on its closed event loop:
    Python prints each one as an unraisable ``RuntimeError: Event loop is closed`` and asyncio logs their
    unretrieved exceptions, while the failure is raised and after. Filter exactly those (installed once
    per process, by the first restore)."""
    global _silenced
    if _silenced:
        return
    _silenced = True
    previous = sys.unraisablehook

    def hook(unraisable):
        if not _is_aborted_read_noise(unraisable.exc_value):
            previous(unraisable)

    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_AbortedReadLogFilter())
