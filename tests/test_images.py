"""callbacks/images.py called directly, with a stand-in trainer and a WandbLogger that records what it is given."""

from types import SimpleNamespace

from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from callbacks.images import log_figure, pyplot


class RecordingWandb(WandbLogger):
    def __init__(self):  # no W&B run: only what would be logged
        self.logged = []

    def log_image(self, key, images, step=None, **options):
        self.logged.append((key, images, step, options))


def test_a_figure_is_saved_at_100_dpi_whatever_matplotlibs_settings_and_logged_at_the_batch_count(tmp_path):
    plt = pyplot()
    logger = RecordingWandb()
    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path / "run"), loggers=[logger],
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=7)))
    with plt.rc_context({"figure.dpi": 50, "savefig.dpi": 72}):  # a user's matplotlibrc: the PNG keeps its size
        figure = plt.figure(figsize=(3, 2))
        figure.add_subplot().plot([0, 1], [1, 0])
        path = log_figure(trainer, "test/confusion_matrix", figure)
    assert path == tmp_path / "run" / "images" / "test_confusion_matrix.png"
    assert sorted(p.name for p in path.parent.iterdir()) == ["test_confusion_matrix.png"]  # no temporary file left
    assert Image.open(path).size == (300, 200)  # 3 x 2 inches at 100 dots per inch
    assert logger.logged == [("test/confusion_matrix", [str(path)], 7, {})]
    assert not plt.fignum_exists(figure.number)  # closed
