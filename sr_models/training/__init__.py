"""Training: the shared Trainer (``trainer``), one module per family's recipe (``regression``, ``gan``,
``autoencoder``, ``diffusion``), the flags they share (``common``), random patches (``patches``), the
whole zoo (``zoo``) and the command's parser (``cli``; run it as ``python -m sr_models.train``)."""

from sr_models.training.trainer import NonFiniteLossError, TrainConfig, Trainer, local, world

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "local", "world"]
