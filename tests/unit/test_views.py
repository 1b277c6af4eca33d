import asyncio

from taskgrant.k8s.views import WatchedIndices

# kopf's indices map each key to a store of the values objects contributed: one object per name here.
POLICY = {"metadata": {"name": "ci"}, "spec": {"namespaceSelector": {}}}


def test_watched_indices_read_like_the_api() -> None:
    view = WatchedIndices(
        {"ci": [POLICY], "other": [{"metadata": {"name": "other"}}]},
        {"team-a": [{"tier": "prod"}], "team-b": [{}]},
    )
    assert asyncio.run(view.policies()) == [POLICY, {"metadata": {"name": "other"}}]
    # Absent namespaces are left out, as the API's 404s are.
    assert asyncio.run(view.namespace_labels(["team-a", "team-b", "gone"])) == {
        "team-a": {"tier": "prod"},
        "team-b": {},
    }


def test_watched_indices_when_empty() -> None:
    view = WatchedIndices({}, {})
    assert asyncio.run(view.policies()) == []
    assert asyncio.run(view.namespace_labels(["team-a"])) == {}
