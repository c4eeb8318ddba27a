"""Auxiliary masks drawn from a shape model instead of read from files: random filled ellipses.

A user who knows that the structure is an ellipse (the fetal head in the standard plane,
the optic disc) can hand method ``shape-gan`` that knowledge instead of masks:
``--shape-model ellipse`` or ``ellipse:major=0.3-0.8,aspect=0.7-0.9,x=0.3-0.7,y=0.3-0.7,angle=0-180``.

Every range is uniform and inclusive; sizes and positions are fractions of the image:

* ``major``: length of the long axis as a fraction of the image width. Default 0.25-0.85:
  a broad range, not fitted to any masks. Fetal biometry is done on a magnified standard
  plane in which the head fills a large part of the screen (ISUOG practice guidelines on
  fetal biometry, Salomon et al., Ultrasound Obstet Gynecol 2019); the low end leaves room
  for small early-pregnancy heads.
* ``aspect``: short over long axis, the cephalic index (biparietal over occipitofrontal
  diameter). Default 0.70-0.90: the normal index is about 0.75-0.85 (Hadlock et al.,
  AJR 1981: mean 0.78, SD 0.044), widened to take in dolicho- and brachycephalic heads.
* ``x``, ``y``: the centre, as fractions of the width and height. Default 0.3-0.7: the
  sonographer centres the head, roughly.
* ``angle``: orientation of the long axis in degrees. Default 0-180 (any).

Ellipses are drawn in physical proportions: ``pixel_aspect`` (height over width of one
network pixel in the original image's pixels) keeps a circle round on a resized grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from weakseg.errors import WeakSegInputError

OPTION = "--shape-model"
_DEFAULTS = {"major": (0.25, 0.85), "aspect": (0.70, 0.90), "x": (0.3, 0.7), "y": (0.3, 0.7), "angle": (0.0, 180.0)}
_LIMITS = {"major": (0.01, 2.0), "aspect": (0.05, 1.0), "x": (0.0, 1.0), "y": (0.0, 1.0), "angle": (0.0, 360.0)}


@dataclass(frozen=True)
class EllipseShapeModel:
    """Uniform ranges ``(low, high)`` of an ellipse's parameters (see the module docstring)."""

    major: tuple[float, float] = _DEFAULTS["major"]
    aspect: tuple[float, float] = _DEFAULTS["aspect"]
    x: tuple[float, float] = _DEFAULTS["x"]
    y: tuple[float, float] = _DEFAULTS["y"]
    angle: tuple[float, float] = _DEFAULTS["angle"]

    def draw(self, count: int, height: int, width: int, generator: torch.Generator,
             pixel_aspect: float = 1.0) -> torch.Tensor:
        """``count`` filled ellipses as float ``(count, height, width)`` maps of 0 and 1."""

        def uniform(bounds: tuple[float, float]) -> torch.Tensor:
            return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(count, 1, 1, generator=generator)

        semi_major = uniform(self.major) * width / 2
        semi_minor = semi_major * uniform(self.aspect)
        centre_x, centre_y = uniform(self.x) * width, uniform(self.y) * height * pixel_aspect
        angle = uniform(self.angle) * math.pi / 180
        rows = (torch.arange(height, dtype=torch.float32)[:, None] + 0.5) * pixel_aspect
        columns = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
        dx, dy = columns - centre_x, rows - centre_y
        along = dx * torch.cos(angle) + dy * torch.sin(angle)
        across = -dx * torch.sin(angle) + dy * torch.cos(angle)
        return ((along / semi_major) ** 2 + (across / semi_minor) ** 2 <= 1).float()


def parse_shape_model(text: str) -> EllipseShapeModel:
    """``ellipse`` or ``ellipse:name=low-high,...`` -> the model.

    Raises:
        WeakSegInputError: another shape, an unknown parameter, or a range that is malformed,
            reversed or outside the parameter's limits; the message names ``--shape-model``.
    """
    kind, _, parameters = text.strip().partition(":")
    if kind.strip() != "ellipse":
        raise WeakSegInputError(f"{OPTION} {text!r}: unknown shape model {kind.strip()!r}; expected ellipse[:params]")
    ranges = dict(_DEFAULTS)
    for item in filter(None, (part.strip() for part in parameters.split(","))):
        name, separator, value = item.partition("=")
        name = name.strip()
        if name not in _DEFAULTS or not separator:
            raise WeakSegInputError(f"{OPTION} {text!r}: {item!r} is not one of "
                                    f"{', '.join(name + '=LOW-HIGH' for name in _DEFAULTS)}")
        ranges[name] = _parse_range(text, name, value.strip())
    return EllipseShapeModel(**ranges)


def _parse_range(text: str, name: str, value: str) -> tuple[float, float]:
    low_text, separator, high_text = value.partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if separator else low
    except ValueError:
        raise WeakSegInputError(f"{OPTION} {text!r}: {name}={value!r} is not a number or a range LOW-HIGH") from None
    minimum, maximum = _LIMITS[name]
    if not minimum <= low <= high <= maximum:
        raise WeakSegInputError(f"{OPTION} {text!r}: {name}={value} must be LOW-HIGH with "
                                f"{minimum:g} <= LOW <= HIGH <= {maximum:g}")
    return (low, high)
