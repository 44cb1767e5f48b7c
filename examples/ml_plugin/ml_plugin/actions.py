"""Four actions that make a tiny regression pipeline.

Each action's result is merged into the params of the next one when they run as a pipeline, so
``TrainAction`` finds the ``dataset`` that ``PreprocessAction`` returned. Data stays small enough
to travel as JSON; a real plugin would pass paths to shared storage instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from raydrive import BaseAction


class Dataset(BaseModel):
    x: list[list[float]]
    y: list[float]


class GenerateParams(BaseModel):
    n_samples: int = Field(default=256, ge=8, le=100_000)
    n_features: int = Field(default=3, ge=1, le=64)
    noise: float = Field(default=0.1, ge=0)
    seed: int = 0


class GenerateResult(BaseModel):
    dataset: Dataset
    true_weights: list[float]


class GenerateDataAction(BaseAction[GenerateParams]):
    """Draw a linear-regression data set with known weights."""

    result_model = GenerateResult

    def execute(self) -> GenerateResult:
        import numpy as np

        p = self.params
        rng = np.random.default_rng(p.seed)
        weights = rng.normal(size=p.n_features)
        x = rng.normal(loc=3.0, scale=2.0, size=(p.n_samples, p.n_features))
        y = x @ weights + 0.5 + rng.normal(scale=p.noise, size=p.n_samples)
        self.logger.info(f"generated {p.n_samples} samples with {p.n_features} features")
        return GenerateResult(dataset=Dataset(x=x.tolist(), y=y.tolist()), true_weights=weights.tolist())


class PreprocessParams(BaseModel):
    dataset: Dataset
    test_fraction: float = Field(default=0.25, gt=0, lt=1)


class PreprocessResult(BaseModel):
    dataset: Dataset
    holdout: Dataset
    mean: list[float]
    std: list[float]


class PreprocessAction(BaseAction[PreprocessParams]):
    """Standardise the features and split off a holdout set."""

    result_model = PreprocessResult

    def execute(self) -> PreprocessResult:
        import numpy as np

        x = np.asarray(self.params.dataset.x)
        y = np.asarray(self.params.dataset.y)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-12
        x = (x - mean) / std
        cut = int(len(y) * (1 - self.params.test_fraction))
        self.logger.info(f"train {cut} / holdout {len(y) - cut}")
        return PreprocessResult(
            dataset=Dataset(x=x[:cut].tolist(), y=y[:cut].tolist()),
            holdout=Dataset(x=x[cut:].tolist(), y=y[cut:].tolist()),
            mean=mean.tolist(),
            std=std.tolist(),
        )


class TrainParams(BaseModel):
    dataset: Dataset
    epochs: int = Field(default=200, ge=1, le=100_000)
    learning_rate: float = Field(default=0.1, gt=0)


class TrainResult(BaseModel):
    weights: list[float]
    bias: float
    train_loss: float


class TrainAction(BaseAction[TrainParams]):
    """Fit a linear model by gradient descent, reporting progress and loss."""

    result_model = TrainResult

    def execute(self) -> TrainResult:
        import numpy as np

        x = np.asarray(self.params.dataset.x)
        y = np.asarray(self.params.dataset.y)
        w, b = np.zeros(x.shape[1]), 0.0
        epochs = self.params.epochs
        loss = float("nan")
        for epoch in range(1, epochs + 1):
            err = x @ w + b - y
            loss = float((err**2).mean())
            w -= self.params.learning_rate * 2 * (x.T @ err) / len(y)
            b -= self.params.learning_rate * 2 * float(err.mean())
            if epoch % max(1, epochs // 20) == 0 or epoch == epochs:
                self.logger.set_progress(epoch, epochs, step="train")
                self.logger.set_metrics({"loss": loss}, step=epoch)
        return TrainResult(weights=w.tolist(), bias=b, train_loss=loss)


class EvaluateParams(BaseModel):
    holdout: Dataset
    weights: list[float]
    bias: float


class EvaluateResult(BaseModel):
    mse: float
    r2: float


class EvaluateAction(BaseAction[EvaluateParams]):
    """Score the model on the holdout set."""

    result_model = EvaluateResult

    def execute(self) -> EvaluateResult:
        import numpy as np

        x = np.asarray(self.params.holdout.x)
        y = np.asarray(self.params.holdout.y)
        pred = x @ np.asarray(self.params.weights) + self.params.bias
        mse = float(((pred - y) ** 2).mean())
        r2 = 1.0 - mse / float(y.var() or 1.0)
        self.logger.info(f"holdout mse={mse:.4f} r2={r2:.4f}")
        return EvaluateResult(mse=mse, r2=r2)


PIPELINE: list[Any] = [GenerateDataAction, PreprocessAction, TrainAction, EvaluateAction]
