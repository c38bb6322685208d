"""Regenerate docs/native_vs_patch.png: one real eye (matplotlib's grace_hopper.jpg sample,
public domain) at 15 degrees up and 15 degrees right: the input, the patch paste (the
network's 51x41 output pasted back) and the native paste (its warp applied to the frame's
own pixels), each crop enlarged 4x with nearest-neighbour so the pixels show.

    python docs/make_native_vs_patch.py
"""
import os

import cv2
import matplotlib.cbook as cbook
import numpy as np
from PIL import Image, ImageDraw

from deepwarp_fast.face import GazeRedirector

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
