"""Frozen VGG16 (or VGG19) features with the seed's forward hooks (Simonyan & Zisserman 2015; DL2 2018 lesson 13)."""

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.vgg import VGG16_BN_Weights, VGG16_Weights, VGG19_BN_Weights, VGG19_Weights, cfgs, make_layers

from callbacks.errors import UserError, one_line

# fastai 0.7's `vgg16(True)`, which the seed uses, is torchvision's vgg16_bn features: block ends [5, 12, 22, 32, 42]
# torchvision's configuration (D: VGG16, E: VGG19, Gatys et al.'s and pystiche's), batch norm, ImageNet weights
ARCHS = {"vgg16": ("D", False, VGG16_Weights.IMAGENET1K_V1), "vgg16_bn": ("D", True, VGG16_BN_Weights.IMAGENET1K_V1),
         "vgg19": ("E", False, VGG19_Weights.IMAGENET1K_V1), "vgg19_bn": ("E", True, VGG19_BN_Weights.IMAGENET1K_V1)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg_features(arch: str) -> nn.Sequential:
    """torchvision's `features` of one of ARCHS, built without the 120 M-parameter classifier."""
    config, batch_norm, _ = ARCHS[arch]
    return make_layers(cfgs[config], batch_norm=batch_norm)


def relu_layers(features: nn.Sequential) -> dict[str, int]:
    """Index of every ReLU, named by block and conv (relu1_1 ... relu5_3): the block ends and the layers papers and
    pystiche pick besides them (Gatys et al.'s content relu4_2, style relu1_1 ... relu5_1)."""
    names, block, convs = {}, 1, 0
    for i, layer in enumerate(features):
        convs += isinstance(layer, nn.Conv2d)
        if isinstance(layer, nn.ReLU):
            names[f"relu{block}_{convs}"] = i
        elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
            block, convs = block + 1, 0
    return names


def average_pooling(features: nn.Sequential) -> nn.Sequential:
    """The same layers with each max-pool replaced by a 2x2 average pool, as Gatys et al. (2016, section 2) did for
    "slightly more appealing results"; indices, names and weights are unchanged."""
    return nn.Sequential(*(nn.AvgPool2d(2, 2) if isinstance(layer, nn.MaxPool2d) else layer for layer in features))


def block_ends(features: nn.Sequential) -> dict[str, int]:
    """The last ReLU of each block, just before its pool, named like fast_neural_style's Vgg16 (relu1_2 ...
    relu5_3): the seed's `[i-1 for i, o in enumerate(children(m_vgg)) if isinstance(o, nn.MaxPool2d)]`, plus names."""
    last = {name.partition("_")[0]: (name, index) for name, index in relu_layers(features).items()}
    return dict(last.values())


class SaveFeatures:
    """The seed's forward hook: keeps the output of `module` from its latest forward pass."""

    features: Tensor | None = None

    def __init__(self, module: nn.Module):
        self.hook = module.register_forward_hook(self.hook_fn)

    def hook_fn(self, module, input, output):
        self.features = output

    def close(self):
        self.hook.remove()


@contextmanager
def saved_features(modules: list[nn.Module]) -> Iterator[list[SaveFeatures]]:
    """Hooks on `modules` for the duration of the block; removed on the way out, also when it raises."""
    with ExitStack() as stack:
        hooks = []
        for module in modules:
            hooks.append(SaveFeatures(module))
            stack.callback(hooks[-1].close)
        yield hooks


def load_vgg(arch: str = "vgg16_bn", weights: str = "imagenet") -> nn.Sequential:
    """VGG16 or VGG19 features, frozen and in eval mode; `weights` is "imagenet", a state-dict file, or "random"."""
    if arch not in ARCHS:
        raise UserError(f"arch must be one of {sorted(ARCHS)} (got {arch!r})")
    imagenet = ARCHS[arch][2]
    features = vgg_features(arch)
    if weights != "random":
        state = imagenet_state(arch, imagenet) if weights == "imagenet" else file_state(Path(weights).expanduser())
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        try:
            features.load_state_dict(state)
        except RuntimeError as error:
            other = next((name for name in ARCHS if name != arch and fits(name, state)), None)
            if other:
                raise UserError(f"{weights} holds torchvision {other} weights, not {arch}: set the arch to {other} "
                                f"(--model.arch {other})") from error
            raise UserError(f"{weights} does not hold torchvision VGG weights ({one_line(str(error))[:200]}...); "
                            "give torchvision's ImageNet file, vgg16_bn-6c64b313.pth or vgg16-397923af.pth") from error
    return features.eval().requires_grad_(False)


def fits(arch: str, state: dict) -> bool:
    try:
        vgg_features(arch).load_state_dict(state)
    except RuntimeError:
        return False
    return True


def imagenet_state(arch: str, imagenet) -> dict[str, Tensor]:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(imagenet.url).name
    try:  # from the torch cache, else downloaded into it
        return torch.hub.load_state_dict_from_url(imagenet.url, progress=False, check_hash=True, map_location="cpu")
    except OSError as error:  # URLError, DNS and connection failures are all OSErrors
        raise FileNotFoundError(
            f"the ImageNet {arch} weights are not in the torch cache ({cached}) and could not be downloaded "
            f"({error}). On a machine with internet run `python -c \"import torchvision; "
            f"torchvision.models.{arch}(weights='IMAGENET1K_V1')\"` and copy {cached.name} into {cached.parent}, "
            f"or pass the file with --model.vgg_weights PATH (or --model.vgg_weights random for a test run)"
        ) from error


def file_state(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"--model.vgg_weights {path}: no such file; give torchvision's VGG weights file "
                                "(e.g. vgg16_bn-6c64b313.pth), 'imagenet' for the torch cache, or 'random'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling, zip and weights_only errors differ by file and torch version
        if found := re.search(r"Unsupported global: GLOBAL (\S+)", str(error)):  # a PyTorch file of Python objects
            raise UserError(f"--model.vgg_weights {path} holds pickled Python objects ({found[1]}: a whole saved "
                            f"module?), not a state dict of tensors, and pickled code is not run here; where you trust "
                            f"the file, save its module's state_dict() (torch.save(module.state_dict(), PATH)), or "
                            f"give torchvision's VGG weights file") from error
        raise UserError(f"--model.vgg_weights {path} is not a PyTorch weights file ({type(error).__name__}: "
                        f"{one_line(str(error))[:200]}); give torchvision's VGG weights file") from error
    state = state.get("state_dict", state) if isinstance(state, dict) else state  # a checkpoint may wrap one
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"--model.vgg_weights {path} holds a {type(state).__name__}, not a state dict of tensors; "
                        "give torchvision's VGG weights file (e.g. vgg16_bn-6c64b313.pth)")
    return state


def normalize_imagenet(images: Tensor) -> Tensor:
    """(N, 3, H, W) pixels in [0, 1] -> the inputs torchvision's ImageNet VGGs were trained on."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std
