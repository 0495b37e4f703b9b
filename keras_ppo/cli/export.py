"""`keras-ppo export PATH --format onnx`: a saved agent's policy for serving."""

from __future__ import annotations

import os

from keras_ppo.cli.agents import _load_agent
from keras_ppo.cli.options import _missing_dependency

# keras_ppo.agent.export.FORMATS (repeated so that `--help` needs no TensorFlow)
# with the suffix each gets after the agent's name by default.
FORMATS = {"tf_saved_model": "_saved_model", "onnx": ".onnx", "litert": ".tflite"}
RUNTIMES = {
    # The loaded object is kept: TensorFlow frees its variables with it, and
    # `tf.saved_model.load(PATH).serve(...)` in one expression fails.
    "tf_saved_model": "policy = tf.saved_model.load(PATH); policy.serve(observations)",
    "onnx": 'onnxruntime.InferenceSession(PATH).run(None, {"observations": ...})',
    "litert": "ai_edge_litert.interpreter.Interpreter(PATH)"
    '.get_signature_runner("serve")(observations=...)',
}


def _add_export_command(commands):
    export = commands.add_parser(
        "export",
        help="export a saved agent's policy (SavedModel, ONNX, LiteRT)",
        description=(
            "Write a saved agent's deterministic policy, observation "
            "normalisation included, for serving without keras-ppo: "
            "observations -> the action to send to the env and the state "
            'value. ONNX needs pip install "keras-ppo[onnx]".'
        ),
    )
    export.add_argument("path", metavar="PATH", help="saved agent (.keras)")
    export.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="tf_saved_model",
        help="tf_saved_model (a directory), onnx or litert (.tflite) "
        "(default: tf_saved_model)",
    )
    export.add_argument(
        "-o",
        "--output",
        default=None,
        help="where to write (default: PATH without .keras, plus _saved_model, "
        ".onnx or .tflite)",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (refused otherwise)",
    )
    export.set_defaults(subparser=export, run=export_command)


def export_command(args, parser) -> int:
    """Exports a saved agent's policy in `args.format`.

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0. A policy the format cannot serve, an output it may
        not replace and missing extras exit 2 (usage errors).
    """
    from keras_ppo.agent.export import check_format, check_output, export_policy

    output = args.output or os.path.splitext(args.path)[0] + FORMATS[args.format]
    # Checked before the agent loads: nothing is written when it is refused.
    try:
        check_output(output, args.format, args.overwrite)
    except FileExistsError:
        parser.error(f"{output} exists; pass --overwrite to replace it")
    except ValueError as error:
        parser.error(f"cannot write {output}: {error}")
    model = _load_agent(args.path, parser)
    try:
        check_format(model, args.format)
    except (TypeError, ValueError) as error:
        parser.error(f"cannot export {args.path} as {args.format}: {error}")
    print(f"Exporting {args.path} as {args.format}...", flush=True)
    try:
        export_policy(model, output, format=args.format, overwrite=args.overwrite)
    except ImportError as error:
        _missing_dependency(parser, error)
    except OSError as error:  # e.g. a read-only or missing parent directory
        parser.error(f"cannot write {output}: {error}")
    except (TypeError, ValueError) as error:
        parser.error(f"cannot export {args.path} as {args.format}: {error}")
    print(f"Wrote {output}; serve it with {RUNTIMES[args.format]}")
    return 0
