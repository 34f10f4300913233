"""The fixed prose of docs/METHODS.md (the figures come from bench/methods_report.py)."""

INTRO = """No real CLIP weights or datasets can be downloaded where clipserve is developed, so this page
measures the methods on the procedural world of training/world (8 shapes x 8 colours = 64
classes, docs/PRETRAINING.md) with the demo ViT backbone pretrained there, on a 2-core CPU. It
answers "does the method do, here, what its paper says it does?", not "how good is it on
ImageNet". The world is small and synthetic: where a claim is not reproduced, that is a fact about
this world and these scaled settings, not a refutation of the paper."""

SETUP = """## Setup

- Backbone: `clipserve-demo-vit` (models/configs; ViT 4 blocks, width 64, patch 4 at 32 px;
  text 3 layers, width 64; embed 128), pretrained with ProtoCLIP on clean photos and sketches
  of the world (models/demo/README.md). Frozen everywhere below.
- Images: rendered at 64 px and resized by the backbone's own transform, like any image folder;
  the training split and the held-out split never share a scene (training/world/world.py).
- The evaluation condition: clutter (grey distractor shapes), smaller objects and faded colours
  (training/world/conditions.py), never shown in pretraining, at the strength chosen in section 1.
  Training shots are drawn from the training split under the same condition (the few-shot
  images come from the target distribution, as in the papers' datasets).
- Test sets: 16 held-out images per class (1,024 for 64 classes; one image = 0.1 point).
  Training shots: K per class drawn by `clipserve train`'s own sampler (seeded) from 48
  training-split images per class.
- Seeds 1, 2, 3 for every trained method (few-shot draw and initialisation); mean ± population
  std over the seeds. Zero-shot has no seed. The last epoch is scored (no selection on test).
- Training goes through `run_training` (training/pipeline.py), scoring through `evaluate`
  (training/evaluate.py): the same code as `clipserve train` and `clipserve eval`."""

READING = """## Limits of this evidence

- One synthetic world, one small backbone, 3 seeds; a 0.5-point margin is 5 test images.
- Settings are the papers' defaults scaled once, by the schedule rule (section Setup); none was
  tuned on these results. The rule still trains the long runs far less than their papers do:
  GOPro 256 steps where its paper's 50 epochs would give 12,800 here (6,400 on the base classes),
  CoCoOp one epoch of the 64 classes (two of the 32 base classes) instead of ten, CoOp at 8-16
  shots and on the base classes 800 steps instead of 3,200-6,400, MaPLe at 16 shots 3 of its 5
  epochs. Claims about those runs test short schedules. A row that sits at zero-shot, or whose
  seeds disagree by many points, is most likely under-trained, whatever the verdict says.
- Low-shot runs take their papers' own step counts, which are small on 64 classes (CoOp: 100
  steps at one shot, from a random context; MaPLe: 80); the rule adds no floor above the papers'.
- The shapes and colours of "new" classes are words the backbone learned in pretraining; real
  CLIP's new classes are likewise known to its text tower, so the protocol transfers, but this
  world's text is far simpler than web captions."""
