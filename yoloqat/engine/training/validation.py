"""Validation during training (``train.val_interval``) and the run's ``best.ckpt``.

The val split is evaluated with the engine and settings of ``yoloqat eval`` (the same
:func:`~yoloqat.engine.evaluate.evaluate_source`, eval-mode network in GRAPH_MODE with
fake quantization on for a QAT run, batch 1, ``eval.*`` of the config: input size,
thresholds, resize), so ``yoloqat eval --pretrained <run>/ckpt_0/best.ckpt`` prints the AP
the run logged for it. Only rank 0 validates; in a distributed run the other ranks go on to
the next epoch, whose first gradient AllReduce waits for rank 0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from yoloqat.core import events
from yoloqat.core.config import Config, as_config
from yoloqat.core.contracts.callback import ValidationInfo
from yoloqat.core.errors import ConfigError

BEST_NAME = "best.ckpt"


class Validator:
    """Decides when to validate, evaluates, and keeps the best value of ``best_metric``."""

    def __init__(
        self, cfg: Config | dict[str, Any], *, ckpt_dir: Path, rank: int, max_epoch: int
    ) -> None:
        config = as_config(cfg)
        self.interval = config.train.val_interval
        self.metric = config.train.best_metric
        self.max_images = config.train.val_max_images
        self.num_workers = config.data.num_workers
        #: the ``eval`` section: input size, thresholds, resize (as ``yoloqat eval``)
        self.settings = config.eval
        self.max_epoch = max_epoch
        self.active = self.interval > 0 and rank == 0
        self.best_path = Path(ckpt_dir) / BEST_NAME
        self._best: float | None = None
        self._best_read = False
        #: ``best.ckpt``'s ``best`` metadata (metric, value, epoch, ...), once known
        self.best_record: dict[str, Any] | None = None

    def prepare(self, dataset: Any) -> None:
        """Fail before training when there is nothing to validate on."""
        if self.active and len(dataset.val_source()) == 0:
            raise ConfigError(
                f"train.val_interval={self.interval} but the dataset's val split is empty",
                hint="point the dataset at a val split, or set train.val_interval=0",
            )

    def num_images(self, dataset: Any) -> int | None:
        """Images one validation evaluates (None when this process does not validate)."""
        if not self.active:
            return None
        count = len(dataset.val_source())
        return count if self.max_images is None else min(count, int(self.max_images))

    def due(self, epoch: int) -> bool:
        """Validate after epoch ``epoch`` (0-based): every ``interval`` epochs and the last."""
        if not self.active:
            return False
        return (epoch + 1) % self.interval == 0 or epoch + 1 == self.max_epoch

    @property
    def best_value(self) -> float | None:
        """The best value so far, across resumes (read from an existing ``best.ckpt``)."""
        if not self._best_read:
            self._best_read = True
            if self.best_path.is_file():
                from yoloqat.engine.checkpoints import read_checkpoint

                _params, meta = read_checkpoint(self.best_path)
                best = meta["best"] if isinstance(meta.get("best"), dict) else {}
                if best.get("metric") == self.metric and best.get("value") is not None:
                    self._best = float(best["value"])
                    self.best_record = dict(best)
        return self._best

    def evaluate(self, network: Any, dataset: Any, epoch: int) -> Any:
        """The :class:`~yoloqat.core.scoring.EvalResult` of ``network`` on the val split."""
        from yoloqat.engine.evaluate import Subset, evaluate_source
        from yoloqat.engine.inference import MindSporePredictor

        source = dataset.val_source()
        if self.max_images is not None:
            source = Subset(source, int(self.max_images))
        s = self.settings
        return evaluate_source(
            MindSporePredictor(network),  # eval mode, GRAPH_MODE
            source,
            [int(c) for c in dataset.category_ids],
            testing_shape=s.testing_shape,
            batch_size=1,
            letterbox=s.letterbox,
            score_threshold=s.score_threshold,
            nms_threshold=s.nms_threshold,
            multi_label=s.multi_label,
            num_workers=self.num_workers,
            description=f"val epoch {epoch + 1}",
        )

    def run(
        self,
        network: Any,
        dataset: Any,
        epoch: int,
        global_step: int,
        save_best: Callable[[dict[str, Any]], Path | None],
    ) -> ValidationInfo:
        """Evaluate, write ``best.ckpt`` through ``save_best(meta)`` when it improved."""
        result = self.evaluate(network, dataset, epoch)
        stats = {k: float(v) for k, v in result.stats.items()}
        value = stats[self.metric]
        prior = self.best_value
        best = prior is None or value > prior
        if best:
            self._best = value
            self.best_record = {
                "metric": self.metric,
                "value": value,
                "epoch": epoch + 1,
                "global_step": global_step,
                "stats": stats,
                "num_images": result.num_images,
            }
            save_best({"best": dict(self.best_record)})
        best_value = value if best or prior is None else float(prior)
        info = ValidationInfo(
            epoch=epoch + 1,  # counted from 1 outside the loop
            global_step=global_step,
            stats=stats,
            metric=self.metric,
            value=value,
            best=best,
            best_value=best_value,
            num_images=result.num_images,
        )
        events.emit("validation", **{**stats, "epoch": epoch + 1, "best": best})
        mark = f", new best: {self.best_path}" if best else f" (best {best_value:.4f})"
        events.info(
            f"epoch {epoch + 1}: val AP {stats['AP']:.4f}, AP50 {stats['AP50']:.4f} on "
            f"{result.num_images} images{mark}"
        )
        return info
