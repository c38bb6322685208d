"""The face pipeline: find faces and eye landmarks (dlib), cut eye patches, run the
model on all eyes of a frame in one batch, paste the results back seamlessly;
images, videos and camera streams. dlib is imported only when a detector is built.

    from deepwarp_fast.face import GazeRedirector
    gr = GazeRedirector()
    out = gr.redirect(image, vertical=10, horizontal=-5, color="rgb").image
"""
from .eyes import EyeCrop, eye_aspect_ratio, eye_crop, extract_patch
from .io import InputError, media_kind, read_image, write_image
from .landmarks import FaceDetector, FaceModelsUnavailableError
from .loading import NoDefaultWeightsWarning, load_redirect_model
from .paste import feather_mask, paste_patch
from .profile import StageTimes
from .pupil import estimate_pupil
from .redirector import AngleRangeError, GazeRedirector, check_angles
from .results import EyeResult, FaceResult, RedirectResult
from .stream import GazeStream
from .tracking import FaceTracker, OneEuroFilter

__all__ = [
    "AngleRangeError", "EyeCrop", "EyeResult", "FaceDetector", "FaceModelsUnavailableError", "FaceResult",
    "FaceTracker", "GazeRedirector", "GazeStream", "InputError", "NoDefaultWeightsWarning", "OneEuroFilter",
    "RedirectResult", "StageTimes", "check_angles", "estimate_pupil", "extract_patch", "eye_aspect_ratio",
    "eye_crop", "feather_mask", "load_redirect_model", "media_kind", "paste_patch", "read_image", "write_image",
]
