"""Write TIFFs with tifffile (an independent encoder) for cellshard's decoder tests.

Usage: tiffs.py OUTDIR
Writes grayscale images in every compression cellshard reads (none, LZW, Deflate,
PackBits), with and without the horizontal predictor, in strips and in tiles, at 8 and 16
bits; for each, the pixels tifffile reads back (little-endian u16, row-major) beside it.
Also writes files cellshard must refuse. Prints a JSON manifest.
"""

import json
import os
import sys

import numpy as np
import tifffile


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    h, w = 37, 45
    good = []
    for dtype in (np.uint8, np.uint16):
        top = 255 if dtype == np.uint8 else 65535
        # A gradient plus noise: predictors and LZW see realistic runs.
        img = (np.add.outer(np.arange(h) * 3, np.arange(w) * 5) % (top // 2)
               + rng.integers(0, top // 2, size=(h, w))).astype(dtype)
        for compression in (None, "lzw", "zlib", "packbits"):
            predictors = [None] if compression in (None, "packbits") else [None, 2]
            for predictor in predictors:
                for layout in ("strips", "tiles"):
                    bits = 8 * np.dtype(dtype).itemsize
                    name = f"g{bits}-{compression or 'none'}-p{predictor or 1}-{layout}.tif"
                    kw = dict(compression=compression, photometric="minisblack")
                    if predictor:
                        kw["predictor"] = predictor
                    if layout == "tiles":
                        kw["tile"] = (16, 16)
                    else:
                        kw["rowsperstrip"] = 7
                    path = os.path.join(out, name)
                    tifffile.imwrite(path, img, **kw)
                    back = tifffile.imread(path)
                    assert np.array_equal(back, img), name
                    back.astype("<u2").tofile(path + ".u16")
                    good.append({"file": name, "width": w, "height": h, "bits": bits})
    bad = []
    rgb = rng.integers(0, 65535, size=(h, w, 3)).astype(np.uint16)
    tifffile.imwrite(os.path.join(out, "rgb.tif"), rgb, photometric="rgb")
    bad.append({"file": "rgb.tif", "reason": "unexpected_format"})
    f32 = rng.random((h, w)).astype(np.float32)
    tifffile.imwrite(os.path.join(out, "float.tif"), f32, photometric="minisblack")
    bad.append({"file": "float.tif", "reason": "unexpected_format"})
    full = open(os.path.join(out, "g16-lzw-p1-strips.tif"), "rb").read()
    open(os.path.join(out, "truncated.tif"), "wb").write(full[: len(full) // 2])
    bad.append({"file": "truncated.tif", "reason": "decode_error"})
    open(os.path.join(out, "not-a-tiff.tif"), "wb").write(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    bad.append({"file": "not-a-tiff.tif", "reason": "decode_error"})
    print(json.dumps({"good": good, "bad": bad, "tifffile": tifffile.__version__}))


if __name__ == "__main__":
    main()
