"""Griffe extension: a docstring's `Example:` section renders as examples.

keras_ppo's docstrings title the section `Example:`, which Napoleon reads as
Google style's `Examples:` but griffe reads as an admonition of Markdown, so
its `>>>` lines would render as nested block quotes (and a `>>> # comment`
as a heading in the table of contents).
"""

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Renames `Example:` to `Examples:` before the docstring is parsed."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
