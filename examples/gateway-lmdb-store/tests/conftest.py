import pytest

# Detailed assertion messages from the kit's tests (before plugins.conformance is imported).
pytest.register_assert_rewrite("plugins.conformance")
