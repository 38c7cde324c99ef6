"""Procedural faces for the synthetic WIDER FACE set: geometry, landmarks and drawing.

A face is an ellipse (half-width ``a``, half-height ``b``) turned by ``yaw`` (features slide
around a head sphere) and rolled by ``roll`` in the image plane. ``Face.points`` places every
feature; the drawing and the landmarks both use it, so the 5 landmarks sit exactly on the
drawn eye centres, nose tip and mouth corners. Distractors (heads seen from behind,
wrong-coloured faces, featureless blobs, dot pairs, smileys) and occluders are drawn here
too; they are never labelled. An ``owner`` map (uint16, one per image) records which face
each pixel shows, so occlusion and landmark visibility are measured, not guessed.
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
MASK_COLOURS = np.array([[235, 225, 170], [240, 240, 240], [40, 40, 40], [200, 160, 90]], np.float32)
FUR_COLOURS = np.array([[120, 120, 125], [30, 30, 35], [215, 215, 220], [90, 100, 110]], np.float32)
DISTRACTORS = ("back", "coloured", "blank", "animal", "upside_down", "dots", "smiley")
# Saturated non-skin hues for face-like distractors (blue, green, purple, cyan).
WRONG_COLOURS = np.array([[200, 80, 40], [60, 170, 60], [170, 60, 150], [200, 200, 60]], np.float32)

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
# Rows that move together when a face's proportions vary: the eyes with their brows, the mouth.
EYE_ROWS = [FEATURE_NAMES.index(n) for n in ("left_eye", "right_eye", "left_brow_in", "left_brow_out",
                                             "right_brow_in", "right_brow_out")]
MOUTH_ROWS = [FEATURE_NAMES.index(n) for n in ("mouth_left", "mouth_right", "mouth_top", "mouth_bottom")]
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
    beard: bool
    mouth_open: bool
    smile: float
    shade: tuple  # lighting gradient across the face (per unit of b), x and y
    eye_style: int = 0  # 0 white with iris, 1 dark almond, 2 closed
    darkness: float = 0.3  # brightness of dark features relative to the skin
    glasses: int = 0  # 0 none, 1 frames, 2 sunglasses
    mask: tuple = None  # colour of a mask over nose and mouth
    hat: tuple = None  # colour of a hat over the forehead
    features: bool = True  # False: a featureless head, for distractors
    proportions: tuple = (1.0, 0.0, 1.0, 0.0)  # eye spread, eye shift, mouth spread, mouth shift
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
        """Every named feature point (n, 2) in image pixels, after yaw and roll; all but the
        hair stay inside the face ellipse (a profile's nose tip sits on its edge)."""
        eye_spread, eye_shift, mouth_spread, mouth_shift = self.proportions
        angles, heights = FEATURE_ANGLES.copy(), FEATURE_HEIGHTS.copy()
        angles[EYE_ROWS] *= eye_spread
        heights[EYE_ROWS] += eye_shift
        angles[MOUTH_ROWS] *= mouth_spread
        heights[MOUTH_ROWS] += mouth_shift
        heights[FEATURE_NAMES.index("mouth_top")] += 0.05 * self.smile
        heights[FEATURE_NAMES.index("mouth_bottom")] += 0.05 * self.smile + 0.1 * self.mouth_open
        width = np.sqrt(1 - np.minimum(heights ** 2, 1))  # the head's half-width at that height
        around = np.clip(FEATURE_DEPTHS * np.sin(angles + self.yaw), -0.97, 0.97)
        u = around * width * self.half_width
        v = heights * self.b
        c, s = math.cos(self.roll), math.sin(self.roll)
        return np.stack([self.cx + c * u - s * v, self.cy + s * u + c * v], axis=-1)

    def landmarks(self):
        """The 5 landmarks (5, 2) in image pixels."""
        return self.points()[:NUM_LANDMARKS]

    def eye_facing(self):
        """How much each eye (left, right) faces the camera: cosine of its turn; at 0.1 or
        less the eye is behind the head and not drawn."""
        return np.cos(FEATURE_ANGLES[:2] * self.proportions[0] + self.yaw)

    def hidden_landmarks(self):
        """(5,) bool: landmarks the drawing does not show whatever covers the face."""
        return np.concatenate([self.eye_facing() <= 0.1, np.zeros(3, bool)])


def random_face(rng, cx, cy, height):
    """A face of box height about ``height`` centred at (cx, cy) with random pose and style."""
    u = rng.random(20)  # one draw per call keeps this cheap: faces are made by the thousand
    n = rng.standard_normal(8)
    b = height / 2.0
    tone = u[0] * (len(SKIN_TONES) - 1)
    low = int(tone)
    skin = SKIN_TONES[low] + (tone - low) * (SKIN_TONES[low + 1] - SKIN_TONES[low])
    angle, strength = 2 * math.pi * u[1], 0.6 * u[2]
    return Face(
        cx=cx, cy=cy, a=b / (1.15 + 0.25 * u[3]), b=b,
        roll=min(max(0.2 * n[0], -0.6), 0.6),
        yaw=min(max(0.45 * n[1], -1.1), 1.1),
        skin=_colour(skin + 8 * n[2:5]),
        hair=_colour(HAIR_COLOURS[int(u[4] * len(HAIR_COLOURS))] + 10 * n[5:8]),
        iris=_colour(IRIS_COLOURS[int(u[5] * len(IRIS_COLOURS))]),
        bald=u[6] < 0.08, long_hair=u[7] < 0.3, beard=u[8] < 0.1,
        mouth_open=u[9] < 0.15, smile=float(u[10]),
        shade=(strength * math.cos(angle), strength * math.sin(angle)),
        eye_style=int(u[11] >= 0.45) + int(u[11] >= 0.9), darkness=0.15 + 0.4 * u[12],
        glasses=int(u[13] >= 0.86) + int(u[13] >= 0.94),
        mask=_colour(MASK_COLOURS[int(u[14] / 0.08 * 4)]) if u[14] < 0.08 else None,
        hat=_colour(HAIR_COLOURS[int(u[15] / 0.12 * 6)] * 1.5 + 20) if u[15] < 0.12 else None,
        proportions=(0.85 + 0.3 * u[16], 0.12 * u[17] - 0.06, 0.8 + 0.4 * u[18], 0.12 * u[19] - 0.06),
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

    def ellipse(self, centre, half_axes, angle, colour, arc=(0, 360), thickness=-1):
        axes = tuple(max(round(half * SCALE), SCALE // 2) for half in half_axes)
        cv2.ellipse(self.canvas, self.at(centre), axes, math.degrees(angle), arc[0], arc[1],
                    colour, thickness, self.line, SHIFT)

    def line_between(self, start, end, colour, thickness):
        cv2.line(self.canvas, self.at(start), self.at(end), colour, max(1, round(thickness)),
                 self.line, SHIFT)

    def polygon(self, points, colour):
        fixed = np.round((np.asarray(points) - (self.ox, self.oy)) * SCALE).astype(np.int32)
        cv2.fillPoly(self.canvas, [fixed], colour, self.line, SHIFT)


def head_region(face):
    """Integer bounds (x0, y0, x1, y1) that hold the hair, ears, hat and blur of a face."""
    reach = 1.45 * max(face.a, face.b) + 3 * face.blur_sigma + 2
    return (math.floor(face.cx - reach), math.floor(face.cy - reach),
            math.ceil(face.cx + reach), math.ceil(face.cy + reach))


def draw_body(image, owner, face, colour):
    """Neck and shoulders below a face (drawn before it; they hide faces behind)."""
    neck = np.array([[-0.4, 0.55], [0.4, 0.55], [0.45, 1.5], [-0.45, 1.5]]) * (face.a, face.b)
    neck += (face.cx, face.cy)
    shoulders, half_axes = (face.cx, face.cy + 2.3 * face.b), (2.1 * face.a, 1.1 * face.b)
    for pen, neck_colour, body_colour in (
            (_Pen(image, (0, 0)), _colour(face.skin, 0.8), _colour(colour)),
            (_Pen(owner, (0, 0), cv2.LINE_8), 0, 0)):
        pen.polygon(neck, neck_colour)
        pen.ellipse(shoulders, half_axes, 0.0, body_colour)


def draw_face(image, owner, face, index):
    """Draw ``face`` into ``image`` and mark its visible skin with ``index`` in ``owner``.

    A face of 16 px or more, or a blurred one, is drawn on a copy of its region, shaded and
    blurred there and blended back through its own (equally blurred) silhouette, so blur
    never smears the background; a smaller sharp face is drawn in place, unshaded.
    Returns the face area in pixels (its ellipse, before anything covers it).
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
    for cover, _ in _covers(face):
        owner_pen.polygon(cover, 0)

    if face.b < 8 and face.blur_sigma <= 0.3:
        _draw_head(_Pen(roi, (x0, y0)), face, points, silhouette)
        return int(np.count_nonzero(region == index))
    patch = roi.copy()
    alpha = np.zeros(patch.shape[:2], np.uint8)
    _draw_head(_Pen(patch, (x0, y0)), face, points, silhouette)
    alpha_pen = _Pen(alpha, (x0, y0))
    for centre, half_axes, _ in silhouette:
        alpha_pen.ellipse(centre, half_axes, face.roll, 255)
    for cover, _ in _covers(face):
        alpha_pen.polygon(cover, 255)
    patch = cv2.multiply(patch, _light(face, x0, y0, x1, y1), dtype=cv2.CV_8U)
    weight = alpha.astype(np.float32) * (1 / 255)
    if face.blur_sigma > 0.3:
        patch, weight = _blur(patch, face.blur_sigma), _blur(weight, face.blur_sigma)
    roi[...] = cv2.blendLinear(roi, patch, 1 - weight, weight)
    return int(np.count_nonzero(region == index))


def _light(face, x0, y0, x1, y1):
    """Per-pixel gain (h, w, 3) of the face's lighting gradient over its region.

    A 2x2 map resized bilinearly: exact in the middle half of the region, where the face
    is, and flat in the outer quarters (hair, ears, background).
    """
    xs = x0 + np.array([0.25, 0.75]) * (x1 - x0) - 0.5 - face.cx
    ys = y0 + np.array([0.25, 0.75]) * (y1 - y0) - 0.5 - face.cy
    gain = 1 + (ys[:, None] * face.shade[1] + xs[None, :] * face.shade[0]) / face.b
    return cv2.resize(np.repeat(gain[..., None], 3, axis=2).astype(np.float32), (x1 - x0, y1 - y0))


def _blur(array, sigma):
    """Gaussian blur; wide ones run on a smaller copy (the result is smooth anyway)."""
    shrink = max(1.0, sigma / 2)
    if shrink < 1.5:
        return cv2.GaussianBlur(array, (0, 0), sigma)
    height, width = array.shape[:2]
    small = cv2.resize(array, (max(1, round(width / shrink)), max(1, round(height / shrink))),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / shrink)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


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
    if face.features:
        _draw_features(pen, face, points)
    for cover, colour in _covers(face):
        pen.polygon(cover, colour)


def _covers(face):
    """(polygon, colour) of what the face wears over itself: a mask over the lower face from
    just above the nose tip, a hat over the forehead above the brows."""
    covers = []
    c, s = math.cos(face.roll), math.sin(face.roll)
    if face.mask is not None:
        t = np.linspace(0, math.pi, 13)
        u, v = 1.02 * face.half_width * np.cos(t), face.b * (0.05 + 0.97 * np.sin(t))
        covers.append((np.stack([face.cx + c * u - s * v, face.cy + s * u + c * v], axis=1), face.mask))
    if face.hat is not None:
        t = np.linspace(math.pi, 2 * math.pi, 13)
        u, v = 1.15 * face.a * np.cos(t), face.b * (-0.45 + 0.95 * np.sin(t))
        covers.append((np.stack([face.cx + c * u - s * v, face.cy + s * u + c * v], axis=1), face.hat))
    return covers


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
    for side, facing in zip(("left", "right"), face.eye_facing()):
        if facing > 0.1:  # the far eye of a profile is behind the head
            _draw_eye(pen, face, points[f"{side}_eye"], max(facing, 0.2))
    _draw_nose(pen, face, points)
    _draw_mouth(pen, face, points)


def _draw_eye(pen, face, centre, foreshortening):
    half_w, half_h = 0.17 * face.half_width * foreshortening, 0.075 * face.b
    dark = _colour(face.skin, face.darkness)
    if face.glasses == 2:
        pen.ellipse(centre, (1.45 * half_w, 1.8 * half_h), face.roll, (25, 25, 25))
        return
    if face.b < 10 or face.eye_style == 1:
        pen.ellipse(centre, (half_w, 0.9 * half_h), face.roll, dark)
    elif face.eye_style == 2:
        pen.ellipse(centre, (half_w, 0.5 * half_h), face.roll, dark, arc=(0, 180),
                    thickness=max(1, round(0.03 * face.b)))
    else:
        pen.ellipse(centre, (half_w, half_h), face.roll, (235, 238, 240))
        radius = min(1.05 * half_h, 0.6 * half_w)
        pen.ellipse(centre, (radius, radius), 0.0, face.iris)
        pen.ellipse(centre, (0.5 * radius, 0.5 * radius), 0.0, (15, 15, 15))
    if face.glasses == 1 and face.b >= 8:
        pen.ellipse(centre, (1.5 * half_w, 1.9 * half_h), face.roll, (30, 30, 30),
                    thickness=max(1, round(0.025 * face.b)))


def _draw_nose(pen, face, points):
    b = face.b
    if b < 10:
        pen.ellipse(points["nose"], (0.06 * b, 0.05 * b), face.roll, _colour(face.skin, 0.6))
        return
    pen.line_between(points["nose_top"], points["nose"], _colour(face.skin, 0.78), 0.04 * b)
    for side in ("left", "right"):
        nostril = points[f"{side}_nostril"]
        pen.ellipse(nostril, (0.04 * b, 0.025 * b), face.roll, _colour(face.skin, 0.45))


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
    """Something face-sized that is not a face; ``owner`` is cleared under it.

    Near misses that take a closer look: a head seen from behind (on a body), a face in a
    colour no skin has (mask, statue, cartoon), a featureless skin-coloured head, an animal
    face (fur, pointed ears), a face upside down; and things with two dots: a box, a smiley.
    """
    kind = DISTRACTORS[rng.integers(len(DISTRACTORS))]
    if kind in ("dots", "smiley"):
        _draw_dotted_thing(image, owner, rng, cx, cy, height / 2, kind == "smiley")
        return
    head = random_face(rng, cx, cy, height)
    if kind == "back":
        head.skin, head.features, head.hat, head.mask = head.hair, False, None, None
        draw_body(image, owner, head, rng.uniform(0, 255, 3))
    elif kind == "coloured":
        head.skin = _colour(WRONG_COLOURS[rng.integers(len(WRONG_COLOURS))] + rng.normal(0, 15, 3))
    elif kind == "blank":
        head.features, head.hat, head.mask = False, None, None
    elif kind == "animal":
        _draw_cat(image, owner, rng, head)
        return
    else:  # upside down
        head.roll += math.pi
    draw_face(image, owner, head, 0)


def _draw_cat(image, owner, rng, head):
    """A grey, white or black cat's head: pointed ears, round eyes, a small nose, whiskers."""
    head.skin = _colour(FUR_COLOURS[rng.integers(len(FUR_COLOURS))] + rng.normal(0, 10, 3))
    head.a, head.roll, head.yaw = head.b * 1.05, 0.3 * head.roll, 0.0
    head.bald, head.features, head.hat, head.mask = True, False, None, None
    b, centre = head.b, np.array([head.cx, head.cy])
    for sign in (-1, 1):
        ear = b * np.array([[sign * 0.2, -0.7], [sign * 0.95, -0.35], [sign * 0.8, -1.3]]) + centre
        for pen, fill in ((_Pen(image, (0, 0)), head.skin), (_Pen(owner, (0, 0), cv2.LINE_8), 0)):
            pen.polygon(ear, fill)
    draw_face(image, owner, head, 0)
    pen = _Pen(image, (0, 0))
    iris = _colour(rng.choice([(40, 170, 200), (60, 160, 90), (170, 140, 60)]))
    for sign in (-1, 1):
        eye = centre + b * np.array([sign * 0.38, -0.1])
        pen.ellipse(eye, (0.17 * b, 0.15 * b), 0.0, iris)
        pen.ellipse(eye, (0.05 * b, 0.13 * b), 0.0, (10, 10, 10))
        for drop in (-0.24, 0.24):  # whiskers
            root = centre + b * np.array([sign * 0.2, 0.35])
            pen.line_between(root, root + b * np.array([sign * 0.9, drop]), (200, 200, 200), 0.02 * b)
    pen.polygon(centre + b * np.array([[-0.1, 0.2], [0.1, 0.2], [0.0, 0.32]]), (120, 110, 200))


def _draw_dotted_thing(image, owner, rng, cx, cy, b, smiley):
    roll = rng.normal(0, 0.3)
    c, s = math.cos(roll), math.sin(roll)
    a = b if smiley else b * rng.uniform(0.8, 1.5)
    colour = WRONG_COLOURS[rng.integers(len(WRONG_COLOURS))] if smiley else rng.uniform(30, 230, 3)
    colour = _colour(colour)
    for pen, fill in ((_Pen(image, (0, 0)), colour), (_Pen(owner, (0, 0), cv2.LINE_8), 0)):
        if smiley:
            pen.ellipse((cx, cy), (a, b), roll, fill)
        else:
            pen.polygon(cv2.boxPoints(((cx, cy), (2 * a, 2 * b), math.degrees(roll))), fill)
    pen, dark = _Pen(image, (0, 0)), _colour(rng.uniform(0, 60, 3))
    for sign in (-1, 1):
        eye = (cx + sign * 0.35 * a * c + 0.2 * b * s, cy + sign * 0.35 * a * s - 0.2 * b * c)
        pen.ellipse(eye, (0.09 * a, 0.12 * b), roll, dark)
    if smiley:
        pen.ellipse((cx, cy), (0.55 * a, 0.5 * b), roll, dark, arc=(20, 160),
                    thickness=max(1, round(0.06 * b)))


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
