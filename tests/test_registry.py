"""Every registry refuses a second entry under a taken name and answers an unknown name with one line."""

from __future__ import annotations

import pytest

from src.data.tasks import SOURCES, TASKS  # (the entries are registered there)
from src.errors import ConfigError
from src.models.registry import ARCHS
from src.probe.registry import CLASSIFIERS
from src.registry import Registry
from src.transferability.estimators import ESTIMATORS


@pytest.mark.parametrize("registry", [TASKS, SOURCES, ARCHS, CLASSIFIERS, ESTIMATORS],
                         ids=lambda r: r.key)
def test_a_taken_name_is_refused(registry):
    name, entry = next(iter(registry.items()))
    for register in (lambda: registry.register(name, entry), lambda: registry.__setitem__(name, entry),
                     lambda: registry.update({name: entry})):
        with pytest.raises(ValueError, match=f"{registry.key}='{name}' is already registered"):
            register()
    assert registry[name] is entry


def test_unknown_names_list_the_valid_ones():
    reg = Registry("thing", "things")
    reg.register("a", 1)
    reg.register("b", 2)
    with pytest.raises(ConfigError, match="^thing='c' is unknown; valid things: a, b$"):
        reg.get_valid("c")
    assert reg.unregister("a") == 1 and list(reg) == ["b"]
