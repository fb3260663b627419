# SPDX-License-Identifier: GPL-3.0-or-later
# GIMP 3.0 python-fu-eval script for the DermLens plug-in test.
# DL_PHASE=run: set up each case, run the plug-in non-interactively, save XCF.
# DL_PHASE=inspect: re-open each XCF and write what is in it for
# check_result.py (same file layout as the GIMP 2.10 scripts).
# DL_WORK = work folder, DL_DATA = tests/data folder.
import os
import struct
import sys
import zlib

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

WORK = os.environ["DL_WORK"]
DATA = os.environ["DL_DATA"]
PHASE = os.environ["DL_PHASE"]
PDB = Gimp.get_pdb()
CASES = ["rgb", "selection", "grey", "u16", "offset"]


def path(name):
    return os.path.join(WORK, name)


def write_png(fname, w, h, channels, pixels):
    """8-bit PNG writer (grey, GA, RGB, RGBA): enough for the checker."""
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    stride = w * channels
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(h))

    def chunk(kind, body):
        c = struct.pack(">I", len(body)) + kind + body
        return c + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    with open(fname, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def pixels(drawable, fmt, x=0, y=0, w=None, h=None):
    w = drawable.get_width() if w is None else w
    h = drawable.get_height() if h is None else h
    buf = drawable.get_buffer()
    return buf.get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE)


def native_bytes(drawable):
    """The layer's pixels at its own bit depth (u8/u16), for a byte-exact
    before/after comparison (float reads may differ by one ulp between babl
    conversion paths)."""
    nick = drawable.get_image().get_precision().value_nick
    depth = "u8" if nick.startswith("u8") else "u16" if nick.startswith("u16") else "float"
    return pixels(drawable, "R'G'B'A " + depth)


def load(fname):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(fname))


def classify(img, layer, **kw):
    proc = PDB.lookup_procedure("plug-in-dermlens-classify")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    args = {"model-path": "", "saliency-method": "gradcam", "opacity": 60.0, "top-k": 3,
            "add-labels": True, "add-legend": True}
    args.update(kw)
    for k, v in args.items():
        cfg.set_property(k, v)
    res = proc.run(cfg)
    status = res.index(0)
    msg = res.index(1) if status != Gimp.PDBStatusType.SUCCESS and res.length() > 1 else ""
    return status, msg


def run_case(name, fname, setup):
    img = load(fname)
    setup(img)
    layer = img.get_layers()[0]
    with open(path(name + "-before.raw"), "wb") as f:
        f.write(native_bytes(layer))
    # The region the plug-in classifies, as 8-bit RGB, for the CLI reference.
    ok, x, y, w, h = layer.mask_intersect()
    write_png(path(name + "-ref.png"), w, h, 3, pixels(layer, "R'G'B' u8", x, y, w, h))
    status, msg = classify(img, layer)
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("%s: plug-in failed: %s" % (name, msg))
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path(name + ".xcf")), None)
    img.delete()


def phase_run():
    mel = os.path.join(DATA, "lesions", "ISIC_0031711.jpg")
    nv = os.path.join(DATA, "lesions", "ISIC_0025921.jpg")
    bkl = os.path.join(DATA, "lesions", "ISIC_0029674.jpg")
    run_case("rgb", mel, lambda img: None)
    run_case("selection", nv, lambda img: img.select_rectangle(Gimp.ChannelOps.REPLACE, 40, 30, 120, 100))
    run_case("grey", bkl, lambda img: img.convert_grayscale())
    run_case("u16", mel, lambda img: img.convert_precision(Gimp.Precision.U16_NON_LINEAR))
    run_case("offset", nv, lambda img: img.resize(284, 244, 30, 10))

    # A selection too small must be refused with a message, adding nothing.
    img = load(bkl)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 4, 4)
    status, msg = classify(img, img.get_layers()[0])
    with open(path("tiny-facts.txt"), "w") as f:
        f.write("%s %d\n" % ("accepted" if status == Gimp.PDBStatusType.SUCCESS else "refused",
                             len(img.get_layers())))
    print("tiny selection:", msg)
    img.delete()

    proc = PDB.lookup_procedure("plug-in-dermlens-batch")
    cfg = proc.create_config()
    for k, v in (("run-mode", Gimp.RunMode.NONINTERACTIVE), ("input-folder", path("batch-in")),
                 ("output-csv", path("batch.csv")), ("output-folder", path("batch-out")),
                 ("model-path", ""), ("saliency-method", "gradcam"), ("opacity", 60.0)):
        cfg.set_property(k, v)
    res = proc.run(cfg)
    if res.index(0) != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("batch failed: %s" % (res.index(1) if res.length() > 1 else "?"))
    with open(path("batch-facts.txt"), "w") as f:
        f.write("%d %d\n" % (res.index(1), res.index(2)))


def fact(f, kind, item):
    ok, x, y = item.get_offsets()
    is_text = 1 if isinstance(item, Gimp.TextLayer) else 0
    f.write("\t".join(str(v) for v in (kind, item.get_name(), is_text, x, y,
                                        item.get_width(), item.get_height())) + "\n")


def inspect(name):
    img = load(path(name + ".xcf"))
    with open(path(name + "-facts.txt"), "w") as f:
        for layer in img.get_layers():
            if layer.is_group():
                fact(f, "group", layer)
                for c in layer.get_children():
                    fact(f, "child", c)
                    if c.get_name().startswith("DermLens saliency"):
                        write_png(path(name + "-overlay.png"), c.get_width(), c.get_height(), 4,
                                  pixels(c, "R'G'B'A u8"))
                    if isinstance(c, Gimp.TextLayer):
                        with open(path(name + "-text.txt"), "w") as t:
                            t.write(c.get_text())
            else:
                fact(f, "layer", layer)
                with open(path(name + "-after.raw"), "wb") as r:
                    r.write(native_bytes(layer))
    para = img.get_parasite("dermlens-result")
    data = para.get_data() if para else []
    with open(path(name + "-parasite.json"), "wb") as f:
        f.write(bytes(data))
    img.delete()


if PHASE == "run":
    phase_run()
else:
    for c in CASES:
        inspect(c)
