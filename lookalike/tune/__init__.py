"""`lookalike tune`: fine-tune a model's image embedding on labelled images. The settings
import without torch; the trainer loads it when `tune` is first used."""

from importlib import import_module

from lookalike.tune.settings import TuneReport, TuneSettings, check_output

__all__ = ["TuneReport", "TuneSettings", "check_output", "tune"]


def __getattr__(name: str):
    if name == "tune":
        return import_module("lookalike.tune.trainer").tune
    raise AttributeError(f"module 'lookalike.tune' has no attribute {name!r}")
