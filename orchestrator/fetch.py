"""Models fetched on the host, before any run starts: runs themselves never download.

A study's Hugging Face ids are looked up in the host's hub cache, the cache every run gets
read-only; what a hub id is, where that cache is and when a checkpoint in it is complete are
decided by harness/models.py alone. Models missing there are downloaded at the configured
``revision`` (else ``main``) with huggingface_hub's ``snapshot_download``, limited to what
inference reads (:func:`harness.models.inference_patterns`): the config, the generation config,
the tokenizer files and one weight format (safetensors when the repository has them, else
PyTorch ``.bin``). ``HF_TOKEN`` is read from the environment by huggingface_hub; llem never
writes it anywhere.

Every failure becomes one :class:`ConfigError` (bad input, exit 2) naming the model and what to
do: an unauthorised or gated model, a model or revision the hub does not have, a hub that cannot
be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import models
from harness.errors import ConfigError
from harness.schema.config import ExperimentConfig
from orchestrator.study import Study


@dataclass(frozen=True)
class HubModel:
    """A model on the Hugging Face Hub at a revision.

    Attributes:
        model: the repository id, ``org/name``.
        revision: the branch, tag or commit asked for; None means ``main``.
        commit: the commit the study pinned for a branch or tag (its runs load that one);
            None when none is pinned yet.
    """

    model: str
    revision: str | None
    commit: str | None = None

    @property
    def pinned(self) -> str:
        """The revision to fetch and look up: the pinned commit, else asked, else ``main``."""
        return self.commit or self.revision or "main"

    def __str__(self) -> str:
        asked = f"'{self.model}' at revision '{self.revision or 'main'}'"
        return asked + (f" (commit {self.commit})" if self.commit else "")


def hub_model(config: ExperimentConfig) -> HubModel:
    """The hub model ``config`` loads: at the commit its runs load when one is pinned."""
    commit = config.load_revision if config.load_revision != config.revision else None
    return HubModel(config.model, config.revision, commit)


def hub_models(study: Study) -> list[HubModel]:
    """Every distinct hub model of the study, in design order (local directories left out).

    Each at the revision its runs load: the commit the study pinned from the cache (a
    ``main`` of which the cache held only ``config.json`` is completed at that commit, not
    replaced by a newer ``main``), else the revision asked for.
    """
    found: dict[HubModel, None] = {}
    for entry in study.experiments:
        if models.is_hub_id(entry.config.model):
            found.setdefault(hub_model(entry.config))
    return list(found)


def hub_endpoint() -> str:
    """The hub huggingface_hub talks to (``HF_ENDPOINT``, else huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def offline_by_environment() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids the host to download."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def in_cache(model: HubModel) -> bool:
    """Whether the hub cache holds all of ``model`` that inference reads (never the network)."""
    return models.in_cache(model.model, model.pinned)


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
        patterns = models.inference_patterns(s.rfilename for s in info.siblings or [])
        folder = snapshot_download(model.model, revision=model.pinned, allow_patterns=patterns)
    except (OSError, httpx2.HTTPError) as error:
        raise fetch_error(error, model) from error
    gaps = models.cache_gaps(model.model, model.pinned)
    if gaps != []:
        lacks = " and ".join(gaps or ["config.json"])
        raise ConfigError(
            f"model {model} has no config.json and weights llem can load: fetched, its "
            f"snapshot still lacks {lacks} at the top level",
            fix="point model: at a transformers checkpoint, or at a local directory")
    return Path(folder)


def fetch_missing(wanted: Iterable[HubModel], say: Callable[[str], None]) -> None:
    """Fetch each model that is not complete in the hub cache, saying what happens.

    Raises:
        ConfigError: the first model that cannot be fetched (the ones before it stay cached).
    """
    for model in wanted:
        if in_cache(model):
            say(f"model {model}: in the cache")
            continue
        if offline_by_environment():
            raise ConfigError(f"model {model} is not in the Hugging Face cache "
                              f"({models.hub_cache()}) and HF_HUB_OFFLINE is set, which "
                              "forbids fetching it",
                              fix="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to fetch")
        say(f"model {model}: fetching from {hub_endpoint()} into {models.hub_cache()}")
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
