"""`keras-ppo train --preset FILE`: a preset file under the explicit flags."""

from __future__ import annotations

from keras_ppo.cli.preset_files import load_preset_file

DEFAULT_ENV_ID = "CartPole-v1"


def apply_preset_file(args, parser) -> None:
    """Fills the options of `args` left unset (None) from `args.preset`.

    The order is: explicit flags, then the file, then the env's built-in
    preset (`keras_ppo.cli.presets`), then the defaults. ENV_ID, when not
    given, is the file's `env_id`, else CartPole-v1.

    Args:
        args: The parsed `train` command line; changed in place.
        parser: The `train` parser, which reports a bad file (exit 2).
    """
    if args.preset is None:
        args.env_id = args.env_id or DEFAULT_ENV_ID
        return
    try:
        preset = load_preset_file(args.preset)
    except ValueError as error:
        parser.error(f"argument --preset: {error}")
    if args.env_id is None:
        args.env_id = preset["env_id"] or DEFAULT_ENV_ID
    elif preset["env_id"] not in (None, args.env_id):
        print(f"Note: {args.preset} was tuned on {preset['env_id']}, not {args.env_id}")
    for name, value in {**preset["run"], **preset["config"]}.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    print(f"Preset {args.preset} (explicit options override it)")


def run_settings(args) -> dict:
    """The run settings `train` uses (`keras_ppo.cli.presets.DEFAULT_RUN` keys):
    the env's built-in preset under the options and the preset file, as
    `presets.make_run` combines them; for the HParams dashboard."""
    from keras_ppo.cli import presets

    settings, _ = presets.preset(args.env_id, args.tf_env)
    for name in settings:
        if getattr(args, name, None) is not None:
            settings[name] = getattr(args, name)
    return settings
