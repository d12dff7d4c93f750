"""One error tree: every exception class Nudgeflow defines has a layer's class, under one root."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import nudgeflow
from nudgeflow import errors
from nudgeflow.channels.base import ChannelError, PermanentError
from nudgeflow.content.templates import TemplateError
from nudgeflow.ingest.errors import IngestError
from nudgeflow.model.events import InvalidEvent, InvalidPayload
from nudgeflow.settings import ConfigError
from nudgeflow.store.group_commit import WriterStopped
from nudgeflow.store.journeys import JourneyNotFound

LAYERS = {
    "model": errors.ModelError,
    "store": errors.StoreError,
    "content": errors.ContentError,
    "channels": errors.DeliveryError,
    "runtime": errors.EngineRuntimeError,
    "ingest": errors.IntakeError,
    "web": errors.WebError,
}
# Modules that are a layer of their own, with their one class straight under the root.
SINGLE = {"nudgeflow.settings": "ConfigError", "nudgeflow.demo": "DemoError"}
# The channel's errors that content raises today (content/push_render.py's PayloadTooLarge is a
# PermanentError): the channels helper gives content errors of its own.
CROSSING = {("nudgeflow.content.push_render", "PayloadTooLarge")}


def _defined_exceptions() -> list[tuple[str, type[BaseException]]]:
    found = []
    for info in pkgutil.walk_packages(nudgeflow.__path__, "nudgeflow."):
        if ".migrations" in info.name or info.name.endswith(".__main__"):
            continue  # migrations are Alembic's; importing a __main__ runs the command
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found.append((info.name, value))
    return found


def test_every_exception_is_under_its_layer() -> None:
    wrong = []
    for module, cls in _defined_exceptions():
        if module == "nudgeflow.errors":
            continue
        if SINGLE.get(module) == cls.__name__:
            expected: type[BaseException] = errors.NudgeflowError
        elif (module, cls.__name__) in CROSSING:
            expected = errors.DeliveryError
        else:
            layer = module.split(".")[1]
            expected = LAYERS.get(layer, errors.NudgeflowError)
        if not issubclass(cls, expected):
            wrong.append(f"{module}.{cls.__name__} is not a {expected.__name__}")
    assert wrong == []


def test_layers_are_under_the_root() -> None:
    for layer in LAYERS.values():
        assert issubclass(layer, errors.NudgeflowError)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ConfigError, ValueError),
        (InvalidEvent, ValueError),
        (TemplateError, ValueError),
        (JourneyNotFound, ValueError),
        (WriterStopped, RuntimeError),
    ],
)
def test_former_builtin_parents_still_catch(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, builtin)


def test_http_flavoured_names_left_the_model() -> None:
    assert issubclass(InvalidPayload, errors.ModelError)
    assert issubclass(IngestError, errors.IntakeError)
    assert issubclass(PermanentError, ChannelError) and issubclass(ChannelError, errors.DeliveryError)
