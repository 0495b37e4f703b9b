"""rl-zoo3's hyperparameter files (its `hyperparams/ppo.yml`) as presets.

An rl-zoo3 file maps env ids to Stable-Baselines3 `PPO` arguments. An entry
lists only what differs from SB3's defaults, so `translate` starts from
those defaults (`SB3_DEFAULTS`, SB3 2.x's `PPO` and `ActorCriticPolicy`)
and returns a whole preset: nothing of keras-ppo's own preset for the env
leaks into it. What keras-ppo cannot honour is refused by name.

`MlpLstmPolicy` entries (rl-zoo3's `ppo_lstm.yml`, sb3-contrib's
`RecurrentPPO`) become keras-ppo's recurrent model: an LSTM core of
`lstm_hidden_size` units before the MLPs, the critic with its own core
(`enable_critic_lstm=True`, `recurrent_critic`). RecurrentPPO's minibatches
are `batch_size` consecutive steps of one env's rollout, cut where episodes
start; keras-ppo's are sequences of `sequence_length` steps reset where
episodes start, so `sequence_length` is the shorter of `batch_size` and
`n_steps`. One LSTM layer only, and no critic reading the actor's LSTM
(sb3-contrib's `shared_lstm` stops its gradient) or a linear layer
(`enable_critic_lstm=False`): those are refused by name.

`policy_kwargs` is Python in a string (`"dict(net_arch=..., activation_fn=
nn.ReLU)"`) that rl-zoo3 evaluates; here it is parsed, never run: only
`dict(...)`, literals and `nn.<Activation>` names are read.
"""

from __future__ import annotations

import ast
import re

#: SB3's `PPO` defaults, in rl-zoo3's names.
SB3_DEFAULTS = {
    "policy": "MlpPolicy",
    "n_envs": 1,
    "n_steps": 2048,
    "batch_size": 64,
    "n_epochs": 10,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "learning_rate": 3e-4,
    "clip_range": 0.2,
    "clip_range_vf": None,
    "normalize_advantage": True,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "target_kl": None,
    "normalize": False,
    "use_sde": False,
    "sde_sample_freq": -1,
    "policy_kwargs": "dict()",
}
#: `ActorCriticPolicy`'s defaults, in its names.
POLICY_DEFAULTS = {
    "net_arch": [64, 64],
    "activation_fn": "Tanh",
    "log_std_init": 0.0,
    "ortho_init": True,
    "full_std": True,
    "use_expln": False,
    "squash_output": False,
    "share_features_extractor": True,
}
#: What `RecurrentPPO` and `RecurrentActorCriticPolicy` (sb3-contrib 2.x)
#: change in those defaults for an `MlpLstmPolicy` entry.
RECURRENT_DEFAULTS = {"n_steps": 128, "batch_size": 128}
LSTM_DEFAULTS = {
    "lstm_hidden_size": 256,
    "n_lstm_layers": 1,
    "shared_lstm": False,
    "enable_critic_lstm": True,
}
#: torch.nn activations with a Keras activation of the same function.
ACTIVATIONS = {
    "Tanh": "tanh",
    "ReLU": "relu",
    "ELU": "elu",
    "GELU": "gelu",
    "SiLU": "silu",
    "Sigmoid": "sigmoid",
    "Softplus": "softplus",
}
#: rl-zoo3 keys with the same meaning in keras-ppo: (section, name).
_SAME = {
    "n_envs": ("run", "num_envs"),
    "n_steps": ("config", "num_steps"),
    "n_epochs": ("config", "update_epochs"),
    "gamma": ("config", "gamma"),
    "gae_lambda": ("config", "gae_lambda"),
    "ent_coef": ("config", "ent_coef"),
    # SB3's value loss is the plain mean squared error, as keras-ppo's.
    "vf_coef": ("config", "vf_coef"),
    "clip_range_vf": ("config", "clip_value"),
    "normalize_advantage": ("config", "normalize_advantages"),
    "target_kl": ("config", "target_kl"),
    "max_grad_norm": ("run", "max_grad_norm"),
    "use_sde": ("model", "use_sde"),
    "sde_sample_freq": ("model", "sde_sample_freq"),
}
_READ = {"policy", "n_timesteps", "batch_size", "learning_rate", "clip_range"}
_READ |= {"normalize", "policy_kwargs"}


def is_zoo_file(data: dict) -> bool:
    """Whether a preset file's mapping is rl-zoo3's (env ids to entries)
    rather than keras-ppo's (`env_id`, `run`, `config`, `model`)."""
    own = {"env_id", "run", "config", "model", "comment"}
    return bool(data) and not set(data) & own


def zoo_entry(data: dict, env_id: str | None, where: str) -> tuple[str, dict]:
    """`(name, entry)` of `env_id` in an rl-zoo3 file: its own entry, else
    that of its v4 or v3 name (rl-zoo3 tunes MuJoCo on those); the only
    entry when `env_id` is None.

    Raises:
        ValueError: If there is no such entry (naming the ones there are).
    """
    if env_id is None:
        if len(data) == 1:
            return next(iter(data.items()))
        raise ValueError(
            f"{where} holds rl-zoo3 entries for {sorted(data)}; name the env id"
        )
    names = [env_id] + [re.sub(r"-v\d+$", f"-v{v}", env_id) for v in (4, 3)]
    for name in names:
        if isinstance(data.get(name), dict):
            return name, data[name]
    raise ValueError(
        f"{where} has no rl-zoo3 entry for {env_id} (nor {names[1:]}). "
        f"Entries: {sorted(data)}"
    )


def translate(entry: dict, where: str) -> dict:
    """An rl-zoo3 PPO entry as keras-ppo's preset sections.

    Returns:
        `{"run": ..., "config": ..., "model": ...}`, complete for every
        setting SB3 has.

    Raises:
        ValueError: For a key or value keras-ppo cannot honour, named.
    """
    unknown = sorted(set(entry) - set(_SAME) - _READ)
    if unknown:
        raise ValueError(
            f"keras-ppo cannot honour the rl-zoo3 keys {unknown} of {where}. "
            f"It reads {sorted(set(_SAME) | _READ)}"
        )
    policy = entry.get("policy", SB3_DEFAULTS["policy"])
    if policy not in ("MlpPolicy", "MlpLstmPolicy"):
        raise ValueError(
            f"keras-ppo reads rl-zoo3's MlpPolicy and MlpLstmPolicy entries. "
            f"Received: policy={policy!r} in {where}"
        )
    recurrent = policy == "MlpLstmPolicy"
    values = {**SB3_DEFAULTS, **(RECURRENT_DEFAULTS if recurrent else {}), **entry}
    sections = {"run": {}, "config": {}, "model": {}}
    for key, (section, name) in _SAME.items():
        sections[section][name] = values[key]
    run, config = sections["run"], sections["config"]
    if "n_timesteps" in values:
        run["total_timesteps"] = int(float(values["n_timesteps"]))
    # SB3 splits a rollout into batch_size slices, the whole rollout when
    # batch_size exceeds it.
    rollout = int(values["n_steps"]) * int(values["n_envs"])
    config["minibatch_size"] = min(int(values["batch_size"]), rollout)
    run["learning_rate"], run["anneal_lr"] = _schedule(
        "learning_rate", values["learning_rate"], where
    )
    config["clip_ratio"], run["anneal_clip_ratio"] = _schedule(
        "clip_range", values["clip_range"], where
    )
    observations, rewards = _normalize(values["normalize"], where)
    config["normalize_observations"] = observations
    config["normalize_rewards"] = rewards
    run["network"] = "mlp"
    _policy(values["policy_kwargs"], where, run, sections["model"], recurrent)
    if recurrent:
        config["sequence_length"] = min(config["minibatch_size"], values["n_steps"])
        _check_sequences(config, where)
    return sections


def _schedule(key, value, where) -> tuple[float, bool]:
    """`(initial value, annealed linearly to 0)` of a number or `lin_<x>`."""
    if isinstance(value, str):
        match = re.fullmatch(r"lin_(.+)", value)
        text = match.group(1) if match else value
        try:
            return float(text), match is not None
        except ValueError:
            pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), False
    raise ValueError(
        f"`{key}` must be a number or 'lin_<number>' (a linear schedule to 0). "
        f"Received: {key}={value!r} in {where}"
    )


def _normalize(value, where) -> tuple[bool, bool]:
    """`(observations, rewards)` normalised under rl-zoo3's `normalize`: a
    bool, or VecNormalize's `norm_obs`/`norm_reward` as a dict (or its
    string)."""
    if isinstance(value, bool):
        return value, value
    try:
        options = ast.literal_eval(value) if isinstance(value, str) else value
    except (ValueError, SyntaxError):
        options = None
    if not isinstance(options, dict) or set(options) - {"norm_obs", "norm_reward"}:
        raise ValueError(
            "`normalize` must be a bool or a dict of norm_obs and norm_reward "
            f"(VecNormalize's other options are not honoured). Received: "
            f"normalize={value!r} in {where}"
        )
    return bool(options.get("norm_obs", True)), bool(options.get("norm_reward", True))


def _policy(text, where, run, model, recurrent=False) -> None:
    """Reads `policy_kwargs` into the run's `init_log_std` and the model's
    `hidden_sizes`, `activation`, `ortho_init` and `full_std` (and its
    recurrent core for an `MlpLstmPolicy`)."""
    kwargs = parse_policy_kwargs(text, where)
    defaults = {**POLICY_DEFAULTS, **(LSTM_DEFAULTS if recurrent else {})}
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(
            f"keras-ppo cannot honour the policy_kwargs {unknown} of {where}. "
            f"It reads {sorted(defaults)}"
        )
    kwargs = {**defaults, **kwargs}
    if recurrent:
        _lstm(kwargs, where, model)
    for name in ("use_expln", "squash_output"):
        if kwargs[name]:
            raise ValueError(f"keras-ppo cannot honour {name}=True of {where}")
    if not kwargs["share_features_extractor"]:
        raise ValueError(
            f"keras-ppo's trunks share the observation encoder; {where} sets "
            "share_features_extractor=False"
        )
    activation = kwargs["activation_fn"]
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation_fn=nn.{activation} of {where} has no Keras twin here; "
            f"keras-ppo reads nn.{', nn.'.join(ACTIVATIONS)}"
        )
    model["activation"] = ACTIVATIONS[activation]
    model["hidden_sizes"] = _net_arch(kwargs["net_arch"], where)
    model["ortho_init"] = bool(kwargs["ortho_init"])
    model["full_std"] = bool(kwargs["full_std"])
    run["init_log_std"] = float(kwargs["log_std_init"])


def _lstm(kwargs, where, model) -> None:
    """The model's recurrent core from `RecurrentActorCriticPolicy`'s
    arguments, refusing those keras-ppo's core does not mean."""
    if kwargs["n_lstm_layers"] != 1:
        raise ValueError(
            f"keras-ppo's recurrent core is one LSTM layer; {where} sets "
            f"n_lstm_layers={kwargs['n_lstm_layers']!r}"
        )
    if kwargs["shared_lstm"] or not kwargs["enable_critic_lstm"]:
        raise ValueError(
            "keras-ppo's critic has its own LSTM (enable_critic_lstm=True, "
            "shared_lstm=False); sb3-contrib's shared_lstm (the actor's LSTM, "
            "its gradient stopped) and enable_critic_lstm=False (a linear "
            f"layer) have no twin here. Received: shared_lstm="
            f"{kwargs['shared_lstm']!r}, enable_critic_lstm="
            f"{kwargs['enable_critic_lstm']!r} in {where}"
        )
    units = kwargs["lstm_hidden_size"]
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise ValueError(f"Cannot read lstm_hidden_size={units!r} of {where}")
    model["recurrent"] = "lstm"
    model["recurrent_units"] = units
    model["recurrent_critic"] = True


def _check_sequences(config, where) -> None:
    """Refuses a `batch_size` whose sequences keras-ppo cannot cut evenly."""
    length, minibatch = config["sequence_length"], config["minibatch_size"]
    if config["num_steps"] % length or minibatch % length:
        raise ValueError(
            f"The longer of an MlpLstmPolicy entry's batch_size ({minibatch}, "
            f"capped at the rollout) and n_steps ({config['num_steps']}) must "
            f"be a multiple of the shorter (keras-ppo's sequence length) in "
            f"{where}"
        )


def _net_arch(net_arch, where) -> tuple:
    """One `hidden_sizes` from `[sizes]`, `dict(pi=, vf=)` or SB3 1.x's
    `[dict(pi=, vf=)]`, when the policy and value sizes agree."""
    if isinstance(net_arch, list) and len(net_arch) == 1:
        if isinstance(net_arch[0], dict):
            net_arch = net_arch[0]
    if isinstance(net_arch, dict):
        if set(net_arch) != {"pi", "vf"} or net_arch["pi"] != net_arch["vf"]:
            raise ValueError(
                "keras-ppo's policy and value MLPs have the same hidden sizes; "
                f"net_arch={net_arch!r} of {where} differs or lacks pi/vf"
            )
        net_arch = net_arch["pi"]
    if not isinstance(net_arch, list) or not all(
        isinstance(size, int) for size in net_arch
    ):
        raise ValueError(f"Cannot read net_arch={net_arch!r} of {where}")
    return tuple(net_arch)


def parse_policy_kwargs(text, where) -> dict:
    """rl-zoo3's `policy_kwargs` string (or dict) as a dict, torch.nn names
    as their class name (`nn.ReLU` -> `"ReLU"`), without evaluating it.

    Raises:
        ValueError: For anything but `dict(...)`, literals and `nn.<Name>`.
    """
    if isinstance(text, dict):
        return text
    try:
        value = _read_node(ast.parse(str(text).strip(), mode="eval").body)
    except (SyntaxError, ValueError) as error:
        raise ValueError(
            f"Cannot read policy_kwargs={text!r} of {where}: only dict(...), "
            f"literals and nn.<Activation> are read ({error})"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"policy_kwargs of {where} is not a dict: {text!r}")
    return value


def _read_node(node):
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {kw.arg: _read_node(kw.value) for kw in node.keywords}
        raise ValueError(f"a call of {ast.unparse(node.func)}")
    if isinstance(node, ast.Attribute):
        if ast.unparse(node.value) in ("nn", "th.nn", "torch.nn"):
            return node.attr
        raise ValueError(f"the name {ast.unparse(node)}")
    if isinstance(node, ast.Dict):
        pairs = zip(node.keys, node.values, strict=True)
        return {ast.literal_eval(key): _read_node(value) for key, value in pairs}
    if isinstance(node, ast.List | ast.Tuple):
        return [_read_node(element) for element in node.elts]
    return ast.literal_eval(node)
