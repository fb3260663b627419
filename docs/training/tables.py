#!/usr/bin/env python3
"""Markdown tables for the model card from `dermlens evaluate` outputs.

  tables.py val  NAME=DIR [NAME=DIR ...]   one row per candidate, val metrics of the three sources
  tables.py test DIR                       the final model on the three test sets, with 95 % intervals

DIR holds <set>-<split>/metrics.json as written by docs/training/eval-sets.sh.
"""
import json
import sys

SETS = ("ham10000", "ham10000_224crop", "isic2017")


def load(d, s, split):
    return json.load(open(f"{d}/{s}-{split}/metrics.json"))["metrics"]


def mel(m):
    return next((c["recall"] for c in m["per_class"] if c["class"] == "mel"), float("nan"))


def ci(m, k):
    c = m.get(k + "_ci95")
    return f" [{c[0]:.3f}-{c[1]:.3f}]" if c and c[0] is not None else ""


def val_table(args):
    print("| candidate | HAM val bal.acc / acc / mel rec. | crop val bal.acc / acc / mel rec. | ISIC val bal.acc (3 cl.) / mel-vs-nv AUC / mel rec. | mean bal.acc (selection) |")
    print("|---|---|---|---|---|")
    for a in args:
        name, d = a.split("=", 1)
        ms = [load(d, s, "val") for s in SETS]
        sel = sum(m["balanced_accuracy"] for m in ms) / 3
        h, c, i = ms
        print(f"| {name} | {h['balanced_accuracy']:.3f} / {h['accuracy']:.3f} / {mel(h):.3f} | "
              f"{c['balanced_accuracy']:.3f} / {c['accuracy']:.3f} / {mel(c):.3f} | "
              f"{i['balanced_accuracy']:.3f} / {i['mel_vs_nv_auc']:.3f} / {mel(i):.3f} | {sel:.4f} |")


def test_table(d):
    print("| test set | images | accuracy | balanced accuracy | macro AUC | melanoma recall | mel-vs-nv AUC | ECE | flagged OOD |")
    print("|---|---:|---|---|---|---:|---:|---:|---:|")
    for s in SETS:
        full = json.load(open(f"{d}/{s}-test/metrics.json"))
        m = full["metrics"]
        n = full["data"]["scored"]
        ood = m.get("ood_flagged_fraction")
        print(f"| `{s}/test` | {n} | {m['accuracy']:.3f}{ci(m, 'accuracy')} | {m['balanced_accuracy']:.3f}"
              f"{ci(m, 'balanced_accuracy')} | {m['macro_auc']:.3f}{ci(m, 'macro_auc')} | {mel(m):.3f} | "
              f"{m['mel_vs_nv_auc']:.3f} | {m['ece']:.3f} | {'' if ood is None else '%.1f %%' % (100 * ood)} |")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "val":
        val_table(sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "test":
        test_table(sys.argv[2])
    else:
        sys.exit(__doc__)
