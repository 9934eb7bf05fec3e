"""A user's type-checked script: the documented uses of the models' attributes, as the notebooks write them.

Not a test module (pytest does not collect it): ``[tool.mypy]`` in pyproject.toml lists it, so
tests/test_lint.py's mypy run checks it against the package's hints, and
``test_the_typed_users_script_runs`` runs it. While ``build_model`` was typed ``-> DeepLab`` and
``build_backbone`` ``-> Backbone``, mypy refused every line below (``backbone.fc6`` was a
``Tensor | Module``, ``aspp`` an ``ASPP | ASPPv2 | None``, ``at_output_stride`` gave back a ``Module``).
"""

from __future__ import annotations

from torch import nn

from deeplab_edu.boundary import rate_usage_table
from deeplab_edu.complexity import count_parameters
from deeplab_edu.context_reach import ContextProbe, GridProbe, ReachExperiment
from deeplab_edu.models import DeepLabV3, at_output_stride, build_backbone, build_model

# notebook 07: LargeFOV's fc6
fc6: nn.Conv2d = build_model("deeplabv1", num_classes=21).backbone.fc6
fc6_params = count_parameters(fc6)
# DeepLab v2's ASPP (never None)
aspp_params = count_parameters(build_model("deeplabv2", backbone="tiny_resnet").aspp)
# the last layers: v3+'s decoder classifier and v3's classifier
v3plus_classes: int = build_model("deeplabv3plus", backbone="tiny_resnet").decoder.classifier.out_channels
v3_classes: int = build_model("deeplabv3", backbone="tiny_resnet").classifier.out_channels
# notebook 03: a ResNet's rates, block by block
rates: list[tuple[int, ...]] = build_backbone("resnet50").block_rates()
# at_output_stride gives back the model it was given, typed as it was
with at_output_stride(build_model("deeplabv3", backbone="tiny_resnet"), 8) as model:
    at_eight: DeepLabV3 = model
    aspp_rates: tuple[int, ...] = model.aspp.atrous_rates
# notebooks 04 and 08 subtract the table's fractions
rows = rate_usage_table([("513 crop, OS 16", 33)], (6, 18))
lost: float = rows[0]["mean valid weights"] - rows[1]["mean valid weights"]


def first_probe(experiment: ReachExperiment, arm: str) -> ContextProbe | GridProbe:
    """The first seed's trained probe of ``arm`` (``ReachExperiment.models`` holds probes, not any module)."""
    return experiment.models[arm]
