"""A synthetic stand-in for the Oxford-IIIT Pet dataset, written in its exact on-disk layout.

``synthesize(root, images)`` draws cartoon animals (body, head, ears, legs, tail, muzzle)
whose breed shows in their appearance, on cluttered backgrounds, and writes::

    root/images/<image_id>.jpg
    root/annotations/list.txt            # with the real header comments
    root/annotations/trainval.txt
    root/annotations/test.txt
    root/annotations/trimaps/<image_id>.png   # 1 = pet, 2 = background, 3 = border
    root/annotations/xmls/<image_id>.xml      # head boxes, trainval only, some missing

so that everything that reads the real dataset (``torchvision.datasets.OxfordIIITPet``
included) reads this one.

Difficulty by design
--------------------
The set must tell the study's pseudo-mask methods apart, not just be hard:

* Breed is in the look, never the seed (``genome``): colours, coat pattern, ears and build.
  Species is easier than breed; several breeds share colours and differ only in shape.
* Pets stand, sit or lie (``anatomy``); sitting and lying pets fill most of their box.
* Pet area is log-uniform over 5-55 % of the frame and the pet sits anywhere it fits
  (``render``): a centred ellipse is a weak prior. ~15 % of pets are cut by the frame.
* Backgrounds are cluttered (gradients, noise, patterns, floors, 1-4 distractor shapes),
  and some borrow a breed's colours, but the pet's own colours only rarely (``scene``), so
  thresholding colour fails while a colour model learnt around a box (GrabCut) mostly works.
* Edges are anti-aliased, then mildly blurred, noised and JPEG-compressed.

Determinism
-----------
Image ``i`` (0-based, breeds assigned round robin) is drawn from
``np.random.default_rng(SeedSequence([seed, i, ...]))`` only, so images are independent
of each other and of the total count; running twice writes identical bytes.
"""

from __future__ import annotations

from wsss.data.synthetic.genome import Genome, breed_genome
from wsss.data.synthetic.render import render_image
from wsss.data.synthetic.writer import LIST_HEADER, synthesize, trimap_from_mask

__all__ = ["LIST_HEADER", "Genome", "breed_genome", "render_image", "synthesize", "trimap_from_mask"]
