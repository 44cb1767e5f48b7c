"""Actions written exactly as the reference SDK documents them; only the imports name raydrive."""

from __future__ import annotations

from pydantic import BaseModel

from raydrive import BaseAction, LogLevel


class TrainParams(BaseModel):
    epochs: int = 2


class TrainAction(BaseAction[TrainParams]):
    action_name = "train"

    def execute(self) -> dict:
        self.set_progress(0, self.params.epochs, category="train")  # the deprecated alias
        for epoch in range(self.params.epochs):
            self.set_progress(epoch + 1, self.params.epochs, "train")
            self.set_metrics({"loss": 1.0 / (epoch + 1)}, "train")
            self.log_metric("train", "loss", 1.0 / (epoch + 1), epoch=epoch)
        self.log("train_done", {"epochs": self.params.epochs})
        self.log_message("reference training finished", LogLevel.INFO, epochs=self.params.epochs)
        self.log_visualization("validation", "samples", 0, "sample-0.png", caption="first")
        self.ctx.set_progress(1, 1, "export")
        self.ctx.set_metrics({"exported": 1}, "export")
        self.ctx.log("export_done", {"format": "onnx"})
        self.ctx.log_message("exported", LogLevel.WARNING)
        self.ctx.logger.debug("debug line")
        self.ctx.logger.critical("critical line")
        env = self.ctx.env
        return {
            "name": self.action_name,
            "epochs": self.params.epochs,
            "mode": env.get_str("RD_REF_MODE", "unset"),
            "missing": env.get_str("RD_REF_MISSING"),
            "n": env.get_int("RD_REF_N", 0),
            "ratio": env.get_float("RD_REF_RATIO", 0.0),
            "flag": env.get_bool("RD_REF_FLAG", False),
            "tags": env.get_list("RD_REF_TAGS", []),
            "as_mapping": env["RD_REF_MODE"],  # ctx.env is still a mapping
            "keys": sorted(k for k in env if k.startswith("RD_REF_")),
        }
