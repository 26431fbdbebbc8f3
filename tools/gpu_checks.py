"""What only a GPU can check, in about two minutes on one: ``predict --device cuda`` (static cache + CUDA graph, GPU
preprocessing) against the CPU on the packaged toy model and a generated clip; SFT on CUDA in bf16 with gradient
checkpointing; GRPO under ``torchrun`` with FSDP2 over NCCL in bf16. Each check prints one line; a JSON report is
written to --out. Needs PyAV (the clips are real video files).

    python tools/gpu_checks.py [--out gpu_checks.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cli(*args: str, timeout: int = 300, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    command = (launcher or [sys.executable]) + ["-m", "r1omni_edge.cli", *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def check_predict(tmp: Path) -> dict:
    from r1omni_edge.synthetic import TOY_DIR
    from r1omni_edge.synthetic.task import write_scene_clip

    clip = tmp / "clip.mp4"
    write_scene_clip(clip, ("happy",), seconds_each=2.0)
    model = ["--model", str(TOY_DIR / "R1-Omni-toy"), "--models-dir", str(TOY_DIR), "--labels", "dfew", "--json"]
    results = {}
    for device in ("cpu", "cuda"):
        for mode in ("full", "label"):
            run = cli("predict", str(clip), *model, "--device", device, "--mode", mode, "--dtype", "fp32",
                      "--max-new-tokens", "64")
            if run.returncode != 0:
                return {"ok": False, "error": f"{device} {mode}: {run.stderr[-1500:]}"}
            results[(device, mode)] = json.loads(run.stdout)
    same_tokens = results[("cpu", "full")]["token_ids"] == results[("cuda", "full")]["token_ids"]
    same_label = results[("cpu", "label")]["label"] == results[("cuda", "label")]["label"]
    return {"ok": same_tokens and same_label, "full_tokens_equal": same_tokens, "label_equal": same_label,
            "label": results[("cuda", "label")]["label"], "cuda_timings_ms": results[("cuda", "full")]["timings_ms"]}


def write_configs(tmp: Path, device: str) -> dict:
    from r1omni_edge.synthetic import TOY_DIR
    from r1omni_edge.synthetic.task import write_task

    files = write_task(tmp / "task", train=8, held_out=4)
    common = {"model": str(TOY_DIR / "R1-Omni-toy"), "models_dir": str(TOY_DIR), "train_data": str(files["train"]),
              "eval_data": str(files["eval"]), "data_root": str(tmp / "task"), "labels": "dfew",
              "cache_dir": str(tmp / "cache"), "device": device, "dtype": "bf16", "tensorboard": False,
              "eval_max_tokens": 40}
    sft = {**common, "output_dir": str(tmp / "sft"), "max_steps": 10, "batch_size": 8, "micro_batch": 4,
           "learning_rate": 1e-3, "gradient_checkpointing": True}
    grpo = {**common, "output_dir": str(tmp / "grpo"), "max_steps": 4, "group_size": 8, "prompts_per_step": 4,
            "max_completion": 40, "learning_rate": 1e-4, "beta": 0.04, "fsdp": True, "gradient_checkpointing": True}
    paths = {}
    for name, config in (("sft", sft), ("grpo", grpo)):
        paths[name] = tmp / f"{name}.json"
        paths[name].write_text(json.dumps(config))
    return paths


def check_training(tmp: Path, device: str = "cuda") -> dict:
    import torch

    from r1omni_edge.synthetic import TOY_DIR
    from r1omni_edge.model import load_model

    configs = write_configs(tmp, device)
    report = {}
    started = time.perf_counter()
    sft = cli("train", "sft", "--config", str(configs["sft"]), timeout=400)
    report["sft_seconds"] = round(time.perf_counter() - started, 1)
    report["sft_ok"] = sft.returncode == 0 and (tmp / "sft" / "checkpoint-10" / "model.safetensors").is_file()
    report["sft_log_tail"] = [line[:160] for line in sft.stderr.strip().splitlines()[-2:]]
    if not report["sft_ok"]:
        report["sft_error"] = sft.stderr[-1500:]
    started = time.perf_counter()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29581"]
    grpo = cli("train", "grpo", "--config", str(configs["grpo"]), timeout=400, launcher=launcher)
    report["fsdp_grpo_seconds"] = round(time.perf_counter() - started, 1)
    checkpoint = tmp / "grpo" / "checkpoint-4"
    report["fsdp_grpo_ok"] = grpo.returncode == 0 and (checkpoint / "model.safetensors").is_file()
    if report["fsdp_grpo_ok"]:
        model, _ = load_model(checkpoint, models_dir=TOY_DIR)
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
        report["fsdp_checkpoint_loads"] = model.config.hidden_size > 0 and state["sharded"] and state["step"] == 4
        report["fsdp_log_tail"] = grpo.stderr.strip().splitlines()[-3:]
        kl = [float(line.split(" kl ")[1].split()[0]) for line in grpo.stderr.splitlines()
              if line.startswith("[train 1]") and " kl " in line]
        report["first_step_kl"] = kl[0] if kl else None  # the policy starts as the reference: ~0
    else:
        report["fsdp_grpo_error"] = grpo.stderr[-2500:]
    report["ok"] = bool(report["sft_ok"] and report["fsdp_grpo_ok"] and report.get("fsdp_checkpoint_loads")
                        and report.get("first_step_kl") is not None and report["first_step_kl"] < 1e-2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_checks.json"))
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the training checks on the CPU (gloo): "
                        "checks this script itself where no GPU is at hand")
    args = parser.parse_args()
    import torch

    if args.cpu_dry_run:
        with tempfile.TemporaryDirectory() as tmp:
            report = check_training(Path(tmp), "cpu")
        print(json.dumps(report, indent=2))
        sys.exit(0 if report["ok"] else 1)
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: these checks are for GPUs")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("predict", check_predict), ("training", check_training)):
            try:
                report[name] = check(Path(tmp))
            except Exception as exc:  # one failing check must not hide the others' results
                report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: {'ok' if report[name].get('ok') else 'FAILED'}  {json.dumps(report[name])[:1500]}",
                  flush=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0 if all(report[k].get("ok") for k in ("predict", "training")) else 1)


if __name__ == "__main__":
    main()
