# SPDX-License-Identifier: GPL-3.0-or-later
"""A small dataset folder for the `dermlens review` tests, built in a temp
dir from the shipped sample images: class subfolders (one nested deeper),
a TIFF and a BMP whose folder label is wrong on purpose (so they are the
most suspicious), a broken JPEG, a blank PNG (flagged out of distribution),
a hostile file name, and a file that is not an image."""
import csv
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def png_bytes(w, h, rgb):
    """An 8-bit RGB PNG of one colour (stdlib only)."""
    raw = b"".join(b"\0" + bytes(rgb) * w for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# path in the dataset -> (source, the label the folder gives)
def build(root, source_root):
    sample = os.path.join(source_root, "tests", "data", "sample")
    files = {
        "mel/ISIC_0031711.jpg": "mel/ISIC_0031711.jpg",
        "mel/ISIC_0032915.jpg": "mel/ISIC_0032915.jpg",
        "nv/ISIC_0025921.jpg": "nv/ISIC_0025921.jpg",
        "nv/ISIC_0026710.jpg": "nv/ISIC_0026710.jpg",
        "bkl/ISIC_0029674.jpg": "bkl/ISIC_0029674.jpg",
        "archive/2019/vasc/ISIC_0031201.jpg": "vasc/ISIC_0031201.jpg",
        "bcc/ISIC_0029392.jpg": "bcc/ISIC_0029392.jpg",
        "=HYPERLINK(x).jpg": "bcc/ISIC_0030893.jpg",  # no class folder: no label
        'bkl/<b>odd & "name\'.jpg': "bkl/ISIC_0031449.jpg",
    }
    for rel, src in files.items():
        os.makedirs(os.path.join(root, os.path.dirname(rel) or "."), exist_ok=True)
        shutil.copyfile(os.path.join(sample, src), os.path.join(root, rel))
    # a dermatofibroma TIFF filed under nv, a basal cell carcinoma BMP filed under mel
    shutil.copyfile(os.path.join(HERE, "data", "ISIC_0028790.tif"), os.path.join(root, "nv", "ISIC_0028790.tif"))
    shutil.copyfile(os.path.join(HERE, "data", "ISIC_0026656.bmp"), os.path.join(root, "mel", "ISIC_0026656.bmp"))
    with open(os.path.join(sample, "nv", "ISIC_0030545.jpg"), "rb") as f:
        data = f.read()
    with open(os.path.join(root, "nv", "broken.jpg"), "wb") as f:
        f.write(data[: len(data) // 3])
    with open(os.path.join(root, "nv", "blank.png"), "wb") as f:
        f.write(png_bytes(96, 96, (250, 250, 250)))
    with open(os.path.join(root, "README.txt"), "w") as f:
        f.write("not an image\n")
    images = sorted(list(files) + ["nv/ISIC_0028790.tif", "mel/ISIC_0026656.bmp", "nv/broken.jpg", "nv/blank.png"])
    return images


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]], rows[1:]
