"""Observation keys only the critic sees (`PPOModel(critic_only_keys=...)`).

A centralised critic (MAPPO: Yu et al. 2022, "The Surprising Effectiveness
of PPO in Cooperative Multi-Agent Games") or a privileged, asymmetric
critic (Pinto et al. 2018, "Asymmetric Actor Critic for Image-Based Robot
Learning") values a state from more than the actor may act on: the env's
global state, a simulator's ground truth. Those entries are top-level keys
of a `Dict` observation; the actor's encoder never reads them, the value
trunk reads the actor's features joined with theirs. So rollouts and
updates carry the whole observation, while acting (`predict_action`,
deterministic or not) and every export take the observation without them
(the model's `actor_layout`).
"""

from __future__ import annotations

from gymnasium import spaces

from keras_ppo.core.structure import ObservationLayout


def check_critic_only_keys(name: str, keys) -> tuple:
    """Returns `keys` as a tuple of distinct non-empty strs.

    Raises:
        TypeError: Unless `keys` is a list or tuple of strs.
        ValueError: For an empty or repeated key.
    """
    if isinstance(keys, str) or not isinstance(keys, (list, tuple)):
        raise TypeError(
            f"`{name}` must be a tuple of observation keys, e.g. "
            f"('global_state',). Received: {name}={keys!r}"
        )
    for key in keys:
        if not isinstance(key, str) or not key:
            raise TypeError(
                f"`{name}` must hold non-empty strs. Received: {name}={keys!r}"
            )
    if len(set(keys)) != len(keys):
        raise ValueError(f"`{name}` repeats a key. Received: {name}={keys!r}")
    return tuple(keys)


def split_layout(
    layout: ObservationLayout,
    critic_only_keys,
    shared_trunk,
    recurrent,
    policy_network=None,
    value_network=None,
):
    """`(actor_layout, critic_layout)` of a model's inputs: the actor's
    (the observation without `critic_only_keys`; `layout` itself when there
    are none) and the critic-only keys' (None when there are none).

    Raises:
        ValueError: If the observation is not a `Dict` with every key, a key
            is the action mask, no feature would be left to the actor, or
            `shared_trunk` or `recurrent` would feed the critic's keys to
            the actor, or the value trunk would be a copy of a
            `policy_network` whose input size is fixed (the critic reads
            more features than the actor; pass `value_network`).
    """
    if not critic_only_keys:
        return layout, None
    space = layout.observation_space
    received = f"Received: critic_only_keys={critic_only_keys!r}"
    if not isinstance(space, spaces.Dict):
        raise ValueError(
            f"`critic_only_keys` name keys of a Dict observation. {received} "
            f"with observation_space={space}"
        )
    missing = [key for key in critic_only_keys if key not in space.spaces]
    if missing:
        raise ValueError(
            f"The observation has no key {missing[0]!r} of `critic_only_keys`; "
            f"its keys are {list(space.spaces)}. {received}"
        )
    if layout.mask_key in critic_only_keys:
        raise ValueError(
            f"{layout.mask_key!r} holds the action masks, which the actor "
            f"needs; it cannot be critic-only. {received}"
        )
    if shared_trunk or recurrent is not None:
        raise ValueError(
            "`critic_only_keys` needs separate feed-forward actor and critic "
            "trunks (a shared trunk or recurrent core would feed the critic's "
            f"keys to the actor). {received} with shared_trunk={shared_trunk}, "
            f"recurrent={recurrent!r}"
        )
    own = {k: s for k, s in space.spaces.items() if k not in critic_only_keys}
    nothing_left = ValueError(
        "`critic_only_keys` would leave the actor no observation to act "
        f"on; its keys are {list(space.spaces)}. {received}"
    )
    if not own:
        raise nothing_left
    if value_network is None and _fixed_input(policy_network):
        raise ValueError(
            "The value trunk reads the actor's features and the critic-only "
            "keys', more than the `policy_network` it would copy takes (its "
            f"input shape is fixed); pass a `value_network` too. {received}"
        )
    actor = ObservationLayout(
        spaces.Dict(own),
        layout.action_space,
        mask_key=layout.mask_key,
        info_mask=layout.info_mask,
        mask_as_feature=layout.mask_key in layout.feature_keys,
    )
    if not actor.feature_keys:
        raise nothing_left
    critic = ObservationLayout(
        spaces.Dict({key: space.spaces[key] for key in critic_only_keys}),
        layout.action_space,
    )
    return actor, critic


def _fixed_input(network) -> bool:
    """Whether `network` is a Keras model built for one input shape."""
    try:
        return bool(getattr(network, "inputs", None))
    except (AttributeError, ValueError):
        return False
