"""The pod-compile table keeps the points of slices not compiled this time, so a slice is added
(or recompiled) without compiling the others again."""

from benchmarks import pod_table


ORDER = ("MAE ViT-B/16", "Fine-tune ViT-B/16")


def _point(case, topology, remat="none", hbm=1.0):
  return {"case": case, "topology": topology, "remat": remat, "scan": False, "hbm_gib": hbm}


def test_a_new_slice_joins_the_table_and_a_recompiled_one_replaces_its_points():
  earlier = [_point("MAE ViT-B/16", "v5p-128"), _point("MAE ViT-B/16", "v5p-128", "full"),
             _point("Fine-tune ViT-B/16", "v5p-128")]
  new = [_point("MAE ViT-B/16", "v5e-256", hbm=2.0), _point("Fine-tune ViT-B/16", "v5e-256")]
  points = pod_table.merged(earlier, new, ORDER)
  assert [(p["case"], p["topology"], p["remat"]) for p in points] == [
      ("MAE ViT-B/16", "v5p-128", "none"), ("MAE ViT-B/16", "v5p-128", "full"),
      ("MAE ViT-B/16", "v5e-256", "none"),
      ("Fine-tune ViT-B/16", "v5p-128", "none"), ("Fine-tune ViT-B/16", "v5e-256", "none")]
  recompiled = pod_table.merged(points, [_point("MAE ViT-B/16", "v5p-128", hbm=3.0)], ORDER)
  assert [p["hbm_gib"] for p in recompiled if p["topology"] == "v5p-128"
          and p["case"] == "MAE ViT-B/16"] == [3.0]  # both old v5p ViT-B points replaced
  assert len(recompiled) == 4
