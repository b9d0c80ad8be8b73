#!/usr/bin/env python3
"""Screenshot a report.html in headless Chromium (Debian's ``chromium`` package), offline.

    python scripts/screenshot_report.py OUT_DIR/report.html report.png [--width 1280 --height 2400]

Exit status 0 with the PNG written; 2 when chromium is missing or the screenshot failed.
Also importable: ``screenshot(html, png, width=..., height=...)`` and ``png_stats(png)``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH (Debian: /usr/bin/chromium), or None."""
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(
    html: str | os.PathLike[str],
    png: str | os.PathLike[str],
    *,
    width: int = 1280,
    height: int = 2400,
    chromium: str | None = None,
) -> Path:
    """Render ``html`` (a local file) to ``png`` with a fresh profile and no network features.

    Raises:
        FileNotFoundError: no chromium binary, or the HTML file does not exist.
        RuntimeError: chromium exited without writing the PNG (its stderr tail is in the message).
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
    src = Path(html).resolve()
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    out = Path(png).resolve()
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="sft-distill-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",  # root in containers/CI; the page is our own local file
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            src.as_uri(),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    if not out.is_file() or out.stat().st_size == 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:]
        raise RuntimeError(f"chromium exit {proc.returncode}, no screenshot: {' | '.join(tail)}")
    return out


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def png_stats(png: str | os.PathLike[str]) -> dict[str, int]:
    """Width, height, byte size and the number of distinct pixel colours (8-bit RGB/RGBA PNGs).

    Decodes IDAT with zlib and undoes the PNG row filters; no imaging library needed.
    """
    data = Path(png).read_bytes()
    chunks = _chunks(data)
    ihdr = next(body for kind, body in chunks if kind == b"IHDR")
    width, height, depth, colour_type = struct.unpack(">IIBB", ihdr[:10])
    if depth != 8 or colour_type not in (2, 6):
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {colour_type})")
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * bpp
    prev = bytearray(stride)
    colours: set[bytes] = set()
    pos = 0
    for _ in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        # Sample every 4th pixel of every 8th row: enough to tell a page from a blank.
        if _ % 8 == 0:
            for x in range(0, stride, 4 * bpp):
                colours.add(bytes(line[x : x + 3]))
        prev = line
    return {"width": width, "height": height, "bytes": len(data), "colours": len(colours)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", help="the report.html to render")
    p.add_argument("png", help="where to write the screenshot")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2400)
    args = p.parse_args(argv)
    try:
        out = screenshot(args.html, args.png, width=args.width, height=args.height)
        stats = png_stats(out)
    except (FileNotFoundError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot_report: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{out}: {stats['width']}x{stats['height']}, {stats['bytes']} bytes, "
        f"{stats['colours']} colours sampled"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
