"""The VGG's weights from the torch cache or a file and the feature hooks (the vgg_weights mutation target)."""

import hashlib
import io
import pathlib
from types import SimpleNamespace

import pytest
import torch
from conftest import http_server, reply
from torch import nn

from callbacks import UserError
from lightning_modules.nets.vgg import file_state, imagenet_state, saved_features


def test_saved_features_hold_each_modules_output_and_leave_no_hook_behind():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    first = x @ net[0].weight.T + net[0].bias  # the outputs by hand
    expected = [first, first.clamp(min=0), first.clamp(min=0) @ net[2].weight.T + net[2].bias]
    with saved_features(list(net)) as hooks:
        net(x)
        assert len(hooks) == 3
        for hook, output in zip(hooks, expected, strict=True):
            torch.testing.assert_close(hook.features, output)
    assert not any(module._forward_hooks for module in net)
    with pytest.raises(KeyError), saved_features(list(net)):
        raise KeyError("the block fails")
    assert not any(module._forward_hooks for module in net)  # removed on the way out of a failing block too


def saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_imagenet_weights_are_downloaded_into_the_torch_cache_without_a_progress_bar_and_checked(
        tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    state = {"features.0.weight": torch.randn(4, 3, 3, 3), "features.0.bias": torch.randn(4)}
    body = saved(state)
    digest = hashlib.sha256(body).hexdigest()
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "1" * 8
    files = {f"/vgg-{digest[:8]}.pth": body, f"/vgg-{wrong}.pth": body}  # torch checks the name's hash prefix

    def do_get(handler):
        reply(handler, files.get(handler.path, b""), 200 if handler.path in files else 404)

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    with http_server(do_get) as url:
        loaded = imagenet_state("vgg16", SimpleNamespace(url=f"{url}/vgg-{digest[:8]}.pth"))
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())
        assert (cache / f"vgg-{digest[:8]}.pth").read_bytes() == body
        assert "%|" not in capfd.readouterr().err  # tqdm's bar: progress=False
        with pytest.raises(RuntimeError, match="invalid hash value"):
            imagenet_state("vgg16", SimpleNamespace(url=f"{url}/vgg-{wrong}.pth"))
        assert not (cache / f"vgg-{wrong}.pth").exists()
        with pytest.raises(FileNotFoundError, match=r"ImageNet vgg16 weights are not in the torch cache \("
                                                    + str(cache / "absent.pth")):
            imagenet_state("vgg16", SimpleNamespace(url=f"{url}/absent.pth"))  # HTTP 404: an OSError


def test_a_weights_file_is_read_as_saved_and_a_checkpoints_state_dict_unwrapped(tmp_path):
    torch.manual_seed(0)
    state = {"0.weight": torch.randn(4, 3, 3, 3), "0.bias": torch.randn(4)}
    (tmp_path / "plain.pth").write_bytes(saved(state))
    (tmp_path / "checkpoint.ckpt").write_bytes(saved({"state_dict": state, "epoch": 3}))
    for name in ("plain.pth", "checkpoint.ckpt"):
        loaded = file_state(tmp_path / name)
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())


def test_a_weights_file_of_other_values_is_named_and_its_pickled_code_never_runs(tmp_path):
    (tmp_path / "numbers.pth").write_bytes(saved({"0.weight": torch.zeros(1), "0.bias": [1.0, 2.0]}))
    with pytest.raises(UserError, match="holds a dict, not a state dict of tensors"):
        file_state(tmp_path / "numbers.pth")
    marker = tmp_path / "code_ran"

    class Touch:  # unpickled, it would create the marker file
        def __reduce__(self):
            return pathlib.Path.touch, (marker,)

    (tmp_path / "code.pth").write_bytes(saved({"0.weight": Touch()}))
    with pytest.raises(UserError, match=r"code.pth holds pickled Python objects \(getattr: a whole saved "):
        file_state(tmp_path / "code.pth")
    assert not marker.exists()


def test_a_whole_saved_vgg_module_is_named_as_such_with_the_state_dict_fix_and_no_terminal_codes(tmp_path):
    """torch.save(vgg) (a whole module, pystiche users' habit) was called 'not a PyTorch weights file', with torch's
    message and its bold codes (\x1b[1m) after it."""
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3)), tmp_path / "vgg_module.pth")
    with pytest.raises(UserError) as refused:
        file_state(tmp_path / "vgg_module.pth")
    assert str(refused.value) == (
        f"--model.vgg_weights {tmp_path / 'vgg_module.pth'} holds pickled Python objects "
        "(torch.nn.modules.container.Sequential: a whole saved module?), not a state dict of tensors, and pickled code "
        "is not run here; where you trust the file, save its module's state_dict() (torch.save(module.state_dict(), "
        "PATH)), or give torchvision's VGG weights file")


def test_one_line_drops_a_terminals_bold_and_colour_codes():
    from callbacks.errors import one_line
    assert one_line("Weights only load failed, \x1b[1mdo those steps\x1b[0m.\n\t(1) re-run") == \
        "Weights only load failed, do those steps. (1) re-run"
