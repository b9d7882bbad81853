"""Models fetched on the host, before any run starts: runs themselves never download.

A study's Hugging Face ids are looked up in the host's hub cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), the cache every run gets read-only. Those
missing are downloaded there at the configured ``revision`` (else ``main``) with
huggingface_hub's ``snapshot_download``, limited to what inference reads: the config, the
generation config, the tokenizer files and one weight format (safetensors when the repository
has them, else PyTorch ``.bin``). ``HF_TOKEN`` is read from the environment by huggingface_hub;
llem never writes it anywhere.

Every failure becomes one :class:`ConfigError` (bad input, exit 2) naming the model and what to
do: an unauthorised or gated model, a model or revision the hub does not have, a hub that cannot
be reached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from orchestrator.study import Study

CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
)
"""Top-level files a model needs besides its weights (``*`` does not reach into folders
because every pattern is matched against the whole path)."""

SAFETENSORS_WEIGHTS = ("model*.safetensors", "model.safetensors.index.json")
BIN_WEIGHTS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
"""The weights transformers saves, single-file or sharded; other weight files in a repository
(a second format, ``consolidated.*``, ``original/``) are not fetched."""

_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


@dataclass(frozen=True)
class HubModel:
    """A model on the Hugging Face Hub at a revision.

    Attributes:
        model: the repository id, ``org/name``.
        revision: the branch, tag or commit asked for; None means ``main``.
    """

    model: str
    revision: str | None

    @property
    def pinned(self) -> str:
        """The revision to fetch and look up: the one asked for, else ``main``."""
        return self.revision or "main"

    def __str__(self) -> str:
        return f"'{self.model}' at revision '{self.pinned}'"


def hub_models(study: Study) -> list[HubModel]:
    """Every distinct hub model of the study, in design order (local directories left out)."""
    found: dict[HubModel, None] = {}
    for entry in study.experiments:
        if is_hub_id(entry.config.model):
            found.setdefault(HubModel(entry.config.model, entry.config.revision))
    return list(found)


def is_hub_id(model: str) -> bool:
    """Whether ``model`` names a hub repository rather than a path on this host."""
    if model.startswith(("/", ".", "~")) or Path(model).expanduser().exists():
        return False
    return _REPO_ID.fullmatch(model) is not None and "--" not in model and ".." not in model


def inference_patterns(files: Iterable[str]) -> list[str]:
    """The ``allow_patterns`` for a repository holding ``files``: configs, tokenizer, weights."""
    names = list(files)
    safetensors = any(name.endswith(".safetensors") for name in names)
    return [*CONFIG_FILES, *(SAFETENSORS_WEIGHTS if safetensors else BIN_WEIGHTS)]


def hub_endpoint() -> str:
    """The hub huggingface_hub talks to (``HF_ENDPOINT``, else huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_cache() -> Path:
    """The host's hub cache directory (where fetched models go and runs read them)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline_by_environment() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids the host to download."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def cached_snapshot(model: HubModel) -> Path | None:
    """The model's complete snapshot in the hub cache, or None (never touches the network).

    A snapshot fetched by llem is complete when every file its repository listing matches is
    there (an interrupted fetch is not); one placed by other tools needs ``config.json`` and
    weights.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(
            model.model, revision=model.pinned, local_files_only=True,
            allow_patterns=_cached_patterns(model)))
    except LocalEntryNotFoundError:
        return None
    return folder if _loadable(folder) else None


def _cached_patterns(model: HubModel) -> list[str] | None:
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        listing = get_cached_repo_tree(model.model, revision=model.pinned)
    except CachedRepoTreeNotFoundError:
        return None
    return inference_patterns(entry.path for entry in listing)


def _loadable(folder: Path) -> bool:
    weights = [*folder.glob("model*.safetensors"), *folder.glob("pytorch_model*.bin")]
    return (folder / "config.json").is_file() and bool(weights)


def fetch(model: HubModel) -> Path:
    """Download what inference needs of ``model`` into the hub cache; return its snapshot.

    Progress bars (huggingface_hub's) go to stderr. A download cut off mid-file is resumed
    from where it stopped (an HTTP Range request), a few times, before this gives up.

    Raises:
        ConfigError: the hub refused (401/403), does not have the model or revision (404),
            cannot be reached, or the snapshot holds no config and weights llem can load.
    """
    import httpx2
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(model.model, revision=model.pinned)
        patterns = inference_patterns(sibling.rfilename for sibling in info.siblings or [])
        snapshot_download(model.model, revision=model.pinned, allow_patterns=patterns)
    except (OSError, httpx2.HTTPError) as error:
        raise fetch_error(error, model) from error
    folder = cached_snapshot(model)
    if folder is None:
        raise ConfigError(
            f"model {model} has no config.json and weights (model*.safetensors or "
            "pytorch_model*.bin) at its top level",
            fix="point model: at a transformers checkpoint, or at a local directory")
    return folder


def fetch_missing(models: Iterable[HubModel], say: Callable[[str], None]) -> None:
    """Fetch each model that is not complete in the hub cache, saying what happens.

    Raises:
        ConfigError: the first model that cannot be fetched (the ones before it stay cached).
    """
    for model in models:
        if cached_snapshot(model) is not None:
            say(f"model {model}: in the cache")
            continue
        if offline_by_environment():
            raise ConfigError(f"model {model} is not in the Hugging Face cache ({hub_cache()}) "
                              "and HF_HUB_OFFLINE is set, which forbids fetching it",
                              fix="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to fetch")
        say(f"model {model}: fetching from {hub_endpoint()} into {hub_cache()}")
        say(f"model {model}: fetched -> {fetch(model)}")


def fetch_error(error: BaseException, model: HubModel) -> ConfigError:
    """One message for a failed fetch: what went wrong with which model, and the fix."""
    from huggingface_hub.errors import RevisionNotFoundError

    chain = list(_causes(error))
    status = next((code for code in map(_status, chain) if code is not None), None)
    endpoint = hub_endpoint()
    if status == 404 or any(isinstance(e, RevisionNotFoundError) for e in chain):
        return ConfigError(f"model {model} was not found on {endpoint}",
                           fix="check the model id and revision: in the study (a local "
                               "directory: its path)")
    if status in (401, 403):
        return ConfigError(
            f"model {model} refused access (HTTP {status}): it is gated or private",
            fix="set HF_TOKEN in the environment to a token that may read it, and accept the "
                "model's licence on its Hub page (or check the model id)")
    if _unreachable(chain):
        return ConfigError(
            f"the model hub {endpoint} cannot be reached to fetch model {model}",
            fix="check the network (and HF_ENDPOINT); without network, fill the Hugging Face "
                "cache on another machine (llem fetch STUDY) and use llem run --offline")
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigError(f"fetching model {model} from {endpoint} failed: {reason}",
                       fix="run it again: files already fetched are kept")


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _status(error: BaseException) -> int | None:
    from huggingface_hub.errors import HfHubHTTPError

    response = getattr(error, "response", None) if isinstance(error, HfHubHTTPError) else None
    return None if response is None else int(response.status_code)


def _unreachable(chain: list[BaseException]) -> bool:
    import httpx2

    return any(isinstance(e, (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError))
               for e in chain)
