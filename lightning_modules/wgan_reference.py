"""martinarjovsky/WassersteinGAN's weight files (netG_epoch_N.pth, netD_epoch_N.pth) read as our WGAN's nets:
train.py's --init_from and the generate and fid commands take them."""

import math
from pathlib import Path

from callbacks.errors import UserError
from lightning_modules.inference import load_by_position
from lightning_modules.wgan import WGAN


def reference_generator(path: str) -> WGAN | None:
    """A generator file of martinarjovsky/WassersteinGAN (`netG_epoch_24.pth`: its DCGAN_G, DCGAN_G_nobn or MLP_G) as
    a WGAN whose generator holds those weights, None for any other file. That DCGAN_G has our generator's blocks in
    DCGAN's order (conv, batchnorm, ReLU: bn_last false; no batchnorm in DCGAN_G_nobn, generator_batchnorm false) under
    its own names; its sizes are read from the tensors (the
    generator_config.json the reference writes beside them is not needed), and its stride-1 extra layers are
    convolutions where ours are transposed convolutions: the same map with the kernel's two channel axes swapped
    and its taps flipped."""
    from lightning_modules.inference import tensor_file

    state = tensor_file(path)
    if state is None:
        return None
    keys = [k.removeprefix("module.") for k in state]
    if not all(k.startswith("main.") for k in keys):
        return None
    if all(v.dim() <= 2 for v in state.values()):  # linear layers only: its models/mlp.py
        return reference_mlp_generator(path, state)
    if state[next(iter(state))].dim() != 4:
        return None
    layers = [(k.rsplit(".", 1)[0], v) for k, v in zip(keys, state.values(), strict=True)
              if not k.endswith("num_batches_tracked")]
    convs = [(name, v) for name, v in layers if v.dim() == 4]
    if not convs[0][0].endswith("convt"):
        raise UserError(f"{path} is a WassersteinGAN critic (netD_*), not a generator; give a netG_epoch_N.pth")
    batchnorm = any(name.endswith("batchnorm") for name, _ in layers)  # none in its DCGAN_G_nobn (--noBN)
    (_, first), (_, last) = convs[0], convs[-1]
    nz, ngf, nc = first.shape[0], last.shape[0], last.shape[1]
    n_extra_layers = sum(not name.endswith("convt") for name, _ in convs)
    isize = 4 * 2 ** (len(convs) - n_extra_layers - 1)  # 4x4 after the first, then each stride-2 block doubles
    model = WGAN(isize=isize, nz=nz, nc=nc, ngf=ngf, n_extra_layers=n_extra_layers, bn_last=False,
                 generator_batchnorm=batchnorm)
    theirs = [v.transpose(0, 1).flip(2, 3) if v.dim() == 4 and not name.endswith("convt") else v
              for name, v in layers]
    if not load_by_position(model.generator, theirs):
        raise UserError(f"{path} holds a WassersteinGAN-style generator that does not match a DCGAN_G of isize "
                        f"{isize}, nz {nz}, ngf {ngf}, {n_extra_layers} extra layers; only its DCGAN_G, DCGAN_G_nobn "
                        "and MLP_G load")
    return model.eval()


ARCHITECTURE = ("isize", "nz", "nc", "ngf", "ndf", "n_extra_layers", "bn_last", "generator_batchnorm",
                "critic_batchnorm", "mlp_generator", "mlp_critic")  # the hyper-parameters that shape the two nets


def reference_checkpoint(path: str) -> dict | None:
    """--init_from of the WassersteinGAN reference's files (its --netG and --netD): a `netG_epoch_N.pth`, with the
    `netD_epoch_N.pth` beside it when there is one (else the critic starts from new weights; the warm-up's 100 critic
    iterations train it), as a checkpoint's weights in our names and the network's hyper-parameters; None for any
    other file. Its DCGAN_D is our critic with DCGAN's block order (bn_last false), its MLP_D our mlp_critic."""
    from lightning_modules.export import EXPORT_KEY, REFERENCE_SIZES
    from lightning_modules.inference import tensor_file

    model = reference_generator(path)
    if model is None:
        return None
    hp = {k: model.hparams[k] for k in ARCHITECTURE if k not in ("ndf", "critic_batchnorm", "mlp_critic")}
    critic_file = Path(path).with_name(Path(path).name.replace("netG", "netD", 1))
    said = f"the WassersteinGAN reference's generator ({Path(path).name})"
    if critic_file == Path(path) or not critic_file.is_file():
        return {"state_dict": nets_only(model, ("generator.",)), "hyper_parameters": hp,
                EXPORT_KEY: {"from": f"{said}; no {critic_file.name} beside it: the critic starts from new weights",
                             "left_out": left_out(model, ("generator.",)), "sizes": REFERENCE_SIZES}}
    state = tensor_file(str(critic_file))
    tensors = [v for k, v in (state or {}).items() if not k.endswith("num_batches_tracked")]
    if not tensors or not all(k.removeprefix("module.").startswith("main.") for k in state):
        raise UserError(f"{critic_file}, beside {path}, is not a WassersteinGAN critic file (netD_epoch_N.pth); move "
                        "it away to start the critic from new weights")
    mlp = all(v.dim() <= 2 for v in tensors)  # its MLP_D: linear layers only
    hp |= {"ndf": tensors[0].shape[0], "mlp_critic": mlp, "critic_batchnorm": any("batchnorm" in k for k in state)}
    # `extra-layers-0:64:conv.weight`, in its first versions `extra-layers-0.64.conv.weight`
    if not mlp and sum(k.endswith("conv.weight") and "extra-layers" in k for k in state) != hp["n_extra_layers"]:
        raise UserError(f"{critic_file} has other extra layers than {path}; give the netD file of the same run")
    both = WGAN(**hp)
    if not load_by_position(both.critic, tensors):
        raise UserError(f"{critic_file} holds a critic that does not match a DCGAN_D (or MLP_D) of isize "
                        f"{hp['isize']}, nc {hp['nc']}, ndf {hp['ndf']}, {hp['n_extra_layers']} extra layers; give the "
                        f"netD file of the run that wrote {Path(path).name}")
    both.generator.load_state_dict(model.generator.state_dict())
    return {"state_dict": nets_only(both, ("generator.", "critic.")), "hyper_parameters": hp,
            EXPORT_KEY: {"from": f"{said} and critic ({critic_file.name})",
                         "left_out": left_out(both, ("generator.", "critic.")), "sizes": REFERENCE_SIZES}}


def nets_only(model: WGAN, nets: tuple[str, ...]) -> dict:
    return {k: v for k, v in model.state_dict().items() if k.startswith(nets)}


def left_out(model: WGAN, nets: tuple[str, ...]) -> list[str]:
    """What the reference's files do not hold (the critic without its netD, our gallery's noise): the run's own."""
    return sorted({k.partition(".")[0] + "." * ("." in k) for k in model.state_dict() if not k.startswith(nets)})


def reference_mlp_generator(path: str, state: dict) -> WGAN:
    """The reference's MLP_G file (--mlp_G): four linear layers, nz -> ngf -> ngf -> ngf -> nc x isize x isize. The
    last layer's width is nc x isize^2: nc and isize come from the generator_config.json the reference writes beside
    its files when it is there, else nc is 3 where that gives square images, else 1."""
    import json

    weights = [v for k, v in state.items() if k.endswith("weight")]
    if weights[-1].shape[0] == 1:
        raise UserError(f"{path} is the WassersteinGAN reference's MLP critic (--mlp_D, netD_*), not a generator; give "
                        "a netG_epoch_N.pth")
    nz, ngf, pixels = weights[0].shape[1], weights[0].shape[0], weights[-1].shape[0]
    config = Path(path).with_name("generator_config.json")
    try:
        saved = json.loads(config.read_text())
        nc, isize = int(saved["nc"]), int(saved["imageSize"])
    except (OSError, ValueError, KeyError, TypeError):
        nc = 3 if 3 * math.isqrt(pixels // 3) ** 2 == pixels else 1  # no square image is also three square images
        isize = math.isqrt(pixels // nc)
    if nc * isize * isize != pixels or len(weights) != 4:
        raise UserError(f"{path} holds linear layers that are not the WassersteinGAN reference's MLP_G (four layers, "
                        f"the last {pixels} wide: nc x isize x isize); only its DCGAN_G, DCGAN_G_nobn and MLP_G load")
    model = WGAN(isize=isize, nz=nz, nc=nc, ngf=ngf, mlp_generator=True, mlp_critic=True)  # any isize (28 for MNIST)
    if not load_by_position(model.generator, list(state.values())):
        raise UserError(f"{path} holds linear layers that do not match an MLP_G of isize {isize}, nz {nz}, nc {nc}, "
                        f"ngf {ngf}")
    return model.eval()
