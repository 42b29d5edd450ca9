"""AOT compilation for TPU topologies (cogvideox_jax/tpu_aot.py).

The command itself runs in every test run: without libtpu (this venv) it must exit with status 2 and
say what to install; with libtpu (the interpreter here if it has it, and ``.venv-tpu`` where it exists)
it compiles a tiny train step. The in-process compile tests need libtpu (run them in the TPU venv:
``.venv-tpu/bin/python -m pytest -o addopts="" tests/test_tpu_aot.py -m tpu_aot``); they are skipped
where the tpu platform is absent. The shape helpers are tested everywhere.
"""
import os
import subprocess
import sys

import pytest

from configs.transformer import get_preset
from cogvideox_jax import tpu_aot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_VENV_PYTHON = os.path.join(ROOT, ".venv-tpu", "bin", "python")
TINY_TRAIN = ["aot", "--job", "train", "--variant", "tiny-5b", "--topology", "v5p:2x2x1", "--mesh",
              "fsdp=2,sequence=2", "--sequence-parallel", "ulysses"]


def test_native_latent_shapes_and_tokens():
    five = get_preset("cogvideox-5b")
    assert tpu_aot.latent_shape(five, 49, 480, 720) == (13, 60, 90)
    assert tpu_aot.num_tokens(five, 13, 60, 90) == 226 + 13 * 30 * 45
    one5 = get_preset("cogvideox1.5-5b")
    assert tpu_aot.latent_shape(one5, 81, 768, 1360) == (22, 96, 170)  # 21 latent frames padded to patch_t=2
    assert tpu_aot.num_tokens(one5, 22, 96, 170) == 226 + 11 * 48 * 85
    assert tpu_aot.latent_shape(five, None, None, None) == (13, 60, 90)  # preset sample size


def test_job_validation():
    with pytest.raises(ValueError, match="job"):
        tpu_aot.AOTJob(job="infer")
    with pytest.raises(ValueError, match="attention"):
        tpu_aot.AOTJob(attention="flash")
    # the former compile-time patch is what the model's own splash does on a mesh now
    assert tpu_aot.AOTJob(attention="splash-sharded").attention == "splash"


def test_every_cli_command_has_a_runner():
    """`cogvideox-jax aot` used to fail with "'Namespace' object has no attribute 'run'" (its parser set
    func=): every sub-command's parser must set run=."""
    import argparse

    from cogvideox_jax.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        parsers = nested[0].choices.values() if nested else [p]
        for q in parsers:
            assert callable(q.get_default("run")), name
    args = parser.parse_args(TINY_TRAIN)
    assert args.run is tpu_aot.run


def test_train_config_is_the_trainers():
    """A train job is a TrainConfig: the job's model, mesh, one-stage size, execution options; then --set."""
    from cogvideox_jax.parallel.mesh import make_mesh

    import jax

    job = tpu_aot.AOTJob(job="train", variant="1.5-5b", mesh="fsdp=2,sequence=4", frames=81, height=768,
                         width=1360, sequence_parallel="ulysses", overrides=("optimizer.grad_accum_steps=2",))
    cfg = tpu_aot.train_config(job, make_mesh("fsdp=2,sequence=4", devices=jax.devices()[:8]))
    assert cfg.model == "cogvideox1.5-5b" and cfg.batch_size == 2 and cfg.dtype == "bfloat16"
    assert (cfg.stages[0].num_frames, cfg.stages[0].height, cfg.stages[0].width) == (81, 768, 1360)
    assert cfg.execution.sequence_parallel == "ulysses" and cfg.execution.remat_policy == "full"
    assert cfg.optimizer.grad_accum_steps == 2 and cfg.validation.every_steps == 0 and not cfg.init_from


def _run_cli(python: str, argv):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)   # the tests' 8 simulated CPU devices are not the command's business
    env.pop("JAX_PLATFORMS", None)
    return subprocess.run([python, "-m", "cogvideox_jax.cli", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _check_ran(proc, has_libtpu: bool):
    if has_libtpu:
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("train tiny-5b v5p:2x2x1")]
        assert line and "(fits)" in line[0] and "sp=ulysses" in line[0], proc.stdout
    else:
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
        assert "cogvideox-jax aot: error:" in proc.stderr and 'pip install -e ".[aot]"' in proc.stderr, proc.stderr
        assert ".venv-tpu/bin/cogvideox-jax aot" in proc.stderr and "Traceback" not in proc.stderr


def test_aot_command_here():
    """This interpreter: the compile where it has libtpu, else the message saying what to install."""
    _check_ran(_run_cli(sys.executable, TINY_TRAIN), tpu_aot.tpu_aot_available())


def test_aot_command_in_the_tpu_venv():
    if not os.path.exists(TPU_VENV_PYTHON):
        pytest.skip("no .venv-tpu (README: Compiling for real TPUs)")
    if os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(ROOT, ".venv-tpu")):
        pytest.skip("this is the TPU venv: test_aot_command_here ran it")
    _check_ran(_run_cli(TPU_VENV_PYTHON, TINY_TRAIN), True)


def _needs_tpu_topology():
    if not tpu_aot.tpu_aot_available("v5p:2x2x1"):
        pytest.skip("libtpu / the tpu platform is not available (use the TPU venv)")


@pytest.mark.tpu_aot
@pytest.mark.parametrize("job", ["sample", "train"])
def test_tiny_compiles_for_v5p_8(job):
    _needs_tpu_topology()
    rep = tpu_aot.compile_job(tpu_aot.AOTJob(job=job, variant="tiny-5b", topology="v5p:2x2x1", mesh="fsdp=4",
                                             batch=4))
    assert rep.num_devices == 4 and rep.device_kind.startswith("TPU v5")
    assert rep.latent_shape == (4, 3, 4, 6, 4)
    assert rep.argument_bytes > 0 and rep.temp_bytes > 0 and rep.code_bytes > 0
    assert rep.flops > 0 and rep.model_flops > 0
    assert rep.fits and rep.hbm_gib == 95.0


@pytest.mark.tpu_aot
def test_compiles_the_trainers_step_and_the_pipelines_loop(monkeypatch):
    """No private copies: the train job lowers what Trainer.make_step builds (make_train_step), the sample
    job the pipeline's _denoise_fn; both with the Mosaic splash kernel (not interpret mode), Ulysses'
    all-to-alls where asked."""
    _needs_tpu_topology()
    from cogvideox_jax.parallel.mesh import make_mesh
    from cogvideox_jax.pipeline.cogvideox_pipeline import CogVideoXPipeline
    from cogvideox_jax.train import trainer as trainer_mod

    calls = []
    orig_step, orig_denoise = trainer_mod.make_train_step, CogVideoXPipeline._denoise_fn
    monkeypatch.setattr(trainer_mod, "make_train_step", lambda *a, **k: calls.append("step") or orig_step(*a, **k))
    monkeypatch.setattr(CogVideoXPipeline, "_denoise_fn",
                        lambda self, *a, **k: calls.append("denoise") or orig_denoise(self, *a, **k))
    mesh = make_mesh("fsdp=2,sequence=2", devices=tpu_aot.topology_devices("v5p:2x2x1"))
    train = tpu_aot.AOTJob(job="train", variant="tiny-5b", mesh="fsdp=2,sequence=2", sequence_parallel="ulysses")
    import jax

    with jax.default_matmul_precision("default"):
        lowered = tpu_aot._lower_train(train, mesh)[0].as_text()
        sample = tpu_aot._lower_sample(tpu_aot.AOTJob(job="sample", variant="tiny-5b", mesh="fsdp=2,sequence=2",
                                                      sequence_parallel="ulysses"), mesh)[0].as_text()
    assert calls == ["step", "denoise"]
    for text in (lowered, sample):
        assert "tpu_custom_call" in text and "all_to_all" in text


@pytest.mark.tpu_aot
def test_fsdp_shards_parameters_per_chip():
    """Argument bytes per chip drop when the same job is spread over more fsdp shards."""
    _needs_tpu_topology()
    base = dict(job="sample", variant="tiny-2b", topology="v5p:2x2x1", batch=2, attention="xla")
    one = tpu_aot.compile_job(tpu_aot.AOTJob(mesh="data=4", **{**base, "batch": 2}))
    four = tpu_aot.compile_job(tpu_aot.AOTJob(mesh="fsdp=4", **base))
    assert four.argument_bytes < one.argument_bytes


@pytest.mark.tpu_aot
def test_step_time_estimate():
    """The cost-model estimate extrapolates 1- and 2-layer compiles and adds the splash kernels at peak."""
    _needs_tpu_topology()
    job = tpu_aot.AOTJob(job="train", variant="tiny-5b", topology="v5p:2x2x1", mesh="fsdp=4")
    est = tpu_aot.estimate_step_seconds(job)
    assert est["cost_2_layers"] > est["cost_1_layer"] > 0 and est["kernel_seconds"] > 0
    assert est["seconds"] == pytest.approx(est["xla_seconds"] + est["kernel_seconds"])


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_abstract_step_is_the_fit_state(tmp_path, lora):
    """What `aot --job train` lowers: Trainer.abstract_step's state has the tree, shapes, dtypes and
    shardings of the state fit() trains (build_state), without reading or allocating weights (a LoRA
    run's frozen base too); and it lowers on the trainer's mesh."""
    import jax

    from configs.train_config import LoraConfig, ModelExecutionConfig, StageConfig, TrainConfig
    from cogvideox_jax.train.trainer import Trainer

    cfg = TrainConfig(model="tiny-5b", mesh="fsdp=2,sequence=2,data=2", batch_size=4, text_len=8, ema_decay=0.9,
                      stages=(StageConfig(steps=1, num_frames=9, height=32, width=48),),
                      execution=ModelExecutionConfig(sequence_parallel="ulysses"),
                      lora=LoraConfig(rank=2, alpha=4.0) if lora else None)
    abstract_tr = Trainer(cfg, str(tmp_path / "a"), progress=False, stdout=False)
    step, state, batch = abstract_tr.abstract_step()
    real_tr = Trainer(cfg, str(tmp_path / "b"), progress=False, stdout=False)
    real = real_tr.build_state()
    flat_a, tree_a = jax.tree_util.tree_flatten(state)
    flat_r, tree_r = jax.tree_util.tree_flatten(real)
    assert tree_a == tree_r
    for a, r in zip(flat_a, flat_r):
        assert (a.shape, a.dtype) == (r.shape, r.dtype) and a.sharding == r.sharding
    assert batch["latents"].shape == (4, 3, 4, 6, 4) and batch["latents"].sharding == step.batch_shardings["latents"]
    with jax.set_mesh(abstract_tr.mesh):
        assert "all_to_all" in step.jitted.lower(state, batch).as_text()
    abstract_tr.close()
    real_tr.close()
