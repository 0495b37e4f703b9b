"""Registers keras-ppo's saveable classes with Keras once Keras is imported.

`keras.saving.load_model("agent.keras")` finds custom classes only among the
registered ones: for modules outside Keras' own packages it never imports the
module a saved config names. Registration happens when `keras_ppo.agent.model` is
imported, but `import keras_ppo` is lazy so that the `keras-ppo` command line
answers `--help` without loading TensorFlow. `register_when_keras_loads`
keeps `import keras_ppo; keras.saving.load_model(...)` working: if Keras is
already loaded it registers at once, else it registers right after the
import of Keras (and of TensorFlow, which imports Keras while it loads) has
finished.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# Importing this module registers PPOModel, its networks and its
# normalisation layer (`@keras.saving.register_keras_serializable`).
_REGISTERING_MODULE = "keras_ppo.agent.model"
# TensorFlow imports Keras while it loads, and Keras imports TensorFlow: the
# registration waits until neither import is still running, since
# keras_ppo.agent.model needs both complete.
_WATCHED = ("keras", "tensorflow")
# keras-ppo's own modules are watched too: registering while one of them is
# half-imported (it imported TensorFlow before defining its names) would
# make keras_ppo.agent.model import names that do not exist yet.
_OWN_PREFIX = "keras_ppo."


def _register() -> None:
    importlib.import_module(_REGISTERING_MODULE)


class _Loader(importlib.abc.Loader):
    """Runs the wrapped loader, then tells the finder the module is loaded."""

    def __init__(self, loader, finder: _RegisterAfterImport):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def __getattr__(self, name):
        # Everything else (`get_resource_reader`, `is_package`, ...) is the
        # wrapped loader's, so importlib.resources and friends work as usual.
        return getattr(self._loader, name)

    def exec_module(self, module):
        self._finder.running += 1
        try:
            self._loader.exec_module(module)
        finally:
            self._finder.running -= 1
        self._finder.loaded()


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """A `sys.meta_path` finder wrapping the loaders of Keras and TensorFlow
    so that keras-ppo registers once both have loaded, and no keras-ppo
    module is still loading, then removing itself."""

    def __init__(self):
        self.running = 0

    def find_spec(self, fullname, path, target=None):
        if fullname not in _WATCHED and not fullname.startswith(_OWN_PREFIX):
            return None
        # Find the real spec with the other finders (TensorFlow also calls
        # `importlib.util.find_spec("keras")` without importing it: only an
        # import runs the wrapped loader).
        index = sys.meta_path.index(self)
        for finder in sys.meta_path[index + 1 :]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader, self)
        return spec

    def loaded(self):
        if self.running or "keras" not in sys.modules:
            return
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        _register()


def register_when_keras_loads() -> None:
    """Registers keras-ppo's classes with Keras now if Keras is loaded, else
    as soon as it is."""
    if "keras" in sys.modules:
        _register()
    elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
