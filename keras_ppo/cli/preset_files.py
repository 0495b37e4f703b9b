"""Preset files: tuned hyperparameters as JSON (or YAML), and their schema.

The package ships its presets as `keras_ppo/presets/<family>.json`, read by
`load_family`. `keras-ppo tune` writes the best trial as a preset file of
one env and `keras-ppo train --preset FILE` reads it (`load_preset_file`):

```json
{
  "env_id": "CartPole-v1",
  "run": {"num_envs": 8, "total_timesteps": 100000, "learning_rate": 0.001},
  "config": {"num_steps": 32, "minibatch_size": 256, "gamma": 0.98}
}
```

`run` takes the keys of `DEFAULT_RUN`, `config` the fields of `PPOConfig`,
`model` `PPOModel` arguments (network sizes, activation, `ortho_init`,
`use_sde`, ...); every key is optional. `--preset` also reads rl-zoo3's
hyperparameter files (`keras_ppo.cli.zoo_presets`). An entry of a package
file has the same `run`, `config` and `model`, a `source` (where the values
come from) and an optional `note`.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os

from keras_ppo import files

#: Run settings outside PPOConfig, used for any env without a preset.
DEFAULT_RUN = {
    "num_envs": 8,
    "total_timesteps": 200_000,
    "learning_rate": 3e-4,
    "anneal_lr": True,
    "anneal_clip_ratio": False,
    "max_grad_norm": 0.5,
    "init_log_std": 0.0,
    # "mlp" (hidden_sizes, separate trunks) or "nature_cnn" (one Nature CNN
    # trunk shared by the policy and the value, for Atari frames).
    "network": "mlp",
    # PettingZoo Parallel envs: the critic also reads the global state of
    # the agents' env copy, the actor only its own observation (MAPPO).
    "centralised_critic": False,
}
NETWORKS = ("mlp", "nature_cnn")
#: The package's preset files, `keras_ppo/presets/<family>.json`.
FAMILIES = ("gymnasium", "tf_native", "mujoco", "atari", "multi_agent")

_FILE_SECTIONS = {"env_id", "run", "config", "model", "comment"}
_ENTRY_SECTIONS = {"source", "note", "run", "config", "model", "name"}
#: An entry of a package file may hold other presets of its env, by name
#: (e.g. rl-zoo3's tuned values beside CleanRL's), picked with
#: `keras-ppo train ENV --preset NAME`.
_ALTERNATIVES = "alternatives"


def config_fields() -> tuple:
    """PPOConfig's fields (`dataclasses.Field`), for options and checks."""
    from keras_ppo.config import PPOConfig

    return dataclasses.fields(PPOConfig)


def setting_names() -> set[str]:
    """The names of a run's settings: `DEFAULT_RUN` keys and `PPOConfig`
    fields."""
    return set(DEFAULT_RUN) | {field.name for field in config_fields()}


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


def check_entry(data: dict, where: str, sections=_ENTRY_SECTIONS) -> None:
    """Checks one preset: its sections, and the names in `run` and `config`.

    Args:
        data: A preset file's mapping, or an entry of a package file.
        where: What to name in errors (a path, an env id).
        sections: The top-level keys allowed.

    Raises:
        ValueError: For an unknown section or name, or a section that is
            not a mapping.
    """
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ValueError(
            f"Unknown sections {unknown} in preset {where}. Expected some of "
            f"{sorted(sections)}"
        )
    allowed = {
        "run": set(DEFAULT_RUN),
        "config": {field.name for field in config_fields()},
        "model": None,  # PPOModel checks its own arguments
    }
    for section, names in allowed.items():
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(
                f"Expected a mapping for {section!r} in {where}. Received: {values!r}"
            )
        unknown = sorted(set(values) - names) if names is not None else []
        if unknown:
            raise ValueError(
                f"Unknown {section} keys {unknown} in preset {where}. Expected "
                f"some of {sorted(names)}"
            )


def load_family(family: str) -> dict[str, dict]:
    """The presets of `keras_ppo/presets/<family>.json`, by env id, checked.

    Raises:
        ValueError: For an unknown family or an entry `check_entry` refuses.
    """
    if family not in FAMILIES:
        raise ValueError(f"Expected a family in {FAMILIES}. Received: {family!r}")
    name = f"{family}.json"
    data = json.loads(
        (importlib.resources.files("keras_ppo") / "presets" / name).read_text("utf-8")
    )
    if set(data) != {"comment", "presets"}:
        raise ValueError(
            f"Expected the sections comment and presets in {name}. Received: "
            f"{sorted(data)}"
        )
    entries = data["presets"]
    for env_id, entry in entries.items():
        where = f"{env_id!r} of {name}"
        check_entry(entry, where, _ENTRY_SECTIONS | {_ALTERNATIVES})
        others = entry.get(_ALTERNATIVES, {})
        for key, other in others.items():
            check_entry(other, f"{key!r} of {where}")
        for label, preset in [(where, entry), *others.items()]:
            if not isinstance(preset.get("source"), str):
                raise ValueError(f"Preset {label!r} of {where} names no source")
    return entries


def load_preset_file(path: str | os.PathLike, env_id: str | None = None) -> dict:
    """Reads and checks a preset file: keras-ppo's, or rl-zoo3's
    hyperparameter file (`keras_ppo.cli.zoo_presets`), whose entry for
    `env_id` (or its v4/v3 name) it translates.

    Returns:
        `{"env_id": str | None, "run": dict, "config": dict, "model": dict}`.

    Raises:
        ValueError: If the file cannot be read, holds unknown keys, or (an
            rl-zoo3 file) has no entry for `env_id` or one keras-ppo cannot
            honour.
    """
    from keras_ppo.cli import zoo_presets

    data = read_structured(path)
    where = f"file {os.fspath(path)!r}"
    if zoo_presets.is_zoo_file(data):
        name, entry = zoo_presets.zoo_entry(data, env_id, where)
        sections = zoo_presets.translate(entry, f"entry {name!r} of {where}")
        return {"env_id": env_id or name, **sections}
    check_entry(data, where, _FILE_SECTIONS)
    file_env_id = data.get("env_id")
    if file_env_id is not None and not isinstance(file_env_id, str):
        raise ValueError(f"Expected a string env_id. Received: {file_env_id!r}")
    return {
        "env_id": file_env_id,
        "run": dict(data.get("run") or {}),
        "config": dict(data.get("config") or {}),
        "model": dict(data.get("model") or {}),
    }


def write_preset_file(
    path: str | os.PathLike,
    env_id: str,
    run: dict,
    config: dict,
    comment: str | None = None,
) -> None:
    """Writes a preset file `load_preset_file` reads back (JSON), atomically:
    a crash leaves the previous file or the whole new one."""
    data = {"env_id": env_id, "run": run, "config": config}
    if comment:
        data = {"comment": comment, **data}
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(temp_path):
        with open(temp_path, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")

    files.save_atomically(write, path, suffixes=(os.path.splitext(path)[1],))
