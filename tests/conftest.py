import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `after_integration` check what the integration tests recorded: run them last."""
    items.sort(key=lambda item: item.get_closest_marker("after_integration") is not None)
