import datetime

import pytest
from pydantic import ValidationError

from taskgrant.domain.models import describe_validation_error, format_duration, parse_duration, parse_spec

from .conftest import make_spec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2h0m5s", 7205)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "1d", "-5m", "5m1h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_durations_round_trip() -> None:
    assert format_duration(datetime.timedelta(seconds=5405)) == "1h30m5s"
    assert make_spec(duration="15m").model_dump(by_alias=True)["duration"] == "15m"


def _error(**overrides: object) -> str:
    with pytest.raises(ValidationError) as caught:
        make_spec(**overrides)
    return describe_validation_error(caught.value)


def test_errors_name_the_field() -> None:
    message = _error(access=[{"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}])
    assert message.startswith("spec.access[0].rules[0].verbs: ")
    assert "at least 1 item" in message


def test_unknown_fields_are_refused() -> None:
    assert "spec.access[0].rules[0].nonResourceURLs: Extra inputs are not permitted" in _error(
        access=[
            {
                "rules": [
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "nonResourceURLs": ["/x"]}
                ]
            }
        ]
    )


def test_missing_job_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_spec({"access": [{"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}]})
    assert (
        describe_validation_error(caught.value)
        == "spec: Value error, exactly one of job and jobTemplate must be set"
    )


def test_empty_access_is_refused() -> None:
    assert "access must have at least one entry, unless token.audiences names an external service" in _error(
        access=[]
    )


def test_times_must_be_ordered_and_positive() -> None:
    assert "deadline must be later than notBefore" in _error(
        notBefore="2026-12-01T03:00:00Z", deadline="2026-12-01T02:00:00Z"
    )
    assert "duration must be longer than 0s" in _error(duration="0s")


def test_naive_times_are_refused() -> None:
    assert "spec.deadline: " in _error(deadline="2026-12-01T03:00:00")


def test_names_must_be_dns_names() -> None:
    assert "spec.job.name: " in _error(job={"name": "Release_42"})
    assert "spec.access[0].namespace: " in _error(
        access=[
            {"namespace": "Bad NS", "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
        ]
    )


TEMPLATE = {
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}]}}}
}


def test_job_and_job_template_exclude_each_other() -> None:
    assert "exactly one of job and jobTemplate must be set" in _error(jobTemplate=TEMPLATE)


def test_token_needs_a_job_template() -> None:
    assert "token needs jobTemplate" in _error(token={"audiences": ["tickets"]})


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ({"expirationSeconds": 3607}, "3607 is refused: API servers silently extend it to a year"),
        (
            {"expirationSeconds": 599},
            "spec.token.expirationSeconds: Input should be greater than or equal to 600",
        ),
        (
            {"expirationSeconds": 86401},
            "spec.token.expirationSeconds: Input should be less than or equal to 86400",
        ),
        ({"mountPath": "relative"}, "spec.token.mountPath: String should match pattern"),
    ],
)
def test_token_limits(token: dict[str, object], message: str) -> None:
    assert message in _error(job=None, jobTemplate=TEMPLATE, token=token)


def test_external_audience_grants_may_have_no_rules() -> None:
    spec = make_spec(
        job=None,
        jobTemplate=TEMPLATE,
        access=[],
        token={"audiences": ["tickets.example.com"]},
        context={"caseId": "4711"},
    )
    assert spec.access == [] and spec.context == {"caseId": "4711"}
    assert spec.effective_token.expiration_seconds == 600


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        ({"serviceAccountName": "admin"}, "jobTemplate sets serviceAccountName"),
        ({"serviceAccount": "admin"}, "jobTemplate sets serviceAccount"),
        ({"containers": []}, "containers must list at least one container"),
        (
            {"volumes": [{"name": "taskgrant-token", "emptyDir": {}}]},
            "already has a volume named taskgrant-token",
        ),
        (
            {
                "initContainers": [
                    {
                        "name": "init",
                        "image": "x",
                        "volumeMounts": [
                            {"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount/"}
                        ],
                    }
                ]
            },
            "jobTemplate initContainers init already mounts sa at /var/run/secrets/kubernetes.io/"
            "serviceaccount",
        ),
    ],
)
def test_templates_that_would_conflict_are_refused(pod: dict[str, object], message: str) -> None:
    template = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}], **pod}}}}
    assert message in _error(job=None, jobTemplate=template)


def test_a_custom_mount_path_moves_the_conflict_check() -> None:
    mounts = [{"name": "sa", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    template = {
        "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "x", "volumeMounts": mounts}]}}}
    }
    spec = make_spec(job=None, jobTemplate=template, token={"mountPath": "/var/run/secrets/taskgrant"})
    assert spec.effective_token.mount_path == "/var/run/secrets/taskgrant"


def test_an_astronomical_duration_is_a_field_error() -> None:
    assert _error(duration="24000000000h") == (
        "spec.duration: Value error, '24000000000h' is longer than any duration Python can represent"
    )
