"""The systems train.py knows, by the names `--system` takes: one per config file in configs/ (FOLDER); and the model
class a config names."""

import importlib
from pathlib import Path

import yaml

FOLDER = Path(__file__).resolve().parents[1] / "configs"


def systems() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def shipped_class(system: str, part: str) -> str:
    """The class name (without its module) that configs/<system>.yaml gives its `part`: model or data."""
    config = yaml.safe_load((FOLDER / f"{system}.yaml").read_text())
    return (config.get(part) or {}).get("class_path", "").rpartition(".")[2]


def system_of(class_path: str) -> str | None:
    """The --system whose shipped config trains `class_path` (compared by class name), or None."""
    name = class_path.rpartition(".")[2]
    return next((system for system in systems() if shipped_class(system, "model") == name), None)


def describe(model_class: str) -> str:
    """'wgan' for lightning_modules.WGAN (the --system that trains it), else the class path."""
    return system_of(model_class) or model_class


def import_class(class_path: str) -> type:
    """The class a config's class_path names (lightning_modules.WGAN)."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def model_class_of(config) -> str:
    return config.model.class_path if hasattr(config.model, "class_path") else str(config.model)
