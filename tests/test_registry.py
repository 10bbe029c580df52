"""The one registry every kind of backend uses: lazy built-ins, duplicate names refused, one error type."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prosocial.canary.base import DETECTORS
from prosocial.errors import ModelError
from prosocial.eval.metrics import METRICS
from prosocial.lm.base import LMS
from prosocial.prost.base import GENERATORS
from prosocial.registry import Registry


class Base:
    name = ""


def test_register_create_and_list():
    registry: Registry[Base] = Registry("widget", {"lazy": "json"})

    @registry.register("plain")
    class Plain(Base):
        def __init__(self, size: int = 1):
            self.size = size

    assert Plain.name == "plain" and registry.create("plain", size=3).size == 3
    assert registry.available() == ["lazy", "plain"] and "lazy" in registry and "nope" not in registry
    with pytest.raises(ModelError, match="unknown widget backend 'nope'; known: lazy, plain"):
        registry.create("nope")


def test_a_name_taken_by_another_class_is_refused():
    registry: Registry[Base] = Registry("widget")

    @registry.register("x")
    class First(Base):
        pass

    registry.register("x")(First)  # the same class again (e.g. a module reload) is fine
    with pytest.raises(ModelError, match="widget backend 'x' is already registered by .*First"):

        @registry.register("x")
        class Second(Base):
            pass


def test_builtins_are_imported_only_when_asked_for():
    code = ("import sys; from prosocial.canary import DETECTORS; "
            "assert 'keywords' in DETECTORS.available() and 'prosocial.canary.baselines' not in sys.modules; "
            "assert DETECTORS.get('keywords').name == 'keywords' and 'prosocial.canary.baselines' in sys.modules; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("registry", [DETECTORS, GENERATORS, LMS, METRICS], ids=lambda r: r.kind)
def test_every_kind_uses_the_registry_with_one_error_type(registry):
    assert registry.available()
    with pytest.raises(ModelError, match=f"unknown {registry.kind} backend 'no-such-backend'"):
        registry.create("no-such-backend")


def test_a_setting_the_backend_does_not_take_is_refused_by_name():
    from prosocial.canary import load_detector

    with pytest.raises(ModelError, match="modle_dir.*its settings: model_dir"):
        load_detector("canary-mini", modle_dir="x")
