"""Stream decoded screenshots in dataset order without holding the whole release in memory.

Screenshots are up to 6016x3384 (about 61 MB decoded each); 1581 of them do not fit in memory.
Decoding runs in a small thread pool (Pillow releases the GIL while it inflates and unfilters
PNG data) with a bounded look-ahead, so at most ``prefetch`` images wait decoded at any time.
A screenshot that cannot be decoded is yielded as an :class:`ImageLoadError` for its sample, so
one bad file never ends a run and is recorded rather than skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from screenspot_eval.data.errors import DatasetError, ImageLoadError
from screenspot_eval.data.paths import resolve_image_path, trusted_roots
from screenspot_eval.data.png import read_png_facts
from screenspot_eval.data.sample import Sample

ImageResult = Image.Image | ImageLoadError
Loader = Callable[[Sample, Path, tuple[Path, ...]], Any]
"""What the pool runs per screenshot: ``(sample, root, trusted roots) -> result or
ImageLoadError`` (default :func:`decode_image`; a caller can decode and prepare in one go)."""
_T = TypeVar("_T")


def _failure(sample: Sample, reason: str) -> ImageLoadError:
    return ImageLoadError(
        reason, file=sample.source_file, sample_id=sample.id, field="img_filename"
    )


def _size_refusal(sample: Sample, width: int, height: int) -> str | None:
    """Why a screenshot of this size is refused (decompression bomb, or not ``img_size``, so
    the bbox would be in the wrong pixel space); None when it is fine."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        return (
            f"decompression bomb refused: {sample.img_filename} is {width}x{height}, "
            f"over the {limit}-pixel limit"
        )
    if (width, height) != sample.img_size:
        return (
            f"{sample.img_filename} is {width}x{height} but img_size says "
            f"{sample.width}x{sample.height}"
        )
    return None


def _open_checked(
    sample: Sample,
    root: Path,
    roots: tuple[Path, ...] | None,
    use: Callable[[Path, Image.Image], _T],
) -> _T | ImageLoadError:
    """``use(path, image)`` on the sample's opened screenshot once its path and header pass the
    checks; every failure, ``use``'s included, becomes the sample's :class:`ImageLoadError`.

    The one place :func:`decode_image` and :func:`inspect_image` share, so a file that one
    refuses the other refuses with the same reason.
    """
    try:
        path = resolve_image_path(
            root,
            sample.img_filename,
            sample_id=sample.id,
            source_file=sample.source_file,
            roots=roots,
            image_dir=sample.image_dir,
        )
        with Image.open(path) as image:
            refusal = _size_refusal(sample, *image.size)
            if refusal is not None:
                return _failure(sample, refusal)
            return use(path, image)
    except DatasetError as error:
        return _failure(sample, error.reason)
    except Image.DecompressionBombError as error:
        return _failure(sample, f"decompression bomb refused: {sample.img_filename}: {error}")
    except Exception as error:  # any decoder or header failure must become a per-sample record
        reason = f"cannot decode {sample.img_filename}: {type(error).__name__}: {error}"
        return _failure(sample, reason)


def _rgb(image: Image.Image) -> Image.Image:
    """The decoded pixels in RGB (alpha dropped), the form every backend receives."""
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(sample: Sample, root: Path, roots: tuple[Path, ...] | None = None) -> ImageResult:
    """The sample's screenshot as an RGB image, or an :class:`ImageLoadError` saying why not.

    Refuses images above ``Image.MAX_IMAGE_PIXELS`` (decompression bombs) before decoding, and
    images whose size differs from ``img_size`` (the bbox would be in the wrong pixel space).
    """
    return _open_checked(sample, root, roots, lambda _path, image: _rgb(image))


@dataclass(frozen=True)
class ImageFile:
    """A screenshot checked without decoding it, for a backend that sends files, not pixels.

    ``path`` is absolute and inside the dataset; ``passthrough`` says that the file's own bytes
    decode (in vLLM's media loader) to exactly the pixels :func:`decode_image` gives, else
    ``blockers`` says why not (then the file must be decoded and re-encoded).
    """

    path: str
    width: int
    height: int
    passthrough: bool
    blockers: tuple[str, ...] = ()


def inspect_image(
    sample: Sample, root: Path, roots: tuple[Path, ...] | None = None
) -> ImageFile | ImageLoadError:
    """:func:`decode_image`'s checks (path inside the dataset, size = ``img_size``, no
    decompression bomb) on the header only, plus whether the file can pass through as is."""
    opened = _open_checked(
        sample, root, roots, lambda path, image: (path, image.size, image.format)
    )
    if isinstance(opened, ImageLoadError):
        return opened
    path, (width, height), image_format = opened
    facts = read_png_facts(path) if image_format == "PNG" else None
    if facts is None:
        blockers: tuple[str, ...] = (f"format {image_format} (only PNG passes through)",)
    else:
        blockers = facts.blockers
    return ImageFile(str(path.resolve()), width, height, not blockers, blockers)


def open_rgb(path: str | Path) -> Image.Image:
    """The file's pixels as :func:`decode_image` gives them (RGB, alpha dropped)."""
    with Image.open(path) as image:
        return _rgb(image)


def iter_images(
    samples: Iterable[Sample],
    root: Path,
    *,
    workers: int = 2,
    prefetch: int = 4,
    load: Loader = decode_image,
    share: bool = True,
) -> Iterator[tuple[Sample, Any]]:
    """Yield ``(sample, image_or_error)`` lazily, in the order of ``samples``.

    At most ``prefetch`` samples are decoded ahead of the consumer. Consecutive samples that
    share a screenshot share one decode and the same image object (unless ``share`` is off:
    a loader whose result depends on more than the screenshot, such as a crop around each
    sample's own click): treat images as read-only.
    Closing the iterator early cancels the queued decodes. ``load`` replaces the decode (it
    runs in the pool's threads and must return an :class:`ImageLoadError` rather than raise).
    """
    if workers < 1 or prefetch < 1:
        raise ValueError("workers and prefetch must be >= 1")
    roots = trusted_roots(root)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="screenspot-image")
    pending: deque[tuple[Sample, Future[Any]]] = deque()
    previous: tuple[str, Future[Any]] | None = None
    try:
        for sample in samples:
            if share and previous is not None and previous[0] == sample.img_filename:
                future = previous[1]
            else:
                future = pool.submit(load, sample, root, roots)
                previous = (sample.img_filename, future)
            pending.append((sample, future))
            if len(pending) >= prefetch:
                done, result = pending.popleft()
                yield done, result.result()
        previous = None
        while pending:
            done, result = pending.popleft()
            yield done, result.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
