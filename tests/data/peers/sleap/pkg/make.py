"""How minimal.pkg.slp was made (not run by the tests; needs sleap-io): sleap-io, SLEAP's
own I/O library, saves two labelled frames of two small PNGs with the frames embedded
in the file (``embed="user"``), as SLEAP's "export labels package" does. The PNGs stay
beside it so that a test can compare the embedded frames with them."""

from pathlib import Path

import numpy as np
import sleap_io as sio
from PIL import Image

HERE = Path(__file__).parent
rng = np.random.default_rng(0)
files = []
for i in range(2):
    path = HERE / f"frame{i}.png"
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).save(path)
    files.append(path.as_posix())
skeleton = sio.Skeleton(["head", "tail"], edges=[("head", "tail")], name="worm")
video = sio.Video.from_filename(files)
frames = []
for i, (x, y) in enumerate([(3.0, 4.0), (10.5, 7.25)]):
    points = np.array([[x, y], [x + 12, y + 5]])
    frames.append(
        sio.LabeledFrame(
            video=video, frame_idx=i, instances=[sio.Instance.from_numpy(points, skeleton=skeleton)]
        )
    )
labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton])
labels.save(str(HERE / "minimal.pkg.slp"), embed="user")
print(sio.__version__, (HERE / "minimal.pkg.slp").stat().st_size)
