"""When the minibatch stream compiles an iteration's updates with XLA by
default: for a long `fit` of a model with vector observations, where the
compilation (about 2 s) pays for itself (benchmarks/README.md, "XLA
updates by default")."""

from __future__ import annotations

#: Updates one `fit` makes from which XLA compiles them by default: XLA saved
#: about 0.38 ms per update of the MLP benchmarks and compiling cost about
#: 2.5 s, so 10,000 updates repay it about one and a half times.
MIN_UPDATES = 10_000
#: The share of the process's memory maps that may be in use: TensorFlow keeps
#: each XLA executable (about 275 maps on CPU) for the life of the process.
MAPS_IN_USE = 0.5


def xla_pays(model, updates: int) -> bool:
    """Whether compiling the updates of `model` (a `PPOModel`) with XLA pays
    for a fit of `updates` updates: at least `MIN_UPDATES`, observations
    that are vectors (image observations feed convolutions, whose XLA
    kernels were not measured faster on CPU), no recurrent core, no Beta
    policy (a `ReferenceKL` penalty samples it in the updates, and XLA
    cannot compile Gamma sampling), and room for another executable's
    memory maps (`memory_maps_left`)."""
    if updates < MIN_UPDATES or model.recurrent:
        return False
    if model.action_distribution == "beta":
        return False
    layout = model.layout
    if any(len(layout.shape(key)) > 1 for key in layout.keys):
        return False
    return memory_maps_left()


def memory_maps_left(
    limit_file="/proc/sys/vm/max_map_count", maps_file="/proc/self/maps"
):
    """Whether the process uses under `MAPS_IN_USE` of the kernel's limit on
    memory maps (True where Linux's files cannot be read)."""
    try:
        with open(limit_file) as file:
            limit = int(file.read())
        with open(maps_file) as file:
            used = sum(1 for _ in file)
    except (OSError, ValueError):
        return True
    return used < MAPS_IN_USE * limit
