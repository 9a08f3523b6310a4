"""mll_jax: self-supervised pre-training, label-efficient learning and a model hub, in JAX."""

from setuptools import find_packages, setup

setup(
    name="mll_jax",
    version="0.1.0",
    description="JAX framework for self-supervised pre-training, label-efficient learning and "
                "Model Label Learning.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # `configs` too, so that a config file anywhere can `from configs import common`.
    packages=find_packages(include=["mll_jax", "mll_jax.*", "configs"]),
    package_data={"mll_jax.hub": ["data/*.json"]},  # the shipped SDAG
    install_requires=[
        "jax>=0.8,<0.11",
        "flax>=0.12,<0.13",
        "optax>=0.2.6,<0.3",
        "orbax-checkpoint>=0.11.20,<0.13",
        "tensorflow-datasets>=4.9.9,<5",
        "array_record>=0.7,<0.9",
        "grain>=0.2.12,<0.3",
        "einops>=0.8,<0.9",
        "ml_collections>=1.0,<2",
        "absl-py>=2.0,<3",
        "numpy>=1.26,<3",
        "pillow>=10,<13",
        "scikit-learn>=1.3,<2",      # sklearn's digits, an offline data set
        "importlib_resources>=6",    # TFDS imports it for builders in packages but does not declare it
        "tqdm>=4.60,<5",
        "safetensors>=0.4,<1",       # weight import (models/convert.py)
        "tensorboardX>=2.6,<3",      # TensorBoard event files without TensorFlow (run_log.py)
        # Workdirs and hubs in buckets (mll_jax/storage): epath reaches gs:// and s3:// through
        # gcsfs and s3fs; their own clients, google-cloud-storage and botocore, make the
        # conditional creates that leases and hub commits rest on (S3's If-None-Match needs
        # botocore 1.35+, which s3fs 2025.2+ brings).
        "gcsfs>=2025.2", "s3fs>=2025.2",
    ],
    extras_require={
        "cuda": ["jax[cuda12]>=0.8,<0.11"],
        "tpu": ["jax[tpu]>=0.8,<0.11"],
        # torch 2.13.0 pinned exactly: a looser range pulls the newest CUDA build (GBs). The
        # timm parity test also needs `pip install --no-deps timm` (its torchvision dependency
        # has no CPU build here; tests/torchvision_stub.py stands in for it).
        # jax[tpu] brings libtpu, whose compiler the TPU-pod compile test uses (no TPU needed).
        # The suite builds the docs too (tests/test_docs.py), so it needs the docs extra's.
        "test": ["pytest>=8,<10", "matplotlib>=3.7,<4", "torch==2.13.0", "pyyaml>=6",
                 "nltk>=3.8,<4", "jax[tpu]>=0.8,<0.11",
                 "cvxpy>=1.4,<2",  # an independent interior-point solve to check CHCO against
                 "sphinx>=8,<10", "myst-parser>=4,<6", "sphinx-book-theme>=1.1,<2",
                 # local GCS and S3 servers for the bucket tests (tests/object_storage.py).
                 # moto needs boto3, which pins botocore to its own release; aiobotocore (s3fs)
                 # pins botocore too. Without this range pip backtracks through boto3's daily
                 # releases for minutes; it is the range that matches aiobotocore 3.10's pin.
                 "gcp-storage-emulator>=2024.8", "moto[server]>=5.1",
                 "boto3>=1.43.115,<1.43.118"],
        # The docs site: Sphinx with MyST Markdown, as flax, optax and orbax build theirs.
        "docs": ["sphinx>=8,<10", "myst-parser>=4,<6", "sphinx-book-theme>=1.1,<2"],
        # Rebuilding the SDAG from WordNet (python -m mll_jax.hub.wordnet_graph); the data
        # files come from the system (Debian: apt-get install wordnet-base wordnet-sense-index).
        "wordnet": ["nltk>=3.8,<4"],
        "experiments": ["matplotlib>=3.7,<4"],
        "bench": ["torch==2.13.0"],
    },
)
