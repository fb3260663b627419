#!/usr/bin/env bash
# Score one model on the validation (or, once, the test) splits of the three
# sources, the way the model card reports them.
#   usage: docs/training/eval-sets.sh MODEL OUT_DIR val|test [extra evaluate options, e.g. --tta]
set -euo pipefail
MODEL=$1 OUT=$2 SPLIT=$3; shift 3
D=${DATASETS:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
BIN=${DERMLENS:-./build-rel/cli/dermlens}
EX=docs/training/exclude-isic2017-test-duplicates.txt
mkdir -p "$OUT"
"$BIN" evaluate "$MODEL" "$D/ham10000/$SPLIT.csv" --metadata "$D/ham10000/HAM10000_metadata.csv" \
    -n "ham10000-$SPLIT" -o "$OUT/ham10000-$SPLIT" "$@"
"$BIN" evaluate "$MODEL" "$D/ham10000_224crop/splits.csv" --split "$SPLIT" \
    --metadata "$D/ham10000/HAM10000_metadata.csv" -n "ham10000_224crop-$SPLIT" -o "$OUT/ham10000_224crop-$SPLIT" "$@"
# ISIC 2017: the train/val images that duplicate a test image were kept out
# of training (and are dropped from val here), so all 600 test images count
"$BIN" evaluate "$MODEL" "$D/isic2017/labels.csv" --split "$SPLIT" --label-column ham10000_class \
    $( [ "$SPLIT" = val ] && echo "--exclude $EX" ) -n "isic2017-$SPLIT" -o "$OUT/isic2017-$SPLIT" "$@"
python3 - "$OUT" "$SPLIT" <<'PY'
import json, sys
out, split = sys.argv[1], sys.argv[2]
rows = []
for s in ("ham10000", "ham10000_224crop", "isic2017"):
    m = json.load(open(f"{out}/{s}-{split}/metrics.json"))["metrics"]
    mel = next((c["recall"] for c in m["per_class"] if c["class"] == "mel"), float("nan"))
    rows.append((s, m["accuracy"], m["balanced_accuracy"], m["macro_auc"], mel, m["mel_vs_nv_auc"], m["ece"],
                 m.get("ood_flagged_fraction", float("nan"))))
print("%-18s %6s %6s %6s %6s %6s %6s %6s" % ("set", "acc", "bacc", "auc", "melrec", "mel/nv", "ece", "ood"))
for r in rows:
    print("%-18s %6.3f %6.3f %6.3f %6.3f %6.3f %6.3f %6.3f" % r)
print("selection score (mean balanced accuracy over the three sets): %.4f" % (sum(r[2] for r in rows) / 3))
PY
