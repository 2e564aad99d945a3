import sys, json, numpy as np
from pathlib import Path
sys.path.insert(0, "/work/main")
from nnunet_fuse.classification.samples import group_samples
from nnunet_fuse.classification.from_segmentations import label_map_files, feature_table, train_fold
from nnunet_fuse.classification.evaluation import evaluate_cross_validation
from nnunet_fuse.datasets.classes import read_classes
raw = Path("/work/acdc_ws/raw/Dataset027_ACDC"); splits = json.loads(Path("/work/acdc_ws/pre/Dataset027_ACDC/splits_final.json").read_text())
labels_folder = Path(sys.argv[1]) if len(sys.argv) > 1 else raw / "labelsTr"
out = Path(sys.argv[2] if len(sys.argv) > 2 else "/work/acdc_ws/shape_reference")
dj = json.loads((raw / "dataset.json").read_text()); labels = dj["labels"]
cases = sorted(f.name[:-7] for f in (raw / "labelsTr").glob("*.nii.gz"))
classes, case_class = read_classes(raw, cases)
body = {}
for p in sorted(Path("/work/shared/data/ACDC/training").glob("patient*")):
    info = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in (p / "Info.cfg").read_text().splitlines() if ":" in l)}
    body[p.name] = (float(info["Height"]), float(info["Weight"]))
samples = {s.id: s for s in group_samples(cases)}
out.mkdir(parents=True, exist_ok=True); (out / "classes.json").write_text(json.dumps({"classes": classes}))
for fold, split in enumerate(splits):
    tr = [samples[p] for p in sorted({c.split("_frame")[0] for c in split["train"]})]
    va = [samples[p] for p in sorted({c.split("_frame")[0] for c in split["val"]})]
    files = label_map_files([c for s in tr + va for c in s.cases], labels_folder, ".nii.gz")
    names, Xtr = feature_table(tr, files, labels, body); _, Xva = feature_table(va, files, labels, body)
    m = train_fold(out / f"fold_{fold}", names, Xtr, [case_class[s.cases[0]] for s in tr], va, Xva, [case_class[s.cases[0]] for s in va], classes)
    print(fold, round(m["accuracy"], 3), json.loads((out / f"fold_{fold}" / "features.json").read_text())["model"])
evaluate_cross_validation(out, log=lambda l: None)
print(json.dumps(json.loads((out / "cv_report" / "cv_metrics.json").read_text())["mean_over_folds"], indent=0))
