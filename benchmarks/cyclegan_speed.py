"""CycleGAN training iterations/s: the Lightning system against a plain PyTorch loop, same nets and batches.

One iteration = one batch: a generator step and one step per discriminator. Variants are measured
interleaved (A, B, A, B, ...) so a shared machine's load falls on all of them alike.

    python benchmarks/cyclegan_speed.py                                   # CPU, 128px, 6 blocks, batch 1
    python benchmarks/cyclegan_speed.py --device cuda --size 256 --n_blocks 9 \
        --variants "[system-32, system-bf16-cl, plain-32, plain-bf16-cl]"  # GPU: fp32 vs bf16 + channels_last
    ... --json out.json      # also the system-vs-plain rows (same precision and layout) and CUDA peak memory
"""

import copy
import sys
import time
from json import dumps
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from jsonargparse import CLI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import fresh_start, profiled  # noqa: E402
from lightning_modules import CycleGAN  # noqa: E402


class Timer(L.Callback):
    """Seconds per training batch, after `warmup` batches."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device, self.times = warmup, device, []

    def sync(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.sync()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self.start)


def run_system(template: CycleGAN, batches, warmup: int, device: str, bf16: bool, channels_last: bool) -> list:
    model = copy.deepcopy(template)
    model.hparams.channels_last = channels_last
    timer = Timer(warmup, device)
    trainer = L.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
                        max_steps=3 * len(batches), precision="bf16-mixed" if bf16 else "32-true", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    trainer.fit(model, torch.utils.data.DataLoader(batches, batch_size=None))
    return timer.times


def run_plain(template: CycleGAN, batches, warmup: int, device: str, bf16: bool, channels_last: bool) -> list:
    """The reference code's optimize_parameters, written out: G step with the Ds frozen, then each D."""
    model = copy.deepcopy(template).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    G, Fn, D_X, D_Y = model.gen_a2b, model.gen_b2a, model.disc_a, model.disc_b
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam([*G.parameters(), *Fn.parameters()], **adam)
    opt_x, opt_y = torch.optim.Adam(D_X.parameters(), **adam), torch.optim.Adam(D_Y.parameters(), **adam)
    pool_x, pool_y = [], []

    def pooled(pool, fake):
        if len(pool) < 50:
            pool.append(fake)
            return fake
        if torch.rand(()) < 0.5:
            i = int(torch.randint(50, ()))
            pool[i], fake = fake, pool[i]
        return fake

    def mse(x, target):
        return F.mse_loss(x.float(), torch.full_like(x.float(), target))

    times = []
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    for step, (a, b) in enumerate(batches):
        a, b = a.to(device), b.to(device)  # before the clock, as Lightning's batch transfer for the system
        if device_type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a, b = a.contiguous(memory_format=fmt), b.contiguous(memory_format=fmt)
        with torch.autocast(device_type, torch.bfloat16, enabled=bf16):
            for p in [*D_X.parameters(), *D_Y.parameters()]:
                p.requires_grad_(False)
            fake_b, fake_a = G(a), Fn(b)
            loss_g = (mse(D_Y(fake_b), 1) + mse(D_X(fake_a), 1) + 10 * F.l1_loss(Fn(fake_b).float(), a)
                      + 10 * F.l1_loss(G(fake_a).float(), b) + 5 * F.l1_loss(G(b).float(), b)
                      + 5 * F.l1_loss(Fn(a).float(), a))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        for p in [*D_X.parameters(), *D_Y.parameters()]:
            p.requires_grad_(True)
        for D, opt, real, fake, pool in ((D_X, opt_x, a, fake_a, pool_x), (D_Y, opt_y, b, fake_b, pool_y)):
            with torch.autocast(device_type, torch.bfloat16, enabled=bf16):
                fake = pooled(pool, fake.detach().float())
                loss_d = 0.5 * (mse(D(real), 1) + mse(D(fake), 0))
            opt.zero_grad(set_to_none=True)
            loss_d.backward()
            opt.step()
        if device_type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(device: str = "cpu", size: int = 128, n_blocks: int = 6, batch_size: int = 1, steps: int = 3,
         warmup: int = 1, rounds: int = 2, variants: list[str] = ("system-32", "plain-32"), threads: int = 0,
         ngf: int = 64, json: str | None = None, profile: int = 0):
    """Interleaved timing of the variants `system|plain`-`32|bf16`[-cl] (cl: channels_last).

    Args:
        device: cpu or cuda.
        size: image height and width.
        n_blocks: generator residual blocks (6 at 128px, 9 at 256px, as the paper).
        batch_size: pairs per batch (the paper: 1).
        steps: timed iterations per round and variant.
        warmup: untimed iterations before them.
        rounds: how many times the A, B, ... cycle is repeated.
        variants: which to run.
        threads: torch CPU threads (0: leave the default).
        ngf: generator and discriminator width (64 as the paper; smaller for smoke tests).
        json: also write each system variant against its plain twin (rates, peak memory) to this file.
        profile: after the timing, `warmup` + this many iterations of each variant under torch.profiler (printed).
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    template = CycleGAN(n_blocks=n_blocks, ngf=ngf, ndf=ngf, log_images_every_n_batches=0)
    batches = [(torch.rand(batch_size, 3, size, size) * 2 - 1, torch.rand(batch_size, 3, size, size) * 2 - 1)
               for _ in range(warmup + steps)]
    results = {v: [] for v in variants}
    peak = {}
    for _ in range(rounds):
        for variant in variants:
            kind, precision, *rest = variant.split("-")
            fresh_start(device)
            run = run_system if kind == "system" else run_plain
            results[variant] += run(template, batches, warmup, device, precision == "bf16", rest == ["cl"])
            if device.startswith("cuda"):
                peak[variant] = torch.cuda.max_memory_allocated() / 2**30
            print(f"{variant}: {steps / sum(results[variant][-steps:]):.3f} it/s this round",
                  flush=True)
    for variant in variants if profile else ():
        kind, precision, *rest = variant.split("-")
        with profiled(f"cyclegan {variant}, {warmup} + {profile} iterations", device):
            (run_system if kind == "system" else run_plain)(template, batches[:warmup + profile], warmup, device,
                                                            precision == "bf16", rest == ["cl"])
    summary = {v: {"it_per_s": len(t) / sum(t), "s_per_it": sum(t) / len(t),
                   "median_s_per_it": sorted(t)[len(t) // 2], "iterations": len(t),
                   **({"peak_gib": round(peak[v], 2)} if v in peak else {})} for v, t in results.items()}
    base = variants[0]
    for v in variants:
        summary[v]["ratio_to_" + base] = summary[v]["it_per_s"] / summary[base]["it_per_s"]
    report = {"device": device, "size": size, "n_blocks": n_blocks, "batch_size": batch_size,
              "torch_threads": torch.get_num_threads(), "results": summary}
    print(dumps(report, indent=2))
    if json:
        names = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
        rows = []
        for v in variants:
            kind, precision, *rest = v.split("-")
            twin = "-".join(["plain", precision, *rest])
            if kind != "system" or twin not in summary:
                continue
            rows.append({"measure": f"it/s, {size}px, batch {batch_size}",
                         "precision": names.get(precision, precision) + ("+channels_last" if rest == ["cl"] else ""),
                         "ours": summary[v]["it_per_s"], "plain": summary[twin]["it_per_s"], "unit": "it/s",
                         "peak_ours_gib": summary[v].get("peak_gib"), "peak_plain_gib": summary[twin].get("peak_gib")})
        Path(json).write_text(dumps({"script": "cyclegan_speed", "device": device, "settings": report,
                                     "rows": rows}, indent=2))


if __name__ == "__main__":
    CLI(main, as_positional=False)
