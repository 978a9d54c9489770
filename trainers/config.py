"""The typed configuration of one training run (one grid point).

Every section refuses unknown keys and wrong types, so a typo in a grid file is an error,
never a silently ignored setting. Units: `epochs` count passes over the training set; with
full-batch gradient descent one epoch is one optimizer step.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Literal, Optional, Union

import typing

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class Section(BaseModel):
    """Every section: unknown keys refused; a number is finite and never a boolean (pydantic
    takes `true` for 1, and YAML reads `.inf` and `.nan` as numbers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data):
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None:
                continue
            if isinstance(value, bool) and not accepts_bool(field.annotation):
                raise PydanticCustomError("not_a_boolean", "{name}: must be a number or a name, not the boolean {value}", {"name": name, "value": str(value).lower()})
            if isinstance(value, float) and not math.isfinite(value):
                raise PydanticCustomError("not_finite", "{name}: must be a finite number, got {value}", {"name": name, "value": value})
        return data


def accepts_bool(annotation) -> bool:
    return annotation is bool or any(accepts_bool(arg) for arg in typing.get_args(annotation))


# --- data -------------------------------------------------------------------------------------


class SpiralData(Section):
    """The paper's interleaved spirals: class j's angle runs from 2*pi*j/C over `revolutions`*pi."""

    name: Literal["spiral"]
    points_per_class: PositiveInt = 100
    classes: Annotated[int, Field(ge=2)] = 3
    revolutions: PositiveFloat = 4.0
    noise: NonNegativeFloat = 0.2
    val_points_per_class: Optional[PositiveInt] = None  # default: points_per_class
    data_seed: int = 0  # the validation points use data_seed + 1


class DigitsData(Section):
    """scikit-learn's bundled 8x8 digits, split in a stratified way."""

    name: Literal["digits"]
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    classes: Optional[list[Annotated[int, Field(ge=0, le=9)]]] = None
    split_seed: int = 0


class Cifar10Data(Section):
    """CIFAR-10 from a local `cifar-10-batches-py` directory (the standard python batches)."""

    name: Literal["cifar10"]
    path: str
    classes: Optional[list[Annotated[int, Field(ge=0, le=9)]]] = None
    train_size: Optional[PositiveInt] = None
    val_size: Optional[PositiveInt] = None
    augment: bool = False
    split_seed: int = 0


DataConfig = Annotated[Union[SpiralData, DigitsData, Cifar10Data], Field(discriminator="name")]


# --- model ------------------------------------------------------------------------------------


MLP_LAYOUTS = ("feature_major", "batch_major", "elementwise")  # trainers.models.MLP's


class MLPModel(Section):
    """`init`: Flax's default (lecun_normal weights, zero biases), glorot_normal weights with zero
    biases, or `stax`: the published notebook's start, the parameters that
    `jax.example_libraries.stax.serial(Dense(width), Relu, ..., Dense(C))` draws from
    `PRNGKey(seed)` (glorot_normal weights, normal biases of std 0.01). `layout`: how it
    computes, never what (trainers.models.MLP: MLP_LAYOUTS); like `batch_points`, not part of
    the trial's identity. `auto`, the default, takes the rule measured on a CPU, which holds on
    accelerators until they are measured (trainers.models.mlp_layout)."""

    name: Literal["mlp"]
    width: PositiveInt = 100
    depth: PositiveInt = 1  # number of hidden layers, each `width` wide, ReLU
    init: Literal["lecun_normal", "glorot_normal", "stax"] = "lecun_normal"
    layout: Literal[("auto", *MLP_LAYOUTS)] = "auto"


class Myrtle5Model(Section):
    name: Literal["myrtle5"]
    channels: PositiveInt = 64


class WideResNetModel(Section):
    name: Literal["wide_resnet"]
    depth: PositiveInt = 28
    widen_factor: PositiveInt = 10

    @model_validator(mode="after")
    def _depth_is_6n_plus_4(self):
        if (self.depth - 4) % 6 != 0 or self.depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {self.depth}")
        return self


ModelConfig = Annotated[Union[MLPModel, Myrtle5Model, WideResNetModel], Field(discriminator="name")]


# --- optimizer and learning-rate schedule -----------------------------------------------------


class OptimizerConfig(Section):
    """`sgd` is gradient descent (full batch when batch_size is `full`), with optional
    (Nesterov) momentum; `adam` is Adam. Weight decay is decoupled (added to the update)."""

    name: Literal["sgd", "adam"] = "sgd"
    learning_rate: PositiveFloat = 1.0
    batch_size: Union[PositiveInt, Literal["full"]] = "full"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0
    b1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: PositiveFloat = 1e-8

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0 (e.g. momentum: 0.9)")
        if self.name == "adam" and (self.momentum or self.nesterov):
            raise ValueError("adam takes b1 and b2, not momentum or nesterov")
        return self


class ConstantSchedule(Section):
    name: Literal["constant"] = "constant"


class PiecewiseLinearSchedule(Section):
    """lr(epoch) = learning_rate * interpolation of `knots` [[epoch, scale], ...]; constant
    outside. The supplementary's Myrtle5 runs: learning_rate 0.02, knots [[0, 0], [300, 1], [700, 0.1]]."""

    name: Literal["piecewise_linear"]
    knots: Annotated[list[tuple[NonNegativeFloat, NonNegativeFloat]], Field(min_length=1)]

    @model_validator(mode="after")
    def _epochs_increase(self):
        epochs = [epoch for epoch, _ in self.knots]
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ValueError(f"knot epochs must increase strictly, got {epochs}")
        return self


class CosineSchedule(Section):
    """lr = learning_rate * (final_scale + (1 - final_scale) * (1 + cos(pi * p)) / 2), p the fraction
    of training after a linear warm-up of `warmup_epochs`."""

    name: Literal["cosine"]
    warmup_epochs: NonNegativeFloat = 0.0
    final_scale: NonNegativeFloat = 0.0


class TriangularSchedule(Section):
    """Smith's cyclical learning rate: from base_lr up to max_lr in step_size steps, back down in as
    many, and again. `optimizer.learning_rate` is not used with it. It may be written as
    (ratio, period) instead, ratio = max_lr / base_lr and period = 2 * step_size (in steps), so
    that a grid over them is comparable to one over the dynamical loss's (A, T)."""

    name: Literal["triangular"]
    base_lr: PositiveFloat
    max_lr: Optional[PositiveFloat] = None
    step_size: Optional[PositiveFloat] = None
    ratio: Optional[Annotated[float, Field(ge=1)]] = None
    period: Optional[PositiveFloat] = None

    @model_validator(mode="before")
    @classmethod
    def _either_form(cls, values):
        if not isinstance(values, dict):
            return values
        values = dict(values)
        numbers = (int, float)
        for given, derived, to_derived in (("ratio", "max_lr", lambda v: v["base_lr"] * v["ratio"]),
                                           ("period", "step_size", lambda v: v["period"] / 2)):
            if values.get(given) is None or not isinstance(values[given], numbers) or not isinstance(values.get("base_lr"), numbers):
                continue
            expected = to_derived(values)
            if values.get(derived) is not None and not (isinstance(values[derived], numbers) and math.isclose(values[derived], expected)):
                raise ValueError(f"give {derived} or {given}, not both")  # a resolved config has both, agreeing
            values[derived] = expected
        return values

    @model_validator(mode="after")
    def _complete_and_ordered(self):
        if self.max_lr is None or self.step_size is None:
            raise ValueError("needs max_lr (or ratio) and step_size (or period)")
        if self.max_lr < self.base_lr:
            raise ValueError(f"max_lr ({self.max_lr}) must be >= base_lr ({self.base_lr})")
        return self


class RangeTestSchedule(Section):
    """The learning-rate range test: lr rises from min_lr at the first step to max_lr at the end
    of the run, linearly (Smith 2017) or geometrically (evenly over a log scale)."""

    name: Literal["range_test"]
    min_lr: PositiveFloat
    max_lr: PositiveFloat
    spacing: Literal["linear", "geometric"] = "linear"


ScheduleConfig = Annotated[
    Union[ConstantSchedule, PiecewiseLinearSchedule, CosineSchedule, TriangularSchedule, RangeTestSchedule],
    Field(discriminator="name"),
]


# --- loss and training ------------------------------------------------------------------------


class LossConfig(Section):
    """The dynamical loss of DESIGN.md. `period` is in optimizer steps unless period_unit is epochs."""

    name: Literal["dynamical_cross_entropy", "dynamical_mse"] = "dynamical_cross_entropy"
    amplitude: Annotated[float, Field(ge=1)] = 1.0
    period: PositiveFloat = 1000.0
    period_unit: Literal["steps", "epochs"] = "steps"
    shape: Literal["triangle", "cosine"] = "triangle"
    stop_oscillation_epoch: Optional[Annotated[int, Field(ge=0)]] = None

    def period_in_steps(self, steps_per_epoch: int) -> float:
        """T in optimizer steps."""
        return self.period * (steps_per_epoch if self.period_unit == "epochs" else 1)


class TrainingConfig(Section):
    epochs: PositiveInt
    eval_every: PositiveInt = 1
    checkpoint_every: Optional[PositiveInt] = None
    # The model's arithmetic; `bfloat16` is mixed precision: the model computes in bfloat16, its
    # parameters, optimizer state, data, loss and metrics stay float32 (kept_dtype).
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    eval_batch_size: PositiveInt = 1000
    # Grid points of the same shapes trained together in one compiled program (vmap), at most.
    # `auto`: 1 on a CPU, where it does not pay; on a GPU or TPU the slots' share of the points, as a
    # power of two, as many as fit (sweep.run.packs).
    batch_points: Union[PositiveInt, Literal["auto"]] = "auto"
    # The top Hessian eigenvalues of F(t) (trainers.hessian), at the first evaluation at or after
    # every `hessian_every` steps; on the full training set, or a fixed subset of
    # `hessian_batch_size` examples when it is larger.
    hessian_every: Optional[PositiveInt] = None
    hessian_top_k: PositiveInt = 3
    hessian_order: Annotated[int, Field(ge=2)] = 20
    hessian_batch_size: PositiveInt = 1000
    # Kept in the results directory after a point finishes (the store's kept states): its final
    # train state (for `tiltsweep interpolate`), and with keep_checkpoints every checkpoint as well.
    keep_final_state: bool = True
    keep_checkpoints: bool = False

    @model_validator(mode="after")
    def _enough_lanczos_steps(self):
        if self.hessian_top_k > self.hessian_order:
            raise ValueError(f"hessian_top_k ({self.hessian_top_k}) needs hessian_order >= it (got {self.hessian_order})")
        return self


class TrialConfig(Section):
    """One grid point, fully resolved: what `trainers.training` trains."""

    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ConstantSchedule()
    training: TrainingConfig
    loss: LossConfig = LossConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self):
        stop = self.loss.stop_oscillation_epoch
        if stop is not None and stop > self.training.epochs:
            raise ValueError(
                f"loss.stop_oscillation_epoch ({stop}) is past the end of training "
                f"(training.epochs = {self.training.epochs})"
            )
        if self.model.name in ("myrtle5", "wide_resnet") and self.data.name != "cifar10":
            raise ValueError(f"model {self.model.name} needs images: use data.name cifar10")
        return self


def kept_dtype(dtype: str) -> str:
    """What a training keeps its parameters, optimizer state, data, hyperparameters, loss and
    metrics in: its dtype, but float32 where the model computes in bfloat16 (mixed precision)."""
    return "float32" if dtype == "bfloat16" else dtype


def batch_signature(cfg: TrialConfig) -> str:
    """What grid points must share to be trained together in one group: everything that shapes
    the compiled program, the data, and when to evaluate and checkpoint. The numbers that enter
    as values (A, T, stop epoch, seed, learning rate, momentum, schedule numbers) may differ."""
    return json.dumps({
        "data": cfg.data.model_dump(mode="json"),
        "model": cfg.model.model_dump(mode="json"),
        "optimizer": [cfg.optimizer.name, cfg.optimizer.batch_size, cfg.optimizer.nesterov, cfg.optimizer.momentum > 0],
        "schedule": [cfg.schedule.name, len(getattr(cfg.schedule, "knots", []))],
        "training": cfg.training.model_dump(mode="json", exclude={"batch_points"}),
        "loss": [cfg.loss.name, cfg.loss.shape],
    }, sort_keys=True)
