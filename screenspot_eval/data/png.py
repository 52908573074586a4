"""Read a PNG's chunk list (not its pixels) to tell whether its own bytes can go to a server.

vLLM's media loader turns a file into RGB pixels itself: it applies the EXIF orientation
(``ImageOps.exif_transpose``) and composites transparency on white, where the harness's
decode (:func:`screenspot_eval.data.images.decode_image`) drops alpha and ignores orientation.
For an 8-bit truecolour PNG without transparency and without orientation metadata both give
the same pixels, so the file's bytes (base64 or a ``file://`` URL) can replace a decode and
re-encode. Anything else is not "pass-through": it is decoded and re-encoded as before.

Walking the chunks costs a few hundred small reads per screenshot (IDAT chunks are skipped by
seeking); nothing is inflated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Text keywords Pillow reads orientation from (``Image.getexif``): EXIF and XMP profiles.
ORIENTATION_KEYWORDS = (b"Raw profile type exif", b"XML:com.adobe.xmp")
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_MAX_CHUNKS = 1 << 20


@dataclass(frozen=True)
class PngFacts:
    """What the chunk list says: size, pixel format and what blocks pass-through."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    blockers: tuple[str, ...]

    @property
    def passthrough(self) -> bool:
        """The server's decode of these bytes gives the harness's RGB pixels exactly."""
        return not self.blockers


def read_png_facts(path: Path) -> PngFacts | None:
    """The facts of a PNG file, or None when it is not a readable PNG (then: no pass-through)."""
    try:
        with path.open("rb") as handle:
            if handle.read(8) != PNG_SIGNATURE:
                return None
            header = handle.read(8)
            if len(header) < 8 or header[4:8] != b"IHDR":
                return None
            ihdr = handle.read(13)
            if len(ihdr) < 13:
                return None
            width, height, bit_depth, color_type = struct.unpack(">IIBB", ihdr[:10])
            handle.seek(4, 1)  # IHDR's CRC
            blockers: list[str] = []
            if color_type != 2:
                blockers.append(f"colour type {color_type} (not 8-bit RGB)")
            if bit_depth != 8:
                blockers.append(f"bit depth {bit_depth}")
            for _ in range(_MAX_CHUNKS):
                head = handle.read(8)
                if len(head) < 8:
                    blockers.append("truncated chunk list")
                    break
                length, kind = struct.unpack(">I4s", head)
                if kind == b"IEND":
                    break
                if kind == b"tRNS":
                    blockers.append("transparency (tRNS)")
                elif kind == b"eXIf":
                    blockers.append("EXIF metadata (orientation)")
                elif kind in _TEXT_CHUNKS:
                    keyword = handle.read(min(length, 80)).split(b"\x00", 1)[0]
                    handle.seek(-min(length, 80), 1)
                    if keyword in ORIENTATION_KEYWORDS:
                        blockers.append(f"{keyword.decode('latin-1')} metadata (orientation)")
                handle.seek(length + 4, 1)  # data and CRC
            else:
                blockers.append("too many chunks")
    except OSError:
        return None
    return PngFacts(width, height, bit_depth, color_type, tuple(dict.fromkeys(blockers)))
