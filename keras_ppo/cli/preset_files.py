"""Preset files: tuned hyperparameters for one env as JSON (or YAML).

`keras-ppo tune` writes the best trial as one; `keras-ppo train --preset
FILE` reads it, with explicit flags overriding it. The layout mirrors an
entry of `keras_ppo.cli.presets.PRESETS`:

```json
{
  "env_id": "CartPole-v1",
  "run": {"num_envs": 8, "total_timesteps": 100000, "learning_rate": 0.001},
  "config": {"num_steps": 32, "minibatch_size": 256, "gamma": 0.98}
}
```

`run` takes the keys of `keras_ppo.cli.presets.DEFAULT_RUN`, `config` the fields
of `PPOConfig`; every key is optional.
"""

from __future__ import annotations

import json
import os

from keras_ppo.cli import presets

_SECTIONS = {"env_id", "run", "config", "comment"}


def read_structured(path: str | os.PathLike) -> dict:
    """The mapping in a JSON file, or a YAML one (`.yml`/`.yaml`, PyYAML).

    Raises:
        ValueError: If the file is missing, malformed or not a mapping.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        raise ValueError(f"Cannot read {path!r}: {error.strerror}") from None
    try:
        if path.endswith((".yml", ".yaml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise ValueError(
            f"Reading YAML needs PyYAML (pip install pyyaml). Received: {path!r}"
        ) from None
    except Exception as error:  # json and yaml raise their own error types
        raise ValueError(f"Cannot parse {path!r}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"Expected a mapping at the top of {path!r}. Received: "
            f"{type(data).__name__}"
        )
    return data


def load_preset_file(path: str | os.PathLike) -> dict:
    """Reads and checks a preset file.

    Returns:
        `{"env_id": str | None, "run": dict, "config": dict}`.

    Raises:
        ValueError: If the file cannot be read or holds unknown keys.
    """
    data = read_structured(path)
    unknown = sorted(set(data) - _SECTIONS)
    if unknown:
        raise ValueError(
            f"Unknown sections {unknown} in preset file {os.fspath(path)!r}. "
            f"Expected some of {sorted(_SECTIONS)}"
        )
    allowed = {
        "run": set(presets.DEFAULT_RUN),
        "config": {field.name for field in presets.config_fields()},
    }
    for section, names in allowed.items():
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(
                f"Expected a mapping for {section!r} in {os.fspath(path)!r}. "
                f"Received: {values!r}"
            )
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"Unknown {section} keys {unknown} in preset file "
                f"{os.fspath(path)!r}. Expected some of {sorted(names)}"
            )
    env_id = data.get("env_id")
    if env_id is not None and not isinstance(env_id, str):
        raise ValueError(f"Expected a string env_id. Received: {env_id!r}")
    return {
        "env_id": env_id,
        "run": dict(data.get("run") or {}),
        "config": dict(data.get("config") or {}),
    }


def write_preset_file(
    path: str | os.PathLike,
    env_id: str,
    run: dict,
    config: dict,
    comment: str | None = None,
) -> None:
    """Writes a preset file `load_preset_file` reads back (JSON)."""
    data = {"env_id": env_id, "run": run, "config": config}
    if comment:
        data = {"comment": comment, **data}
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
