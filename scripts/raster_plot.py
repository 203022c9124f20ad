"""A small raster plotter for the figures of the scripts: lines, markers,
axes with ticks, legends and a 5x7 bitmap font, drawn with NumPy into an RGB
array and written as PNG through TensorFlow, so figures need no plotting
library beyond the package's own dependencies.

Used by `linear_theory.py` and `compare_methods.py` (import it as
`raster_plot` from a script in this folder).
"""

import numpy as np
import tensorflow as tf

from keras_directcopy.io_utils import atomic_save


# Each glyph: 7 rows of 5 pixels (an 8th row for descenders), '#' = ink.
_GLYPHS = {
    " ": "..... ..... ..... ..... ..... ..... .....",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "a": "..... ..... .###. ....# .#### #...# .####",
    "b": "#.... #.... #.##. ##..# #...# #...# ####.",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .##.# #..## #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "f": "..##. .#..# .#... ###.. .#... .#... .#...",
    "g": "..... ..... .#### #...# #...# .#### ....# .###.",
    "h": "#.... #.... #.##. ##..# #...# #...# #...#",
    "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    "j": "...#. ..... ..##. ...#. ...#. ...#. #..#. .##..",
    "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "m": "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#",
    "n": "..... ..... #.##. ##..# #...# #...# #...#",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "..... ..... ####. #...# #...# ####. #.... #....",
    "q": "..... ..... .#### #...# #...# .#### ....# ....#",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .###. #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    "v": "..... ..... #...# #...# #...# .#.#. ..#..",
    "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    "y": "..... ..... #...# #...# #...# .#### ....# .###.",
    "z": "..... ..... ##### ...#. ..#.. .#... #####",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ";": "..... .##.. .##.. ..... .##.. ..#.. .#...",
    "-": "..... ..... ..... ##### ..... ..... .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "^": "..#.. .#.#. #...# ..... ..... ..... .....",
    "'": "..#.. ..#.. .#... ..... ..... ..... .....",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "2sup": ".##.. #..#. ..#.. .#... ####. ..... .....",
    "sigma": "..... ..... .#### #..#. #...# #...# .###.",
    "eta": "..... ..... #.##. ##..# #...# #...# #...# ....#",
    "eps": "..... ..... .###. #.... .##.. #.... .###.",
    "norm": ".#.#. .#.#. .#.#. .#.#. .#.#. .#.#. .#.#.",
    "dot": "..... ..... ..... ..#.. ..... ..... .....",
}
# Non-ASCII characters used in labels, mapped to their glyphs.
_ALIASES = {"²": "2sup", "σ": "sigma", "η": "eta", "ε": "eps", "‖": "norm", "·": "dot"}
_GLYPH_ROWS = 8
_GLYPH_COLS = 5


def _glyph(char):
    key = _ALIASES.get(char, char)
    rows = _GLYPHS.get(key, _GLYPHS["?"]).split()
    bitmap = np.zeros((_GLYPH_ROWS, _GLYPH_COLS), bool)
    for r, row in enumerate(rows):
        bitmap[r] = [c == "#" for c in row]
    return bitmap


def text_bitmap(text, scale=2):
    """Boolean mask `(8 * scale, (6 * len - 1) * scale)` of `text`."""
    columns = []
    for i, char in enumerate(text):
        if i:
            columns.append(np.zeros((_GLYPH_ROWS, 1), bool))
        columns.append(_glyph(char))
    mask = np.concatenate(columns, axis=1) if columns else np.zeros((_GLYPH_ROWS, 0), bool)
    return np.kron(mask, np.ones((scale, scale), bool))


def draw_text(image, x, y, text, color=(0, 0, 0), scale=2, align="left", rotate=False):
    """Draws `text` with its top at `y`; `align` positions it around `x`.

    With `rotate`, the text reads bottom to top and `(x, y)` is the centre.
    """
    mask = text_bitmap(text, scale)
    if rotate:
        mask = np.rot90(mask)
        x, y = x - mask.shape[1] // 2, y - mask.shape[0] // 2
    elif align == "center":
        x -= mask.shape[1] // 2
    elif align == "right":
        x -= mask.shape[1]
    _paint(image, int(x), int(y), mask, color)
    return mask.shape


def _paint(image, x, y, mask, color):
    height, width = image.shape[:2]
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + mask.shape[0], height), min(x + mask.shape[1], width)
    if y1 <= y0 or x1 <= x0:
        return
    region = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    image[y0:y1, x0:x1][region] = color


def draw_polyline(image, xs, ys, color, width=2, dash=None, clip=None):
    """Draws the segments joining `(xs[i], ys[i])`, in pixels.

    Args:
        dash: `(on, off)` lengths in pixels for a dashed line.
        clip: `(x0, y0, x1, y1)` rectangle outside which nothing is drawn.
    """
    points = []
    for (xa, ya), (xb, yb) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
        if not np.all(np.isfinite([xa, ya, xb, yb])):
            continue
        count = int(max(abs(xb - xa), abs(yb - ya))) + 1
        t = np.linspace(0.0, 1.0, count + 1)
        points.append(np.stack([xa + t * (xb - xa), ya + t * (yb - ya)], axis=1))
    if not points:
        return
    points = np.concatenate(points)
    if dash is not None:
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
        points = points[(arc % sum(dash)) < dash[0]]
    _stamp(image, points, color, width, clip)


def draw_markers(image, xs, ys, color, radius=3, filled=True, clip=None):
    """Draws a disc (or a ring) of `radius` pixels at each point."""
    offsets = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    distance = np.hypot(dx, dy)
    shape = distance <= radius + 0.3
    if not filled:
        shape &= distance >= radius - 1.2
    for x, y in zip(xs, ys):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        if clip is not None and not (clip[0] <= x <= clip[2] and clip[1] <= y <= clip[3]):
            continue
        _paint(image, int(round(x)) - radius, int(round(y)) - radius, shape, color)


def _stamp(image, points, color, width, clip):
    height, width_px = image.shape[:2]
    x0, y0, x1, y1 = clip if clip is not None else (0, 0, width_px - 1, height - 1)
    offsets = np.arange(width) - (width - 1) // 2
    for ox in offsets:
        for oy in offsets:
            px = np.round(points[:, 0]).astype(int) + ox
            py = np.round(points[:, 1]).astype(int) + oy
            inside = (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)
            image[py[inside], px[inside]] = color


def colormap(value):
    """Viridis-like colour of `value` in [0, 1], as an RGB tuple."""
    anchors = np.array(
        [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [230, 200, 20]], float
    )
    position = np.clip(value, 0.0, 1.0) * (len(anchors) - 1)
    low = min(int(position), len(anchors) - 2)
    mix = position - low
    return tuple(int(round(c)) for c in (1 - mix) * anchors[low] + mix * anchors[low + 1])


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
GRAY = (150, 150, 150)


class Axes:
    """One plot panel on an image: data-to-pixel mapping, frame and ticks.

    Args:
        image: uint8 `(H, W, 3)` canvas.
        box: `(left, top, right, bottom)` of the plotting area in pixels.
        xlim, ylim: data ranges.
        log_x, log_y: logarithmic axes (base 10).
    """

    def __init__(self, image, box, xlim, ylim, log_x=False, log_y=False, xticks=None):
        self.image, self.box = image, box
        self.log_x, self.log_y = log_x, log_y
        self.xticks = xticks
        self.xlim = tuple(np.log10(xlim)) if log_x else tuple(xlim)
        self.ylim = tuple(np.log10(ylim)) if log_y else tuple(ylim)

    def to_pixels(self, xs, ys):
        xs = np.asarray(xs, np.float64)
        ys = np.asarray(ys, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.log_x:
                xs = np.log10(xs)
            if self.log_y:
                ys = np.log10(ys)
        left, top, right, bottom = self.box
        px = left + (xs - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (right - left)
        py = bottom - (ys - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (bottom - top)
        return px, py

    def _clamp_y(self, ys):
        # Values below the axis (e.g. norms that decayed to 1e-50) are drawn
        # on the bottom edge rather than dropped, so a decay stays visible.
        low = 10.0 ** self.ylim[0] if self.log_y else self.ylim[0]
        high = 10.0 ** self.ylim[1] if self.log_y else self.ylim[1]
        return np.clip(ys, low, high)

    def plot(self, xs, ys, color, width=2, dash=None):
        px, py = self.to_pixels(xs, self._clamp_y(ys))
        draw_polyline(self.image, px, py, color, width, dash, self.box)

    def scatter(self, xs, ys, color, radius=3, filled=True):
        px, py = self.to_pixels(xs, self._clamp_y(ys))
        draw_markers(self.image, px, py, color, radius, filled, self.box)

    def vline(self, x, color, dash=(6, 4), width=2):
        px, _ = self.to_pixels([x, x], [1.0, 1.0])
        draw_polyline(
            self.image, px, [self.box[1], self.box[3]], color, width, dash, self.box
        )

    def hline(self, y, color, dash=(2, 4), width=1):
        _, py = self.to_pixels([1.0, 1.0], [y, y])
        draw_polyline(
            self.image, [self.box[0], self.box[2]], py, color, width, dash, self.box
        )

    def decorate(self, title, xlabel, ylabel):
        left, top, right, bottom = self.box
        black = (0, 0, 0)
        draw_polyline(self.image, [left, right, right, left, left],
                      [top, top, bottom, bottom, top], black, 1)
        if self.xticks is not None:
            xticks = [
                (np.log10(v) if self.log_x else v, f"{v:g}") for v in self.xticks
            ]
        else:
            xticks = self._ticks(self.xlim, self.log_x)
        for value, label in xticks:
            px = left + (value - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (right - left)
            draw_polyline(self.image, [px, px], [bottom, bottom + 5], black, 1)
            draw_text(self.image, px, bottom + 9, label, align="center")
        for value, label in self._ticks(self.ylim, self.log_y):
            py = bottom - (value - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (bottom - top)
            draw_polyline(self.image, [left - 5, left], [py, py], black, 1)
            draw_text(self.image, left - 9, py - 7, label, align="right")
        draw_text(self.image, (left + right) // 2, top - 26, title, align="center")
        draw_text(self.image, (left + right) // 2, bottom + 34, xlabel, align="center")
        draw_text(self.image, left - 78, (top + bottom) // 2, ylabel, rotate=True)

    @staticmethod
    def _ticks(limits, log):
        low, high = limits
        if log:
            first, last = int(np.ceil(low - 1e-9)), int(np.floor(high + 1e-9))
            stride = max(1, int(np.ceil((last - first + 1) / 7)))
            return [(e, "1" if e == 0 else f"1e{e}") for e in range(first, last + 1, stride)]
        raw = (high - low) / 6
        magnitude = 10.0 ** np.floor(np.log10(raw))
        step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))
        values = np.arange(np.ceil(low / step - 1e-9), np.floor(high / step + 1e-9) + 1) * step
        return [(v, f"{v + 0.0:g}") for v in values]  # + 0.0: no "-0"


def new_canvas(height, width):
    """White RGB uint8 image `(height, width, 3)`."""
    return np.full((height, width, 3), 255, np.uint8)


def draw_caption(image, x, y, text, scale=2):
    """Draws `text` from `(x, y)`, wrapped at the image's right edge."""
    max_chars = (image.shape[1] - x - 10) // (6 * scale)
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > max_chars:
            draw_text(image, x, y, line, scale=scale)
            y += 11 * scale
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        draw_text(image, x, y, line, scale=scale)


def side_legend_width(entries, scale=2):
    """Pixels `side_legend` needs right of its `x` for these entries."""
    return 32 + max(text_bitmap(label, scale).shape[1] for label, _ in entries)


def side_legend(image, x, y, entries):
    """Draws `(label, color)` line entries, then returns the `y` below them."""
    for label, color in entries:
        draw_polyline(image, [x, x + 24], [y + 7, y + 7], color, 3)
        draw_text(image, x + 32, y, label)
        y += 24
    return y


def colorbar(image, box, vmin, vmax, label):
    """Vertical colour bar in `box` = `(left, top, right, bottom)`."""
    left, top, right, bottom = box
    for row in range(top, bottom + 1):
        image[row, left : right + 1] = colormap((bottom - row) / (bottom - top))
    draw_polyline(image, [left, right, right, left, left], [top, top, bottom, bottom, top],
                  (0, 0, 0), 1)
    draw_text(image, right + 6, top - 6, f"{vmax:g}")  # top label
    draw_text(image, right + 6, bottom - 8, f"{vmin:g}")
    draw_text(image, (left + right) // 2, top - 30, label, align="center")


def write_png(path, image):
    """Writes an RGB uint8 image to `path` as PNG, atomically."""
    payload = tf.io.encode_png(tf.constant(image)).numpy()

    def write(temporary):
        with open(temporary, "wb") as file:
            file.write(payload)

    atomic_save(path, write)
