"""The training loop shared by every method: steps, learning-rate decay, checkpoints.

A method supplies ``compute_loss(step)`` (draw a batch, run the model, return the loss);
the loop does the rest. Checkpoints hold only tensors and plain Python values, are
written atomically, and load with ``torch.load(weights_only=True)`` so a model file can
never run code on the machine that opens it.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata as package_metadata
from typing import Callable

import torch

from weakseg import __version__
from weakseg.errors import WeakSegInputError
from weakseg.atomic import write_atomically
from weakseg.progress import SILENT, Progress

CHECKPOINT_FORMAT = "weakseg-checkpoint-1"
# Packages whose versions can change what a training learns (numerics, resampling, superpixels).
RECORDED_PACKAGES = ("torch", "numpy", "scipy", "scikit-image", "SimpleITK")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when available, else CPU; ``cpu``/``cuda`` force one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise WeakSegInputError("--device cuda: no CUDA device is available on this machine")
    if name not in ("cpu", "cuda"):
        raise WeakSegInputError(f"device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def poly_learning_rate(base: float, step: int, total_steps: int, exponent: float = 0.9) -> float:
    """Polynomial decay to zero over the run, as nnU-Net uses."""
    return base * (1.0 - step / max(total_steps, 1)) ** exponent


def software_versions() -> dict[str, str]:
    """Python's, WeakSeg's and the numerical packages' versions, as a model file records them.

    The same seed on other versions of these packages can train another model; the record
    tells, for a model file, which versions trained it. A package that is not installed
    is left out. WeakSeg's is that of the code running, which need not be an installed
    distribution (Slicer puts the library on its path).
    """
    versions = {"python": platform.python_version(), "weakseg": __version__}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    metadata: dict,
    extra: dict | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Atomically write model weights, optimizer state, the step reached and metadata.

    ``metadata`` must hold only plain values (str, int, float, bool, lists, dicts) and
    ``extra`` only those and tensors (state dicts of auxiliary networks needed to resume,
    such as a discriminator) so that the file loads under ``weights_only=True``. The
    random state (torch's global CPU generator, which drives dropout, and ``generator``,
    the run's batch sampler) is stored too, so that :func:`restore_random_state` lets a
    resumed run draw exactly what the uninterrupted run would have drawn. The versions of
    the software that wrote the file (:func:`software_versions`) are stored as ``software``.
    """
    random_state = {"torch": torch.get_rng_state()}
    if generator is not None:
        random_state["generator"] = generator.get_state()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": step,
        "metadata": metadata,
        "extra": extra,
        "random_state": random_state,
        "software": software_versions(),
    }
    write_atomically(path, lambda temporary: torch.save(payload, temporary))


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` without unpickling code.

    Raises:
        WeakSegInputError: missing file, not a WeakSeg checkpoint, or unsafe content.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise WeakSegInputError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise WeakSegInputError(f"{path}: not a loadable WeakSeg model ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise WeakSegInputError(f"{path}: not a WeakSeg model file")
    return payload


def load_model_checkpoint(path: str | os.PathLike, device: torch.device | str, method: str, description: str,
                          payload: dict | None = None) -> tuple[dict, dict]:
    """The checkpoint of a model file written by ``method``, and its metadata.

    Args:
        method: the ``method`` the file's metadata must record.
        description: what the model is called in messages ("cohort", "transfer", ...).
        payload: the checkpoint of ``path`` when the caller has read it already
            (:func:`load_checkpoint` on ``device``), so it is not read twice.

    Raises:
        WeakSegInputError: missing or unreadable file, or a model of another method.
    """
    payload = payload if payload is not None else load_checkpoint(path, device)
    metadata = payload.get("metadata") or {}
    if metadata.get("method") != method:
        raise WeakSegInputError(f"{path}: not a WeakSeg {description} model (method {metadata.get('method')!r})")
    return payload, metadata


def restore_random_state(payload: dict, generator: torch.Generator | None = None) -> None:
    """Restore the random state :func:`save_checkpoint` stored in ``payload``.

    Sets torch's global CPU generator and, when given and stored, ``generator``. A
    checkpoint written before the random state was stored leaves both unchanged. Only the
    CPU generators are stored: a resumed CUDA run draws its dropout masks afresh.
    """
    state = payload.get("random_state") or {}
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].cpu())


def run_training(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    compute_loss: Callable[[int], torch.Tensor],
    total_steps: int,
    base_learning_rate: float,
    progress: Progress = SILENT,
    start_step: int = 0,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 0,
    learning_rate_at: Callable[[int], float] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> None:
    """Optimise ``compute_loss`` from ``start_step`` to ``total_steps``.

    Args:
        checkpoint: called with the number of completed steps every ``checkpoint_every``
            steps and at the end, so an interrupted run can resume from there.
        learning_rate_at: the learning rate of a step; None: :func:`poly_learning_rate`
            from ``base_learning_rate``.
        after_step: called with the number of completed steps after each optimiser step,
            before any checkpoint of that step (a running average of the weights).
    """
    for step in range(start_step, total_steps):
        rate = learning_rate_at(step) if learning_rate_at else poly_learning_rate(base_learning_rate, step, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        model.train()
        loss = compute_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if after_step is not None:
            after_step(done)
        progress.report(done / total_steps, f"training step {done}/{total_steps}, loss {loss.item():.4f}")
        if checkpoint is not None and (done == total_steps or (checkpoint_every and done % checkpoint_every == 0)):
            checkpoint(done)


def check_resume(payload: dict, path: str | os.PathLike, model_kind: str, class_names: list[str],
                 settings: dict, kept: tuple[str, ...] | None = None, former: dict | None = None) -> None:
    """The rule every method resumes by: same kind of model, same classes, same settings.

    Args:
        payload: the checkpoint to resume (:func:`load_checkpoint`).
        model_kind: the ``method`` its metadata must record.
        settings: the settings of the run asked for now (a plain dict, as stored).
        kept: the settings that must not change (None: all of them).
        former: the value of each setting that files written before it existed ran with (they
            do not record it).

    Raises:
        WeakSegInputError: naming the file and what differs.
    """
    metadata = payload.get("metadata") or {}
    if metadata.get("method") != model_kind:
        raise WeakSegInputError(f"{path}: cannot resume: not a model of this method (method {metadata.get('method')!r})")
    stored_classes = list(metadata.get("class_names", []))
    if [name.lower() for name in stored_classes] != [name.lower() for name in class_names]:
        raise WeakSegInputError(f"{path}: cannot resume: the model's classes {stored_classes} differ from {class_names}")
    stored = {**(former or {}), **metadata.get("config", {})}
    different = sorted(name for name in (settings if kept is None else kept) if stored.get(name) != settings[name])
    if different:
        now = ", ".join(f"{name} {stored.get(name)} in the model, {settings[name]} now" for name in different)
        raise WeakSegInputError(f"{path}: cannot resume: settings {different} differ from the stored run ({now})")
