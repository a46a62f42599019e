"""A model's own settings, beside its versions: `<models>/<name>/config.json` (optional; absent = the defaults).

Today it holds the version policy, shaped as Triton's `version_policy` in `config.pbtxt`:

    {"version_policy": {"latest": {"num_versions": 1}}}     the default: the newest version that loads
    {"version_policy": {"latest": {"num_versions": 2}}}     the two newest that load
    {"version_policy": {"all": {}}}                         every version
    {"version_policy": {"specific": {"versions": [1, 3]}}}  exactly these

and, optionally, `{"session_migration": {"vouched_by": "..."}}` (see `SessionMigration`). Unlike Triton, `latest`
counts versions that load: a newest version that fails (bad file, manifest, state layout,
warm-up) is passed over, so the previous one goes on serving. Nothing here imports onnxruntime.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from modelrepo.manifest import ManifestError

CONFIG_FILE = "config.json"


class PolicyError(ManifestError):
    """A `config.json` that cannot be read or does not validate (one line: the file and the first problem)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latest(_Strict):
    num_versions: PositiveInt = 1


class All(_Strict):
    pass


class Specific(_Strict):
    versions: list[PositiveInt] = Field(min_length=1)


class VersionPolicy(_Strict):
    """Exactly one of `latest`, `all`, `specific` (none given: latest 1)."""

    latest: Latest | None = None
    all: All | None = None
    specific: Specific | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        given = [kind for kind in ("latest", "all", "specific") if getattr(self, kind) is not None]
        if len(given) > 1:
            raise ValueError(f"a version policy is one of latest, all, specific; got {', '.join(given)}")
        return self

    def candidates(self, versions: Iterable[int]) -> tuple[list[int], int | None]:
        """The versions to try, newest first, and how many of them should be served (None: all that load)."""
        found = sorted(set(versions), reverse=True)
        if self.specific is not None:
            wanted = set(self.specific.versions)
            return [v for v in found if v in wanted], None
        if self.all is not None:
            return found, None
        return found, (self.latest or Latest()).num_versions

    def describe(self) -> str:
        if self.specific is not None:
            return "specific " + ",".join(str(v) for v in sorted(self.specific.versions))
        if self.all is not None:
            return "all"
        return f"latest {(self.latest or Latest()).num_versions}"


class SessionMigration(_Strict):
    """Live sessions of an old version continue on the newest version's weights instead of finishing on their own,
    where the two manifests' tensors are the same (names, shapes, dtypes, initial values: the server checks that);
    that the state also *means* the same to both (e.g. v2 fine-tuned from v1) is what `vouched_by` vouches for."""

    vouched_by: str = Field(min_length=1, description="who vouches that the versions' state means the same")


class ModelConfig(_Strict):
    version_policy: VersionPolicy = VersionPolicy()
    session_migration: SessionMigration | None = None  # None: a session finishes on the version it started on


def load_model_config(model_dir: Path) -> ModelConfig:
    """The model's `config.json`, or the defaults when there is none; `PolicyError` when it is invalid."""
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        return ModelConfig()
    try:
        return ModelConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read it: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise PolicyError(f"{path}: {where}: {first['msg']}") from None
