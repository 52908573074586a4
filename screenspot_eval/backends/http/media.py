"""How a screenshot goes to a server: a ``file://`` URL, the file's own bytes, or a re-encode.

Decoding a PNG and encoding it again costs 88 ms at 4K (212 ms at 6016x3384) on the client,
and the server decodes it once more. The server can decode the file itself instead:

- ``file-url``: a ``file://`` URL, when the server reads the dataset folder itself. Only for a
  server on this machine: its address is loopback, it reports (``GET /screenspot/media``) an
  ``--allowed-local-media-path`` holding the file, and that folder has the same device, inode
  and host name here as there (a forwarded port to another machine fails that check). A
  remote server never gets a path.
- ``file-bytes``: the file's bytes as base64 (0.6 ms at 4K), to any other server.
- ``reencoded``: decode and PNG re-encode, as before, only where the file's own bytes would
  decode to other pixels than the harness's decode (not an 8-bit RGB PNG, transparency, EXIF
  orientation: see :mod:`screenspot_eval.data.png`), or when asked for (``reencode``).
"""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from screenspot_eval.backends.base import GroundingRequest
from screenspot_eval.backends.frontend import retag_uuid
from screenspot_eval.backends.http.payload import ImageFormat, encode_image_data_url
from screenspot_eval.data.images import open_rgb

Transfer = Literal["auto", "bytes", "reencode"]
FILE_URL, FILE_BYTES, REENCODED = "file-url", "file-bytes", "reencoded"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class MediaAccess:
    """What one server can read itself (from ``GET /screenspot/media``), checked here."""

    root: Path | None  # the folder both sides see, or None: send bytes
    reason: str


def media_access(url: str, info: dict[str, Any] | None) -> MediaAccess:
    """May this client send ``url``'s server ``file://`` paths, and under which folder?"""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        return MediaAccess(None, f"server {host} is not on this machine's loopback")
    if not info or not info.get("allowed_local_media_path"):
        return MediaAccess(None, "the server reads no local folder (no --allowed-local-media-path)")
    root = Path(str(info["allowed_local_media_path"]))
    try:
        stat = root.stat()
    except OSError:
        return MediaAccess(None, f"the server's folder {root} does not exist here")
    if f"{stat.st_dev}:{stat.st_ino}" != info.get("root_id"):
        return MediaAccess(None, f"{root} is another folder here than on the server")
    if info.get("host") != socket.gethostname():
        return MediaAccess(None, f"the server runs on host {info.get('host')!r}, not this one")
    return MediaAccess(root.resolve(), f"the server reads {root} itself")


def shared_root(accesses: dict[str, MediaAccess]) -> Path | None:
    """The folder every endpoint reads (requests may go to any of them), else None."""
    roots = {a.root for a in accesses.values()}
    if len(roots) != 1:
        return None
    return next(iter(roots))


def image_content(
    request: GroundingRequest,
    *,
    transfer: Transfer = "auto",
    root: Path | None = None,
    image_format: ImageFormat = "png",
) -> tuple[dict[str, Any], str]:
    """The request's ``image_url`` content part and the path it took (``file-url``,
    ``file-bytes`` or ``reencoded``). The uuid goes with it, retagged for a re-encode (the
    server then sees the harness's RGB decode, which differs from the file's own pixels for
    the files that cannot pass through)."""
    file = request.image_file
    uuid = request.image_uuid
    if file is None or transfer == "reencode" or not file.passthrough:
        image = request.image
        if image is None and file is not None:
            image = open_rgb(file.path)
        if image is None:
            raise ValueError(f"request {request.sample_id} carries neither an image nor a file")
        url = encode_image_data_url(image, image_format)
        path, uuid = REENCODED, (retag_uuid(uuid, "rgb") if uuid else None)
    else:
        resolved = Path(file.path).resolve()
        if transfer == "auto" and root is not None and resolved.is_relative_to(root):
            url, path = resolved.as_uri(), FILE_URL
        else:
            data = Path(file.path).read_bytes()
            url = f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}"
            path = FILE_BYTES
    item: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if uuid is not None:
        item["uuid"] = uuid
    return item, path


def fetch_media_info(url: str, api_key: str | None, timeout: float = 10.0) -> dict[str, Any] | None:
    """``GET /screenspot/media`` (None: a server without the route, or an error)."""
    import httpx

    from screenspot_eval.backends.http.payload import server_root
    from screenspot_eval.backends.http.server import auth_headers

    try:
        response = httpx.get(
            server_root(url) + "/screenspot/media", headers=auth_headers(api_key), timeout=timeout
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
