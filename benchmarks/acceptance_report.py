"""GPU acceptance, the report: the printed log, the Markdown table for BENCHMARKS.md, the JSON file and what goes
into $OUT (benchmarks/gpu_acceptance.py writes it)."""

import datetime
import json
import os
import platform
import shutil
import tarfile
from pathlib import Path


# ------------------------------------------------------------------------------------------ output
class Log:
    """Prints to stdout (flushed: the device tool returns its tail) and keeps a copy for $OUT."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, *parts) -> None:
        line = " ".join(str(p) for p in parts)
        self.lines.append(line)
        print(line, flush=True)



log = Log()



def fmt(x, digits=3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.{digits}g}"



# ------------------------------------------------------------------------------------------ report
TARGET_RATIO = 0.97



def markdown(report: dict) -> str:
    env = report["environment"]
    head = (f"### GPU acceptance: {env['device']}, {env['date']}\n\n"
            f"torch {env['torch']}, Lightning {env['lightning']}, CUDA {env['cuda']}, Python {env['python']}; "
            f"`{report['command']}`{' (smoke: tiny sizes on the CPU, not a measurement)' if report['smoke'] else ''}."
            f" Ours = the Lightning system; plain = the same work in a plain PyTorch loop (benchmarks/*.py); "
            f"ratio = ours / plain (target >= {TARGET_RATIO}).\n")
    lines = [head]
    if report["speed"]:
        lines += ["| system | measure | precision | ours | plain loop | ratio | peak memory ours / plain (GiB) "
                  "| device | torch / Lightning | date |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["speed"]:
        ratio = r["ours"] / r["plain"]
        ours, plain = fmt(r["ours"]), fmt(r["plain"])
        if "per_image_ours" in r:
            ours += f" ({fmt(r['per_image_ours'])} images/s)"
            plain += f" ({fmt(r['per_image_plain'])} images/s)"
        lines.append(f"| {r['system']} | {r['measure']} | {r['precision']} | {ours} | {plain} | {ratio:.3f}"
                     f"{'' if ratio >= TARGET_RATIO else ' (below target)'} | {fmt(r.get('peak_ours_gib'))} / "
                     f"{fmt(r.get('peak_plain_gib'))} | {env['device']} | {env['torch']} / {env['lightning']} "
                     f"| {env['date']} |")
    if report["speed"]:
        lines += ["", *targets(report["speed"])]
    if report["cli"]:
        lines += ["", "CLI runs (`python train.py --system NAME`, short overrides, then `--ckpt_path last` to twice "
                  "the steps; each checked for exit 0, training begun at step 0 / at the first run's last step, "
                  "results.json and last.ckpt at the right global_step, images, "
                  f"W&B offline run {'checked' if report['wandb'] else 'not checked: W&B not used'}):", "",
                  "| system | precision | run | resume (same folder) | global_step | peak memory (GiB) | seconds |",
                  "|---|---|---|---|---|---|---|"]
    for r in report["cli"]:
        run_, resume = r.get("run", {}), r.get("resume", {})

        def state(p):
            return "n/a" if not p else ("ok" if p["ok"] else "FAILED: " + "; ".join(p["problems"])[:200])
        lines.append(f"| {r['system']} | {r['variant']} | {state(run_)} | {state(resume)} | "
                     f"{run_.get('steps', '')} -> {resume.get('steps', '')} | {fmt(resume.get('peak_gib'))} | "
                     f"{run_.get('seconds', '')} + {resume.get('seconds', '')} |")
    acc = report.get("accuracy")
    if acc:
        lines += ["", f"Darknet, configs/darknet.yaml ({acc['epochs']} epochs, {acc['precision']}) on the CIFAR-10 "
                  "JPEG copy: " + (f"test accuracy {percent(acc.get('test_acc'))}, with flip TTA "
                                   f"{percent(acc.get('tta_acc'))}; fit {acc.get('fit_seconds')} s, whole job "
                                   f"{acc['wall_seconds']} s, peak memory {fmt(acc.get('peak_gib'))} GiB"
                                   if acc["ok"] else f"FAILED ({acc.get('error')})")]
    lines += ["", "Wall time per part (s): " + ", ".join(f"{k} {v}" for k, v in report["part_seconds"].items())]
    return "\n".join(lines) + "\n"



def percent(x) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, float) else str(x)



def targets(rows: list[dict]) -> list[str]:
    """The issues' targets beyond ratios: bf16 WGAN >= 1.4x fp32, CycleGAN bf16 not slower, 16 style images."""
    def find(system, precision_start, measure_part=""):
        return next((r for r in rows if r["system"] == system and r["precision"].startswith(precision_start)
                     and measure_part in r["measure"]), None)
    out = []
    wgan32, wganbf = find("wgan", "32"), find("wgan", "bf16")
    if wgan32 and wganbf:
        out.append(f"- WGAN bf16+channels_last / fp32 (ours): {wganbf['ours'] / wgan32['ours']:.2f}x (target >= 1.4)")
    for batch in (1, 4):
        c32, cbf = find("cyclegan", "32", f"batch {batch}"), find("cyclegan", "bf16", f"batch {batch}")
        if c32 and cbf:
            out.append(f"- CycleGAN batch {batch} bf16+channels_last / fp32 (ours): {cbf['ours'] / c32['ours']:.2f}x "
                       "(target >= 1)")
    one = next((r for r in rows if r["system"] == "style" and r["measure"].endswith(" 1 image")), None)
    many = next((r for r in rows if r["system"] == "style" and r["measure"].endswith(" images")), None)
    if one and many:
        out.append(f"- Style, per-image rate of {many['measure'].split(', ')[-1]} / 1 image (ours): "
                   f"{many['per_image_ours'] / one['per_image_ours']:.2f}x (target >= 1.5)")
    return out



def environment(smoke: bool) -> dict:
    import lightning
    import torch
    cuda = torch.cuda.is_available() and not smoke
    return {"device": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, "
                                                                  f"{os.cpu_count()} cores)",
            "torch": torch.__version__, "lightning": lightning.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}



def write_outputs(report: dict, out: Path, work: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_acceptance.json").write_text(json.dumps(report, indent=2))
    (out / "gpu_acceptance.md").write_text(report["markdown"])
    if (work / "logs").is_dir():
        with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
            tar.add(work / "logs", "logs")
    # one sample image per generative system, from the bf16 runs (the device tool returns at most 8 files)
    for system in ("wgan", "cyclegan", "style"):
        images = sorted((work / "runs").glob(f"{system}-bf16-mixed/acceptance/images/*.png")) or \
            sorted((work / "runs").glob(f"{system}-*/acceptance/images/*.png"))
        if images:
            shutil.copyfile(images[-1], out / f"{system}-{images[-1].name}")
    (out / "gpu_acceptance.log").write_text("\n".join(log.lines) + "\n")
