"""The course's own class colours are told apart by colour-blind learners too (an accessibility audit, stop 70).

About one man in twelve has a red-green colour-vision deficiency. The procedural scenes' palette had a disc
and a box one olive to a deuteranope, and chapter 10's car the water's blue: the figures that carry a
chapter's finding (a car predicted on the water) could not be read. Each palette is simulated under full
deuteranomaly, protanomaly and tritanomaly (Machado et al. 2009, through ``colorspacious``) and every pair
of classes must stay at least :data:`MIN_DELTA_E` apart in CAM02-UCS (a difference of about 1 is just
noticeable; the old palettes had pairs at 3.8 and 7.4). CamVid's, VOC's and Cityscapes' palettes are the
data sets' own, kept so that their masks read as they are published.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from colorspacious import cspace_convert, deltaE

from deeplab_edu.context_reach import SHORE
from deeplab_edu.data.classes import PROCEDURAL, ClassInfo

#: The smallest colour difference (CAM02-UCS) allowed between two classes, seen with any deficiency.
MIN_DELTA_E = 10.0
DEFICIENCIES = ("deuteranomaly", "protanomaly", "tritanomaly")


def closest_pair(info: ClassInfo, cvd_type: str | None) -> tuple[float, str, str]:
    """The smallest CAM02-UCS difference between two of ``info``'s colours as seen with ``cvd_type``
    (``None``: normal vision), and the two classes."""
    rgb = np.asarray(info.palette, float) / 255
    if cvd_type is not None:
        space = {"name": "sRGB1+CVD", "cvd_type": cvd_type, "severity": 100}
        rgb = np.clip(cspace_convert(rgb, space, "sRGB1"), 0, 1)
    return min((float(deltaE(rgb[i], rgb[j], input_space="sRGB1")), info.class_names[i], info.class_names[j])
               for i, j in itertools.combinations(range(len(rgb)), 2))


@pytest.mark.parametrize("info", [PROCEDURAL, SHORE], ids=lambda info: info.name)
@pytest.mark.parametrize("cvd_type", [None, *DEFICIENCIES])
def test_the_courses_class_colours_stay_apart_for_colour_blind_learners(info: ClassInfo, cvd_type: str | None) -> None:
    distance, a, b = closest_pair(info, cvd_type)
    assert distance >= MIN_DELTA_E, (f"{info.name}: {a} and {b} are {distance:.1f} apart seen with "
                                     f"{cvd_type or 'normal vision'} (at least {MIN_DELTA_E} needed)")


def test_the_check_itself_finds_colours_that_collapse() -> None:
    """Red and green, far apart to most readers, are near one colour to a deuteranope."""
    red_green = ClassInfo("red-green", ("red", "green"), ((200, 60, 40), (90, 140, 40)))
    assert closest_pair(red_green, None)[0] > 2 * MIN_DELTA_E
    assert closest_pair(red_green, "deuteranomaly")[0] < MIN_DELTA_E
