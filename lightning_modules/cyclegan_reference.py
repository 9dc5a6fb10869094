"""junyanz/pytorch-CycleGAN-and-pix2pix's weight files read as our CycleGAN's nets: train.py's --init_from and
translate's --checkpoint take its checkpoints folder, its <epoch>_net_G_A.pth files and its model zoo's generators."""

import re
import sys
from pathlib import Path

from torch import Tensor, nn

from callbacks.errors import UserError
from lightning_modules.inference import load_by_position
from lightning_modules.nets.cyclegan import ResBlock, patch_discriminator, resnet_generator


def reference_generator(path: str) -> nn.Module | None:
    """A generator file of junyanz/pytorch-CycleGAN-and-pix2pix (`latest_net_G_A.pth`, or its pretrained
    `horse2zebra.pth`) as our resnet_generator, None for any other file. Its resnet_Nblocks generator has our layers
    in our order under other names (model.1.weight, model.10.conv_block.1.weight, ...), so its tensors load by
    position, each shape checked; instance-norm statistics that older PyTorch versions saved are dropped, as the
    reference drops them."""
    state = junyanz_state(path)
    if state is None:
        return None
    if not all(k.startswith("model.") for k in state) or next(iter(state.values())).dim() != 4:
        return None
    n_blocks = len({k.split(".")[1] for k in state if ".conv_block." in k})
    if n_blocks == 0:
        raise UserError(f"{path} is a junyanz-style file but not a ResNet generator (a discriminator, net_D_*, or a "
                        "U-Net?); give latest_net_G_A.pth or latest_net_G_B.pth")
    ngf = next(iter(state.values())).shape[0]
    generator = resnet_generator(n_blocks, ngf)
    if not load_by_position(generator, list(state.values())):
        raise UserError(f"{path} holds a junyanz-style generator, but not a resnet_{n_blocks}blocks one of ngf {ngf} "
                        f"({len(state)} tensors against {len(generator.state_dict())}); only the ResNet generators "
                        "load here")
    return generator.eval()


def junyanz_state(path: str) -> dict[str, Tensor] | None:
    """A junyanz weights file's tensors without DataParallel's `module.` and the instance-norm statistics older
    PyTorch versions saved (the reference drops them); None for a file that is not a state dict of tensors."""
    from lightning_modules.inference import tensor_file

    state = tensor_file(path)
    if state is None:
        return None
    return {k.removeprefix("module."): v for k, v in state.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


# junyanz's nets as ours: its G_A translates A -> B; its D_A is applied to fake_B (judges domain B), its D_B to fake_A
JUNYANZ_NETS = {"G_A": "gen_a2b.", "G_B": "gen_b2a.", "D_A": "disc_b.", "D_B": "disc_a."}


JUNYANZ_FILE = re.compile(r"(latest|\d+|iter_\d+)_net_(G_A|G_B|D_A|D_B)\.pth")  # its --save_by_iter: iter_N


def reference_discriminator(path: str) -> nn.Module:
    """junyanz's NLayerDiscriminator file (`latest_net_D_A.pth`; --netD basic, n_layers 3, instance norm, so every
    conv has a bias) as our patch_discriminator: its `model` Sequential's convs at 0, 2, 5, 8 and 11 are ours in
    our order (the norms hold no tensors), loaded by position, each shape checked."""
    state = junyanz_state(path)
    if not state or not all(k.startswith("model.") for k in state) or next(iter(state.values())).dim() != 4:
        raise UserError(f"{path} is not a junyanz discriminator file (its NLayerDiscriminator's model.0.weight, "
                        "...); give the net_D_A.pth and net_D_B.pth of a --model cycle_gan run")
    ndf = next(iter(state.values())).shape[0]
    discriminator = patch_discriminator(ndf)
    if not load_by_position(discriminator, list(state.values())):
        raise UserError(f"{path} holds a discriminator that is not junyanz's basic PatchGAN (--netD basic, n_layers "
                        f"3, --norm instance, 3 channels) of ndf {ndf}; only that one loads here")
    return discriminator


def reference_checkpoint(path: str, option: str = "--init_from", generators_only: bool = False) -> dict | None:
    """train.py's --init_from (translate's --checkpoint: `option`, in messages) of junyanz/pytorch-CycleGAN-and-
    pix2pix's files (its --continue_train): its checkpoints folder (`checkpoints/<name>/`: the `latest_` files, else
    the highest epoch's) or one of its `<epoch>_net_G_A.pth`, `_G_B`, `_D_A`, `_D_B` files (the epoch's others beside
    it) as a checkpoint's four nets in our names, or its model zoo's one generator (`latest_net_G.pth`) as gen_a2b,
    the other nets left to their new weights; with the hyper-parameters that shape the nets. None for anything
    else. generators_only (translate, as junyanz's test.py): its D files are not read, whatever their kind."""
    from lightning_modules.export import EXPORT_KEY, REFERENCE_SIZES

    where = Path(path)
    if where.is_dir():
        found = {m.groups() for f in where.iterdir() if (m := JUNYANZ_FILE.fullmatch(f.name)) and f.is_file()}
        epochs = {epoch for epoch, _ in found}
        if not epochs:
            single = where / "latest_net_G.pth"  # the model zoo's download folder
            return reference_checkpoint(str(single), option, generators_only) if single.is_file() else None
        def order(label: str) -> tuple:  # the iterations' saves, then the epochs', then latest
            return (label == "latest", label.isdigit(), int(label.rpartition("_")[2]) if label != "latest" else 0)
        epoch, folder = max(epochs, key=order), where
        listed = ", ".join(sorted(epochs, key=order))
        chosen = f"epoch {epoch} of {listed} (for another give its <epoch>_net_G_A.pth)" if len(epochs) > 1 \
            else f"epoch {epoch}"
    elif where.is_file() and (match := JUNYANZ_FILE.fullmatch(where.name)):
        epoch, folder, chosen = match.group(1), where.parent, f"epoch {match.group(1)}"
    elif where.is_file():
        generator = reference_generator(path)  # a plain generator file: the model zoo's latest_net_G.pth
        if generator is None:
            return None
        state = {f"gen_a2b.{k}": v for k, v in generator.state_dict().items()}
        return {"state_dict": state, "hyper_parameters": generator_sizes(generator),
                EXPORT_KEY: {"from": f"junyanz's generator {where.name} as G_A (A->B, gen_a2b); gen_b2a, disc_a and "
                                     "disc_b start from new weights", "left_out": ["disc_a.", "disc_b.", "gen_b2a."],
                             "sizes": REFERENCE_SIZES}}
    else:
        return None
    files = {net: folder / f"{epoch}_net_{net}.pth" for net in JUNYANZ_NETS if not (generators_only and net[0] == "D")}
    for net in ("G_A", "G_B"):
        if not files[net].is_file():
            raise UserError(f"{option} {path}: junyanz's {epoch}_net_{net}.pth is not in {folder} (both generators "
                            "are needed; a model zoo generator alone loads as latest_net_G.pth)")
    nets, read = {}, []
    for net, file in files.items():
        if not file.is_file():
            continue
        nets[net] = reference_discriminator(str(file)) if net.startswith("D") else reference_generator(str(file))
        if nets[net] is None:
            raise UserError(f"{file} is not a junyanz generator file (its ResnetGenerator's model.1.weight, ...)")
        read.append(f"{file.name} as {JUNYANZ_NETS[net][:-1]}")
    a, b = nets["G_A"], nets["G_B"]
    shape = [tuple(v.shape) for v in a.state_dict().values()]
    if shape != [tuple(v.shape) for v in b.state_dict().values()]:
        raise UserError(f"{files['G_A']} and {files['G_B']} are generators of other sizes; give the files of one run")
    hp = generator_sizes(a)
    discriminators = [nets[net] for net in ("D_A", "D_B") if net in nets]
    if discriminators:
        widths = {d[0][0].out_channels for d in discriminators}
        if len(widths) > 1:
            raise UserError(f"{files['D_A']} and {files['D_B']} are discriminators of other sizes; give the files of "
                            "one run")
        hp["ndf"] = widths.pop()
    state = {f"{JUNYANZ_NETS[net]}{k}": v for net, model in nets.items() for k, v in model.state_dict().items()}
    missing = [net for net in files if net not in nets]
    said = "; ".join([f"junyanz's checkpoints in {folder}, {chosen}: {', '.join(read)}",
                      *[f"no {files[net].name}: {JUNYANZ_NETS[net][:-1]} starts from new weights" for net in missing]])
    left_out = sorted(JUNYANZ_NETS[net] for net in JUNYANZ_NETS if net not in nets)
    return {"state_dict": state, "hyper_parameters": hp,
            EXPORT_KEY: {"from": said, "left_out": left_out, "sizes": REFERENCE_SIZES}}


def reference_model(model_class: type, path: str) -> nn.Module | None:
    """translate's junyanz checkpoints folder (`checkpoints/<name>/`, as its test.py --model cycle_gan reads it): a
    CycleGAN in eval mode with both generators, so that --direction and --reconstruct work. None for anything else,
    and for the model zoo's download folder (one generator, latest_net_G.pth: translate uses it as a file)."""
    if not Path(path).is_dir():
        return None
    from lightning_modules.export import EXPORT_KEY
    checkpoint = reference_checkpoint(path, "--checkpoint", generators_only=True)  # test.py reads G_A and G_B alone
    if checkpoint is None or "gen_b2a." in checkpoint[EXPORT_KEY]["left_out"]:
        return None
    print(checkpoint[EXPORT_KEY]["from"], file=sys.stderr)
    model = model_class(**checkpoint["hyper_parameters"])
    model.load_state_dict(checkpoint["state_dict"], strict=False)  # a folder without the D files: new discriminators
    return model.eval()


def partner_file(path: str) -> Path | None:
    """Where the other generator of a junyanz `<epoch>_net_G_A.pth` (or G_B) file lies: the same folder and epoch,
    whether it is there or not. None for any other file."""
    match = JUNYANZ_FILE.fullmatch(Path(path).name)
    if match is None or match.group(2) not in ("G_A", "G_B"):
        return None
    return Path(path).with_name(f"{match.group(1)}_net_{'G_B' if match.group(2) == 'G_A' else 'G_A'}.pth")


def reference_partner(path: str) -> nn.Module | None:
    """The other generator of a junyanz `<epoch>_net_G_A.pth` (or G_B) file, from the same folder and epoch: the way
    back for --reconstruct. None when there is none."""
    other = partner_file(path)
    return reference_generator(str(other)) if other is not None and other.is_file() else None


def generator_sizes(generator: nn.Module) -> dict:
    """The hyper-parameters of a resnet_generator read back from it (junyanz's upsample by transposed convs)."""
    return {"n_blocks": len([m for m in generator if isinstance(m, ResBlock)]), "ngf": generator[0][1].out_channels,
            "upsample": "transposed"}
