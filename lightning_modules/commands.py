"""The inference commands, as console scripts (`pip install` puts them on PATH) and as `python -m` modules.

    dl2-wgan-generate CKPT [--out_dir samples]        python -m lightning_modules.wgan generate CKPT ...
    dl2-wgan-fid CKPT REAL_DIR FEATURES                python -m lightning_modules.wgan fid CKPT ...
    dl2-cyclegan-translate --checkpoint CKPT ...       python -m lightning_modules.cyclegan translate ...
    dl2-stylize --content me.jpg --style skrik.jpg     python -m lightning_modules.style_transfer stylize ...

Each runs the package's own functions, so a checkpoint naming lightning_modules.WGAN loads under `python -m` too.
"""

from jsonargparse import CLI


def wgan_generate(args: list[str] | None = None):
    from lightning_modules.wgan import generate
    return CLI(generate, args=args)


def wgan_fid(args: list[str] | None = None):
    from lightning_modules.wgan_fid import fid
    return CLI(fid, args=args)


def cyclegan_translate(args: list[str] | None = None):
    from lightning_modules.cyclegan import translate
    return CLI(translate, as_positional=False, args=args)


def stylize(args: list[str] | None = None):
    from lightning_modules.style_transfer import stylize
    return CLI(stylize, args=args)


def wgan(args: list[str] | None = None):
    """`python -m lightning_modules.wgan {generate,fid} ...`"""
    from lightning_modules.wgan import generate
    from lightning_modules.wgan_fid import fid
    return CLI([generate, fid], args=args)


def cyclegan(args: list[str] | None = None):
    """`python -m lightning_modules.cyclegan translate ...`"""
    from lightning_modules.cyclegan import translate
    return CLI({"translate": translate}, as_positional=False, args=args)


def style_transfer(args: list[str] | None = None):
    """`python -m lightning_modules.style_transfer stylize ...`"""
    from lightning_modules.style_transfer import stylize
    return CLI({"stylize": stylize}, args=args)
