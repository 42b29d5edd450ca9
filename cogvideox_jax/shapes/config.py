"""The embedded default model: a small CogVideoX trained on the synthetic shapes dataset.

One frozen dataclass per part of the recipe (``cogvideox-jax train-shapes``); every field can be
overridden from the command line with ``--set part.field=value`` (e.g. ``--set vae_train.steps=200``).

Sizes: 9-frame 64x64 clips -> latents (3, 8, 8, 16) (the real VAE's 4x time, 8x space compression);
the transformer sees 3 x 4 x 4 = 48 video tokens + 24 text tokens.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from configs.t5 import T5Config
from configs.train_config import CheckpointConfig, DataConfig, OptimizerConfig, StageConfig, TrainConfig
from configs.transformer import TransformerConfig, get_preset
from configs.vae import VAEConfig

NUM_FRAMES, SIZE = 9, 64

# A 2.6 M-parameter CogVideoX VAE: same block structure as the real one (4 blocks, two time
# compressions, spatial norm decoder), narrower and one resnet per block.
# norm_eps 1e-2 (real VAEs: 1e-6): the clips are mostly flat color, and a near-zero-variance group
# normalised with a tiny eps amplifies codec noise; the larger eps trains faster here.
SHAPES_VAE = VAEConfig(block_out_channels=(16, 32, 64, 64), layers_per_block=1, latent_channels=16,
                       norm_num_groups=8, norm_eps=1e-2, sample_height=SIZE, sample_width=SIZE, scaling_factor=1.0)

# A tiny T5 v1.1 encoder, kept frozen at its random init (cogvideox_jax/shapes/README.md).
SHAPES_T5 = T5Config(vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=32)

# A 1.0-5B-style expert transformer (3D RoPE, expert adaLN), 4 layers x 384 wide (6 heads x 64):
# preset "shapes", trained for 15000 steps with bf16-operand matmuls in the time a 4 x 320 takes in fp32
# on an AMX host. Held-out shape accuracy with CFG 6: 4 x 192 30 %, 6 x 256 45 %, 4 x 320 51 %; with
# contrast guidance 4 x 320 58 %, 4 x 384 67 % (cogvideox_jax/shapes/README.md).
SHAPES_TRANSFORMER = get_preset("shapes")


@dataclass(frozen=True)
class DatasetConfig:
    num_train: int = 2000
    num_heldout: int = 120
    num_frames: int = NUM_FRAMES
    size: int = SIZE
    seed: int = 0


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 200          # upper bound on pieces (T5 ids: pad 0, </s> 1, unk 2)
    model_type: str = "word"       # one piece per caption word: captions fit in ~14 tokens


@dataclass(frozen=True)
class VAEPhase:
    """``steps`` updates on random ``(frames, size, size)`` crops of the training clips; with
    ``train_encoder=False`` only the decoder learns (the latents stay bit-identical)."""
    steps: int
    batch_size: int
    frames: int
    size: int
    train_encoder: bool = True


@dataclass(frozen=True)
class VAETrainConfig:
    # whole-mode decode gives back F frames only for F = 1 + 8k (an odd number of latent frames).
    # Single frames first (32 objects per step: colors and outlines are learnt from images, the first-
    # frame path), then 9-frame crops (motion through the time compression), then whole clips.
    phases: tuple[VAEPhase, ...] = (VAEPhase(steps=600, batch_size=32, frames=1, size=40),
                                    VAEPhase(steps=500, batch_size=4, frames=NUM_FRAMES, size=40),
                                    VAEPhase(steps=400, batch_size=2, frames=NUM_FRAMES, size=SIZE))
    lr: float = 1e-3
    warmup_steps: int = 50
    final_lr_ratio: float = 0.1     # cosine decay over all phases
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    kl_weight: float = 1e-4         # on the per-element mean KL
    foreground_weight: float = 4.0  # extra weight on object pixels (see cogvideox_jax/shapes/vae_objective.py)
    object_crops: bool = True       # crops drawn around each clip's object (vae_trainer.random_crops)
    grad_clip: float = 1.0
    seed: int = 0
    eval_clips: int = 32            # held-out clips for the PSNR printed at the end
    log_every: int = 20
    checkpoint_every: int = 250     # params + optimizer state, so an interrupted stage resumes (0: never)

    @property
    def steps(self) -> int:
        return sum(p.steps for p in self.phases)


def vae_decoder_train_config() -> VAETrainConfig:
    """A decoder-only fine-tune after the VAE stage (encoder frozen, so the latents do not change):
    more whole-clip steps for the decoder at a fresh learning rate, the MSE weighted 10x (PSNR is an
    MSE, and at errors ~0.05 the L1 term's gradient is ~10x the MSE's). Held-out PSNR (120 clips):
    27.5 dB before, 30.3 after these 1600 steps (29.5 with lr 3e-4, MSE x1, final lr 10 %;
    cogvideox_jax/shapes/README.md)."""
    return VAETrainConfig(phases=(VAEPhase(steps=1600, batch_size=2, frames=NUM_FRAMES, size=SIZE,
                                           train_encoder=False),),
                          lr=1e-3, warmup_steps=30, final_lr_ratio=0.02, mse_weight=10.0, seed=1)


def transformer_train_config() -> TrainConfig:
    """The transformer stage: the project's ``Trainer`` on cached latents + T5 embeddings."""
    return TrainConfig(
        model="shapes", mesh="data=-1", batch_size=16, seed=0, snr_shift_scale=1.0,
        explicit_uniform_sampling=False, text_dropout=0.1, text_len=SHAPES_TRANSFORMER.max_text_seq_length,
        ema_decay=0.999,
        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=100, schedule="cosine", final_lr_ratio=0.05,
                                  weight_decay=1e-4, grad_clip=1.0),
        stages=(StageConfig(name="shapes", steps=15000, num_frames=NUM_FRAMES, height=SIZE, width=SIZE),),
        checkpoint=CheckpointConfig(directory="checkpoints", every_steps=1500, keep_last=1, keep_best=0),
        data=DataConfig(kind="precomputed"),
        log_every=50,
    )


@dataclass(frozen=True)
class SamplingConfig:
    steps: int = 25                 # 25 DPM steps score as 50 do (cogvideox_jax/shapes/README.md)
    guidance_scale: float = 6.0
    scheduler: str = "dpm"          # the 5B's CogVideoXDPMScheduler (v-prediction, zero terminal SNR)
    # Contrast guidance (cogvideox_jax/shapes/contrast_prompts.py): each prompt is also contrasted
    # with itself naming each other shape, w_c (v(prompt) - mean v(other shape)); the outline is what
    # this model draws worst (cogvideox_jax/shapes/README.md). 0 turns it off. The words are the
    # dataset's shape names (cogvideox_jax/shapes/dataset/vocabulary.py SHAPES; a test checks).
    contrast_scale: float = 4.0
    contrast_words: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
    # Best-of-N (cogvideox_jax/shapes/candidate_selection.py): each video is the best of `candidates`
    # samples, judged by the model itself: its v-loss under the prompt relative to the contrast prompts,
    # at `selection_timesteps` (x `selection_repeats` noise draws), the object's latent cells weighted
    # 1 + `selection_object_weight` as in training. 1 turns it off. 8 candidates x 25 steps cost the
    # sampling of 4 x 50 and picked no worse on both pairs of seeds (cogvideox_jax/shapes/README.md; BENCHMARKS.md,
    # "Best-of-N verifier").
    candidates: int = 8
    selection_timesteps: tuple[int, ...] = (50, 150, 250, 350, 450)
    selection_repeats: int = 2
    selection_object_weight: float = 4.0


@dataclass(frozen=True)
class EvalConfig:
    num_prompts: int | None = None  # prompts sampled (None: all of the held-out split)
    # "heldout": the prompts of the held-out (color, shape, direction) combinations, the reported
    # score; "train": training captions (set num_prompts), the model on what it was trained on: the
    # generalization gap (cogvideox_jax/shapes/README.md)
    split: str = "heldout"
    seeds: tuple[int, ...] = (0, 1)
    strip_rows: int = 6             # samples shown in eval/samples.png

    def check(self) -> None:
        """Raise on a setting the eval stage would reject (``train-shapes`` checks before training).
        Not ``__post_init__``: ``--set`` applies one field at a time."""
        from cogvideox_jax.shapes.dataset.make_dataset import SPLITS

        if self.split not in SPLITS:
            raise ValueError(f"evaluation.split must be one of {SPLITS}, got {self.split!r}")
        if self.split == "train" and self.num_prompts is None:
            raise ValueError("evaluation.split=train needs evaluation.num_prompts (e.g. 120): the training "
                             "split has thousands of prompts")


@dataclass(frozen=True)
class ShapesRecipe:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    vae_train: VAETrainConfig = field(default_factory=VAETrainConfig)
    vae_decoder_train: VAETrainConfig = field(default_factory=vae_decoder_train_config)
    transformer_train: TrainConfig = field(default_factory=transformer_train_config)
    # the transformer stage's v-loss x (1 + object_loss_weight) on the object's latent cells (latent
    # vectors farther than object_threshold from their frame's median: object_loss_weight.py); 0 turns it off
    object_loss_weight: float = 4.0
    object_threshold: float = 1.5
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    vae: VAEConfig = SHAPES_VAE
    t5: T5Config = SHAPES_T5
    transformer: TransformerConfig = SHAPES_TRANSFORMER


def get_config() -> ShapesRecipe:
    return ShapesRecipe()


def replace(cfg, **kw):
    return dataclasses.replace(cfg, **kw)
