#!/usr/bin/python3
"""Post-hoc choices on validation predictions, without running the network again.

Reads the predictions.csv files that `dermlens evaluate` writes (one per source,
as laid out by docs/training/eval-sets.sh) for one or more candidate models and
prints, per candidate and per ensemble of candidates (mean of the calibrated
probabilities, exactly what a multi-member model file computes; a melanoma
shift is applied to each member before the mean, as the file folds it, and a
source with fewer classes is restricted after the mean, as `dermlens evaluate`
does):

  - balanced accuracy / accuracy / melanoma recall / ECE per validation source,
  - the selection score (mean balanced accuracy over the three sources),
  - the smallest melanoma log-odds shift (what `dermlens adjust --class-bias
    mel=X` folds in) that gives melanoma recall >= the floor on every source,
    and the scores at that shift.

  usage: posthoc.py [--floor 0.75] [--ensembles] NAME=EVALDIR [NAME=EVALDIR ...]

Every number here is from validation; the test sets are not read.
"""
import argparse
import csv
import itertools
import math

import numpy as np

SETS = ("ham10000", "ham10000_224crop", "isic2017")


def load(d, split="val"):
    """Per source: paths, labels (indices into the model's classes), the
    model's probabilities over all its classes, the class names, and the
    classes present in the data (ISIC 2017: bkl/mel/nv)."""
    out = {}
    for s in SETS:
        with open(f"{d}/{s}-{split}/predictions.csv", newline="") as f:
            r = csv.reader(f)
            head = next(r)
            classes = head[3:-1]
            rows = list(r)
        paths = [x[0] for x in rows]
        labels = np.array([classes.index(x[1]) for x in rows])
        probs = np.array([[float(v) for v in x[3:3 + len(classes)]] for x in rows])
        out[s] = (paths, labels, [probs], classes, sorted(set(labels.tolist())))
    return out


def restrict(labels, probs, classes, present):
    """As `dermlens evaluate`: a set with fewer classes than the model is
    scored on its classes, the probabilities renormalised."""
    if len(present) == len(classes):
        return labels, probs, classes
    p = probs[:, present]
    return (np.array([present.index(v) for v in labels]), p / p.sum(1, keepdims=True),
            [classes[c] for c in present])


def metrics(labels, probs):
    k = probs.shape[1]
    pred = probs.argmax(1)
    acc = float((pred == labels).mean())
    rec = [float((pred[labels == c] == c).mean()) for c in range(k) if (labels == c).any()]
    bacc = float(np.mean(rec))
    conf = probs.max(1)
    bins = np.minimum((conf * 15).astype(int), 14)
    ece = 0.0
    for b in range(15):
        m = bins == b
        if m.any():
            ece += abs(float((pred[m] == labels[m]).mean()) - float(conf[m].mean())) * m.sum() / len(labels)
    return bacc, acc, ece, pred


def shift(probs, c, x):
    """Multiply class c's probability by e^x and renormalise (a logit bias)."""
    p = probs.copy()
    p[:, c] *= math.exp(x)
    return p / p.sum(1, keepdims=True)


def summary(data, x=0.0):
    """Scores with the melanoma shift x applied as a model file applies it
    (`dermlens adjust --class-bias` folds it into every member's output, so
    each member's probabilities are shifted before the members' mean), then
    the set's class restriction, as `dermlens evaluate` does."""
    res = []
    for s in SETS:
        _, labels, members, classes, present = data[s]
        mel = classes.index("mel")
        probs = np.mean([shift(m, mel, x) if x else m for m in members], 0)
        lab, p, cls = restrict(labels, probs, classes, present)
        mel_r = cls.index("mel")
        bacc, acc, ece, pred = metrics(lab, p)
        mrec = float((pred[lab == mel_r] == mel_r).mean())
        res.append((bacc, acc, mrec, ece))
    return res


def fmt(res):
    cells = " | ".join(f"{b:.3f} / {a:.3f} / {m:.3f} / {e:.3f}" for b, a, m, e in res)
    return f"{cells} | {np.mean([r[0] for r in res]):.4f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--floor", type=float, default=0.75, help="melanoma recall floor on every source")
    ap.add_argument("--ensembles", action="store_true", help="also score every ensemble of 2+ candidates")
    ap.add_argument("cands", nargs="+", metavar="NAME=DIR")
    a = ap.parse_args()
    cands = {}
    for c in a.cands:
        n, d = c.split("=", 1)
        cands[n] = load(d)
    names = list(cands)
    # all candidates must have scored the same images in the same order
    for n in names[1:]:
        for s in SETS:
            assert cands[n][s][0] == cands[names[0]][s][0], f"{n}/{s}: different images"
    rows = [(n, cands[n]) for n in names]
    if a.ensembles:
        for r in range(2, len(names) + 1):
            for combo in itertools.combinations(names, r):
                ens = {s: (cands[combo[0]][s][0], cands[combo[0]][s][1],
                           [m for n in combo for m in cands[n][s][2]], cands[combo[0]][s][3],
                           cands[combo[0]][s][4]) for s in SETS}
                rows.append(("+".join(combo), ens))
    print("| candidate | HAM val bacc / acc / mel rec / ECE | crop val | ISIC val | mean bacc |")
    print("|---|---|---|---|---|")
    for n, d in rows:
        print(f"| {n} | {fmt(summary(d))} |")
    print(f"\nAt the smallest melanoma log-odds shift giving recall >= {a.floor} on every source:\n")
    print("| candidate | shift | HAM val bacc / acc / mel rec / ECE | crop val | ISIC val | mean bacc |")
    print("|---|---|---|---|---|---|")
    for n, d in rows:
        for x in np.arange(0, 3.01, 0.05):
            res = summary(d, x)
            if all(r[2] >= a.floor for r in res):
                print(f"| {n} | {x:.2f} | {fmt(res)} |")
                break
        else:
            print(f"| {n} | >3 | not reached | | | |")


if __name__ == "__main__":
    main()
