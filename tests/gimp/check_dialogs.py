#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check what the DermLens dialogs showed (standard library only).

Usage: check_dialogs.py DUMP LOG

DUMP is written by the plug-in when DERMLENS_DIALOG_TEST is set (see
plugin/core.c): per dialog a "dialog<TAB>title" line, then
"label|button|tooltip|choice|filechooser<TAB>..." lines, then "end".
LOG is GIMP's output for the session (the plug-in's warnings land there).
Checks: the Classify dialog has a file chooser for the model, readable
saliency names with a one-line description each, the disclaimer, and no
two mnemonics alike (GIMP 3 also prints no "duplicate mnemonic" warning);
the Result dialog has the headline and the disclaimer.
"""
import sys

DISCLAIMER = "Research/teaching aid - not a diagnosis"
METHODS = ["Grad-CAM", "Grad-CAM++", "HiResCAM", "LayerCAM", "Score-CAM", "Occlusion"]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


def read_dump(path):
    dialogs, cur = [], None
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "dialog":
                cur = {"title": parts[1], "items": []}
                dialogs.append(cur)
            elif parts[0] == "end":
                cur = None
            elif cur is not None:
                cur["items"].append((parts[0], "\t".join(parts[1:])))
    return dialogs


def mnemonic(text):
    i = text.find("_")
    while i >= 0 and i + 1 < len(text):
        if text[i + 1] != "_":
            return text[i + 1].lower()
        i = text.find("_", i + 2)
    return None


def main():
    dump, log = sys.argv[1], sys.argv[2]
    try:
        dialogs = read_dump(dump)
    except OSError as e:
        print("FAIL: no dialog dump: %s" % e)
        return 1
    with open(log, errors="replace") as f:
        logtext = f.read()
    check("duplicate mnemonic" not in logtext.lower(), "GIMP warned about duplicate mnemonics: %s"
          % [l for l in logtext.splitlines() if "mnemonic" in l.lower()][:4])
    titles = [d["title"] for d in dialogs]
    cl = [d for d in dialogs if "Classify" in d["title"]]
    rs = [d for d in dialogs if "Result" in d["title"]]
    check(cl and rs, "dialogs shown: %r (want Classify Lesion and Result)" % titles)
    for d in cl[:1]:
        items = d["items"]
        texts = [t for k, t in items if k in ("label", "button")]
        tips = [t for k, t in items if k == "tooltip"]
        # Combo-box models may keep the ids in a hidden column: look at the
        # column that holds the names the user sees.
        pairs = [tuple(t.split("\t", 1)) for k, t in items if k == "choice"]
        shown = {c for c, v in pairs if v == METHODS[0]}
        choices = [v for c, v in pairs if c in shown]
        check(any(DISCLAIMER in t for t in texts), "Classify dialog: no disclaimer in %r" % texts)
        check(any(k == "filechooser" for k, t in items) or any("Choose" in t for t in texts),
              "Classify dialog: no file chooser for the model")
        for m in METHODS:
            check(m in choices, "Classify dialog: saliency choice %r missing from %r" % (m, choices))
        check(not any(c in choices for c in ("gradcam", "gradcam++", "hirescam")),
              "Classify dialog: raw method ids shown: %r" % choices)
        check(len(set(tips)) >= 3 and "Saliency method" not in tips,
              "Classify dialog: tooltips %r" % tips)
        mn = {}
        for t in texts:
            c = mnemonic(t)
            if c:
                mn.setdefault(c, []).append(t)
        dups = {c: v for c, v in mn.items() if len(v) > 1}
        check(not dups, "Classify dialog: duplicate mnemonics %r" % dups)
        print("Classify dialog: %d labels/buttons, mnemonics %s, %d tooltips, choices %s" % (
            len(texts), "".join(sorted(mn)), len(tips), ", ".join(c for c in choices if c in METHODS)))
    for d in rs[:1]:
        texts = [t for k, t in d["items"] if k in ("label", "button")]
        check(any(DISCLAIMER in t for t in texts), "Result dialog: no disclaimer in %r" % texts)
        check(any("%" in t for t in texts) or any(k == "label" and "weight" in t for k, t in d["items"]),
              "Result dialog: no headline")
        print("Result dialog: %s" % " | ".join(t for t in texts if t)[:300])
    if failures:
        for f in failures:
            print("FAIL:", f)
        return 1
    print("dialog checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
