"""Which checkpoint sources a server loads for its visitors: a policy for public deployments.

A detector card's *Checkpoint* box takes ``demo``, a local folder or a Hub repo
``org/name@revision``. On a public server that box must not let a visitor probe the server's
file system (paths in error messages, "not a folder" vs "no such folder") nor make it download
any repository of any size. :class:`SourcePolicy` says what is accepted:

- ``allow_local``: local folders (only sensible when the person typing is the operator);
- ``allow_hub``: Hub repos ``org/name``, whole organisations ``org`` or ``org/*``, or ``*`` for
  any (local use only); empty = no Hub sources;
- ``max_download_mb``: the most a checkpoint (``config.json`` + ``model.safetensors``, or the
  index and every shard of a sharded one, + the family's side files) may download, checked from
  the Hub's metadata before anything is fetched (but a sharded checkpoint's small index, read for
  its shards' names once it is counted within the limit).

``demo`` and ``random`` are always accepted. :meth:`SourcePolicy.check` raises a
:class:`SourceRefused` (a :class:`~detectors.errors.CheckpointError`) whose message never echoes
the source and is the same whether a path exists or not. Where local folders are refused, load
failures are also shown as fixed sentences (:func:`neutral_reason`); the full reason is for the
server's log only.

Defaults (:meth:`SourcePolicy.for_server`): *local use* when the app listens on 127.0.0.1,
localhost or ::1 and is not on a Space (``SPACE_ID`` unset): local folders, any Hub repo, 2048 MB.
*Public* otherwise: no local folders, Hub repos of the project's organisation only, 200 MB.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import (
    CheckpointCorrupted,
    CheckpointError,
    CheckpointMismatch,
    CheckpointNotFound,
    UnknownDetector,
    UnsafeCheckpoint,
)
from .file_format import CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from .hub import HUB_ID
from .registry import get_entry, get_family
from .weight_files import parse_index, shard_names

#: The project's own organisation on the Hub: what a public server accepts by default.
PROJECT_ORG = "forgery-lens"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOCAL_MAX_DOWNLOAD_MB = 2048.0
PUBLIC_MAX_DOWNLOAD_MB = 200.0
ALWAYS_ALLOWED = ("demo", "random")
_ORG = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_REVISION = re.compile(r"^[\w.-]+(/[\w.-]+)*$")
_MB = 1024 * 1024


class SourceRefused(CheckpointError):
    """This server does not load that source (its policy); the message is safe to show anyone."""


class SourceNotAllowed(SourceRefused):
    """A local folder where they are refused, or a Hub repo outside the allow-list."""


class DownloadTooLarge(SourceRefused):
    """An allowed Hub repo whose checkpoint is larger than the download limit (or of unknown size)."""


def is_local_host(host: str | None) -> bool:
    """``None`` is Gradio's default, 127.0.0.1."""
    return host is None or host.strip().lower() in LOCAL_HOSTS


def parse_allow_hub(text: str | None) -> tuple[str, ...]:
    """``"org, org2/name"`` -> ``("org", "org2/name")``; raises ``ValueError`` on a malformed entry."""
    entries = []
    for raw in (text or "").replace(";", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry != "*":
            org, _, name = entry.partition("/")
            if not _ORG.match(org) or (name and name != "*" and not HUB_ID.match(entry)):
                raise ValueError(f"{entry!r} is not a Hub organisation or repo id (org, org/*, org/name or *)")
        entries.append(entry)
    return tuple(dict.fromkeys(entries))


@dataclass(frozen=True)
class SourcePolicy:
    allow_local: bool = True
    allow_hub: tuple[str, ...] = ("*",)
    max_download_mb: float = LOCAL_MAX_DOWNLOAD_MB

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def local_use(cls) -> SourcePolicy:
        return cls(True, ("*",), LOCAL_MAX_DOWNLOAD_MB)

    @classmethod
    def public(cls, allow_hub: tuple[str, ...] = (PROJECT_ORG,)) -> SourcePolicy:
        return cls(False, tuple(allow_hub), PUBLIC_MAX_DOWNLOAD_MB)

    @classmethod
    def for_server(cls, host: str | None, space_id: str | None = None, allow_local: bool | None = None,
                   allow_hub: tuple[str, ...] | None = None, max_download_mb: float | None = None) -> SourcePolicy:
        """The defaults for where the app listens, with the operator's explicit choices on top.

        A ``*`` in ``allow_hub`` (any repository) is refused on a public server (``ValueError``).
        """
        local = is_local_host(host) and not space_id
        base = cls.local_use() if local else cls.public()
        hub = base.allow_hub if allow_hub is None else tuple(allow_hub)
        if "*" in hub and not local:
            raise ValueError("'*' (any Hub repository) is only for local use; a public server must name the "
                             "organisations or repositories it loads")
        limit = base.max_download_mb if max_download_mb is None else float(max_download_mb)
        if not limit > 0:
            raise ValueError(f"the download limit must be positive, not {limit}")
        return cls(base.allow_local if allow_local is None else bool(allow_local), hub, limit)

    # ---- what it accepts -----------------------------------------------------------------------
    @property
    def detailed_errors(self) -> bool:
        """Whether load failures may be shown in full (paths included): only where visitors may name
        server folders anyway. Otherwise they are shown as :func:`neutral_reason` sentences."""
        return self.allow_local

    @property
    def any_hub(self) -> bool:
        return "*" in self.allow_hub

    def hub_allowed(self, repo_id: str) -> bool:
        org = repo_id.split("/", 1)[0].lower()
        for entry in self.allow_hub:
            entry = entry.lower()
            if entry == "*" or entry == repo_id.lower() or entry in (org, f"{org}/*"):
                return True
        return False

    def allowed_text(self) -> str:
        """The accepted Hub sources in words, e.g. ``any repository of `forgery-lens```."""
        if not self.allow_hub:
            return "none"
        if self.any_hub:
            return "any repository"
        parts = []
        for entry in self.allow_hub:
            org, _, name = entry.partition("/")
            parts.append(f"any repository of `{org}`" if name in ("", "*") else f"`{entry}`")
        return ", ".join(parts)

    def describe(self, markdown: bool = True) -> str:
        """One sentence for visitors: what this server loads (``markdown=False``: plain text)."""
        text = self._describe()
        return text if markdown else text.replace("`", "")

    def _describe(self) -> str:
        kinds = ["`demo` (the shipped checkpoint)"]
        if self.allow_local:
            kinds.append("a local folder")
        if self.allow_hub:
            which = "any Hub repository" if self.any_hub else f"a Hub repository ({self.allowed_text()})"
            kinds.append(f"{which} as `org/name@revision`")
        text = "This server loads " + (", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else kinds[0])
        if self.allow_hub:
            text += f"; Hub downloads are limited to {_mb(self.max_download_mb)} per checkpoint"
        return text + "."

    def placeholder(self, default: str = "demo") -> str:
        parts = [default]
        if self.allow_hub:
            example = next((e for e in self.allow_hub if e != "*"), None) if not self.any_hub else None
            if example is None:
                parts.append("org/repo@revision")
            else:
                org, _, name = example.partition("/")
                parts.append(f"{org}/{name if name not in ('', '*') else 'name'}@revision")
        if self.allow_local:
            parts.append("/local/folder")
        return " \u00b7 ".join(parts)

    def refusal(self) -> str:
        """The neutral message for any refused source (never the source itself)."""
        if self.allow_local:
            head = "This server only loads the demo checkpoints, local folders"
        else:
            head = "This server only loads the demo checkpoints"
        if not self.allow_hub:
            return head + "."
        if self.any_hub:
            return f"{head} and Hub repositories."
        return f"{head} and the Hub repositories its operator allowed: {self.allowed_text()}."

    # ---- the check -----------------------------------------------------------------------------
    def check(self, source: str, side_files: tuple[str, ...] = ()) -> str:
        """Refuse ``source`` unless this policy accepts it; return the source to load.

        Hub sources come back as ``hf-hub:org/name[@revision]``, so the loader never looks for a
        local folder of that name where local folders are refused. Allowed Hub sources are
        size-checked first (:meth:`check_download_size`; ``side_files`` are the family's extra
        files, see :func:`side_files_of`). Raises :class:`SourceRefused` subclasses, or the loader's
        own typed errors for a repository, revision or weights file the Hub does not have.
        """
        text = (source or "").strip()
        if text in ALWAYS_ALLOWED:
            return text
        looks_local = text.startswith((".", "/", "~", "\\"))
        if self.allow_local and (looks_local or _exists(text)):
            return text  # a folder the operator may name; the loader says what is wrong with it
        hub = None if looks_local else _parse_hub(text)
        if hub is None:
            if self.allow_local:
                return text  # neither a folder nor a repo id: the loader's own message says so
            raise SourceNotAllowed(self.refusal())
        repo_id, revision = hub
        if not self.hub_allowed(repo_id):
            raise SourceNotAllowed(self.refusal())
        self.check_download_size(repo_id, revision, side_files)
        return f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")

    def check_download_size(self, repo_id: str, revision: str | None, side_files: tuple[str, ...] = ()) -> int:
        """Bytes that loading ``repo_id@revision`` would download, from the Hub's file metadata (HEAD
        requests, no content; a sharded repo's index alone is fetched, once counted, for the names of
        its shards); raises :class:`DownloadTooLarge` over the limit. Files already in the local
        cache do not count; offline (``HF_HUB_OFFLINE``) nothing can be downloaded, so nothing is
        asked. Returns the byte count (0 offline)."""
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if constants.HF_HUB_OFFLINE:
            return 0
        where = f"{repo_id}@{revision or 'main'}"
        limit = self.max_download_mb * _MB
        total, commit = 0, revision
        names = [WEIGHTS_FILE, CONFIG_FILE, *dict.fromkeys(side_files)]
        shards: set[str] = set()
        i = 0
        while i < len(names):
            name = names[i]
            i += 1
            try:
                meta = get_hf_file_metadata(hf_hub_url(repo_id, name, revision=commit))
            except RevisionNotFoundError:
                raise CheckpointNotFound(f"{where}: the repository has no revision {revision!r}") from None
            except EntryNotFoundError:
                if name == WEIGHTS_FILE:
                    names.insert(i, WEIGHTS_INDEX_FILE)  # perhaps sharded: the index, then its shards
                    continue
                if name == WEIGHTS_INDEX_FILE:
                    raise UnsafeCheckpoint(f"{where} has no {WEIGHTS_FILE}; only safetensors weights are loaded, "
                                           "never pickle files") from None
                if name == CONFIG_FILE:
                    raise CheckpointNotFound(f"{where} has no {CONFIG_FILE}; it is not a Forgery Lens "
                                             "checkpoint") from None
                if name in shards:
                    raise CheckpointNotFound(f"{where}: shard {name}, named by {WEIGHTS_INDEX_FILE}, is not in "
                                             "the repository") from None
                continue  # a side file the checkpoint does without
            except Exception as exc:  # noqa: BLE001 - unreachable, down, private: the loader may use its cache
                cached = try_to_load_from_cache(repo_id, name, revision=commit)
                if _cached(cached):  # as hf_hub_download does, the cached copy serves; nothing is downloaded
                    if name == WEIGHTS_INDEX_FILE:
                        names[i:i] = self._shards_of(repo_id, commit, where, cached, shards)
                    continue
                if name == WEIGHTS_FILE and _cached(try_to_load_from_cache(repo_id, WEIGHTS_INDEX_FILE,
                                                                           revision=commit)):
                    names.insert(i, WEIGHTS_INDEX_FILE)  # a sharded checkpoint in the cache
                    continue
                if isinstance(exc, GatedRepoError):
                    raise CheckpointNotFound(f"{where}: the repository is gated; this server cannot read it") from None
                if isinstance(exc, RepositoryNotFoundError):
                    raise CheckpointNotFound(f"{where}: no such repository on the Hub (or it is private)") from None
                if isinstance(exc, HfHubHTTPError):
                    raise CheckpointNotFound(f"{where}: the Hub did not answer the size check "
                                             f"({type(exc).__name__})") from None
                raise CheckpointNotFound(f"{where} is not in the local cache and the Hub cannot be reached to "
                                         f"check its size ({type(exc).__name__})") from None
            commit = meta.commit_hash or commit  # the other files at the commit the weights were found at
            cached = try_to_load_from_cache(repo_id, name, revision=commit)
            if not _cached(cached):
                if meta.size is None:
                    raise DownloadTooLarge(f"{where}: the Hub did not say how large {name} is, so this server does "
                                           f"not download it (limit {_mb(self.max_download_mb)} per checkpoint).")
                total += meta.size
                if total > limit:
                    raise DownloadTooLarge(f"{where} is larger than this server's download limit of "
                                           f"{_mb(self.max_download_mb)} per checkpoint ({total / _MB:.1f} MB or "
                                           "more).")
            if name == WEIGHTS_INDEX_FILE:  # counted and within the limit: read it for the shards' names
                names[i:i] = self._shards_of(repo_id, commit, where, cached, shards)
        return total

    @staticmethod
    def _shards_of(repo_id: str, commit: str | None, where: str, cached, shards: set[str]) -> list[str]:
        """The shard names a sharded repo's index gives (checked as the loader checks them), fetching
        the small index itself unless it is cached; adds them to ``shards``."""
        from huggingface_hub import hf_hub_download

        try:
            path = cached if _cached(cached) else hf_hub_download(repo_id, WEIGHTS_INDEX_FILE, revision=commit)
            text = Path(path).read_text(encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 - any failure to fetch or read it: the source is refused
            raise CheckpointNotFound(f"{where}: {WEIGHTS_INDEX_FILE} could not be fetched to check the download "
                                     f"size ({type(exc).__name__})") from None
        found = [name for name in shard_names(parse_index(text, where)) if name not in shards]
        shards.update(found)
        return found


def _parse_hub(text: str) -> tuple[str, str | None] | None:
    """``[hf-hub:]org/name[@revision]`` -> ``(repo_id, revision)`` by its form alone (the file
    system is never consulted); revisions with ``..`` or odd characters are not accepted."""
    body = text[len("hf-hub:"):] if text.startswith("hf-hub:") else text
    repo, at, revision = body.partition("@")
    if not HUB_ID.match(repo) or any(part in (".", "..") for part in repo.split("/")):
        return None
    if at and (not _REVISION.match(revision) or ".." in revision.split("/")):
        return None
    return repo, (revision or None)


def _exists(text: str) -> bool:
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError, RuntimeError):
        return False


def _cached(found) -> bool:
    return isinstance(found, str)


def _mb(value: float) -> str:
    return f"{value:g} MB"


def side_files_of(detector_name: str) -> tuple[str, ...]:
    """The files a detector's family keeps beside its weights (its class's ``side_files``), without
    building the model."""
    return tuple(getattr(get_family(get_entry(detector_name).family).model_class, "side_files", ()))


#: What a visitor sees when a source could not be loaded and messages are neutral.
NEUTRAL_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (UnsafeCheckpoint, "it holds no safetensors weights, and this server never loads pickle files"),
    (CheckpointMismatch, "it holds another detector's checkpoint, or its weights do not fit this detector"),
    (CheckpointCorrupted, "its files are damaged or unreadable"),
    (UnknownDetector, "it names a detector this server does not have"),
    (CheckpointNotFound, "the repository has no Forgery Lens checkpoint at that revision, or it could not be "
                         "reached"),
)


def neutral_reason(exc: BaseException) -> str:
    """A fixed sentence for a load failure, by its type: no paths, no exception text (except the
    policy's own refusals, which are neutral already)."""
    if isinstance(exc, SourceRefused):
        return str(exc)
    for kind, sentence in NEUTRAL_REASONS:
        if isinstance(exc, kind):
            return sentence
    return "the server could not load it (the reason is in the server's log)"
