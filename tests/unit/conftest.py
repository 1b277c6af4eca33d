import datetime

import pytest

from taskgrant.domain.models import GrantRef, TaskGrantSpec, parse_spec

CREATED = datetime.datetime(2026, 12, 1, 2, 0, tzinfo=datetime.UTC)


@pytest.fixture
def grant() -> GrantRef:
    return GrantRef(namespace="ci", name="release-42", uid="1111-2222", generation=1, created=CREATED)


def make_spec(**overrides: object) -> TaskGrantSpec:
    spec: dict[str, object] = {
        "job": {"name": "release-42"},
        "access": [
            {
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["secrets"],
                        "resourceNames": ["signing-key"],
                        "verbs": ["get"],
                    }
                ]
            }
        ],
    }
    spec.update(overrides)
    return parse_spec(spec)
