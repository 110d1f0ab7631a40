"""The training command's parser and entry point (``python -m sr_models.train``, see ``sr_models/train.py``).

Re-running the same command resumes from ``OUT/checkpoint`` (``--restart`` starts over);
``--max-minutes`` is the total budget over all resumed runs. See ``--help`` of each family.
"""

from __future__ import annotations

import argparse
import sys

import torch

from sr_models.training.autoencoder import autoencoder_parser
from sr_models.training.diffusion import ldm_parser, sr3_parser
from sr_models.training.gan import gan_parser
from sr_models.training.idm import idm_parser
from sr_models.training.liif import liif_parser
from sr_models.training.regression import regression_parser
from sr_models.training.trainer import NonFiniteLossError
from sr_models.training.zoo import run_zoo, zoo_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sr_models.train",
        description="Train an SR model. Re-running the same command resumes from OUT/checkpoint.",
    )
    sub = parser.add_subparsers(dest="family", required=True, metavar="family")
    regression_parser(sub)
    gan_parser(sub)
    autoencoder_parser(sub)
    ldm_parser(sub)
    sr3_parser(sub)
    liif_parser(sub)
    idm_parser(sub)
    zoo_parser(sub).set_defaults(run=lambda args: run_zoo(args, train=main))  # the zoo calls back into main
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.device == "gpu":  # the old name of cuda
        args.device = "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.run(args)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
