"""Who asked and who approved: one identity, as the API server authenticated it.

The admission webhook stamps it from an AdmissionReview's userInfo onto annotations; the operator,
the webhook and the kubectl plugin read it back from there. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Identity:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    @classmethod
    def from_userinfo(cls, userinfo: Mapping[str, Any]) -> Identity:
        """AdmissionReview request.userInfo, as the API server sends it."""
        return cls(
            username=str(userinfo.get("username") or ""),
            uid=str(userinfo.get("uid") or ""),
            groups=tuple(str(group) for group in userinfo.get("groups") or ()),
        )

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any], keys: Sequence[str]) -> Identity | None:
        """The identity stamped under `keys` (username, uid, JSON list of groups); None if there is none,
        and then nothing about who asked can be trusted."""
        username_key, uid_key, groups_key = keys
        username = annotations.get(username_key)
        if not isinstance(username, str) or not username:
            return None
        try:
            groups = json.loads(annotations.get(groups_key) or "[]")
        except (TypeError, ValueError):
            groups = []
        uid = annotations.get(uid_key)
        return cls(
            username=username,
            uid=uid if isinstance(uid, str) else "",
            groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        )

    @classmethod
    def stamped_on(cls, obj: Mapping[str, Any], keys: Sequence[str]) -> Identity | None:
        """`from_annotations` of an object's metadata.annotations."""
        meta = obj.get("metadata")
        annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
        return cls.from_annotations(annotations if isinstance(annotations, Mapping) else {}, keys)

    def annotations(self, keys: Sequence[str]) -> dict[str, str]:
        username_key, uid_key, groups_key = keys
        return {username_key: self.username, uid_key: self.uid, groups_key: json.dumps(list(self.groups))}

    def same_person(self, other: Identity) -> bool:
        """Same username, or same uid where both are known (a uid survives a renamed account)."""
        return self.username == other.username or bool(self.uid and self.uid == other.uid)

    def describe(self) -> str:
        """alice (uid 42; groups dev, ops): how the plugin shows it."""
        details = [f"uid {self.uid}"] if self.uid else []
        if self.groups:
            details.append("groups " + ", ".join(self.groups))
        return f"{self.username} ({'; '.join(details)})" if details else self.username
