# SPDX-License-Identifier: GPL-3.0-or-later
# GIMP 3.0 python-fu-eval script for the DermLens plug-in test.
# DL_PHASE=run: set up each case, run the plug-in non-interactively, save XCF.
# DL_PHASE=inspect: re-open each XCF and write what is in it for
# check_result.py (same file layout as the GIMP 2.10 scripts).
# DL_PHASE=killbatch: a batch over ~40 images that the driver kills part-way.
# DL_PHASE=huge: classify a 30000 x 30000 layer (DL_GIMP_HUGE=1 only).
# DL_PHASE=makexcf: the batch's XCF (a file only GIMP opens), two layers.
# DL_WORK = work folder, DL_DATA = tests/data folder.
import math
import os
import struct
import sys
import time
import zlib

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

WORK = os.environ["DL_WORK"]
DATA = os.environ["DL_DATA"]
PHASE = os.environ["DL_PHASE"]
PDB = Gimp.get_pdb()
CASES = ["rgb", "selection", "grey", "u16", "offset", "empty", "float", "blank", "skin", "big"]


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
    linear = nick.endswith("-linear") and not nick.endswith("non-linear")
    return pixels(drawable, ("RGBA " if linear else "R'G'B'A ") + depth)


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


def run_case(name, fname, setup, **kw):
    img = load(fname)
    setup(img)
    layer = img.get_layers()[0]
    with open(path(name + "-before.raw"), "wb") as f:
        f.write(native_bytes(layer))
    # The region the plug-in classifies, as 8-bit RGB, for the CLI reference.
    ok, x, y, w, h = layer.mask_intersect()
    write_png(path(name + "-ref.png"), w, h, 3, pixels(layer, "R'G'B' u8", x, y, w, h))
    status, msg = classify(img, layer, **kw)
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("%s: plug-in failed: %s" % (name, msg))
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path(name + ".xcf")), None)
    img.delete()


def run_figure(fname):
    """Teaching figure: a new image saved as XCF and exported flattened as
    PNG; the original's layer, layers and parasites before and after."""
    img = load(fname)
    layer = img.get_layers()[0]
    with open(path("figure-before.raw"), "wb") as f:
        f.write(native_bytes(layer))
    def state():
        paras = img.get_parasite_list()
        return "%d %d %d" % (len(img.get_layers()), len(paras), 1 if "dermlens-result" in paras else 0)
    before = state()
    proc = PDB.lookup_procedure("plug-in-dermlens-figure")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    for k, v in {"model-path": "", "saliency-method": "gradcam", "opacity": 60.0, "top-k": 3,
                 "overlay-style": "fill"}.items():
        cfg.set_property(k, v)
    res = proc.run(cfg)
    if res.index(0) != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("figure: plug-in failed: %s" % (res.index(1) if res.length() > 1 else "?"))
    fig = res.index(1)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, fig, Gio.File.new_for_path(path("figure.xcf")), None)
    flat = fig.duplicate()
    flat.flatten()
    fl = flat.get_layers()[0]
    write_png(path("figure.png"), fl.get_width(), fl.get_height(), 3, pixels(fl, "R'G'B' u8"))
    flat.delete()
    fig.delete()
    with open(path("figure-original.txt"), "w") as f:
        f.write("%s %s\n" % (before, state()))
    with open(path("figure-after.raw"), "wb") as f:
        f.write(native_bytes(img.get_layers()[0]))
    img.delete()


def run_new_case(name, w, h, rgb):
    """A plain image made here (not a lesion): white, skin colour."""
    img = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, "plain", w, h, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    set_rect(layer, 0, 0, w, h, "R'G'B' u8", bytes(rgb))
    with open(path(name + "-before.raw"), "wb") as f:
        f.write(native_bytes(layer))
    write_png(path(name + "-ref.png"), w, h, 3, pixels(layer, "R'G'B' u8"))
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
    # Over 1024 px on a side: analysed from GIMP's reduced copy.
    run_case("big", mel, lambda img: img.scale(2400, 1800))
    run_new_case("blank", 224, 224, (255, 255, 255))
    run_new_case("skin", 224, 224, (224, 172, 150))
    # Outline mode: the contour of the map's top 20 %.
    run_case("outline", mel, lambda img: None, **{"overlay-style": "outline"})
    run_figure(mel)

    # A selection too small must be refused with a message, adding nothing.
    img = load(bkl)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 4, 4)
    status, msg = classify(img, img.get_layers()[0])
    with open(path("tiny-facts.txt"), "w") as f:
        f.write("%s %d\n" % ("accepted" if status == Gimp.PDBStatusType.SUCCESS else "refused",
                             len(img.get_layers())))
    print("tiny selection:", msg)
    img.delete()

    # A layer mask as the drawable (wrong type) must be refused, adding nothing.
    img = load(bkl)
    layer = img.get_layers()[0]
    mask = layer.create_mask(Gimp.AddMaskType.WHITE)
    layer.add_mask(mask)
    status, msg = classify(img, mask)
    with open(path("mask-facts.txt"), "w") as f:
        f.write("%s %d\n" % ("accepted" if status == Gimp.PDBStatusType.SUCCESS else "refused",
                             len(img.get_layers())))
    print("mask drawable:", msg)
    img.delete()

    fault_cases(mel, nv, bkl)

    res = batch("batch-in", "batch.csv", "batch-out")
    if res.index(0) != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("batch failed: %s" % (res.index(1) if res.length() > 1 else "?"))
    with open(path("batch-facts.txt"), "w") as f:
        f.write("%d %d\n" % (res.index(1), res.index(2)))
    # the ground truth from a labels CSV, the CSV only (no output folder)
    res = batch("batch-in", "batch-labels.csv", None, labels=path("labels.csv"))
    if res.index(0) != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("batch with labels failed: %s" % (res.index(1) if res.length() > 1 else "?"))
    with open(path("batch-labels-facts.txt"), "w") as f:
        f.write("%d %d\n" % (res.index(1), res.index(2)))


def batch(folder, csv_name, out, labels=None):
    """labels-csv is set only when given: calls without it must keep working."""
    proc = PDB.lookup_procedure("plug-in-dermlens-batch")
    cfg = proc.create_config()
    for k, v in (("run-mode", Gimp.RunMode.NONINTERACTIVE), ("input-folder", path(folder)),
                 ("output-csv", path(csv_name)), ("output-folder", path(out) if out else ""),
                 ("model-path", ""), ("saliency-method", "gradcam"), ("opacity", 60.0)):
        cfg.set_property(k, v)
    if labels:
        cfg.set_property("labels-csv", labels)
    return proc.run(cfg)


def phase_makexcf():
    """ISIC_0029674 as XCF two folders below its class folder (bkl), with a
    second layer so that the batch has to flatten it."""
    img = load(os.path.join(DATA, "lesions", "ISIC_0029674.jpg"))
    top = Gimp.Layer.new(img, "corner", 24, 24, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(top, None, 0)
    top.fill(Gimp.FillType.WHITE)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img,
                   Gio.File.new_for_path(path("batch-in/bkl/nested/deeper/ISIC_0029674.xcf")), None)
    img.delete()


def set_rect(layer, x, y, w, h, fmt, px):
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(x, y, w, h), fmt, px * (w * h))
    buf.flush()
    layer.update(x, y, w, h)


def fault_cases(mel, nv, bkl):
    """Issue 8: empty selection, float layer with NaN/Inf, 1x1 layer, undo."""
    def empty_sel(img):
        img.select_rectangle(Gimp.ChannelOps.REPLACE, 40, 30, 120, 100)
        img.select_rectangle(Gimp.ChannelOps.SUBTRACT, 40, 30, 120, 100)
    run_case("empty", nv, empty_sel)

    # 64 x 64 float-linear layer with NaN, +Inf, -Inf blocks. Plug-in rule:
    # NaN and -Inf read as 0, +Inf as 1; the CLI reference has the blocks
    # painted black, white, black.
    img = load(mel)
    img.crop(64, 64, 80, 80)
    layer = img.get_layers()[0]
    ref = bytearray(pixels(layer, "R'G'B' u8"))
    for y0, v in ((8, 0), (24, 255), (40, 0)):
        for y in range(y0, y0 + 8):
            for x in range(8, 24):
                ref[3 * (64 * y + x):3 * (64 * y + x) + 3] = bytes((v, v, v))
    write_png(path("float-ref.png"), 64, 64, 3, bytes(ref))
    img.convert_precision(Gimp.Precision.FLOAT_LINEAR)
    layer = img.get_layers()[0]
    for y0, v in ((8, math.nan), (24, math.inf), (40, -math.inf)):
        set_rect(layer, 8, y0, 16, 8, "RGB float", struct.pack("<fff", v, v, v))
    with open(path("float-before.raw"), "wb") as f:
        f.write(native_bytes(layer))
    status, msg = classify(img, layer)
    if status != Gimp.PDBStatusType.SUCCESS:
        raise RuntimeError("float: plug-in failed: %s" % msg)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path("float.xcf")), None)
    img.delete()

    # A 1 x 1 layer: refused with a message, nothing added, pixel unchanged.
    img = Gimp.Image.new(1, 1, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, "tiny", 1, 1, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    set_rect(layer, 0, 0, 1, 1, "R'G'B' u8", bytes((12, 34, 56)))
    status, msg = classify(img, layer)
    px = pixels(img.get_layers()[0], "R'G'B' u8")
    with open(path("tiny1-facts.txt"), "w") as f:
        f.write("%s %d %d (%s)\n" % ("accepted" if status == Gimp.PDBStatusType.SUCCESS else "refused",
                                     len(img.get_layers()), len(img.get_parasite_list()),
                                     " ".join(str(b) for b in px)))
    with open(path("tiny1-msg.txt"), "w") as f:
        f.write(msg or "")
    img.delete()

    # Undo: one real undo step (gimp_image_undo in GIMP's core, reached
    # through the undo-probe LD_PRELOAD helper: there is no PDB procedure
    # that undoes) must remove everything the plug-in added.
    img = load(bkl)
    if not img.undo_is_enabled():
        img.undo_enable()
    layer = img.get_layers()[0]
    with open(path("undo-before.raw"), "wb") as f:
        f.write(native_bytes(layer))
    with open(path("undo-facts.txt"), "w") as f:
        def state(tag):
            layers = img.get_layers()
            top = layers[0]
            kids = len(top.get_children()) if top.is_group() else 0
            f.write("%s %d %d %d\n" % (tag, len(layers),
                                        1 if "dermlens-result" in img.get_parasite_list() else 0, kids))
        state("before")
        img.attach_parasite(Gimp.Parasite.new("dermlens-undo-probe", 0, [49]))
        status, msg = classify(img, layer)
        if status != Gimp.PDBStatusType.SUCCESS:
            raise RuntimeError("undo: plug-in failed: %s" % msg)
        img.attach_parasite(Gimp.Parasite.new("dermlens-undo-probe", 0, [49]))
        state("classified")
        img.attach_parasite(Gimp.Parasite.new("dermlens-undo-now", 0, [49]))
        state("undone")
    with open(path("undo-after.raw"), "wb") as f:
        f.write(native_bytes(img.get_layers()[0]))
    img.delete()


def phase_killbatch():
    res = batch("batch-kill-in", "batch-kill.csv", "batch-kill-out")
    with open(path("batch-kill-facts.txt"), "w") as f:
        f.write("%s\n" % ("completed" if res.index(0) == Gimp.PDBStatusType.SUCCESS else "failed"))


def phase_huge():
    samples = ((0, 0), (15000, 15000), (29999, 29999), (9001, 20000), (123, 29000))

    def sample(layer):
        return "".join("(%s)" % " ".join(str(b) for b in pixels(layer, "R'G'B' u8", x, y, 1, 1))
                       for x, y in samples)
    t0 = time.time()
    img = Gimp.Image.new(30000, 30000, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, "huge", 30000, 30000, Gimp.ImageType.RGB_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    Gimp.context_set_foreground(Gegl.Color.new("rgb(0.784,0.588,0.510)"))
    layer.fill(Gimp.FillType.FOREGROUND)
    img.select_ellipse(Gimp.ChannelOps.REPLACE, 9000, 9000, 12000, 12000)
    Gimp.context_set_foreground(Gegl.Color.new("rgb(0.353,0.196,0.157)"))
    layer.edit_fill(Gimp.FillType.FOREGROUND)
    Gimp.Selection.none(img)
    with open(path("huge-facts.txt"), "w") as f:
        f.write("created-s %d\n" % (time.time() - t0))
        f.write("before %s\n" % sample(layer))
        t1 = time.time()
        status, msg = classify(img, layer)
        f.write("%s\n" % ("classified" if status == Gimp.PDBStatusType.SUCCESS else "refused"))
        f.write("classify-s %d\n" % (time.time() - t1))
        if msg:
            f.write("message %s\n" % msg)
        f.write("after %s\n" % sample(layer))
        layers = img.get_layers()
        f.write("layers %d\n" % len(layers))
        if layers[0].is_group():
            for c in layers[0].get_children():
                ok, x, y = c.get_offsets()
                f.write("child\t%s\t%d\t%d\t%d\t%d\n" % (c.get_name(), x, y, c.get_width(), c.get_height()))
    para = img.get_parasite("dermlens-result")
    with open(path("huge-parasite.json"), "wb") as f:
        f.write(bytes(para.get_data()) if para else b"")
    img.delete()


def fact(f, kind, item):
    ok, x, y = item.get_offsets()
    is_text = 1 if isinstance(item, Gimp.TextLayer) else 0
    f.write("\t".join(str(v) for v in (kind, item.get_name(), is_text, x, y,
                                        item.get_width(), item.get_height())) + "\n")


def font_px(layer):
    r = layer.get_font_size()
    return r[0] if isinstance(r, (tuple, list)) else r


def inspect(name):
    img = load(path(name + ".xcf"))
    with open(path(name + "-facts.txt"), "w") as f, open(path(name + "-text.txt"), "w") as t, \
            open(path(name + "-textfacts.txt"), "w") as tf:
        for layer in img.get_layers():
            if layer.is_group():
                fact(f, "group", layer)
                for c in layer.get_children():
                    fact(f, "child", c)
                    if c.get_name().startswith("Saliency ("):
                        write_png(path(name + "-overlay.png"), c.get_width(), c.get_height(), 4,
                                  pixels(c, "R'G'B'A u8"))
                    if c.get_name().startswith("Outline: "):
                        write_png(path(name + "-outline.png"), c.get_width(), c.get_height(), 4,
                                  pixels(c, "R'G'B'A u8"))
                    if c.get_name().startswith("Text background"):
                        write_png(path(name + "-box.png"), c.get_width(), c.get_height(), 4,
                                  pixels(c, "R'G'B'A u8"))
                    if isinstance(c, Gimp.TextLayer):
                        # With markup the plain text property is empty: keep the markup
                        # (check_result.py strips the tags and reads the colours).
                        t.write((c.get_markup() or c.get_text() or "") + "\n")
                        col = c.get_color().get_rgba()
                        tf.write("%s\t%s\t%d %d %d\n" % (c.get_name(), font_px(c), round(col[0] * 255),
                                                          round(col[1] * 255), round(col[2] * 255)))
            else:
                fact(f, "layer", layer)
                with open(path(name + "-after.raw"), "wb") as r:
                    r.write(native_bytes(layer))
    para = img.get_parasite("dermlens-result")
    data = para.get_data() if para else []
    with open(path(name + "-parasite.json"), "wb") as f:
        f.write(bytes(data))
    img.delete()


def inspect_figure():
    """The teaching figure: its size, its layers and the caption's text."""
    img = load(path("figure.xcf"))
    with open(path("figure-facts.txt"), "w") as f, open(path("figure-text.txt"), "w") as t:
        f.write("image\t%d\t%d\n" % (img.get_width(), img.get_height()))
        for layer in img.get_layers():
            fact(f, "layer", layer)
            if isinstance(layer, Gimp.TextLayer):
                t.write((layer.get_text() or layer.get_markup() or "") + "\n")
    img.delete()


def phase_dialog():
    """Classify Lesion run interactively (on Xvfb): with DERMLENS_DIALOG_TEST
    set, the plug-in's dialogs describe themselves and answer OK / Close."""
    img = load(os.path.join(DATA, "lesions", "ISIC_0031711.jpg"))
    proc = PDB.lookup_procedure("plug-in-dermlens-classify")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [img.get_layers()[0]])
    res = proc.run(cfg)
    print("dialog run status:", res.index(0))
    img.delete()


def phase_installed():
    """The plug-in found by GIMP in its own plug-in folder (GIMP3_PLUGINDIR
    points at a copy of the lib folder with the install layout)."""
    img = load(os.path.join(DATA, "lesions", "ISIC_0031711.jpg"))
    status, msg = classify(img, img.get_layers()[0])
    with open(path("installed-facts.txt"), "w") as f:
        f.write("%s\n" % (img.get_layers()[0].get_name() if status == Gimp.PDBStatusType.SUCCESS else "failed: " + msg))
    img.delete()


if PHASE == "run":
    phase_run()
elif PHASE == "dialog":
    phase_dialog()
elif PHASE == "installed":
    phase_installed()
elif PHASE == "killbatch":
    phase_killbatch()
elif PHASE == "huge":
    phase_huge()
elif PHASE == "makexcf":
    phase_makexcf()
else:
    for c in CASES + ["outline"]:
        inspect(c)
    inspect_figure()
