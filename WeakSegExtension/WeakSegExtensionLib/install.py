"""First-use installation of WeakSegLib and the Python packages it needs.

Nothing here runs on import: the widget calls :func:`missingPackages` before a long action
and, after the user agreed, :func:`installPackages`. PyTorch is installed through the PyTorch
extension's ``PyTorchUtils`` logic when that extension is present (it picks the build that
matches the computer's GPU), and with pip otherwise. WeakSegLib is installed from the copy
shipped inside the extension when there is one, else from the package index, and always
with ``--no-deps`` so that pip never replaces the PyTorch build chosen above.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Callable, Sequence

from WeakSegExtensionLib.errors import WeakSegDependencyError

TORCH_REQUIREMENT = ">=2.2"
# import name -> pip requirement, in install order (torch first: the others may import it)
REQUIRED_PACKAGES = {
    "torch": f"torch{TORCH_REQUIREMENT}",
    "numpy": "numpy>=1.24",
    "SimpleITK": "SimpleITK>=2.3",
    "skimage": "scikit-image>=0.21",
    "tqdm": "tqdm>=4.60",
}
LIBRARY_IMPORT_NAME = "weakseg"
LIBRARY_REQUIREMENT = "weakseg"


def missingPackages(findSpec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Import names of the required packages that the running Python cannot import, WeakSegLib last."""
    missing = [name for name in REQUIRED_PACKAGES if findSpec(name) is None]
    if findSpec(LIBRARY_IMPORT_NAME) is None:
        missing.append(LIBRARY_IMPORT_NAME)
    return missing


def bundledLibrarySource(moduleDirectory: str | Path) -> Path | None:
    """The WeakSegLib source folder shipped with the extension (installed or build tree) or beside it (source tree)."""
    moduleDirectory = Path(moduleDirectory)
    for candidate in (moduleDirectory / "WeakSegLib", moduleDirectory.parent / "WeakSegLib"):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return None


def stageLibrarySource(source: Path, scratchDirectory: str | Path) -> Path:
    """Copy the WeakSegLib sources to a scratch folder, since pip builds in the source folder and an
    installed extension may be read-only."""
    return Path(shutil.copytree(source, Path(scratchDirectory) / "WeakSegLib",
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")))


def describeMissing(missing: Sequence[str]) -> str:
    """One sentence for the confirmation dialog."""
    names = ", ".join("WeakSegLib" if name == LIBRARY_IMPORT_NAME else name for name in missing)
    return (
        f"WeakSeg needs these Python packages, which are not installed in Slicer's Python: {names}. "
        "Installing them downloads several hundred MB (PyTorch) and can take a few minutes."
    )


def installPackages(
    missing: Sequence[str],
    pipInstall: Callable[[list[str]], None],
    installTorch: Callable[[str], bool] | None = None,
    librarySource: Path | None = None,
    logCallback: Callable[[str], None] | None = None,
) -> None:
    """Install the ``missing`` packages (names from :func:`missingPackages`).

    Args:
        pipInstall: runs ``pip install <arguments>`` in Slicer's Python (``slicer.util.pip_install``
            takes the arguments as a list).
        installTorch: installs PyTorch given a version requirement and returns whether it did
            (the PyTorch extension's ``PyTorchUtilsLogic().installTorch``); pip is used without it.
        librarySource: WeakSegLib source folder to install from (else the package index).

    Raises:
        WeakSegDependencyError: PyTorch could not be installed.
    """
    log = logCallback or (lambda message: None)
    for name in missing:
        if name == "torch":
            log("Installing PyTorch...")
            if installTorch is not None:
                if not installTorch(TORCH_REQUIREMENT):
                    raise WeakSegDependencyError("PyTorch was not installed; WeakSeg cannot train or segment without it")
            else:
                pipInstall([REQUIRED_PACKAGES["torch"]])
        elif name == LIBRARY_IMPORT_NAME:
            target = str(librarySource) if librarySource is not None else LIBRARY_REQUIREMENT
            log(f"Installing WeakSegLib from {target}...")
            pipInstall(["--no-deps", target])
        else:
            log(f"Installing {REQUIRED_PACKAGES[name]}...")
            pipInstall([REQUIRED_PACKAGES[name]])
    importlib.invalidate_caches()


def slicerInstallers() -> tuple[Callable[[list[str]], None], Callable[[str], bool] | None]:
    """The installers to use inside Slicer: ``slicer.util.pip_install`` and PyTorchUtils when present."""
    import slicer

    installTorch = None
    try:
        import PyTorchUtils  # provided by the PyTorch extension (an EXTENSION_DEPENDS of WeakSeg)

        torchLogic = PyTorchUtils.PyTorchUtilsLogic()

        def installTorch(requirement: str) -> bool:
            return torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=requirement) is not None

    except ImportError:
        pass
    return slicer.util.pip_install, installTorch
