import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sr_models.registry import load_model
from sr_models.training import NonFiniteLossError, TrainConfig, Trainer
from sr_models.training.cli import main
from sr_models.types import SamplingSettings

ROOT = Path(__file__).resolve().parent.parent


def tiny_args(data, out, steps, every=3, extra=()):
    return [
        "regression",
        "--scale",
        "2",
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--checkpoint-every",
        str(every),
        "--batch-size",
        "2",
        "--hr-patch",
        "16",
        "--channels",
        "4",
        "--blocks",
        "1",
        "--threads",
        "1",
        *extra,
    ]


@pytest.mark.slow
def test_training_exports_a_loadable_model_with_card(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(image_folder, out, 6, extra=["--val-data", str(image_folder), "--validate-every", "3"])) == 0
    meta = json.loads((out / "sr_model.json").read_text())
    assert meta["family"] == "regression" and meta["training"]["steps"] == 6
    assert "python -m sr_models.train regression" in (out / "README.md").read_text()
    assert set(meta["training"]["last_validation"]) == {"psnr_y", "ssim_y", "lr_psnr"}
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 6
    model = load_model(out)
    assert model.upscale(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy()).image.shape == (16, 16, 3)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(image_folder, tmp_path):
    assert main(tiny_args(image_folder, tmp_path / "a", 6)) == 0
    assert main(tiny_args(image_folder, tmp_path / "b", 3)) == 0
    assert main(tiny_args(image_folder, tmp_path / "b", 6)) == 0
    a = load_file(tmp_path / "a" / "checkpoint" / "state.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "state.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_a_different_architecture(image_folder, tmp_path):
    assert main(tiny_args(image_folder, tmp_path / "a", 3)) == 0
    args = tiny_args(image_folder, tmp_path / "a", 6)
    args[args.index("--channels") + 1] = "8"
    assert main(args) == 2  # clear error, nothing overwritten
    assert json.loads((tmp_path / "a" / "checkpoint" / "trainer_state.json").read_text())["step"] == 3


@pytest.mark.slow
def test_sigkill_resumes_from_last_checkpoint(image_folder, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sr_models.train", *tiny_args(image_folder, out, 100000, every=2)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = out / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 300  # generous: importing torch on a loaded CI machine can be slow
    seen = 0
    try:
        while time.time() < deadline:
            try:
                seen = json.loads(state_file.read_text())["step"]
            except (OSError, ValueError, KeyError):
                seen = 0
            if seen >= 4:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert seen >= 4, "no checkpoint appeared in time"
    # restart: it must pick up at (or after) the last checkpoint it saw, i.e. lose < one interval
    resumed = subprocess.run(
        [sys.executable, "-m", "sr_models.train", *tiny_args(image_folder, out, seen + 7, every=2)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    start = int(resumed.stdout.split("at step ")[1].split()[0])
    assert seen <= start and start % 2 == 0
    assert json.loads(state_file.read_text())["step"] == seen + 7


def test_nan_loss_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 1)

    def loss_fn(net, step):
        loss = net(torch.ones(1, 2)).sum() ** 2
        return loss * float("nan") if step == 4 else loss

    trainer = Trainer(model, loss_fn, TrainConfig(out=tmp_path, max_steps=10, checkpoint_every=2, validate_every=0))
    with pytest.raises(NonFiniteLossError, match="step 4"):
        trainer.train()
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["step"] == 4
    assert torch.isfinite(load_file(tmp_path / "checkpoint" / "state.safetensors")["model.weight"]).all()


def test_time_budget_stops(tmp_path):
    model = torch.nn.Linear(2, 1)

    def slow_loss(net, step):
        time.sleep(0.05)
        return net(torch.ones(1, 2)).sum() ** 2

    cfg = TrainConfig(out=tmp_path, max_steps=10_000, max_minutes=0.3 / 60, checkpoint_every=0, validate_every=0)
    result = Trainer(model, slow_loss, cfg).train()
    assert result["stop_reason"] == "time budget"
    assert 1 <= result["step"] < 100 and result["elapsed"] >= 0.3  # stopped once the budget was spent


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    assert main(tiny_args(tmp_path / "nothing", tmp_path / "out", 2)) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_first_stage_ldm_and_sr3_commands_train_and_export(image_folder, tmp_path):
    common = [
        "--data",
        str(image_folder),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "2",
        "--threads",
        "1",
        "--val-data",
        str(image_folder),
        "--val-images",
        "1",
        "--val-crop",
        "32",
        "--validate-every",
        "2",
    ]
    ae = tmp_path / "ae"
    assert main(["autoencoder", "--out", str(ae), "--hr-patch", "16", "--channels", "8,8,8", *common]) == 0
    meta = json.loads((ae / "sr_model.json").read_text())
    assert meta["family"] == "first-stage" and meta["latent_scale_folded"] > 0
    assert meta["training"]["last_validation"]["psnr_y"] > 0
    for family, extra in (("ldm", ["--first-stage", str(ae)]), ("sr3", ["--no-attention"])):
        out = tmp_path / family
        args = [
            family,
            "--scale",
            "4",
            "--out",
            str(out),
            "--hr-patch",
            "32",
            "--channels",
            "16,16,16",
            "--val-steps",
            "1",
            "--default-steps",
            "3",
            *extra,
            *common,
        ]
        assert main(args) == 0, family
        model = load_model(out)
        assert model.family == family and model.default_steps == 3
        assert model.upscale(np.zeros((8, 8, 3), np.uint8), settings=SamplingSettings(steps=1)).image.shape == (
            32,
            32,
            3,
        )


def _sr3_args(data, out, batch):
    return [
        "sr3",
        "--scale",
        "4",
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--batch-size",
        str(batch),
        "--hr-patch",
        "32",
        "--channels",
        "8,8",
        "--no-attention",
        "--checkpoint-every",
        "0",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]


@pytest.mark.slow
def test_two_data_parallel_processes_match_one_process_with_the_doubled_batch(image_folder, tmp_path):
    """Two gloo processes of batch 2 (torchrun, as `accelerate launch` runs them) take the same
    steps as one process of batch 4: same data, same diffusion noise, gradients averaged."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "sr_models.train",
        *_sr3_args(image_folder, tmp_path / "two", 2),
    ]
    two = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert main(_sr3_args(image_folder, tmp_path / "one", 4)) == 0
    a = load_file(tmp_path / "one" / "checkpoint" / "state.safetensors")
    b = load_file(tmp_path / "two" / "checkpoint" / "state.safetensors")
    assert a.keys() == b.keys()
    for key in (k for k in a if k.startswith(("model.", "ema."))):
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    meta = json.loads((tmp_path / "two" / "sr_model.json").read_text())
    assert meta["training"]["processes"] == 2 and meta["training"]["steps"] == 3


def test_gradient_accumulation_and_bfloat16_train(image_folder, tmp_path):
    out = tmp_path / "acc"
    assert main(tiny_args(image_folder, out, 2, extra=["--gradient-accumulation", "2", "--dtype", "bfloat16"])) == 0
    meta = json.loads((out / "sr_model.json").read_text())
    assert meta["training"]["gradient_accumulation"] == 2 and meta["training"]["mixed_precision"] == "bf16"
    state = load_file(out / "checkpoint" / "state.safetensors")
    assert all(torch.isfinite(v).all() for v in state.values())


@pytest.mark.slow
def test_zoo_script_dry_run_on_the_cpu(image_folder, tmp_path):
    """scripts/zoo_gpu.sh end to end on a pack of the test images: one tiny step per zoo model."""
    from sr_models.pack import main as pack_main

    pool = tmp_path / "pool" / "set"
    pool.mkdir(parents=True)
    for f in image_folder.iterdir():
        (pool / f.name).write_bytes(f.read_bytes())
    pack = tmp_path / "pack.zip"
    assert pack_main(["--data", str(tmp_path / "pool"), "--out", str(pack), "--split", "all", "--max-side", "96"]) == 0
    env = {**os.environ, "SR_PACK": str(pack), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            "bash",
            "scripts/zoo_gpu.sh",
            str(tmp_path / "out"),
            "1",
            "--dry-run",
            "--split",
            "all",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    from sr_models.training.zoo import RECIPES

    for recipe in RECIPES:
        meta = json.loads((tmp_path / "out" / "zoo" / recipe.name / "sr_model.json").read_text())
        assert meta["training"]["steps"] == 1, recipe.name
    ldm = load_model(tmp_path / "out" / "zoo" / "ldm-x16")
    assert ldm.upscale(np.zeros((4, 4, 3), np.uint8)).image.shape == (64, 64, 3)
    assert "zoo: 10 models" in (tmp_path / "out" / "zoo.log").read_text()


def test_a_4x_ldm_first_conv_starts_a_2x_one_seeing_the_mean_of_each_lr_pixel_block():
    import torch.nn.functional as F

    from sr_models.training.common import spread_condition_weights

    w = torch.randn(4, 8 + 3, 3, 3)
    wide = spread_condition_weights(w, torch.Size([4, 8 + 12, 3, 3]))
    lr, z = torch.randn(1, 3, 16, 16), torch.randn(1, 8, 8, 8)
    as_4x = F.conv2d(torch.cat([z, F.avg_pool2d(lr, 2)], 1), w, padding=1)
    as_2x = F.conv2d(torch.cat([z, F.pixel_unshuffle(lr, 2)], 1), wide, padding=1)
    torch.testing.assert_close(as_2x, as_4x, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="cannot start"):
        spread_condition_weights(w, torch.Size([4, 8 + 5, 3, 3]))
