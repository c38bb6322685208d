"""Regenerate docs/native_vs_patch.png: one real eye (matplotlib's grace_hopper.jpg sample,
public domain) at 15 degrees up and 15 degrees right: the input, the patch paste (the
network's 51x41 output pasted back) and the native paste (its warp applied to the frame's
own pixels), each crop enlarged 4x with nearest-neighbour so the pixels show. Then print
the README's sharpness table: for both bundled faces and both pastes, sharpness (Laplacian
energy in the eye boxes, output / input) at angle 0 and at 15 degrees up, down, left and
right, and the mean absolute change in the eye boxes at angle 0 (of 255), with
``deepwarp_fast.face.metrics`` (the boxes and measures of ``evaluate --real``).

    python docs/make_native_vs_patch.py
"""
import os

import cv2
import matplotlib.cbook as cbook
import numpy as np
from PIL import Image, ImageDraw

from skimage import data as skdata

from deepwarp_fast.face import GazeRedirector
from deepwarp_fast.face.metrics import eye_box, mean_change, sharpness

with cbook.get_sample_data("grace_hopper.jpg") as f:
    img = np.array(Image.open(f).convert("RGB"))
native = GazeRedirector()
patch = GazeRedirector(native.model, paste="patch")
base = native.redirect(img, 0, 0)
lm = base.faces[0].landmarks
c = (lm[36] + lm[39]) / 2
R = float(np.hypot(*(lm[39] - lm[36])))
x0, y0 = int(c[0] - 1.0 * R), int(c[1] - 0.6 * R)
x1, y1 = int(c[0] + 1.0 * R), int(c[1] + 0.6 * R)
rows = []
for v, h in ((15, 0), (0, 15)):
    outs = [img, patch.redirect(img, v, h, faces=base.faces).image, native.redirect(img, v, h, faces=base.faces).image]
    crops = [cv2.resize(o[y0:y1, x0:x1], None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST) for o in outs]
    rows.append(np.concatenate([np.pad(cr, ((4, 4), (4, 4), (0, 0)), constant_values=255) for cr in crops], axis=1))
sheet = Image.fromarray(np.concatenate(rows, axis=0))
top = Image.new("RGB", (sheet.width, 22), "white")
d = ImageDraw.Draw(top)
w3 = sheet.width // 3
for i, label in enumerate(("input", "patch paste (51x41 round trip)", "native paste (default)")):
    d.text((i * w3 + 8, 5), label, fill="black")
out = Image.new("RGB", (sheet.width, sheet.height + 22), "white")
out.paste(top, (0, 0))
out.paste(sheet, (0, 22))
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native_vs_patch.png")
out.save(path, optimize=True)
print(path, out.size, "rows: 15 degrees up, 15 degrees right")

print("| photo (eye width) | patch paste: sharpness at 0 / 15 deg, change at 0 | native paste: sharpness at 0 / 15 deg, change at 0 |")
print("|---|---|---|")
for name, photo in (("astronaut", skdata.astronaut()), ("grace_hopper", img)):
    cells = []
    for gr in (patch, native):
        r0 = gr.redirect(photo, 0, 0)
        boxes = [eye_box(f.landmarks, side, photo.shape) for f in r0.faces for side in ("image_left", "image_right")]
        s15 = [sharpness(photo, gr.redirect(photo, v, h, faces=r0.faces).image, boxes)
               for v, h in ((15, 0), (-15, 0), (0, 15), (0, -15))]
        cells.append(f"{sharpness(photo, r0.image, boxes):.2f} / {min(s15):.2f}-{max(s15):.2f}, "
                     f"{mean_change(photo, r0.image, boxes):.2f}")
    lm = r0.faces[0].landmarks
    width = float(np.hypot(*(lm[39] - lm[36])))
    print(f"| {name} ({width:.0f} px) | {cells[0]} | {cells[1]} |")
