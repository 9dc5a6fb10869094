"""The Darknet system's step options (issue 13): channels_last, torch.compile, airbench's alternating flip, batches
cut on the device and a training step that reads nothing back to the host, each against a computation written here."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from runs import DARKNET_TINY as TINY
from runs import quiet_trainer as trainer

from callbacks import TrainingPhaseScheduler
from datamodules import CIFAR10DataModule
from datamodules.augment import alternating_flip
from datamodules.cifar10 import TensorBatches
from lightning_modules import DarknetClassifier
from lightning_modules.darknet_classifier import compiled_call

pytestmark = pytest.mark.usefixtures("one_thread")



# -- channels_last and torch.compile -------------------------------------------------------------------------------

def test_channels_last_gives_the_same_logits_with_nhwc_weights():
    torch.manual_seed(0)
    plain = DarknetClassifier(**TINY).eval()
    nhwc = DarknetClassifier(**TINY, channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(nhwc(x), plain(x), atol=1e-5, rtol=1e-5)
    conv = nhwc.net.layers[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


RECORDED_GRAPHS = []  # the graphs given to the test's torch.compile backend, "darknet_test_recorder"


def recorder(graph, example_inputs, **kwargs):
    RECORDED_GRAPHS.append(graph)
    return graph.forward  # run as traced, as the eager backend does


def test_compiled_forward_is_built_once_per_process_and_reused_by_a_new_model():
    from torch._dynamo.utils import counters
    if "darknet_test_recorder" not in torch._dynamo.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(recorder, "darknet_test_recorder")  # so the options must reach torch.compile
    torch._dynamo.reset()
    compiled_call.cache_clear()
    RECORDED_GRAPHS.clear()
    options = {"backend": "darknet_test_recorder", "options": {}}  # a nested dict, as torch.compile's, is a fine key
    x = torch.randn(2, 3, 8, 8)
    first = DarknetClassifier(**TINY, compile=True, compile_options=options).eval()
    torch.testing.assert_close(first(x), first.net(x))
    graphs = counters["stats"]["unique_graphs"]
    assert len(RECORDED_GRAPHS) == 1
    # the next seed's model, its options written in another order: the same options, the same compiled call
    reordered = {"options": {}, "backend": "darknet_test_recorder"}
    second = DarknetClassifier(**TINY, compile=True, compile_options=reordered).eval()
    torch.testing.assert_close(second(x), second.net(x))
    assert counters["stats"]["unique_graphs"] == graphs >= 1 and len(RECORDED_GRAPHS) == 1
    assert compiled_call.cache_info().currsize == 1


# -- data: airbench's alternating flip -------------------------------------------------------------------------------

def test_alternating_flip_mirrors_each_image_every_other_epoch():
    images = torch.arange(6 * 1 * 2 * 3, dtype=torch.uint8).view(6, 1, 2, 3)
    first = torch.tensor([True, False, True, True, False, False])
    for epoch in range(4):
        out = alternating_flip(images, first, epoch)
        for i in range(6):
            mirrored = bool(first[i]) != (epoch % 2 == 1)
            assert torch.equal(out[i], images[i, :, :, [2, 1, 0]] if mirrored else images[i])


def test_training_batches_alternate_and_the_random_flip_is_off(tiny_cifar):
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, alternating_flip=True, pad=0)
    data.setup("fit")
    loader = data.train_dataloader()
    first = loader.flipped_first
    assert first.dtype == torch.bool and len(first) == 24 and 0 < first.sum() < 24
    by_image = {bytes(img.numpy()): i for i, img in enumerate(data.train_images)}
    by_mirror = {bytes(img.flip(-1).numpy()): i for i, img in enumerate(data.train_images)}
    for epoch in range(3):
        loader.set_epoch(epoch)
        for images, _ in loader:
            for img in images:
                key = bytes(img.numpy())
                i = by_image.get(key, by_mirror.get(key))
                assert (key in by_mirror and key not in by_image) == (bool(first[i]) != (epoch % 2 == 1))
    x = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    x[..., 0] = 255  # left column bright: a random flip would move it
    data.trainer = trainer()
    data.trainer.training = True
    out, _ = data.on_after_batch_transfer((x, torch.zeros(8, dtype=torch.long)), 0)
    assert (out[..., 0] > out[..., -1]).all()


@pytest.mark.parametrize("flip, alternate", [(True, False), (False, True)])
def test_training_batches_alternate_only_when_asked_and_with_flip(tiny_cifar, flip, alternate):
    # the seed's random flip happens after the transfer; flip false means no flip at all, alternating or not
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, flip=flip, alternating_flip=alternate, pad=0)
    data.setup("fit")
    loader = data.train_dataloader()
    stored = sorted(bytes(img.numpy()) for img in data.train_images)
    for epoch in range(2):
        loader.set_epoch(epoch)
        assert sorted(bytes(img.numpy()) for images, _ in loader for img in images) == stored


def test_tensor_batches_without_flip_bits_are_unchanged():
    images = torch.arange(4 * 3, dtype=torch.uint8).view(4, 3, 1, 1)
    batches = TensorBatches(images, torch.arange(4), 2, shuffle=False, drop_last=False)
    assert torch.equal(torch.cat([b for b, _ in batches]), images)


def test_on_device_cuts_batches_where_the_images_were_copied_once(tiny_cifar):
    from types import SimpleNamespace
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=8, alternating_flip=True, on_device=True)
    data.setup("fit")
    meta = torch.device("meta")  # stands for the GPU: the copies and batches must land there
    data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=meta), global_rank=0, world_size=1)
    loaders = [data.train_dataloader(), data.train_dataloader(), data.test_dataloader()]
    assert loaders[0].images is loaders[1].images and loaders[0].images.device == meta  # one copy
    assert loaders[0].flipped_first.device == meta and loaders[2].labels.device == meta
    for loader in loaders:
        images, labels = next(iter(loader))
        assert images.device == meta and labels.device == meta and images.shape[1:] == (3, 32, 32)
    assert data.train_images.device.type == "cpu"  # the host copy is left as it was
    # on the host the same option changes nothing: the same batches in the same order
    plain = CIFAR10DataModule(str(tiny_cifar), batch_size=8, alternating_flip=True)
    plain.setup("fit")
    data.trainer = plain.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")),
                                                   global_rank=0, world_size=1)
    for a, b in zip(data.train_dataloader(), plain.train_dataloader(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# -- the lean step: no host sync in training batches ---------------------------------------------------------------

HOST_READS = ["item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy"]


class HostReads(L.Callback):
    """Counts tensor reads by the host (each a device sync on a GPU) between a training batch's start and end."""

    def __init__(self, monkeypatch):
        self.inside, self.reads = False, []
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                if self.inside:
                    self.reads.append(_name)
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)

    def on_train_batch_start(self, *args):
        self.inside = True

    def on_train_batch_end(self, *args):
        self.inside = False


def lean_fit(tiny_cifar, tmp_path, callbacks):
    from lightning.pytorch.loggers import CSVLogger
    model = DarknetClassifier(**TINY, whiten=2, whiten_images=8, tta="flip_translate", nesterov=True,
                              label_smoothing=0.2, no_decay_bn_bias=True, bn_bias_lr_scale=64, one_cycle=None)
    data = CIFAR10DataModule(str(tiny_cifar), batch_size=4, alternating_flip=True)
    schedule = TrainingPhaseScheduler(one_cycle={"div": 20, "pct": 10}, plot=False)
    trainer(max_epochs=2, logger=CSVLogger(tmp_path), log_every_n_steps=1000, limit_val_batches=0,
            callbacks=[schedule, *callbacks]).fit(model, data)
    return model


def test_training_steps_read_nothing_back_to_the_host(tiny_cifar, tmp_path, monkeypatch):
    reads = HostReads(monkeypatch)
    model = lean_fit(tiny_cifar, tmp_path, [reads])
    assert model.trainer.global_step == 12 and reads.reads == []
    # the check itself works: Lightning's EMAWeightAveraging reads torch's AveragedModel.n_averaged at each update,
    # after steps 0, 3, 6, 9: twice an update (torch 2.5 reads it once more for each parameter)
    reads = HostReads(monkeypatch)
    lean_fit(tiny_cifar, tmp_path, [EMAWeightAveraging(decay=0.9, update_every_n_steps=3), reads])
    assert reads.reads.count("__bool__") >= 2 * 12 // 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="sync detection needs CUDA")
def test_training_steps_do_not_synchronise_the_gpu(tiny_cifar, tmp_path):
    class Strict(L.Callback):
        def on_train_batch_start(self, *args):
            torch.cuda.set_sync_debug_mode("error")

        def on_train_batch_end(self, *args):
            torch.cuda.set_sync_debug_mode("default")
    try:
        lean_fit(tiny_cifar, tmp_path, [Strict()])
    finally:
        torch.cuda.set_sync_debug_mode("default")
