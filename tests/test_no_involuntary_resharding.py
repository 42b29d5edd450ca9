"""No silent resharding: the standard sampling and training programs on 8 simulated devices compile without
the SPMD partitioner's "Involuntary full rematerialization" (a tensor replicated and re-split because
two shardings meet that it cannot convert). It used to hit the adaLN broadcasts and the attention output
when the batch was smaller than the data x fsdp shards (one prompt's CFG batch of 2 on
data=2,fsdp=2,sequence=2, or on data=2,fsdp=4 in the trainer's validation sampling: the activation
constraints split the batch 4 ways unevenly, the inputs 2 ways), and the adaLN modulation's split into
its 6 chunks when the weights are sharded over fsdp x sequence (fixed by ``logical_axes.activation_spec``
and the constraints on the modulation and the patch embedding's output).

The compiles run in a subprocess (``tests/sharding_programs.py``): XLA writes the warning to the
process's stderr."""
import os
import subprocess
import sys

import pytest
from jax.sharding import PartitionSpec as P

from cogvideox_jax.parallel.logical_axes import activation_spec
from cogvideox_jax.parallel.mesh import make_mesh
from tests import sharding_programs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _compile_and_check(names):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run([sys.executable, "-m", "tests.sharding_programs", *names], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiled = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("COMPILED ")]
    assert compiled == list(names)
    bad = [line for line in proc.stderr.splitlines() if "Involuntary full rematerialization" in line]
    assert not bad, "\n".join(line[:400] for line in bad[:5])


def test_standard_programs_compile_without_involuntary_rematerialization():
    _compile_and_check([*sharding_programs.SAMPLING, *sharding_programs.TRAINING])


@pytest.mark.slow  # ~30 s more on 2 cores
def test_more_programs_compile_without_involuntary_rematerialization():
    _compile_and_check([*sharding_programs.MORE_SAMPLING, *sharding_programs.MORE_TRAINING])


def test_activation_specs_follow_the_batch_axes_that_divide():
    mesh = make_mesh("data=2,fsdp=2,sequence=2")
    names = ("activation_batch", "activation_length", "activation_embed")
    # a CFG batch of 2 goes to data alone, as the inputs' batch_sharding puts it
    assert activation_spec(names, (2, 25, 64), mesh) == P("data", "sequence", None)
    assert activation_spec(names, (4, 25, 64), mesh) == P(("data", "fsdp"), "sequence", None)
    assert activation_spec(names, (1, 25, 64), mesh) == P(None, "sequence", None)
    # token counts may split unevenly (17550 video tokens over sequence=4), but leave no shard empty
    mesh4 = make_mesh("fsdp=2,sequence=4")
    assert activation_spec(names, (2, 17550, 64), mesh4) == P("fsdp", "sequence", None)
    assert activation_spec(names, (2, 3, 64), mesh4) == P("fsdp", None, None)
