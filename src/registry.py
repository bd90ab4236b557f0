"""One registry per kind of thing (target tasks, source kinds, archs, classifiers, estimators, optimisers): a name ->
entry mapping that refuses a second entry under a taken name (as torchvision's `register_model` does), so two
modules can never silently shadow each other's entry, and that answers an unknown name with the one-line
`ConfigError` naming the config key and the valid names. A leaf module (no torch).
"""

from __future__ import annotations

from typing import Any, Iterator, TypeVar

from src.errors import ConfigError

T = TypeVar("T")


class Registry(dict):
    """`name -> entry` for one config key (e.g. `arch`); `register` / `registry[name] = entry` refuse duplicates."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__()
        self.key, self.what = key, what  # e.g. "arch", "archs": for the error messages

    def __setitem__(self, name: str, entry: Any) -> None:
        if name in self:
            raise ValueError(f"{self.key}={name!r} is already registered; pick another name")
        super().__setitem__(name, entry)

    def register(self, name: str, entry: T) -> T:
        self[name] = entry
        return entry

    def unregister(self, name: str) -> Any:
        """Remove an entry (a test's own registration, once the test is done)."""
        return super().pop(name)

    def get_valid(self, name: Any) -> Any:
        """The entry, or a ConfigError naming `key=name` and every valid name."""
        if name not in self:
            raise ConfigError(f"{self.key}={name!r} is unknown; valid {self.what}: {', '.join(self)}")
        return self[name]

    # dict's bulk writes would bypass the duplicate check
    def update(self, *args: Any, **kwargs: Any) -> None:
        for name, entry in dict(*args, **kwargs).items():
            self[name] = entry

    def setdefault(self, *args: Any) -> Any:  # pragma: no cover - not used
        raise TypeError("use register()")

    def names(self) -> Iterator[str]:
        return iter(self)


def extension_modules(value: Any) -> list[str]:
    """The module names of an `extensions` value: the config's list, one name (`extensions=mypkg.ext`), or a
    listing command's argument text (`[mypkg.a, mypkg.b]`)."""
    if isinstance(value, str):
        return [m.strip() for m in value.strip("[]").split(",") if m.strip()]
    return [str(m) for m in value or []]


def import_extensions(value: Any) -> None:
    """Import the user's modules that register entries (the config's `extensions`): every process that checks a
    config does this first (src.check.validate), so a sweep's planner and its jobs (joblib workers, SLURM tasks)
    know the same entries. A module that does not import is one line naming it."""
    import importlib

    for name in extension_modules(value):
        try:
            importlib.import_module(str(name))
        except Exception as e:  # noqa: BLE001  (whatever the user's module raises, named in one line)
            raise ConfigError(f"extensions: cannot import {name!r} ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]})") from None
