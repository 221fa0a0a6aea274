"""BackSlash as a Hugging Face `transformers.TrainerCallback`.

    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[BackSlashCallback(lam=1e3, export_path="model.bslz")])

The update runs at `on_step_end`, which the Trainer calls once per optimizer step (after gradient
accumulation), so reference mode is the paper's update. Loss mode needs the penalty in the loss:
override `Trainer.compute_loss` to add `callback.backslash.rate_penalty()`; the callback then only
keeps nu fresh. The latest report's fields are added to the Trainer's logs as "bslz/...".
"""

try:
    from transformers import TrainerCallback
except ImportError as exc:  # transformers is optional: only this module needs it
    raise ImportError("bslz.train.hf needs the transformers package (pip install transformers)") from exc

from bslz.train.backslash import BackSlash


class BackSlashCallback(TrainerCallback):
    """Builds a `BackSlash` on the Trainer's model at `on_train_begin` (with `lam` and `options`, the
    keyword arguments of BackSlash) unless one is given as `backslash`; steps it after each optimizer
    step; and, with `export_path`, writes the `.bslz` file at the end of training (main process only)."""

    def __init__(self, lam=None, *, backslash=None, export_path=None, **options):
        if (lam is None) == (backslash is None):
            raise ValueError("give either lam (and BackSlash options) or a built backslash")
        self.lam = lam
        self.options = options
        self.backslash = backslash
        self.export_path = export_path

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.backslash is None:
            if model is None:
                raise ValueError("BackSlashCallback needs the Trainer's model at on_train_begin")
            self.backslash = BackSlash(model, self.lam, **self.options)

    def on_step_end(self, args, state, control, **kwargs):
        self.backslash.step()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.backslash is not None and self.backslash.reports:
            logs.update(self.backslash.reports[-1].as_log())

    def on_train_end(self, args, state, control, **kwargs):
        if self.export_path is not None and getattr(state, "is_world_process_zero", True):
            self.backslash.export(self.export_path)
