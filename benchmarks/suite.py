"""The tracked benchmarks that `python -m benchmarks.run` runs, with their arguments (no flags
here, so tests can import it beside other commands' modules)."""

# name -> (module in benchmarks/, full arguments, quick arguments)
BENCHMARKS = {
    # Ten rounds of ten steps: the windows alternate more often than mae_step's default five
    # of twenty, so a drift in the machine's speed lands on every variant more alike.
    "mae_step": ("mae_step", ["--repeats=10", "--steps=10"], ["--config=configs/mae.py:mu", "--config.batch_size=16",
                                  "--repeats=1", "--steps=2"]),
    "input_pipeline": ("input_pipeline", [], ["--config=configs/mae.py:mu",
                                              "--config.batch_size=16", "--repeats=1",
                                              "--steps=2"]),
    "labeling_throughput": ("labeling_throughput", [], ["--variant=mu", "--images=128",
                                                        "--repeats=1", "--eager_images=64"]),
    "chco_solve": ("chco_solve", [], ["--tasks=8", "--max_steps=20", "--repeats=1",
                                      "--reference_tasks=1"]),
    "reuse_throughput": ("reuse_throughput", [], ["--experts=mu,mu", "--images=64",
                                                  "--batch=32", "--repeats=1"]),
    # The same MAE step on glibc's allocator, PyTorch's default (the entry above runs both
    # sides on tcmalloc, mll_jax's default where it is installed). Its smoke run skips PyTorch:
    # the entry above already smoke-tests that side, and this one only adds the environment.
    "mae_step_system_malloc": ("mae_step", ["--repeats=10", "--steps=10"],
                               ["--config=configs/mae.py:mu", "--config.batch_size=16",
                                "--repeats=1", "--steps=2", "--only_jax"]),
    # A mixed hub's selection: ResNets beside ViTs of two sizes.
    "reuse_mixed": ("reuse_throughput", ["--experts=resnet18,resnet18,mini,mini,tiny,tiny",
                                         "--images=1024"],
                    ["--experts=resnet_mu,resnet_mu,mu,mu,cnn_mu", "--images=64",
                     "--batch=32", "--repeats=1"]),
    # A ViT-S/16 MAE train state saved and restored on local disk, the GCS emulator and moto,
    # and the train step with an asynchronous save in flight against none.
    "checkpoint_io": ("checkpoint_io", ["--config.batch_size=16"],
                      ["--config=configs/mae.py:mu", "--config.batch_size=16", "--repeats=1",
                       "--steps=2"]),
}
# Environment a benchmark's process starts with, beyond this one's.
ENVIRONMENT = {"mae_step_system_malloc": {"MLL_JAX_ALLOCATOR": "system"}}
