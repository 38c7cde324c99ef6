"""Procedural faces for the synthetic WIDER FACE set: geometry, landmarks and drawing.

A face is an ellipse (half-width ``a``, half-height ``b``) turned by ``yaw`` (features slide
around a head sphere) and rolled by ``roll`` in the image plane. ``sphere_points`` places
every feature; the drawing and the landmarks both use it, so the 5 landmarks sit exactly on
the drawn eye centres, nose tip and mouth corners. Distractors (heads without a face,
wrong-coloured faces, dot pairs) and occluders are drawn here too; they are never labelled.
"""
import dataclasses
import math

import cv2
import numpy as np

SHIFT = 4  # cv2 fixed-point bits: drawing coordinates with 1/16 pixel precision
SCALE = 1 << SHIFT
AA = cv2.LINE_AA

# BGR palettes. A face's skin blends two neighbouring tones (very dark to very light).
SKIN_TONES = np.array([[23, 51, 92], [36, 85, 141], [66, 134, 198], [105, 172, 224],
                       [125, 194, 241], [148, 205, 255], [196, 224, 255]], np.float32)
HAIR_COLOURS = np.array([[20, 20, 25], [30, 45, 70], [40, 70, 120], [90, 140, 190],
                         [150, 150, 155], [30, 60, 150]], np.float32)
IRIS_COLOURS = np.array([[30, 50, 80], [20, 35, 50], [140, 110, 60], [90, 130, 80]], np.float32)
LIP_RED = np.array([70, 60, 180], np.float32)
# Saturated non-skin hues for face-like distractors (blue, green, purple, cyan, yellow-green).
WRONG_COLOURS = np.array([[200, 80, 40], [60, 170, 60], [170, 60, 150], [200, 200, 60],
                          [40, 200, 170]], np.float32)

# Named points on the head sphere: angle from the nose line (radians), height (units of
# b), depth (units of a; the nose tip stands out, so it moves most under yaw). The first
# five are the landmarks: left eye, right eye, nose tip, left and right mouth corner, "left"
# being image-left for a frontal face as in the public labels.
FEATURES = {
    "left_eye": (-0.42, -0.12, 1.0), "right_eye": (0.42, -0.12, 1.0), "nose": (0.0, 0.22, 1.2),
    "mouth_left": (-0.36, 0.5, 1.0), "mouth_right": (0.36, 0.5, 1.0),
    "mouth_top": (0.0, 0.46, 1.05), "mouth_bottom": (0.0, 0.57, 1.05),
    "left_ear": (-1.5, 0.02, 1.0), "right_ear": (1.5, 0.02, 1.0),
    "hair": (np.pi, -0.2, 0.15), "long_hair": (np.pi, 0.2, 0.1), "beard": (0.0, 0.35, 1.0),
    "left_brow_in": (-0.22, -0.34, 1.0), "left_brow_out": (-0.62, -0.31, 1.0),
    "right_brow_in": (0.22, -0.34, 1.0), "right_brow_out": (0.62, -0.31, 1.0),
    "nose_top": (0.0, -0.04, 0.7), "left_nostril": (-0.1, 0.25, 1.1), "right_nostril": (0.1, 0.25, 1.1),
}
FEATURE_NAMES = tuple(FEATURES)
FEATURE_ANGLES, FEATURE_HEIGHTS, FEATURE_DEPTHS = (np.array(v) for v in zip(*FEATURES.values()))
NUM_LANDMARKS = 5
# Weights of (start, through, end) for 8 points of a quadratic curve through three points.
_T = np.linspace(0, 1, 8)[:, None]
CURVE_WEIGHTS = np.hstack([(1 - _T) ** 2 - _T * (1 - _T), 4 * _T * (1 - _T), _T ** 2 - _T * (1 - _T)])


@dataclasses.dataclass
class Face:
    """One drawn face: pose, size, colours and style (everything ``draw_face`` needs)."""

    cx: float
    cy: float
    a: float  # half-width of the face ellipse before yaw foreshortening
    b: float  # half-height
    roll: float
    yaw: float
    skin: tuple  # BGR colours
    hair: tuple
    iris: tuple
    bald: bool
    long_hair: bool
    sunglasses: bool
    beard: bool
    mouth_open: bool
    smile: float
    shade: tuple  # lighting gradient across the face (per unit of b), x and y
    blur_sigma: float = 0.0

    @property
    def half_width(self):
        return self.a * (1.0 - 0.12 * abs(math.sin(self.yaw)))

    def box(self):
        """Tight integer box (x, y, w, h) of the face ellipse, WIDER style."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        ex, ey = math.hypot(self.half_width * c, self.b * s), math.hypot(self.half_width * s, self.b * c)
        x0, y0 = round(self.cx - ex), round(self.cy - ey)
        x1, y1 = round(self.cx + ex), round(self.cy + ey)
        return x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)

    def points(self):
        """Every named feature point (n, 2) in image pixels, after yaw and roll."""
        heights = FEATURE_HEIGHTS.copy()
        heights[FEATURE_NAMES.index("mouth_top")] += 0.05 * self.smile
        heights[FEATURE_NAMES.index("mouth_bottom")] += 0.05 * self.smile + 0.1 * self.mouth_open
        u = FEATURE_DEPTHS * np.sin(FEATURE_ANGLES + self.yaw) * self.half_width
        v = heights * self.b
        c, s = math.cos(self.roll), math.sin(self.roll)
        return np.stack([self.cx + c * u - s * v, self.cy + s * u + c * v], axis=-1)

    def landmarks(self):
        """The 5 landmarks (5, 2) in image pixels."""
        return self.points()[:NUM_LANDMARKS]


def random_face(rng, cx, cy, height):
    """A face of box height about ``height`` centred at (cx, cy) with random pose and style."""
    b = height / 2.0
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(tone)
    skin = SKIN_TONES[low] + (tone - low) * (SKIN_TONES[low + 1] - SKIN_TONES[low])
    flags = rng.random(6)
    angle, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.35)
    return Face(
        cx=cx, cy=cy, a=b / rng.uniform(1.15, 1.4), b=b,
        roll=min(max(rng.normal(0, 0.2), -0.6), 0.6),
        yaw=min(max(rng.normal(0, 0.35), -0.9), 0.9),
        skin=_colour(skin + rng.normal(0, 8, 3)),
        hair=_colour(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 10, 3)),
        iris=_colour(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
        bald=flags[0] < 0.08, long_hair=flags[1] < 0.3, sunglasses=flags[2] < 0.06,
        beard=flags[3] < 0.1, mouth_open=flags[4] < 0.15, smile=float(flags[5]),
        shade=(strength * math.cos(angle), strength * math.sin(angle)),
    )


def _colour(bgr, gain=1.0):
    return tuple(min(max(float(v) * gain, 0.0), 255.0) for v in bgr)


def _mix(first, second, weight):
    return tuple((1 - weight) * p + weight * q for p, q in zip(first, second))


class _Pen:
    """cv2 drawing in sub-pixel image coordinates on a canvas whose corner is ``origin``."""

    def __init__(self, canvas, origin, line=AA):
        self.canvas, self.ox, self.oy, self.line = canvas, origin[0], origin[1], line

    def at(self, point):
        return round((point[0] - self.ox) * SCALE), round((point[1] - self.oy) * SCALE)

    def ellipse(self, centre, half_axes, angle, colour, arc=(0, 360)):
        axes = (max(round(half_axes[0] * SCALE), SCALE // 2), max(round(half_axes[1] * SCALE), SCALE // 2))
        cv2.ellipse(self.canvas, self.at(centre), axes, math.degrees(angle), arc[0], arc[1],
                    colour, -1, self.line, SHIFT)

    def line_between(self, start, end, colour, thickness):
        cv2.line(self.canvas, self.at(start), self.at(end), colour, max(1, round(thickness)), self.line, SHIFT)

    def polygon(self, points, colour):
        fixed = np.round((np.asarray(points) - (self.ox, self.oy)) * SCALE).astype(np.int32)
        cv2.fillPoly(self.canvas, [fixed], colour, self.line, SHIFT)


def head_region(face):
    """Integer bounds (x0, y0, x1, y1) that hold the hair, ears and blur of a face."""
    reach = 1.35 * max(face.a, face.b) + 3 * face.blur_sigma + 2
    return (math.floor(face.cx - reach), math.floor(face.cy - reach),
            math.ceil(face.cx + reach), math.ceil(face.cy + reach))


def draw_body(image, owner, face, colour):
    """Neck and shoulders below a face (drawn before it; they hide faces behind)."""
    neck = np.array([[-0.4, 0.55], [0.4, 0.55], [0.45, 1.5], [-0.45, 1.5]]) * (face.a, face.b) + (face.cx, face.cy)
    shoulders, half_axes = (face.cx, face.cy + 2.3 * face.b), (2.1 * face.a, 1.1 * face.b)
    for pen, neck_colour, body_colour in ((_Pen(image, (0, 0)), _colour(face.skin, 0.8), _colour(colour)),
                                          (_Pen(owner, (0, 0), cv2.LINE_8), 0, 0)):
        pen.polygon(neck, neck_colour)
        pen.ellipse(shoulders, half_axes, 0.0, body_colour)


def draw_face(image, owner, face, index):
    """Draw ``face`` into ``image`` and mark its visible skin with ``index`` in ``owner``.

    A face that is shaded or blurred is drawn on a copy of its region, processed there and
    blended back through its own (equally blurred) silhouette, so blur never smears the
    background; a tiny sharp face is drawn in place. Returns the face area in pixels.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = head_region(face)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    roi = image[y0:y1, x0:x1]
    points = dict(zip(FEATURE_NAMES, face.points().tolist()))
    silhouette = _silhouette(face, points)
    region = owner[y0:y1, x0:x1]
    owner_pen = _Pen(region, (x0, y0), cv2.LINE_8)
    for centre, half_axes, _ in silhouette:
        owner_pen.ellipse(centre, half_axes, face.roll, 0)
    owner_pen.ellipse(silhouette[-1][0], silhouette[-1][1], face.roll, index)

    if face.b < 6 and face.blur_sigma <= 0.3:
        _draw_head(_Pen(roi, (x0, y0)), face, points, silhouette)
        return int(np.count_nonzero(region == index))
    patch = roi.copy()
    alpha = np.zeros(patch.shape[:2], np.uint8)
    _draw_head(_Pen(patch, (x0, y0)), face, points, silhouette)
    alpha_pen = _Pen(alpha, (x0, y0))
    for centre, half_axes, _ in silhouette:
        alpha_pen.ellipse(centre, half_axes, face.roll, 255)
    xs = np.arange(x0, x1, dtype=np.float32) - face.cx
    ys = np.arange(y0, y1, dtype=np.float32) - face.cy
    light = 1 + (ys[:, None] * face.shade[1] + xs[None, :] * face.shade[0]) / face.b
    patch = patch * np.clip(light, 0.4, 1.6)[..., None]
    weight = alpha.astype(np.float32) * (1 / 255)
    if face.blur_sigma > 0.3:
        patch = cv2.GaussianBlur(patch, (0, 0), face.blur_sigma)
        weight = cv2.GaussianBlur(weight, (0, 0), face.blur_sigma)
    roi[...] = np.clip(roi + (patch - roi) * weight[..., None] + 0.5, 0, 255).astype(np.uint8)
    return int(np.count_nonzero(region == index))


def _silhouette(face, points):
    """Ears, hair and finally the face ellipse: (centre, half axes, colour) each."""
    shapes = []
    for name, angle in (("left_ear", -1.5), ("right_ear", 1.5)):
        if math.cos(angle + face.yaw) > 0.25:
            shapes.append((points[name], (0.15 * face.a, 0.22 * face.b), _colour(face.skin, 0.88)))
    if not face.bald:
        shapes.append((points["hair"], (1.12 * face.a, face.b), face.hair))
        if face.long_hair:
            shapes.append((points["long_hair"], (1.2 * face.a, 1.12 * face.b), face.hair))
    shapes.append(((face.cx, face.cy), (face.half_width, face.b), face.skin))
    return shapes


def _draw_head(pen, face, points, silhouette):
    for centre, half_axes, colour in silhouette:
        pen.ellipse(centre, half_axes, face.roll, colour)
    _draw_features(pen, face, points)


def _draw_features(pen, face, points):
    """Beard, brows, eyes, nose and mouth, each anchored on the named points."""
    b = face.b
    if face.beard and b >= 6:
        pen.ellipse(points["beard"], (0.9 * face.half_width, 0.65 * b), face.roll,
                    _mix(face.skin, face.hair, 0.9), arc=(0, 180))
    if b >= 7:
        for side in ("left", "right"):
            pen.line_between(points[f"{side}_brow_in"], points[f"{side}_brow_out"],
                             _colour(face.hair, 0.8), 0.05 * b)
    for side, angle in (("left", FEATURE_ANGLES[0]), ("right", FEATURE_ANGLES[1])):
        _draw_eye(pen, face, points[f"{side}_eye"], max(math.cos(angle + face.yaw), 0.2))
    _draw_nose(pen, face, points)
    _draw_mouth(pen, face, points)


def _draw_eye(pen, face, centre, foreshortening):
    half_w, half_h = 0.17 * face.half_width * foreshortening, 0.075 * face.b
    if face.sunglasses:
        pen.ellipse(centre, (1.45 * half_w, 1.8 * half_h), face.roll, (25, 25, 25))
    elif face.b < 10:
        pen.ellipse(centre, (half_w, 0.9 * half_h), face.roll, _colour(face.skin, 0.3))
    else:
        pen.ellipse(centre, (half_w, half_h), face.roll, (235, 238, 240))
        radius = min(1.05 * half_h, 0.6 * half_w)
        pen.ellipse(centre, (radius, radius), 0.0, face.iris)
        pen.ellipse(centre, (0.5 * radius, 0.5 * radius), 0.0, (15, 15, 15))


def _draw_nose(pen, face, points):
    b = face.b
    if b < 10:
        pen.ellipse(points["nose"], (0.06 * b, 0.05 * b), face.roll, _colour(face.skin, 0.6))
        return
    pen.line_between(points["nose_top"], points["nose"], _colour(face.skin, 0.78), 0.04 * b)
    for side in ("left", "right"):
        pen.ellipse(points[f"{side}_nostril"], (0.04 * b, 0.025 * b), face.roll, _colour(face.skin, 0.45))


def _quadratic(start, through, end):
    """Points (8, 2) of the quadratic curve from ``start`` to ``end`` passing through ``through``."""
    return CURVE_WEIGHTS @ np.array([start, through, end])


def _draw_mouth(pen, face, points):
    lips = tuple(float(0.55 * skin + 0.35 * red) for skin, red in zip(face.skin, LIP_RED))
    left, right = points["mouth_left"], points["mouth_right"]
    if face.b < 6:
        pen.line_between(left, right, lips, 1)
        return
    top, bottom = np.asarray(points["mouth_top"]), np.asarray(points["mouth_bottom"])
    outline = np.concatenate([_quadratic(left, top, right), _quadratic(right, bottom, left)])
    pen.polygon(outline, lips)
    if face.mouth_open:
        middle = (top + bottom) / 2
        pen.polygon(middle + 0.7 * (outline - middle), (40, 30, 45))


def draw_distractor(image, owner, rng, cx, cy, height):
    """Something face-sized that is not a face: a featureless head, a wrong-coloured face,
    a dot pair on an object, or a ball. ``owner`` is cleared under it."""
    kind = rng.integers(4)
    b = height / 2
    a = b / rng.uniform(1.1, 1.4)
    roll = rng.normal(0, 0.3)
    if kind == 0:  # back of a head or a bald featureless head
        palette = SKIN_TONES if rng.random() < 0.5 else HAIR_COLOURS
        colour = palette[rng.integers(len(palette))]
    elif kind == 1:  # a face in the wrong colour
        colour = WRONG_COLOURS[rng.integers(len(WRONG_COLOURS))]
    elif kind == 2:  # an object with two dots: a box or a plug
        colour, a = rng.uniform(30, 230, 3), b * rng.uniform(0.8, 1.5)
    else:  # a ball
        colour, a = rng.uniform(0, 255, 3), b
    for pen, fill in ((_Pen(image, (0, 0)), _colour(colour)), (_Pen(owner, (0, 0), cv2.LINE_8), 0)):
        if kind == 2:
            pen.polygon(cv2.boxPoints(((cx, cy), (2 * a, 2 * b), math.degrees(roll))), fill)
        else:
            pen.ellipse((cx, cy), (a, b), roll, fill)
    pen = _Pen(image, (0, 0))
    c, s = math.cos(roll), math.sin(roll)
    if kind in (1, 2):
        dark = _colour(rng.uniform(0, 60, 3))
        for sign in (-1, 1):
            eye = (cx + sign * 0.4 * a * c + 0.12 * b * s, cy + sign * 0.4 * a * s - 0.12 * b * c)
            pen.ellipse(eye, (0.08 * a, 0.08 * a), 0.0, dark)
    if kind == 1:
        pen.line_between((cx - 0.3 * a * c - 0.5 * b * s, cy - 0.3 * a * s + 0.5 * b * c),
                         (cx + 0.3 * a * c - 0.5 * b * s, cy + 0.3 * a * s + 0.5 * b * c),
                         (30, 30, 30), 0.06 * b)


def draw_occluder(image, owner, rng, face):
    """Cover part of ``face`` with an object entering from a random side (hand, sign, pole)."""
    direction = rng.uniform(0, 2 * math.pi)
    normal = np.array([math.cos(direction), math.sin(direction)])
    along = np.array([-normal[1], normal[0]])
    radius = max(face.a, face.b)
    edge = np.array([face.cx, face.cy]) + normal * rng.uniform(-0.3, 0.7) * radius
    depth, span = 2.2 * radius, rng.uniform(1.0, 2.5) * radius
    corners = np.array([edge - span * along, edge + span * along,
                        edge + span * along + depth * normal, edge - span * along + depth * normal])
    palette = SKIN_TONES if rng.random() < 0.3 else None
    colour = palette[rng.integers(len(palette))] if palette is not None else rng.uniform(0, 255, 3)
    _Pen(image, (0, 0)).polygon(corners, _colour(colour))
    _Pen(owner, (0, 0), cv2.LINE_8).polygon(corners, 0)
