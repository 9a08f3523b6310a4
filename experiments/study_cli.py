"""What the study scripts share on their command line: the command as a user would retype it
(for the reports), and the check that an MNIST study was given its IDX files."""

import pathlib

from absl import app

_PATH_FLAGS = ("--out", "--study_dir", "--compilation_cache", "--manual_dir", "--mnist_dir",
               "--hub_dir", "--runs_dir")


REPO = pathlib.Path(__file__).resolve().parents[1]


def command_line(argv: list[str]) -> str:
  """`python -m experiments.<module> ARGS`, machine-specific paths left out (`argv[0]` is the
  module's file, as `python -m` sets it)."""
  args = [a for a in argv[1:] if not a.startswith(_PATH_FLAGS)]
  for folder_flag in ("--manual_dir", "--mnist_dir"):
    if any(a.startswith(folder_flag) for a in argv[1:]):
      args.append(f"{folder_flag}=DIR")
  script = pathlib.Path(argv[0]).resolve()
  if script.is_relative_to(REPO):
    module = ".".join(script.relative_to(REPO).with_suffix("").parts)
  else:  # a copy run from elsewhere: name it as the study it is
    module = f"experiments.{script.stem}"
  return " ".join([f"python -m {module}", *args])


def require_mnist_files(data: str, manual_dir: str) -> None:
  """A usage error when `--data=mnist` comes without the folder of MNIST's IDX files."""
  if data == "mnist" and not manual_dir:
    raise app.UsageError("--data=mnist needs --manual_dir, the folder of MNIST's four IDX files "
                         "(see docs/data.md).")
