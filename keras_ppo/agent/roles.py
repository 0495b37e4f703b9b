"""A policy per role in one `PPOModel` (`PPOModel(role_key="role")`).

Policy groups of a multi-agent env (`keras_ppo.rollout.agent_spaces`) give
each agent's observation a one-hot code of its role under `role_key`. The
model keeps one trunk per role on each side (policy, value) and selects
the agent's own: `keras_ppo.agent.networks.PerRole` runs every role's
trunk and zeroes all but the agent's, so gradients reach only its role's
weights; the heads read the trunks' outputs side by side with the role
code, so each role has its own head weights and biases too. Collect,
prepare and update stay the one path for all roles together; acting and
export take the observation with its role code.

What the roles still share: the encoders of the observation (parameter
free, except custom encoders and CNNs), the normalisation statistics and
a state-independent Gaussian log-std (one vector; pass
`state_dependent_std=True` for one per role).
"""

from __future__ import annotations

from gymnasium import spaces


def check_role_key(
    layout, role_key, critic_only_keys, recurrent, policy_network, encoders
):
    """The number of roles of a model whose observations carry a one-hot
    role code under `role_key` (0 when `role_key` is None).

    Raises:
        TypeError: Unless `role_key` is None or a str.
        ValueError: If the observation is not a `Dict` whose top-level
            `role_key` is a 1-D `Box`, the key is the action mask,
            critic-only or has a custom encoder, or the model is recurrent
            or has a custom `policy_network` (not per role yet).
    """
    if role_key is None:
        return 0
    if not isinstance(role_key, str):
        raise TypeError(f"`role_key` must be a str or None. Received: {role_key!r}")
    space = layout.observation_space
    received = f"Received: role_key={role_key!r} with observation_space={space}"
    entry = space.spaces.get(role_key) if isinstance(space, spaces.Dict) else None
    if not (isinstance(entry, spaces.Box) and len(entry.shape) == 1):
        raise ValueError(
            "`role_key` names the top-level entry of a Dict observation that "
            f"holds each agent's one-hot role, a 1-D Box. {received}"
        )
    if role_key == layout.mask_key or role_key in critic_only_keys:
        raise ValueError(
            f"The role entry {role_key!r} must be one the actor reads: not the "
            f"action mask or a critic-only key. {received}"
        )
    if role_key in (encoders or {}):
        raise ValueError(
            f"The trunks read the role entry {role_key!r} as it is (a one-hot "
            f"code); it cannot have a custom encoder. {received}"
        )
    if recurrent is not None or policy_network is not None:
        raise ValueError(
            "A model with a policy per role (`role_key`) has MLP trunks per "
            "role; a recurrent core or a custom `policy_network` is not "
            f"available per role. Received: role_key={role_key!r}, "
            f"recurrent={recurrent!r}, policy_network={policy_network!r}"
        )
    return int(entry.shape[0])
