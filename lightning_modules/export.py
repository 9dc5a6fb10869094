"""`dl2-export`: a trained checkpoint as a file to ship, the weights without the training state.

A train.py checkpoint holds everything a resume needs: for the CycleGAN at its defaults about 420 MB (the nets, three
Adam states, both image pools). What a user ships is the weights, as junyanz's `latest_net_G_A.pth` (~45 MB), the
WassersteinGAN reference's `netG_epoch_N.pth` or fastai's `export.pkl`. `export` writes:

- (default) a weights-only Lightning checkpoint: the state dict, the hyper-parameters with the class path, the
  versions and what the system's commands read (a Darknet's class names); no optimizer states, loops, callbacks or
  image pools. Every inference command takes it as it takes the full checkpoint; `--generators_only` leaves out the
  discriminators (the WGAN's critic by default: generate and fid never read it), which `restore_left_out` fills with
  new weights when the file is loaded. train.py refuses it as --ckpt_path (nothing to resume) and starts from it
  with --init_from.
- `--format reference`: the reference projects' own generator files, under their own key names, into a folder:
  junyanz's latest_net_G_A.pth and latest_net_G_B.pth, the WassersteinGAN reference's netG.pth with the
  generator_config.json its generate.py reads.

Usage: dl2-export runs/cyclegan/<run> --output horse2zebra.ckpt --generators_only true
       python -m lightning_modules.export last --system wgan --output netG --format reference
"""

from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from callbacks.errors import UserError, check_output_file, check_output_folder

EXPORT_KEY = "dl2_export"  # in an exported file: where it came from, the nets it left out, the versions
# a reference project's file read for --init_from has no hyper-parameters: its reader counts the sizes from its weights
REFERENCE_SIZES = "counted from its weights"
# the nets each GAN can leave out (--generators_only): none is read by its inference commands
DISCRIMINATORS = {"WGAN": ("critic.",), "CycleGAN": ("disc_a.", "disc_b.")}
# a checkpoint without the class path (a plain Trainer's) is known by its weights
FIRST_KEYS = {"gen_a2b.": "CycleGAN", "generator.": "WGAN", "critic.": "WGAN", "net.": "DarknetClassifier",
              "image": "StyleTransfer"}


def system_class(state: dict, path: str) -> str:
    """The checkpoint's LightningModule class name: the class path train.py saves, else told by its weights."""
    from lightning_modules.inference import SYSTEMS, saved_class, system_class_name
    saved = saved_class(state)
    name = system_class_name(saved, path) if saved else next(
        (cls for prefix, cls in FIRST_KEYS.items() for key in state["state_dict"] if key.startswith(prefix)), None)
    if name not in SYSTEMS:
        shown = saved.rpartition(".")[2] if saved else name
        raise UserError(f"{path} holds a {shown or 'network'} this project does not know; dl2-export takes the "
                        f"checkpoints of train.py's systems ({', '.join(SYSTEMS.values())}) and of classes built "
                        "on them")
    if name == "StyleTransfer":
        raise UserError(f"{path} is a style transfer checkpoint: nothing to export, its result is the image (its run "
                        "folder's stylized/<content name>.png), optimized against a fixed VGG; no network was trained")
    return name


def source_checkpoint(checkpoint: str, system: str | None) -> str:
    """CHECKPOINT as the other commands take it: a file, a run folder (its last.ckpt), or `last`: the newest training
    run's, of --system or else of the one system that has runs (refused, naming them, when several have)."""
    from lightning_modules import WGAN, CycleGAN, DarknetClassifier
    from lightning_modules.inference import SYSTEMS, checkpoint_file, trained_runs
    classes = {cls.__name__: cls for cls in (DarknetClassifier, WGAN, CycleGAN)}
    if system == "darknet_fast":  # train.py's --system darknet_fast is a config of the Darknet's, not a class
        raise UserError("--system darknet_fast: its runs are the Darknet's, give --system darknet (darknet_fast.yaml "
                        "writes no checkpoint unless trained with --trainer.enable_checkpointing true)")
    if system is not None and system not in SYSTEMS.values():
        raise UserError(f"--system {system}: not a system; give one of {', '.join(SYSTEMS.values())}")
    if system == "style":
        raise UserError("--system style: nothing to export, a style transfer run's result is the image (its run "
                        "folder's stylized/<content name>.png); no network was trained")
    if checkpoint != "last" or Path(checkpoint).exists():
        return checkpoint_file(checkpoint, DarknetClassifier)  # a file or a run folder: any class reads it the same
    if system is not None:
        return checkpoint_file(checkpoint, classes[next(k for k, v in SYSTEMS.items() if v == system)])
    found = [SYSTEMS[name] for name in classes if trained_runs(name)]
    if len(found) > 1:
        raise UserError(f"last: runs of {' and '.join(found)} in {Path('runs').absolute()}; say which with "
                        f"--system {found[0]} (or {', '.join(found[1:])})")
    name = next((k for k, v in SYSTEMS.items() if found and v == found[0]), "DarknetClassifier")
    return checkpoint_file(checkpoint, classes[name])  # none found: its error names the runs folder


def weights_only(state: dict, name: str, source: str, generators_only: bool) -> dict:
    """The checkpoint's weights, hyper-parameters, versions and the system's inference keys; prefixes left out."""
    import lightning

    import lightning_modules
    left_out = DISCRIMINATORS[name] if generators_only else ()
    keep = ("epoch", "global_step", "pytorch-lightning_version", "hparams_name", "hyper_parameters",
            *getattr(getattr(lightning_modules, name), "inference_checkpoint_keys", ()))
    exported = {key: state[key] for key in keep if key in state}
    exported["state_dict"] = OrderedDict((k, v) for k, v in state["state_dict"].items() if not k.startswith(left_out))
    exported[EXPORT_KEY] = {"from": str(Path(source).absolute()), "left_out": list(left_out),
                            "torch": str(torch.__version__), "lightning": str(lightning.__version__)}
    return exported


def restore_left_out(module: torch.nn.Module, checkpoint: dict) -> None:
    """For on_load_checkpoint: the nets an exported file left out (--generators_only) keep the module's own new weights,
    so the file loads strictly; every other weight must be in it."""
    prefixes = tuple((checkpoint.get(EXPORT_KEY) or {}).get("left_out", ()))
    if prefixes:
        state = checkpoint["state_dict"]
        for key, tensor in module.state_dict().items():
            if key.startswith(prefixes):
                state.setdefault(key, tensor)


# -------------------------------------------------------------------------------- the reference projects' names


def junyanz_resnet_names(n_blocks: int) -> list[str]:
    """junyanz's ResnetGenerator keys. Its `model` Sequential: 0 pad, 1 the 7x7 conv, 2 norm, 3 ReLU; the stride-2 convs
    at 4 and 7 (each + norm, ReLU); the ResnetBlocks at 10 ... 9 + n, each a `conv_block` of pad, conv (1), norm,
    ReLU, pad, conv (5), norm; the transposed convs at 10 + n and 13 + n (each + norm, ReLU); pad, the last conv at
    17 + n, tanh. Instance norm without affine parameters: the convs alone hold tensors, each a weight and a bias."""
    convs = ["model.1", "model.4", "model.7",
             *[f"model.{10 + i}.conv_block.{j}" for i in range(n_blocks) for j in (1, 5)],
             f"model.{10 + n_blocks}", f"model.{13 + n_blocks}", f"model.{17 + n_blocks}"]
    return [f"{conv}.{kind}" for conv in convs for kind in ("weight", "bias")]


def dcgan_g_names(isize: int, nz: int, nc: int, ngf: int, n_extra_layers: int, batchnorm: bool = True) -> list[str]:
    """The WassersteinGAN reference's DCGAN_G keys (`main.<module>.<tensor>`, its modules named with ':'): the initial
    transposed conv nz -> cngf (ngf/2 doubled until 4 reaches isize), the pyramid's halving ones, the extra 3x3 convs,
    each with a batchnorm (and a ReLU, no tensors); then the final transposed conv to nc. No conv has a bias.
    `batchnorm=False`: its DCGAN_G_nobn (--noBN), the same convs without the batchnorms."""
    norm_tensors = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked") if batchnorm else ()

    def block(conv: str, norm: str) -> list[str]:
        return [f"main.{conv}.weight", *[f"main.{norm}.{t}" for t in norm_tensors]]
    cngf = ngf * isize // 8
    names = block(f"initial:{nz}-{cngf}:convt", f"initial:{cngf}:batchnorm")
    size = 4
    while size < isize // 2:
        names += block(f"pyramid:{cngf}-{cngf // 2}:convt", f"pyramid:{cngf // 2}:batchnorm")
        cngf, size = cngf // 2, size * 2
    for t in range(n_extra_layers):
        names += block(f"extra-layers-{t}:{cngf}:conv", f"extra-layers-{t}:{cngf}:batchnorm")
    return [*names, f"main.final:{cngf}-{nc}:convt.weight"]


def prefixed(state: dict, prefix: str) -> list[Tensor]:
    """The tensors under `prefix` in the module's order (ours and the references' both list them layer by layer)."""
    return [v.contiguous() for k, v in state.items() if k.startswith(prefix)]


def reference_files(state: dict, name: str, path: str) -> dict[str, object]:
    """{file name: content} of the reference project's generator files for this checkpoint."""
    hp = state.get("hyper_parameters") or {}
    weights = state["state_dict"]
    if name == "CycleGAN":
        if hp.get("upsample", "transposed") != "transposed":
            raise UserError(f"--format reference: {path} upsamples by resize then conv (--model.upsample resize), "
                            "which junyanz's ResnetGenerator has no layers for; export it in our format (leave out "
                            "--format)")
        names = junyanz_resnet_names(hp.get("n_blocks", 9))
        files = {}
        for file, prefix in (("latest_net_G_A.pth", "gen_a2b."), ("latest_net_G_B.pth", "gen_b2a.")):  # A->B, B->A
            tensors = prefixed(weights, prefix)
            if len(tensors) != len(names):
                raise UserError(f"--format reference: {path}'s {prefix[:-1]} holds {len(tensors)} tensors, a "
                                f"resnet_{hp.get('n_blocks', 9)}blocks generator {len(names)}; not a ResNet generator")
            files[file] = OrderedDict(zip(names, tensors, strict=True))
        return files
    if name == "WGAN":
        mlp, batchnorm = hp.get("mlp_generator", False), hp.get("generator_batchnorm", True)
        if batchnorm and not mlp and hp.get("bn_last", True):
            raise UserError(f"--format reference: {path} has the seed's conv, ReLU, batchnorm blocks (--model.bn_last "
                            "true, the default), the reference's DCGAN_G conv, batchnorm, ReLU; only a WGAN trained "
                            "with --model.bn_last false has its layers. Export it in our format (leave out --format)")
        sizes = {k: hp.get(k, d) for k, d in (("isize", 64), ("nz", 100), ("nc", 3), ("ngf", 64),
                                             ("n_extra_layers", 1))}
        if not mlp and sizes["ngf"] % 2:  # ours ends at ngf channels, whatever ngf; DCGAN_G at 2 * (ngf // 2)
            raise UserError(f"--format reference: {path} has an odd --model.ngf ({sizes['ngf']}), for which the "
                            f"reference's DCGAN_G builds other widths (ngf // 2 doubled: {sizes['ngf'] - 1} channels "
                            f"before its last layer, this generator {sizes['ngf']}) and could not load the file. "
                            "Export it in our format (leave out --format)")
        tensors = prefixed(weights, "generator.")
        if mlp:  # the reference's MLP_G: linear layers main.0, .2, .4, .6 (ReLUs between)
            names = [f"main.{layer}.{kind}" for layer in (0, 2, 4, 6) for kind in ("weight", "bias")]
        else:
            names = dcgan_g_names(**sizes, batchnorm=batchnorm)
            # our extra layers are transposed convs, the reference's plain ones: the same map with the kernel's channel
            # axes swapped and its taps flipped (reference_generator reads them back the same way)
            tensors = [v.transpose(0, 1).flip(2, 3).contiguous() if ":conv." in key else v
                       for key, v in zip(names, tensors, strict=True)]
        config = {"imageSize": sizes["isize"], "nz": sizes["nz"], "nc": sizes["nc"], "ngf": sizes["ngf"], "ngpu": 1,
                  # its generate.py builds DCGAN_G_nobn when noBN, before it looks at mlp_G
                  "n_extra_layers": sizes["n_extra_layers"], "noBN": not (batchnorm or mlp), "mlp_G": mlp}
        return {"netG.pth": OrderedDict(zip(names, tensors, strict=True)), "generator_config.json": config}
    raise UserError(f"--format reference: the {'Darknet' if name == 'DarknetClassifier' else name} has no reference "
                    "project's file format here (fastai's export.pkl pickles its whole Learner); leave out --format "
                    "for our weights-only checkpoint")


# ---------------------------------------------------------------------------------------------------- command


class Classify(torch.nn.Module):
    """uint8 (N, 3, S, S) RGB images -> (N, classes) probabilities, by dl2-classify's own class_probabilities (the
    seed's normalisation, the model's forward, its test-time views averaged, a softmax; it also squares the images).
    The model's forward, not its net's: a user's class built on the Darknet may change it."""

    def __init__(self, model):
        super().__init__()
        model.hparams.compile = False  # torch.export traces the eager net
        self.model, self.tta = model, model.hparams.tta

    def forward(self, images: Tensor) -> Tensor:
        from lightning_modules.darknet_classify import class_probabilities
        return class_probabilities([self.model], images, self.tta)


class AnySize(torch.nn.Module):
    """A CycleGAN generator on (N, 3, H, W) images of any size of 8 or more, as dl2-cyclegan-translate runs it: sides
    reflect-padded to multiples of 4 (its two stride-2 convs), the padding cut off again. Written for torch.export:
    a slice [:H] left guards it could not prove (and the derived-Dim form took any size, giving 304px for 301px)."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        out = self.generator(torch.nn.functional.pad(images, (0, -width % 4, 0, -height % 4), mode="reflect"))
        return torch.nn.functional.pad(out, (0, width - out.shape[3], 0, height - out.shape[2]))  # negative: a cut


def exported_programs(name: str, source: str) -> dict[str, tuple]:
    """--format pt2: {file: (torch.export program, what it takes and gives)} of the checkpoint's nets, to run with
    torch alone: torch.export.load(file).module()(inputs). The Darknet a classifier of uint8 images, the WGAN its
    generator, the CycleGAN one program per direction (any size of 8 or more, padded inside as translate pads)."""
    from torch.export import Dim, export

    import lightning_modules
    from lightning_modules.inference import load_checkpoint
    model = load_checkpoint(getattr(lightning_modules, name), source, "cpu")
    # a channels_last net's weights are not contiguous: torch.export's archive warned "No complete tensor found in
    # the group!" for each (harmless on the CPU); the program converts its inputs as the net did
    model.to(memory_format=torch.contiguous_format)
    batch = Dim("batch", min=1)
    if name == "DarknetClassifier":
        size = model.image_size or 32
        about = {"input": f"uint8 (N, 3, {size}, {size}) RGB images in 0..255 (the shorter side resized to {size}, "
                          f"the central square cut)", "output": "(N, classes) probabilities",
                 "classes": model.label_names(), "image_size": size, "tta": model.hparams.tta}
        example = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
        return {"darknet.pt2": (export(Classify(model).eval(), (example,), dynamic_shapes=({0: batch},)), about)}
    if name == "WGAN":
        hp = model.hparams
        about = {"input": f"float (N, {hp.nz}, 1, 1) standard normal noise",
                 "output": f"(N, {hp.nc}, {hp.isize}, {hp.isize}) images in [-1, 1]" + (
                     " (the MLP generator's last layer is linear: clamp them to it)" if hp.mlp_generator else "")}
        example = torch.randn(2, model.hparams.nz, 1, 1)
        return {"generator.pt2": (export(model.generator.eval(), (example,), dynamic_shapes=({0: batch},)), about)}
    height, width = Dim("height", min=8), Dim("width", min=8)  # below 8 the bottleneck is too small to reflect
    example = torch.rand(2, 3, 30, 33) * 2 - 1  # sides not multiples of 4: no pad of 0 traced as a constant
    return {f"{direction}.pt2": (export(AnySize(generator).eval(), (example,),
                                        dynamic_shapes=({0: batch, 2: height, 3: width},)),
                                 {"input": f"float (N, 3, H, W) images in [-1, 1] of domain {direction[0].upper()}, H "
                                           "and W at least 8 (padded to multiples of 4 inside, as "
                                           "dl2-cyclegan-translate pads)",
                                  "output": f"the same shape, translated into domain {direction[-1].upper()}"})
            for direction, generator in (("a2b", model.gen_a2b), ("b2a", model.gen_b2a))}


def file_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def export(checkpoint: str, output: str | None = None, generators_only: bool | None = None,
           format: Literal["lightning", "reference", "pt2"] = "lightning", system: str | None = None) -> Path:
    """Write a trained checkpoint's weights as a file to ship: no optimizer states, loops, callbacks or image pools.

    Args:
        checkpoint: a .ckpt written by train.py (runs/<system>/<run>/checkpoints/last.ckpt), a run folder (its
            last.ckpt), or `last` (the newest training run's; --system says whose when runs of several exist).
        output: required: the file to write (lightning format), or the folder for the files (reference and pt2
            formats); never the checkpoint itself.
        generators_only: leave out the discriminators; null: yes for the WGAN (generate and fid read its generator
            alone), no for the CycleGAN. train.py's --init_from starts new ones beside the generators.
        format: lightning: a weights-only checkpoint every inference command and train.py's --init_from take.
            reference: the reference code's generator files: junyanz's latest_net_G_A.pth and latest_net_G_B.pth
            (CycleGAN), or the WassersteinGAN reference's netG.pth and generator_config.json (WGAN).
            pt2: torch.export programs into a folder, to run with torch alone (neither Lightning nor this package):
            the Darknet as darknet.pt2 (uint8 images to class probabilities, its TTA and normalisation inside), the
            WGAN's generator.pt2, the CycleGAN's a2b.pt2 and b2a.pt2; each with what it takes and gives, and a
            Darknet's class names, in its extra file dl2.json.
        system: for `last`: darknet, wgan or cyclegan.
    """
    if not output:
        raise UserError("--output is required: the file to write (e.g. --output horse2zebra.ckpt), or with --format "
                        "reference or pt2 the folder for the files")
    from callbacks.checkpoint_io import AtomicCheckpointIO, write_json
    from lightning_modules.inference import read_checkpoint

    folders = ("reference", "pt2")
    if format in folders and Path(output).suffix in (".pt2", ".pth", ".pt", ".ckpt") and not Path(output).is_dir():
        raise UserError(f"--format {format} writes a folder of files (their names are fixed: README, dl2-export), "
                        f"not the file {output}; give a folder, e.g. --output {Path(output).with_suffix('')}")
    out = check_output_folder(output, "--output") if format in folders else check_output_file(
        output, "--output", "model.ckpt")  # before any work, as the other commands' outputs
    source = source_checkpoint(checkpoint, system)
    state = read_checkpoint(source)
    name = system_class(state, source)
    if generators_only and name not in DISCRIMINATORS:
        raise UserError(f"--generators_only: {source} is a Darknet's, which has no generators; leave it out")
    generators_only = (name == "WGAN") if generators_only is None else generators_only
    files = (reference_files(state, name, source) if format == "reference" else
             exported_programs(name, source) if format == "pt2" else
             {out.name: weights_only(state, name, source, generators_only)})
    folder = out if format in folders else out.parent
    for target in (folder / file for file in files):
        if target.exists() and target.resolve() == Path(source).resolve():
            raise UserError(f"--output {output}: {target} is the checkpoint being exported, which is never written "
                            "over; give another " + ("folder" if format in folders else "file name"))
    written = []
    for file, content in files.items():
        target = folder / file
        if format == "pt2":
            import io
            import json

            from callbacks.checkpoint_io import replaced
            program, about = content
            about = {**about, "system": name, "from": str(Path(source).absolute()), "torch": torch.__version__,
                     "load": f"torch.export.load('{file}').module()"}
            buffer = io.BytesIO()  # torch.export.save wants a .pt2 name, which replaced's temporary file lacks
            torch.export.save(program, buffer, extra_files={"dl2.json": json.dumps(about)})
            with replaced(target) as temporary:
                temporary.write_bytes(buffer.getvalue())
        elif isinstance(content, dict) and file.endswith(".json"):
            write_json(target, content)
        else:
            AtomicCheckpointIO().save_checkpoint(content, target)  # a temp file beside it, then one rename
        written.append(target)
    size = sum(f.stat().st_size for f in written)
    print(f"{', '.join(str(f) for f in written)}: {file_size(size)} (the checkpoint {source}: "
          f"{file_size(Path(source).stat().st_size)})")
    return out


if __name__ == "__main__":  # the package's function (lightning_modules.commands), not this copy's
    from lightning_modules.commands import export as command

    command()
