"""callbacks/images.py called directly, with a stand-in trainer and a WandbLogger that records what it is given."""

from types import SimpleNamespace

from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from callbacks.images import log_figure


class RecordingWandb(WandbLogger):
    def __init__(self):  # no W&B run: only what would be logged
        self.logged = []

    def log_image(self, key, images, step=None, **options):
        self.logged.append((key, images, step, options))


def test_a_figure_is_saved_at_100_dpi_whatever_matplotlibs_settings_and_logged_at_the_batch_count(tmp_path):
    import matplotlib.pyplot as plt  # a caller's own pyplot figure
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


def test_the_projects_figures_leave_the_processs_matplotlib_backend_as_it_is(tmp_path):
    """A notebook (its inline backend) or a desktop session that trains with the scheduler's plot, the Darknet's test
    figures or the LR finder keeps its backend: pyplot() switched the whole process to Agg, and a notebook's plots
    stopped showing. Run in a process of its own, whose backend the test may set."""
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import matplotlib
matplotlib.use("svg")  # stands for a notebook's inline backend: any backend the user chose
from pathlib import Path
from types import SimpleNamespace
import torch
from callbacks import TrainingPhase, plot_schedule
from callbacks.images import log_figure
from lightning_modules.darknet_interpret import confusion_figure, top_losses_figure
out = Path({str(tmp_path)!r})
plot_schedule([TrainingPhase(1, "SGD", (0.1, 0.01), "linear")], [10], out / "lr_schedule.png")
trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(out), loggers=[],
                          fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)))
log_figure(trainer, "confusion", confusion_figure(torch.tensor([[2, 1, 0], [0, 3, 0], [1, 0, 2]]), ["a", "b", "c"]))
worst = {{"loss": torch.tensor([2.0, 1.0]), "image": torch.rand(2, 3, 8, 8), "label": torch.tensor([0, 1]),
         "prediction": torch.tensor([1, 0]), "probability": torch.tensor([0.1, 0.3])}}
log_figure(trainer, "top_losses", top_losses_figure(worst, ["a", "b"]))
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), len(plt.get_fignums()))
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "0"]  # the user's backend, and no figure left open in pyplot
    assert Image.open(tmp_path / "lr_schedule.png").size == (1200, 400)  # lr and momentum panels, 12 x 4 in
    assert Image.open(tmp_path / "images" / "confusion.png").size == (400, 400)  # 3 classes: 4 x 4 in at 100 dpi
    assert Image.open(tmp_path / "images" / "top_losses.png").size == (600, 320)  # 2 images: 6 x 3.2 in


def test_a_grids_columns_are_named_above_it_each_name_over_its_own_column():
    """junyanz's page names each visual; a PNG of the CycleGAN's or the style's columns opened alone said nothing of
    which column is which. Equal names draw equal cells, other names other cells, each over its column's tiles."""
    import torch
    from torchvision.utils import make_grid

    from callbacks.images import LABEL_HEIGHT, labelled

    tiles = torch.rand(6, 3, 40, 40)
    grid = make_grid(tiles, nrow=3, padding=2)
    shown = labelled(grid, ["real A", "fake B", "real A"])
    assert shown.shape == (3, LABEL_HEIGHT + grid.shape[1], grid.shape[2])
    assert torch.equal(shown[:, LABEL_HEIGHT:], grid)  # the tiles untouched, below the strip
    cells = [shown[:, :LABEL_HEIGHT, 2 + 42 * i:42 + 42 * i] for i in range(3)]
    assert torch.equal(cells[0], cells[2]) and not torch.equal(cells[0], cells[1])
    header = shown[:, :LABEL_HEIGHT]
    assert header.min() == 0 and 0.9 < header.max() <= 1  # white letters on black (antialiased), in [0, 1]
    for cell in cells:  # centred in the 40px cell and the strip's height, to a pixel
        ink = cell > 0.5
        columns, rows = ink.any(0).any(0).nonzero()[:, 0], ink.any(0).any(1).nonzero()[:, 0]
        assert abs((columns.min() + columns.max()) / 2 - 19.5) <= 1.5
        assert abs((rows.min() + rows.max()) / 2 - (LABEL_HEIGHT - 1) / 2) <= 1.5
    gaps = [shown[:, :LABEL_HEIGHT, i * 42:i * 42 + 2] for i in range(4)]  # nothing drawn over the padding
    assert all((gap == 0).all() for gap in gaps)
