"""`BackSlash`: rate-constrained training (arXiv:2504.16968) over a model's selected parameters."""

import math

from torch import nn

from bslz.codec._parallel import map_tensors_in_order
from bslz.errors import InvalidArgumentError
from bslz.train import update
from bslz.train.marks import export_model, marks_metadata, state_dict_names
from bslz.train.moments import GGFit, fit_parameters
from bslz.train.report import rate_report, tensor_rate
from bslz.train.selection import select_parameters, warn_low_precision

MODES = ("reference", "loss")
DEFAULT_STEP_SHIFT = 3  # planned step = beta * 2**-3 of the first fit, unless `step` is given


class BackSlash:
    """The BackSlash rate term R(theta) = (1/N) sum |theta_i|^nu over N selected parameters, with one
    knob `lam`; nu is the generalized-Gaussian shape of the parameters, re-estimated as training runs.

    Two ways to apply it (DESIGN.md, "The math the code shares"); both use the soft-clipped gradient
    nu * sign(theta) * (|theta| + eps)^(nu - 1) with nu held constant between estimates:

    ====================  =========================================  ==========================================
                          mode="reference" (the paper)                mode="loss"
    ====================  =========================================  ==========================================
    what you call         ``attach(optimizer)`` once, or ``step()``   ``loss = task_loss + bs.rate_penalty()``,
                          after each ``optimizer.step()``             then ``attach(optimizer)`` or ``step()``
                                                                      (it only keeps nu fresh)
    update                theta <- theta - lam*nu/N * sign(theta)     the optimizer's update of
                          * (|theta|+eps)^(nu-1), with no grad        task_loss + lam/N * sum((|theta|+eps)^nu
                                                                      - eps^nu)
    who scales it         nobody: outside the optimizer, no           the optimizer: the learning rate, and
                          learning rate; lam ~ 1e3-2e3 for models     Adam rescales it per coordinate by its
                          of millions of parameters (lam/N is the     second-moment estimate, so it is no
                          per-parameter step)                         longer the paper's update
    ====================  =========================================  ==========================================

    Parameters
    ----------
    model_or_params: an nn.Module, or an iterable of tensors or of (name, tensor) pairs (then no
        `export` / `state_dict_metadata`, which need the module's state_dict).
    lam: lambda >= 0, the rate weight.
    step: planned quantizer step Delta (units of the parameters) that reports and marks are computed
        for; None: beta * 2**-3 of the pooled fit at construction, then kept fixed so that reports are
        comparable across training (for a Gaussian that is about 4.5 bits per parameter at the start).
    mode: "reference" or "loss", as above.
    eps: soft clipping epsilon >= 0 (the paper: 1). With eps = 0 and nu < 1, tiny weights get huge updates.
    reestimate_every: K >= 1; nu and beta are re-fitted after every K steps.
    per_tensor: False: one nu pooled over all selected parameters (the paper); True: one nu per tensor
        (N stays the total count, so lam means the same thing).
    select: which parameters. None: the weights of nn.Linear, nn.Conv*d / ConvTranspose*d,
        nn.Embedding / EmbeddingBag, and the input projections of nn.MultiheadAttention; biases, norms
        and frozen parameters are excluded. This deviates from the reference implementation, which
        penalises every parameter: norms and biases are a negligible share of the bits and the codec
        keeps them lossless. Or a callable (name, param, module) -> bool, or a collection of names.
    report_every: a `report()` is computed, appended to `reports` and passed to `on_report` every
        this many steps; None: K; 0: never (`report()` on demand still works).
    on_report: optional callable(RateReport).
    group: the torch.distributed process group to all-reduce the moment sums over (default: world).

    Selected parameters should be fp32 master weights: a bf16 / fp16 parameter warns (PrecisionWarning),
    since most per-step updates are below its spacing. Under an initialised torch.distributed, every rank
    must construct the object and call `step()` / `estimate()` together (they all-reduce), and every
    rank then holds the same nu and applies the same update to its (replicated) parameters.
    """

    def __init__(
        self,
        model_or_params,
        lam,
        *,
        step=None,
        mode="reference",
        eps=1.0,
        reestimate_every=100,
        per_tensor=False,
        select=None,
        report_every=None,
        on_report=None,
        group=None,
    ):
        self.lam = _non_negative("lam", lam)
        self.eps = _non_negative("eps", eps)
        if mode not in MODES:
            raise InvalidArgumentError(f"mode must be one of {MODES}, got {mode!r}")
        if step is not None and not (_is_real(step) and math.isfinite(step) and step > 0):
            raise InvalidArgumentError(f"step must be a finite positive number or None, got {step!r}")
        self.mode = mode
        self.reestimate_every = _positive_int("reestimate_every", reestimate_every)
        self.report_every = self.reestimate_every if report_every is None else report_every
        if isinstance(self.report_every, bool) or not isinstance(self.report_every, int) or self.report_every < 0:
            raise InvalidArgumentError(f"report_every must be an integer >= 0 or None, got {report_every!r}")
        self.per_tensor = bool(per_tensor)
        self.on_report = on_report
        self.group = group
        self.model = model_or_params if isinstance(model_or_params, nn.Module) else None
        named = select_parameters(model_or_params, select)
        warn_low_precision(named)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.num_params = sum(p.numel() for p in self.params)
        self.steps = 0  # updates applied (or, in loss mode, optimizer steps seen)
        self.fits = 0  # estimates of nu made
        self.reports = []
        self._workspace = {}  # scratch tensors of the reference update, kept between steps
        self.planned_step = None if step is None else float(step)
        self.estimate()

    # ---- the estimate of nu -------------------------------------------------------------------

    def estimate(self):
        """Re-fit nu and beta now (pooled and per tensor); a collective call under torch.distributed."""
        self.fit, self.tensor_fits = fit_parameters(self.params, self.group)
        self.fits += 1
        self.fitted_at = self.steps
        if self.planned_step is None and self.fit.beta > 0:
            self.planned_step = self.fit.beta * 2.0**-DEFAULT_STEP_SHIFT
        return self.fit

    @property
    def nu(self):
        """The pooled shape of the last estimate."""
        return self.fit.nu

    @property
    def beta(self):
        """The pooled scale of the last estimate (units of the parameters)."""
        return self.fit.beta

    def _nus(self):
        return [f.nu for f in self.tensor_fits] if self.per_tensor else [self.fit.nu] * len(self.params)

    # ---- applying the term ----------------------------------------------------------------------

    def step(self):
        """One training step's worth of rate term: in reference mode the update above, in loss mode
        nothing; then, every K steps, a new estimate of nu (and every `report_every` steps a report)."""
        if self.mode == "reference":
            update.apply_rate_step(self.params, self._nus(), self.lam / self.num_params, self.eps, self._workspace)
        self.steps += 1
        if self.steps % self.reestimate_every == 0:
            self.estimate()
        if self.report_every and self.steps % self.report_every == 0:
            report = self.report()
            self.reports.append(report)
            if self.on_report is not None:
                self.on_report(report)

    def attach(self, optimizer):
        """Call `step()` after every `optimizer.step()`; returns the handle whose `remove()` detaches it."""
        return optimizer.register_step_post_hook(lambda _optimizer, _args, _kwargs: self.step())

    def rate_penalty(self):
        """Loss mode: the differentiable lam/N * sum((|theta| + eps)^nu - eps^nu) to add to the loss
        (lam * R(theta) when eps = 0); its gradient is the reference update. nu is a constant."""
        if self.mode != "loss":
            raise InvalidArgumentError("rate_penalty() is for mode='loss'; reference mode applies the term in step()")
        return update.rate_penalty(self.params, self._nus(), self.lam / self.num_params, self.eps)

    def rate(self):
        """R(theta) = (1/N) sum |theta|^nu at the current nu, a float (no gradient; for logging)."""
        return update.rate_value(self.params, self._nus()) / self.num_params

    # ---- what the file will cost ---------------------------------------------------------------

    def _step_or_raise(self):
        if self.planned_step is None:
            raise InvalidArgumentError("the selected parameters are all zero: pass step= to plan a quantizer step")
        return self.planned_step

    def report(self):
        """RateReport now: the last estimate of nu and beta, sparsity and predicted bits at the planned step.

        Local (no collective): call `estimate()` first, on every rank, for a fresh nu.
        """
        step = self._step_or_raise()
        fits = self.tensor_fits if self.per_tensor else [self.fit] * len(self.params)
        # small tensors side by side, a thread each, large ones alone on every core (as compression
        # codes them): one at a time, a small tensor's rate left most cores idle
        items = zip(self.names, self.params, fits)
        rated = map_tensors_in_order(lambda item: tensor_rate(*item, step), items, lambda item: item[1].numel())
        return rate_report(self.steps, self.lam, self.fit, step, [rate for _, rate in rated])

    def steps_by_name(self):
        """{state_dict name: planned step} of every selected tensor (tied weights under each name)."""
        step = self._step_or_raise()
        if self.model is None:
            return {n: step for n in self.names}
        names = state_dict_names(self.model, self.params)
        return {name: step for p in self.params for name in names.get(id(p), [])}

    def state_dict_metadata(self):
        """safetensors metadata {str: str}: "bslz.steps" (JSON {tensor name: step}), "bslz.nu",
        "bslz.beta" (the pooled fit) and "bslz.lambda". `bslz compress` quantizes the named tensors
        at their steps when it is given no other target."""
        return marks_metadata(self.steps_by_name(), self.fit.nu, self.fit.beta, self.lam)

    def export(self, path, *, overwrite=True):
        """Write the model's state_dict to the `.bslz` file `path`, the selected tensors quantized at the
        planned step (weights below step / 2 become exact zeros), the rest lossless. Returns the
        CompressReport. Load it back with `model.load_state_dict(bslz.torch.load_file(path))`."""
        if self.model is None:
            raise InvalidArgumentError("export needs BackSlash built on an nn.Module")
        return export_model(self.model, path, self.state_dict_metadata(), overwrite=overwrite)

    # ---- checkpoints ---------------------------------------------------------------------------

    def state_dict(self):
        """What a resumed run needs to continue as if never stopped: counters, the fit and the planned step."""
        return {
            "steps": self.steps,
            "fits": self.fits,
            "fitted_at": self.fitted_at,
            "planned_step": self.planned_step,
            "fit": (self.fit.nu, self.fit.beta),
            "tensor_fits": [(f.nu, f.beta) for f in self.tensor_fits],
        }

    def load_state_dict(self, state):
        if len(state["tensor_fits"]) != len(self.params):
            raise InvalidArgumentError("state holds fits for a different number of tensors")
        self.steps, self.fits, self.fitted_at = int(state["steps"]), int(state["fits"]), int(state["fitted_at"])
        self.planned_step = state["planned_step"]
        self.fit = GGFit(*state["fit"])
        self.tensor_fits = [GGFit(*f) for f in state["tensor_fits"]]


def _is_real(v):
    return not isinstance(v, bool) and isinstance(v, (int, float))


def _non_negative(name, value):
    if not (_is_real(value) and math.isfinite(value) and value >= 0):
        raise InvalidArgumentError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return value
