"""The translate command (dl2-cyclegan-translate, `python -m lightning_modules.cyclegan translate`): a folder of
images through a trained CycleGAN's generator at full resolution, with an index.html of inputs beside outputs, as
junyanz's test.py."""

import html
import sys
import urllib.parse
from pathlib import Path
from typing import Literal

import torch

from callbacks.errors import UserError, check_output_folder, report_partial_failure, require_at_least_one
from callbacks.images import note_earlier_images, save_png
from lightning_modules.cyclegan_reference import (
    JUNYANZ_FILE,
    partner_file,
    reference_generator,
    reference_model,
    reference_partner,
)
from lightning_modules.nets.cyclegan import JUNYANZ_DIRECTIONS, translated


def translate_output(file: Path, source: Path, out: Path) -> bool:
    """Whether `file`, below the input folder `source`, is translate's own output rather than an input: under `out`
    when that lies inside `source`, in an earlier run's output folder (one with index.html and inputs/) below
    `source`, or in the inputs/ or reconstructions/ of `source` itself when that is one (its translations, at the
    top, are what a user chaining translations gives)."""
    def is_output(folder: Path) -> bool:
        return (folder / "index.html").is_file() and (folder / "inputs").is_dir()

    if out.resolve().is_relative_to(source.resolve()) and file.resolve().is_relative_to(out.resolve()):
        return True
    relative = file.relative_to(source)
    if len(relative.parts) > 1 and relative.parts[0] in ("inputs", "reconstructions") and is_output(source):
        return True
    return any(is_output(source / folder) for folder in relative.parents if folder != Path("."))


def translate(checkpoint: str, input_dir: str, output_dir: str,
              direction: Literal["a2b", "b2a", "AtoB", "BtoA"] | None = None,
              reconstruct: bool = False, max_images: int | None = None, max_size: int | None = None,
              device: str = "auto") -> Path:
    """Translate every image of a folder with a trained CycleGAN, at full resolution or at most max_size.

    Args:
        checkpoint: a CycleGAN checkpoint (runs/cyclegan/<run>/checkpoints/last.ckpt; a run folder: its last.ckpt;
            `last`: the newest run's in runs/cyclegan), junyanz/pytorch-CycleGAN-and-pix2pix's checkpoints folder
            (`checkpoints/<name>/`: both generators, as its test.py --model cycle_gan), or a generator file of it
            (`latest_net_G_A.pth`, its pretrained `horse2zebra.pth`), which translates in its own direction (a
            G_A or G_B file given the other direction is refused; its G_B/G_A beside it is the way back for
            reconstruct).
        input_dir: folder of .png/.jpg/.jpeg/.bmp/.webp/.tif/.ppm images of any size (grayscale ones become RGB),
            at all depths (not translate's own outputs: output_dir, an earlier run's output folder below
            input_dir, or the inputs/ and reconstructions/ of input_dir when it is one), or one such image.
        output_dir: where <name>.png translations and index.html (inputs beside outputs) are written; not
            input_dir itself (the translations would replace the inputs).
        direction: a2b uses gen_a2b (horse2zebra: horse to zebra), b2a uses gen_b2a; junyanz's AtoB and BtoA are
            the same; null (the default): a2b, or a reference generator file's own direction.
        reconstruct: also translate each output back with the other generator (F(G(x)), the reference test.py's
            rec_A/rec_B) into reconstructions/<name>.png, a third column of the page. Needs both generators: a
            CycleGAN checkpoint, junyanz's checkpoints folder, or a G_A/G_B file with its epoch's other one beside it.
        max_images: only the first N images in sorted order (the reference test.py's --num_test; null: all).
        max_size: scale an image whose longer side is above this down to it, the aspect kept (a phone photo at
            full resolution needs GBs; the reference test.py resizes to --load_size); null: full resolution.
        device: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:1, mps.
    """
    from datamodules.decode import IMAGE_SUFFIXES, UnreadableImageError, image_files, output_names, read_rgb
    from datamodules.download import MissingDataError
    from datamodules.style import resize
    from lightning_modules.inference import check_device, load_checkpoint, or_reference

    device = check_device(device)  # before either reader: a reference file is moved there too
    if max_images is not None:
        require_at_least_one(max_images=max_images)
    if max_size is not None:
        require_at_least_one(max_size=max_size)
    # None: a2b, or a reference generator file's own direction
    given, direction = direction, "a2b" if direction is None else JUNYANZ_DIRECTIONS.get(direction, direction)
    source, out = Path(input_dir), check_output_folder(output_dir, "--output_dir")
    one_image = source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES
    source = source.parent if one_image else source
    # samefile, not only the paths: Photos is photos where the file system ignores case (macOS, Windows)
    if out.resolve() == source.resolve() or (out.is_dir() and source.is_dir() and out.samefile(source)):
        raise UserError(f"--output_dir {output_dir} is the input folder: the translations would replace the inputs "
                        f"of the same name; give another folder")
    for copies in ("inputs", "reconstructions")[:1 + reconstruct]:  # where the inputs are copied, or rebuilt
        if source.resolve().is_relative_to((out / copies).resolve()):
            raise UserError(f"--output_dir {output_dir}: translate writes the {copies} to {out / copies}, which holds "
                            f"the input images ({input_dir}) and would replace them; give another --output_dir")
    fix = "pass a folder of images, or one image, as --input_dir"
    if one_image:
        files = [Path(input_dir)]
    elif source.is_dir():  # at all depths, as the reference's make_dataset and our training folders
        domains = [name for name in ("trainA", "trainB", "testA", "testB") if (source / name).is_dir()]
        if any(name.endswith("A") for name in domains) and any(name.endswith("B") for name in domains):
            side = "A" if direction != "b2a" else "B"
            raise UserError(f"--input_dir {input_dir} is a data set's root ({', '.join(domains)}): both domains "
                            f"would go through one generator; give one domain's folder, as junyanz's test.py reads "
                            f"test{side} for {'AtoB' if side == 'A' else 'BtoA'}: --input_dir {source / f'test{side}'}")
        files = [f for f in image_files([input_dir], fix, recursive=True) if not translate_output(f, source, out)]
    elif not source.exists():
        raise MissingDataError(f"--input_dir {input_dir} not found; {fix}")
    else:
        files = []
    if not files:
        raise MissingDataError(f"no {'/'.join(sorted(IMAGE_SUFFIXES))} images under {input_dir}; {fix}")
    files = files[:max_images]
    # the package's class, not this file's copy under `python -m` (__main__.CycleGAN), which Lightning would
    # refuse for a checkpoint that names lightning_modules.CycleGAN
    from lightning_modules import CycleGAN as Model

    if direction not in ("a2b", "b2a"):
        raise UserError(f"direction must be 'a2b' or 'b2a' (got {direction!r})")
    try:
        model = load_checkpoint(Model, checkpoint, device)
    except UserError as error:  # not a Lightning checkpoint: perhaps the reference's files
        model = reference_model(Model, checkpoint)
        if model is None:
            file = Path(checkpoint) / "latest_net_G.pth" if Path(checkpoint).is_dir() else Path(checkpoint)  # the zoo's
            generate = reference_generator(str(file)) if file.is_file() else None  # download folder, one generator
            back = reference_partner(str(file)) if reconstruct else None
            if generate is None:
                raise or_reference(error, "junyanz's checkpoints folder or a generator file of it (latest_net_G_A.pth)"
                                   ) from None
            own = JUNYANZ_FILE.fullmatch(file.name)
            if given and own and own.group(2) == {"a2b": "G_B", "b2a": "G_A"}[direction]:  # it would translate its
                partner = partner_file(str(file))                                          # own way all the same
                theirs, other = ("A to B", "G_B") if own.group(2) == "G_A" else ("B to A", "G_A")
                raise UserError(f"--direction {given}: {file} is junyanz's {own.group(2)}, which translates {theirs}; "
                                f"give its {other} ({partner}{'' if partner.is_file() else ', not there'}) or the "
                                f"checkpoints folder {file.parent}, or leave --direction out") from None
            if given and direction == "b2a" and not own:  # the zoo's latest_net_G.pth: its model's name says
                print(f"--direction b2a: {file} is one generator, which translates in its own direction (the zoo's "
                      "horse2zebra: horse to zebra, zebra2horse: zebra to horse); --direction is not applied",
                      file=sys.stderr)
            if reconstruct and back is None:
                raise UserError(f"--reconstruct needs both generators, and {checkpoint} holds one (no G_A/G_B file of "
                                "its epoch beside it); give a CycleGAN .ckpt or leave --reconstruct out") from None
            generate, back = generate.to(device), back.to(device) if back is not None else None
            shown = ("the reference generator's own direction" if not own else
                     f"{'a2b' if own.group(2) == 'G_A' else 'b2a'}, junyanz's {own.group(2)}")
        else:
            model, shown = model.to(device), f"{direction}, junyanz's {'G_A' if direction == 'a2b' else 'G_B'}"
    else:
        shown = direction
    if model is not None:
        generate, back = (model.gen_a2b, model.gen_b2a) if direction == "a2b" else (model.gen_b2a, model.gen_a2b)
    rows, not_translated, written = [], [], set()  # not_translated: (file, why: unreadable, too large)
    for file, name in zip(files, output_names(files), strict=True):  # a.jpg and a.png: a_jpg.png and a_png.png
        try:
            image = read_rgb(file).to(device)  # (3, H, W) uint8
        except UnreadableImageError as error:  # one bad file must not cost the others or the page
            not_translated.append((file, str(error)))
            continue
        if max_size and max(image.shape[1:]) > max_size:  # the longer side to max_size, the aspect kept
            height, width = (max(1, round(side * max_size / max(image.shape[1:]))) for side in image.shape[1:])
            image = (resize(image.float() / 255, height, width) * 255).round().to(torch.uint8)
        x = None
        try:
            x = image[None].float() / 127.5 - 1  # [-1, 1], as in training
            with torch.inference_mode():
                y = translated(generate, x)
                # from the output as saved, [-1, 1] floats, as in training's cycle (not from the 8-bit file)
                rec = translated(back, y) if reconstruct else None
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:  # a phone photo at full size on a small GPU, or
            # in a CPU's memory (torch's allocator: "DefaultCPUAllocator: can't allocate memory"): the others may fit
            if not isinstance(error, torch.cuda.OutOfMemoryError) and "can't allocate memory" not in str(error):
                raise
            del x
            if device.type == "cuda":
                torch.cuda.empty_cache()
            not_translated.append((file, f"{file} at {image.shape[2]}x{image.shape[1]} does not fit in {device}'s "
                                         "memory; give --max_size (e.g. 1024: the longer side scaled down to it)"
                                         + (" or --device cpu" if device.type != "cpu" else "")))
            continue
        target = save_png((y[0].float().cpu() + 1) / 2, out / f"{name}.png")
        written.add(target)
        save_png(x[0].cpu() / 2 + 0.5, out / "inputs" / f"{name}.png")
        link = urllib.parse.quote(target.name)  # '#', '?' and '%' in a file name are not a URL's
        cells = [html.escape(str(file.relative_to(source))), f"<img src='inputs/{link}'>", f"<img src='{link}'>"]
        if rec is not None:
            save_png((rec[0].float().cpu() + 1) / 2, out / "reconstructions" / f"{name}.png")
            cells.append(f"<img src='reconstructions/{link}'>")
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    skipped = "".join(f"<li>{html.escape(str(file.relative_to(source)))}: {html.escape(reason)}</li>"
                      for file, reason in not_translated)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(
        f"<html><body><h3>{html.escape(str(checkpoint))}: {shown}</h3><table>"
        f"<tr><th>file</th><th>input</th><th>output</th>{'<th>reconstruction</th>' if reconstruct else ''}</tr>"
        f"{''.join(rows)}</table>"
        + (f"<p>Not translated:</p><ul>{skipped}</ul>" if not_translated else "") + "</body></html>\n")
    print(f"{len(rows)} of {len(files)} images translated ({shown}) into {out}; open {out / 'index.html'}")
    note_earlier_images(out, written)
    if not_translated:
        report_partial_failure(f"could not translate {len(not_translated)}: " + "; ".join(r for _, r in not_translated))
    return out / "index.html"
