"""Generalised state-dependent exploration (gSDE), the maths.

Raffin, Kober and Stulp, 2021, "Smooth Exploration for Robotic
Reinforcement Learning" (CoRL, arXiv:2005.05719), Sec. 3: the action noise
is a function of the state, `eps(s) = z(s) @ E`, with `z(s)` the policy
trunk's latent features `[k]` and `E` an exploration matrix `[k, d]` drawn
entrywise from `N(0, sigma_ij^2)`, `sigma = exp(log_std)`, and held for
several steps. The same state then gets the same noise, so a robot's
actions stay smooth between resamplings.

For one state, `a_j = mu_j + sum_i z_i E_ij` is Gaussian with variance
`sum_i z_i^2 sigma_ij^2`, independently over `j` (the columns of `E` are
independent): log-probabilities and entropy are those of a diagonal
Gaussian with that standard deviation (Stable-Baselines3's
`StateDependentNoiseDistribution` computes the same density), and a fresh
matrix at every step is a sample of it.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.core.distributions import DiagGaussian

#: Added to the variance so that a zero latent keeps a finite log-density
#: (Stable-Baselines3's `epsilon`).
VARIANCE_EPSILON = 1e-6


def state_dependent_log_std(latent, log_std):
    """`[B, d]` log standard deviation of the actions under gSDE.

    `0.5 * log(z^2 @ sigma^2 + VARIANCE_EPSILON)`. The latent's gradient is
    stopped, as in the paper's default and Stable-Baselines3
    (`learn_features=False`): the features learn from the mean only.

    Args:
        latent: `[B, k]` latent features of the policy trunk.
        log_std: `[k, d]` log of the exploration matrix's standard
            deviations.
    """
    variance = tf.matmul(tf.square(tf.stop_gradient(latent)), tf.exp(2.0 * log_std))
    return 0.5 * tf.math.log(variance + VARIANCE_EPSILON)


def exploration_matrices(log_std, batch_size, seed):
    """`[batch_size, k, d]` exploration matrices, entrywise
    `N(0, exp(log_std)^2)` (stateless RNG, `seed` `[2]`)."""
    shape = tf.concat([[batch_size], tf.shape(log_std)], axis=0)
    noise = tf.random.stateless_normal(shape, seed, dtype=log_std.dtype)
    return noise * tf.exp(log_std)


class StateDependentGaussian(DiagGaussian):
    """The action distribution of a gSDE policy on a `Box`.

    `params` are `[batch, 2 * d + k]`: means, the state-dependent log-stds
    (`state_dependent_log_std`), then the latent features `z` the noise is
    made of, so that `explore` needs nothing else. `param_size` counts the
    first `2 * d` (the head outputs the means only). `log_prob`, `entropy`,
    `mode`, `sample` and `to_env` are `DiagGaussian`'s on the first `2 * d`
    (`sample` is a fresh matrix's sample).
    """

    def split(self, params):
        return params[..., : self.size], params[..., self.size : 2 * self.size]

    def latent(self, params):
        """`[batch, k]` latent features."""
        return params[..., 2 * self.size :]

    def explore(self, params, matrices):
        """`[batch, d]` actions `mu + z @ E` with each row's exploration
        matrix `matrices` `[batch, k, d]` (`exploration_matrices`)."""
        mean = self.split(params)[0]
        noise = tf.einsum("bk,bkd->bd", self.latent(params), matrices)
        return mean + noise
