"""Assertions on error messages shared by the validation tests."""

import re

import pytest


def raises(error, *names):
    """`pytest.raises(error)` whose message must contain every name."""
    pattern = "".join(f"(?=.*{re.escape(str(name))})" for name in names)
    return pytest.raises(error, match=re.compile(pattern, re.DOTALL))
