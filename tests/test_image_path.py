"""Issue 16, without an engine: how screenshots reach the backend.

Files checked without decoding (and which PNGs may pass through as their own bytes), the
uuids, the HTTP image content (file:// only for a server that provably reads the same folder,
else the file's bytes, else a re-encode), the decode pool's loader, the engine's request window
(which counted every request twice) and the `serve` options.
"""

from __future__ import annotations

import base64
import io
import itertools
import socket
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from screenspot_eval.backends.base import GroundingRequest, SamplingSettings
from screenspot_eval.backends.frontend import ImageStats, image_uuid, retag_uuid
from screenspot_eval.backends.http.media import (
    FILE_BYTES,
    FILE_URL,
    REENCODED,
    image_content,
    media_access,
    shared_root,
)
from screenspot_eval.backends.vllm.engine import VllmEngine, with_image
from screenspot_eval.data.errors import ImageLoadError
from screenspot_eval.data.images import ImageFile, decode_image, inspect_image, iter_images
from screenspot_eval.data.png import read_png_facts
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.run.images import plan_images


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, list[Sample]]:
    root = tmp_path / "release"
    synthesize_release(root, 12, seed=3, max_width=120)
    return root, load_release(root).samples


def _png(path: Path, image: Image.Image, **save: Any) -> Path:
    image.save(path, format="PNG", **save)
    return path


def _with_chunk(path: Path, kind: bytes, data: bytes) -> Path:
    """Insert a chunk right after IHDR (as an encoder writing metadata would)."""
    raw = path.read_bytes()
    end_of_ihdr = 8 + 8 + 13 + 4
    chunk = struct.pack(">I", len(data)) + kind + data
    chunk += struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(raw[:end_of_ihdr] + chunk + raw[end_of_ihdr:])
    return path


# --- which files may pass through as their own bytes ------------------------------------------


def test_an_rgb_png_passes_through(tmp_path: Path) -> None:
    facts = read_png_facts(_png(tmp_path / "a.png", Image.new("RGB", (40, 30), (1, 2, 3))))
    assert facts is not None and facts.passthrough
    assert (facts.width, facts.height, facts.bit_depth, facts.color_type) == (40, 30, 8, 2)


@pytest.mark.parametrize(
    ("make", "blocker"),
    [
        (lambda p: _png(p, Image.new("RGBA", (8, 8), (1, 2, 3, 100))), "colour type 6"),
        (lambda p: _png(p, Image.new("L", (8, 8))), "colour type 0"),
        (lambda p: _png(p, Image.new("P", (8, 8))), "colour type 3"),
        (lambda p: _png(p, Image.new("RGB", (8, 8)), transparency=(0, 0, 0)), "tRNS"),
        (lambda p: _with_chunk(_png(p, Image.new("RGB", (8, 8))), b"eXIf", b"MM\x00*"), "EXIF"),
        (
            lambda p: _with_chunk(
                _png(p, Image.new("RGB", (8, 8))),
                b"iTXt",
                b"XML:com.adobe.xmp\x00\x00\x00\x00\x00x",
            ),
            "XML:com.adobe.xmp",
        ),
    ],
)
def test_files_whose_bytes_decode_differently_in_vllm_do_not_pass_through(
    tmp_path: Path, make: Any, blocker: str
) -> None:
    facts = read_png_facts(make(tmp_path / "x.png"))
    assert facts is not None and not facts.passthrough
    assert any(blocker in b for b in facts.blockers), facts.blockers


def test_not_a_png_is_no_facts(tmp_path: Path) -> None:
    jpeg = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    assert read_png_facts(jpeg) is None


def test_inspect_checks_the_header_like_decode_and_says_whether_it_passes(
    release: tuple[Path, list[Sample]],
) -> None:
    root, samples = release
    found = inspect_image(samples[0], root)
    assert isinstance(found, ImageFile)
    assert Path(found.path).is_absolute() and found.passthrough
    assert (found.width, found.height) == samples[0].img_size
    wrong = samples[0].model_copy(update={"img_size": (1, 1)})
    refused = inspect_image(wrong, root)
    assert isinstance(refused, ImageLoadError) and "img_size says" in refused.reason
    escaped = samples[0].model_copy(update={"img_filename": "../../etc/passwd"})
    assert isinstance(inspect_image(escaped, root), ImageLoadError)


def test_the_pool_runs_the_given_loader_once_per_screenshot(
    release: tuple[Path, list[Sample]],
) -> None:
    root, samples = release
    calls: list[str] = []

    def load(sample: Sample, root: Path, roots: tuple[Path, ...]) -> str:
        calls.append(sample.img_filename)
        return f"loaded {sample.img_filename}"

    seen = list(iter_images(samples, root, workers=2, prefetch=3, load=load))
    assert [s.id for s, _ in seen] == [s.id for s in samples]
    assert all(result == f"loaded {s.img_filename}" for s, result in seen)
    shared = sum(1 for a, b in itertools.pairwise(samples) if a.img_filename == b.img_filename)
    assert len(calls) == len(samples) - shared


# --- uuids ------------------------------------------------------------------------------------


def test_uuid_names_file_budget_and_preparation() -> None:
    uuid = image_uuid("ab" * 32, 280, "file")
    assert uuid == f"sha256:{'ab' * 32}/budget:280/file"
    assert retag_uuid(uuid, "rgb") == f"sha256:{'ab' * 32}/budget:280/rgb"
    assert image_uuid("cd", None, "prepared-528x288").endswith("budget:default/prepared-528x288")


def test_with_image_carries_the_uuid_so_vllm_skips_the_pixel_hash() -> None:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "t"}]}]
    image = object()
    filled = with_image(messages, image, "u-1")
    assert filled[0]["content"][0] == {"type": "image_pil", "image_pil": image, "uuid": "u-1"}
    assert with_image(messages, image)[0]["content"][0] == {"type": "image_pil", "image_pil": image}
    assert messages[0]["content"][0] == {"type": "image"}  # not mutated


# --- what goes to a server --------------------------------------------------------------------


def _file_request(
    found: ImageFile, uuid: str | None = "sha256:x/budget:70/file"
) -> GroundingRequest:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "t"}]}]
    return GroundingRequest("s", messages, None, image_file=found, image_uuid=uuid)


def _decoded(url: str) -> bytes:
    return base64.b64decode(url.split(",", 1)[1])


def test_file_url_only_under_the_folder_the_server_reads(
    release: tuple[Path, list[Sample]],
) -> None:
    root, samples = release
    found = inspect_image(samples[0], root)
    assert isinstance(found, ImageFile)
    item, path = image_content(_file_request(found), root=root.resolve())
    assert path == FILE_URL
    assert item["image_url"]["url"] == Path(found.path).as_uri()
    assert item["uuid"] == "sha256:x/budget:70/file"
    elsewhere, path = image_content(_file_request(found), root=root.parent / "other")
    assert (
        path == FILE_BYTES
        and _decoded(elsewhere["image_url"]["url"]) == Path(found.path).read_bytes()
    )
    never, path = image_content(_file_request(found), transfer="bytes", root=root.resolve())
    assert path == FILE_BYTES and never["image_url"]["url"].startswith("data:image/png;base64,")


def test_reencode_sends_the_harness_decode_and_retags_the_uuid(
    release: tuple[Path, list[Sample]], tmp_path: Path
) -> None:
    root, samples = release
    sample = samples[0]
    target = Path(str(inspect_image(sample, root).path))  # type: ignore[union-attr]
    rgba = Image.open(target).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(target)  # translucent: vLLM would composite on white, the harness drops alpha
    found = inspect_image(sample, root)
    assert isinstance(found, ImageFile) and not found.passthrough
    item, path = image_content(_file_request(found), root=root.resolve())
    assert path == REENCODED
    assert item["uuid"] == "sha256:x/budget:70/rgb"
    sent = Image.open(io.BytesIO(_decoded(item["image_url"]["url"])))
    expected = decode_image(sample, root)
    assert isinstance(expected, Image.Image)
    assert sent.mode == "RGB" and sent.tobytes() == expected.tobytes()
    forced, path = image_content(_file_request(found), transfer="reencode")
    assert path == REENCODED and forced["image_url"]["url"].startswith("data:image/png;base64,")


def test_a_server_gets_paths_only_when_it_provably_sees_the_same_folder(tmp_path: Path) -> None:
    stat = tmp_path.stat()
    info = {
        "allowed_local_media_path": str(tmp_path),
        "root_id": f"{stat.st_dev}:{stat.st_ino}",
        "host": socket.gethostname(),
    }
    assert media_access("http://127.0.0.1:8000", info).root == tmp_path.resolve()
    assert media_access("http://gpu-box:8000", info).root is None  # remote: never file://
    assert media_access("http://127.0.0.1:8000", None).root is None  # no route: plain vLLM
    assert media_access("http://127.0.0.1:8000", {**info, "root_id": "1:2"}).root is None
    assert media_access("http://127.0.0.1:8000", {**info, "host": "elsewhere"}).root is None
    no_folder = {**info, "allowed_local_media_path": None}
    assert media_access("http://127.0.0.1:8000", no_folder).root is None
    both = {
        "a": media_access("http://127.0.0.1:8000", info),
        "b": media_access("http://gpu-box:8000", info),
    }
    assert shared_root(both) is None  # a request may go to either: bytes for all


# --- the decode pool's plan -------------------------------------------------------------------


class _Preparer:
    """Halves every image, as a stand-in for the processor's resize."""

    def __init__(self) -> None:
        self.sizes: set[tuple[int, int]] = set()

    def prepare(self, image: Image.Image) -> tuple[Image.Image, str]:
        return image.resize((image.width // 2, image.height // 2)), "prepared"

    def record(self) -> dict[str, Any]:
        return {"budget": 70, "sizes": {f"{w}x{h}": {} for w, h in sorted(self.sizes)}}


class _Backend:
    def __init__(self, image_input: str = "decoded") -> None:
        self.image_input = image_input
        self.preparer = _Preparer()

    def image_preparation(self, budget: int, sizes: set[tuple[int, int]]) -> _Preparer:
        self.preparer.sizes |= sizes
        return self.preparer


def test_decoded_plan_prepares_in_the_pool_and_names_the_pixels(
    release: tuple[Path, list[Sample]],
) -> None:
    root, samples = release
    hashes = {f"images/{s.img_filename}": "f" * 64 for s in samples}
    backend = _Backend()
    plan = plan_images(backend, samples, budget=70, hashes=hashes)
    assert backend.preparer.sizes == {s.img_size for s in samples}  # checked before any sample
    loaded = plan.load(samples[0], root, (root.resolve(),))
    assert loaded.path == "prepared" and loaded.image.width == samples[0].width // 2
    assert plan.uuid_for(samples[0], loaded) == (
        f"sha256:{'f' * 64}/budget:70/prepared-{loaded.image.width}x{loaded.image.height}"
    )
    off = plan_images(backend, samples, budget=70, hashes=hashes, prepare=False, uuids=False)
    plain = off.load(samples[0], root, (root.resolve(),))
    assert plain.path == "original" and plain.image.size == samples[0].img_size
    assert off.uuid_for(samples[0], plain) is None
    assert "preparation off" in off.to_record()["note"]


def test_file_plan_does_not_decode(release: tuple[Path, list[Sample]]) -> None:
    root, samples = release
    plan = plan_images(_Backend("file"), samples, budget=70, hashes={})
    loaded = plan.load(samples[0], root, (root.resolve(),))
    assert loaded.image is None and isinstance(loaded.image_file, ImageFile)
    assert plan.uuid_for(samples[0], loaded) is None  # no hash known: vLLM hashes the bytes


def test_image_stats_name_the_samples_of_the_rarer_paths() -> None:
    stats = ImageStats()
    for i in range(5):
        stats.took(f"s{i}", "prepared")
    stats.took("odd", "original")
    record = stats.to_record()
    assert record["paths"] == {"original": 1, "prepared": 5}
    assert record["samples_by_path"] == {"original": ["odd"]}


# --- the engine's window ----------------------------------------------------------------------


class _FakeLlm:
    """``enqueue_chat`` + ``step`` like vLLM 0.32: ids come back as ``<n>-<suffix>``; a request
    finishes after ``steps`` calls; outputs name the id without the suffix."""

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.live: dict[str, int] = {}
        self.count = 0
        self.max_live = 0
        self.llm_engine = SimpleNamespace(step=self.step, engine_core=None)

    def enqueue_chat(self, messages: Any, params: Any, **_: Any) -> list[str]:
        self.count += 1
        self.live[str(self.count)] = self.steps
        self.max_live = max(self.max_live, len(self.live))
        return [f"{self.count}-abc"]

    def step(self) -> list[Any]:
        done = []
        for request_id in list(self.live):
            self.live[request_id] -= 1
            if self.live[request_id] == 0:
                del self.live[request_id]
                answer = SimpleNamespace(text="{}", token_ids=[1])
                done.append(
                    SimpleNamespace(
                        request_id=request_id, finished=True, outputs=[answer], prompt_token_ids=[]
                    )
                )
        return done


def _engine(llm: _FakeLlm, window: int, max_num_seqs: int) -> VllmEngine:
    from screenspot_eval.backends.frontend import FrontEndStats
    from screenspot_eval.backends.vllm.engine_args import EngineSettings

    engine = VllmEngine.__new__(VllmEngine)
    engine.llm = llm
    engine.settings = EngineSettings(model="m", max_num_seqs=max_num_seqs)
    engine.kwargs = {}
    engine.window = window
    engine.max_num_seqs = max_num_seqs
    engine.idle_s = 0.0
    engine.image_token_id = None
    engine.stats = FrontEndStats(window=window, max_num_seqs=max_num_seqs)
    return engine


def test_the_window_admits_window_requests_not_half(monkeypatch: pytest.MonkeyPatch) -> None:
    import screenspot_eval.backends.vllm.engine as engine_module

    monkeypatch.setattr(engine_module, "sampling_params", lambda *a: None)
    llm = _FakeLlm(steps=4)
    engine = _engine(llm, window=8, max_num_seqs=4)
    messages = [{"role": "user", "content": [{"type": "image"}]}]
    requests = (GroundingRequest(f"s{i}", messages, object()) for i in range(40))
    done = list(engine._generate(llm.llm_engine, requests, SamplingSettings()))
    assert sorted(c.sample_id for c in done) == sorted(f"s{i}" for i in range(40))
    assert llm.max_live == 8  # was 4: two keys per request were counted as two requests
    record = engine.stats.to_record()
    assert record["requests"] == 40
    assert record["steps_with_queued_work_share"] == 1.0  # always more queued than the batch
    assert record["mean_in_flight"] > 4


# --- serve --------------------------------------------------------------------------------------


def test_api_servers_auto_and_numbers() -> None:
    from screenspot_eval.cli.serve_cmd import api_server_count
    from screenspot_eval.errors import UserError

    assert api_server_count("3") == 3
    auto = api_server_count("auto")
    assert auto is None or 2 <= auto <= 4
    with pytest.raises(UserError):
        api_server_count("many")
    with pytest.raises(UserError):
        api_server_count("0")


def test_serve_data_sets_the_servers_media_folder(release: tuple[Path, list[Sample]]) -> None:
    from typer.testing import CliRunner

    from screenspot_eval.cli.app import app

    root, _ = release
    result = CliRunner().invoke(
        app,
        ["serve", "--model", "m", "--data", str(root), "--api-servers", "2", "--print-command"],
    )
    assert result.exit_code == 0, result.output
    assert f"--allowed-local-media-path {root.resolve()}" in result.output
    assert "--api-server-count 2" in result.output
    assert "screenspot_eval.backends.vllm.serve_entry" in result.output
