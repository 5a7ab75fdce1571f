"""Pretrained weights for offline compute nodes: fetch them on a login node, check a plan.

HPC compute nodes usually have no internet. On a machine that has (a login
node), :func:`fetch` downloads the micro_sam model-zoo weights a plan needs
(cellpose's ``cpsam`` when the ``cellpose`` extra is installed, and
torchvision's COCO Mask R-CNN for the ``maskrcnn`` recipe) into the caches
micro_sam, cellpose and torch read, verifying the published hashes
(micro_sam's xxh128; the sha256 prefix in torchvision's file name).
:func:`doctor` says, for a plan (the model annotate uses + the recipes to
train), what is there, what is missing, and the environment variables to set
on the compute nodes so they find the files::

    cellnb models fetch vit_b_lm --cache /project/weights        # login node
    cellnb models doctor --annotate vit_b_lm --recipes microsam cellpose --cache /project/weights
    export MICROSAM_CACHEDIR=/project/weights                   # job script
    export CELLPOSE_LOCAL_MODELS_PATH=/project/weights/cellpose
    export TORCH_HOME=/project/weights/torch                    # maskrcnn's COCO weights

Downloads go through pooch (micro_sam's own registry of names, URLs and
xxh128 hashes), to a temporary name first, so a broken download never sits in
the cache under the real name.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["train_base", "training_plan", "fetch", "doctor", "required", "environment_lines",
           "job_prologue", "CELLPOSE_MODELS",
           "TORCHVISION_MODELS", "JOB_VARIABLES"]

#: cellpose models :func:`fetch` knows (cellpose publishes no hashes for them).
CELLPOSE_MODELS = ("cpsam",)
#: torchvision weights :func:`fetch` knows: name -> URL (the file name ends in its sha256 prefix).
TORCHVISION_MODELS = {
    "maskrcnn_resnet50_fpn_v2":
        "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"}
#: Recipes that start from a micro_sam model / from a cellpose model.
_SAM_RECIPES = ("microsam", "samcell", "cellseg1", "cellsam")
_COLUMNS = ["name", "file", "needed_by", "path", "present", "verified", "hash"]


def _registry(cache=None):
    """micro_sam's pooch registry, pointed at `cache` (its MICROSAM_CACHEDIR) when given."""
    import pooch

    from .models._architectures import _micro_sam_util

    zoo = _micro_sam_util().models()
    if cache is None:
        return zoo
    return pooch.create(path=Path(cache) / "models", base_url="", registry=zoo.registry,
                        urls=zoo.urls)


def _cellpose_dir(cache=None) -> Path:
    if cache is not None:
        return Path(cache) / "cellpose"
    from cellpose import models

    return Path(models.MODEL_DIR)


def _torch_dir(cache=None) -> Path:
    """torch's hub checkpoints folder (``$TORCH_HOME/hub/checkpoints``), or the cache's."""
    if cache is not None:
        return Path(cache) / "torch" / "hub" / "checkpoints"
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _torch_file(name: str) -> tuple[str, str]:
    """(file name, expected sha256 prefix) of a torchvision weight URL."""
    file = TORCHVISION_MODELS[name].rsplit("/", 1)[1]
    return file, file.rsplit("-", 1)[1].split(".")[0]


def _cellpose_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("cellpose") is not None


def required(*, annotate=None, recipes=(), model: str = "vit_b_lm") -> pd.DataFrame:
    """The weight files a plan needs: ``name``, ``file`` and ``needed_by``.

    Parameters
    ----------
    annotate : str, optional
        The model :func:`cellnb.annotate` will use (a zoo name; "watershed"
        needs none).
    recipes : sequence of str
        Recipes :func:`cellnb.train` will run.
    model : str, default="vit_b_lm"
        What the SAM recipes start from (their ``model=``); cellpose starts
        from ``cpsam``.

    Examples
    --------
    >>> plan = required(annotate="vit_b_lm", recipes=["unet", "cellsam"])
    >>> plan["file"].tolist(), plan["needed_by"].tolist()
    (['vit_b_lm', 'vit_b_lm_decoder'], ['annotate, cellsam', 'annotate, cellsam'])
    """
    from .models._architectures import _micro_sam_util
    from .models._zoo import _zoo_names
    from .recipes import RECIPES

    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}.")
    registry = _micro_sam_util().models().registry
    names = _zoo_names(_micro_sam_util())
    wanted: dict = {}

    def need(name, by):
        if name in TORCHVISION_MODELS:
            wanted.setdefault((name, _torch_file(name)[0]), []).append(by)
            return
        if name in CELLPOSE_MODELS:
            wanted.setdefault((name, name), []).append(by)
            return
        if name not in names:
            raise ValueError(f"unknown model {name!r} for {by}; micro_sam's model zoo has "
                             f"{names}, cellpose's {list(CELLPOSE_MODELS)}, torchvision's "
                             f"{list(TORCHVISION_MODELS)}.")
        for item in (name, f"{name}_decoder"):
            if item in registry:
                wanted.setdefault((name, item), []).append(by)

    if annotate not in (None, "watershed"):
        need(annotate, "annotate")
    for recipe in recipes:
        if recipe in _SAM_RECIPES:
            need(model, recipe)
        elif recipe == "cellpose":
            need("cpsam", recipe)
        elif recipe == "maskrcnn":
            need("maskrcnn_resnet50_fpn_v2", recipe)
    rows = [{"name": n, "file": f, "needed_by": ", ".join(by)} for (n, f), by in wanted.items()]
    return pd.DataFrame(rows, columns=["name", "file", "needed_by"])


def fetch(names, *, cache=None, progress: bool = True) -> pd.DataFrame:
    """Download weights into the caches micro_sam and cellpose read, and verify them.

    Parameters
    ----------
    names : str or sequence of str
        micro_sam model-zoo names (their instance decoders come along),
        ``"cpsam"`` (needs the ``cellpose`` extra) and/or
        ``"maskrcnn_resnet50_fpn_v2"`` (torchvision's COCO Mask R-CNN).
    cache : str or Path, optional
        A folder to use as ``MICROSAM_CACHEDIR`` (files in ``<cache>/models``;
        cellpose's in ``<cache>/cellpose``, torch's in ``<cache>/torch``, its
        ``TORCH_HOME``). Default: the caches micro_sam, cellpose and torch
        use now.
    progress : bool, default=True

    Returns
    -------
    table : DataFrame
        One row per file: ``name, file, path, status`` ("downloaded" or
        "cached"), ``verified`` (micro_sam's xxh128, torchvision's sha256
        prefix checked; cellpose publishes no hash) and ``hash``.

    Raises
    ------
    ValueError
        An unknown name.
    cellnb.models.ModelNotAvailableError
        A download failed; the message names the URL and the file to put it in.

    Examples
    --------
    >>> fetch("vit_b_lm", cache="/project/weights")  # doctest: +SKIP
    """
    names = [names] if isinstance(names, str) else list(names)
    plan = pd.concat([required(annotate=n) if n not in (*CELLPOSE_MODELS, *TORCHVISION_MODELS)
                      else pd.DataFrame([{"name": n, "file": n, "needed_by": "fetch"}])
                      for n in names], ignore_index=True).drop_duplicates("file")
    rows = []
    for row in plan.itertuples():
        if row.name in CELLPOSE_MODELS:
            fetched = _fetch_cellpose(row.file, cache, progress)
        elif row.name in TORCHVISION_MODELS:
            fetched = _fetch_torch(row.name, cache, progress)
        else:
            fetched = _fetch_zoo(row.file, cache, progress)
        rows.append({"name": row.name, **fetched})
    return pd.DataFrame(rows, columns=["name", "file", "path", "status", "verified", "hash"])


def _fetch_zoo(item, cache, progress) -> dict:
    from .models import ModelNotAvailableError

    registry = _registry(cache)
    path = Path(registry.path) / item
    present = path.is_file()
    try:
        registry.fetch(item, progressbar=progress)  # verifies the hash, also of a cached file
    except Exception as err:  # network and hash errors come in many types
        raise ModelNotAvailableError(
            f"could not fetch {item!r} from {registry.urls[item]} into {path} "
            f"({type(err).__name__}: {err}). On a machine with internet access download it and "
            f"save it as {path}.") from err
    return {"file": item, "path": path, "status": "cached" if present else "downloaded",
            "verified": True, "hash": registry.registry[item]}


def _retrieve(name: str, url: str, path: Path, progress: bool) -> bool:
    """Download `url` to `path` unless it is there (pooch: a temporary name first); whether it was."""
    import pooch

    from .models import ModelNotAvailableError

    if path.is_file():
        return True
    try:
        pooch.retrieve(url, known_hash=None, fname=path.name, path=path.parent,
                       progressbar=progress)
    except Exception as err:  # network errors come in many types
        raise ModelNotAvailableError(
            f"could not fetch {name!r} from {url} into {path} ({type(err).__name__}: "
            f"{err}). On a machine with internet access download it and save it as "
            f"{path}.") from err
    return False


def _fetch_cellpose(name, cache, progress) -> dict:
    from ._shared.files import sha256

    if not _cellpose_installed():
        raise ValueError(f"{name!r} is a cellpose model: install the extra first "
                         "(pip install 'cellnb[cellpose]').")
    from cellpose import models

    folder = _cellpose_dir(cache)
    path = folder / name
    url = models._MODEL_URL + name
    present = _retrieve(name, url, path, progress)
    return {"file": name, "path": path, "status": "cached" if present else "downloaded",
            "verified": False, "hash": "sha256:" + sha256(path)}


def _fetch_torch(name, cache, progress) -> dict:
    """torchvision weights into torch's hub cache, checked against the file name's sha256 prefix."""
    from ._shared.files import sha256
    from .models import ModelNotAvailableError

    folder = _torch_dir(cache)
    file, prefix = _torch_file(name)
    path, url = folder / file, TORCHVISION_MODELS[name]
    present = _retrieve(name, url, path, progress)
    digest = sha256(path)
    if not digest.startswith(prefix):
        if not present:  # what this call downloaded and found broken goes again
            path.unlink()
        raise ModelNotAvailableError(
            f"{path} has sha256 {digest[:16]}..., not the {prefix}... its name promises; "
            f"download {url} again.")
    return {"file": file, "path": path, "status": "cached" if present else "downloaded",
            "verified": True, "hash": "sha256:" + digest}


def doctor(*, annotate=None, recipes=(), model: str = "vit_b_lm", cache=None) -> pd.DataFrame:
    """What a plan needs, what of it is here (and intact), and what to set on compute nodes.

    Parameters
    ----------
    annotate, recipes, model
        The plan (see :func:`required`).
    cache : str or Path, optional
        Where the weights were fetched to (:func:`fetch`'s `cache`); default
        the caches micro_sam and cellpose use now.

    Returns
    -------
    table : DataFrame
        One row per needed file: ``name, file, needed_by, path, present,
        verified`` (micro_sam files: the xxh128 matches the registry) and
        ``hash``. ``table.attrs["environment"]`` holds the variables a
        compute node needs (``MICROSAM_CACHEDIR``, ``CELLPOSE_LOCAL_MODELS_PATH``,
        ``TORCH_HOME``)
        and ``table.attrs["missing"]`` the files to fetch.

    Examples
    --------
    >>> import tempfile
    >>> table = doctor(annotate="vit_b_lm", cache=tempfile.mkdtemp())
    >>> table["present"].tolist(), table.attrs["missing"]
    ([False, False], ['vit_b_lm', 'vit_b_lm_decoder'])
    """
    from .models._architectures import _micro_sam_util

    plan = required(annotate=annotate, recipes=recipes, model=model)
    registry, xxh128 = _registry(cache), _micro_sam_util()._compute_hash
    rows = []
    environment = {}
    for row in plan.itertuples():
        if row.name in TORCHVISION_MODELS:
            from ._shared.files import sha256

            folder = _torch_dir(cache)
            path, prefix = folder / row.file, _torch_file(row.name)[1]
            environment["TORCH_HOME"] = str(folder.parent.parent)
            present = path.is_file()
            rows.append({"path": path, "present": present,
                         "verified": present and sha256(path).startswith(prefix),
                         "hash": f"sha256:{prefix}..."})
            continue
        if row.name in CELLPOSE_MODELS:
            folder = _cellpose_dir(cache) if (cache is not None or _cellpose_installed()) else (
                Path.home() / ".cellpose" / "models")
            path = folder / row.file
            environment["CELLPOSE_LOCAL_MODELS_PATH"] = str(folder)
            rows.append({"path": path, "present": path.is_file(), "verified": False,
                         "hash": None})
            continue
        path = Path(registry.path) / row.file
        environment["MICROSAM_CACHEDIR"] = str(Path(registry.path).parent)
        expected = registry.registry[row.file]
        present = path.is_file()
        rows.append({"path": path, "present": present,
                     "verified": present and xxh128(path) == expected, "hash": expected})
    table = pd.concat([plan.reset_index(drop=True), pd.DataFrame(rows, columns=_COLUMNS[3:])],
                      axis=1)
    table.attrs["environment"] = environment
    table.attrs["missing"] = table.loc[~table["present"] | (table["present"] & ~table[
        "verified"] & table["hash"].notna()), "file"].tolist()
    return table


def environment_lines(table: pd.DataFrame) -> list[str]:
    """``export NAME=value`` lines for a job script, from :func:`doctor`'s table."""
    return [f"export {k}={v}" for k, v in table.attrs.get("environment", {}).items()]


#: Variables a compute node needs to find cellnb's weights and data (:func:`job_prologue`).
JOB_VARIABLES = ("MICROSAM_CACHEDIR", "CELLPOSE_LOCAL_MODELS_PATH", "TORCH_HOME",
                 "CELLNB_DATA_DIR")


def job_prologue(plan: pd.DataFrame | None = None) -> list[str]:
    """The first lines of a batch job that runs cellnb as this Python session does.

    A job on a compute node starts from a login shell, not from this session:
    it needs this Python environment activated and the variables that say
    where the weights and the real data are. These lines are what
    ``dask_jobqueue.SLURMCluster(job_script_prologue=...)`` and a hand-written
    ``sbatch`` script take; with them a job submitted with
    ``--export=NONE`` (nothing inherited from the submitting shell) still
    finds everything.

    Parameters
    ----------
    plan : DataFrame, optional
        A :func:`doctor` table: its cache variables (``MICROSAM_CACHEDIR``,
        ``CELLPOSE_LOCAL_MODELS_PATH``, ``TORCH_HOME``) come first. The
        variables of :data:`JOB_VARIABLES` that this session has set and
        the plan does not name are exported with their current values.

    Returns
    -------
    lines : list of str
        ``source <venv>/bin/activate`` (a virtual environment) or
        ``source <conda>/etc/profile.d/conda.sh`` + ``conda activate
        <prefix>`` (a conda environment; nothing when Python is neither),
        then ``export NAME=value`` lines, values shell-quoted.

    Examples
    --------
    >>> import sys
    >>> lines = job_prologue(doctor(annotate="vit_b_lm", cache="/project/weights"))
    >>> "export MICROSAM_CACHEDIR=/project/weights" in lines
    True
    >>> sys.prefix == sys.base_prefix or lines[0] == f"source {sys.prefix}/bin/activate"
    True
    """
    import os
    import shlex
    import sys

    if plan is not None and not isinstance(plan, pd.DataFrame):
        raise TypeError(f"`plan` must be a table from cellnb.weights.doctor(), got "
                        f"{type(plan).__name__}.")
    lines = []
    conda = os.environ.get("CONDA_EXE")
    if sys.prefix != sys.base_prefix:  # a virtual environment
        lines.append(f"source {shlex.quote(sys.prefix + '/bin/activate')}")
    elif conda and os.environ.get("CONDA_PREFIX") == sys.prefix:
        base = Path(conda).resolve().parent.parent
        lines += [f"source {shlex.quote(str(base / 'etc' / 'profile.d' / 'conda.sh'))}",
                  f"conda activate {shlex.quote(sys.prefix)}"]
    environment = dict(plan.attrs.get("environment", {})) if plan is not None else {}
    for name in JOB_VARIABLES:
        if name not in environment and os.environ.get(name):
            environment[name] = os.environ[name]
    return lines + [f"export {k}={shlex.quote(str(v))}" for k, v in environment.items()]


def train_base(name: str, folder, *, kind: str = "vit_t") -> dict | None:
    """What a recipe starts from: `name` when its weights are cached, else a random-init `kind`.

    For notebooks and CI that must train with or without downloaded weights:
    returns the keyword arguments of :func:`cellnb.train` (``model=`` and,
    for the stand-in, ``checkpoint=`` of a random-init checkpoint written
    into `folder`; SAM stand-ins carry micro_sam's decoder). The stand-in is
    announced with a :class:`UserWarning`. `name` is a μSAM zoo name, or a
    cellpose model (``"cpsam"``, with a cellpose `kind` such as
    ``"cpsam_mini"``); a cellpose name gives None when cellpose is not
    installed.

    Examples
    --------
    >>> import tempfile, warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     base = train_base("vit_b_lm", tempfile.mkdtemp(), kind="vit_mini")
    >>> base["model"] in ("vit_b_lm", "vit_mini")
    True
    """
    import warnings

    from .models._architectures import CELLPOSE_ARCHITECTURES
    from .models import is_cached, random_checkpoint

    if kind in CELLPOSE_ARCHITECTURES:
        from .recipes.cellpose import cached

        found = cached(name)
        if found is None:  # cellpose is not installed
            return None
        if found:
            return {"model": name}
        what = f"cellpose weights {name!r} are not in cellpose's cache"
    else:
        if is_cached(name):
            return {"model": name}
        what = f"μSAM weights {name!r} are not in micro_sam's cache"
    path = Path(folder) / f"{kind}_random.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    warnings.warn(f"{what}: training starts from a random-init {kind} (real architecture; its "
                  "masks mean nothing until trained far longer, or started from real weights).",
                  UserWarning, stacklevel=2)
    decoder = kind not in CELLPOSE_ARCHITECTURES
    return {"model": kind, "checkpoint": str(random_checkpoint(kind, path, decoder=decoder))}


def training_plan(recipes, folder, *, model: str = "vit_b_lm", cellpose_model: str = "cpsam",
                  reduced: bool = False, gpu: bool | None = None) -> pd.DataFrame:
    """What each recipe starts from here, and whether it can train on this hardware.

    The plan a comparison of recipes needs before training (notebook 09):
    SAM recipes start from `model` when micro_sam has it cached, else from a
    random-init stand-in (:func:`train_base`; the reduced ``vit_mini`` when
    `reduced`, else ``vit_t``); ``cellpose`` from `cellpose_model` when
    cached (a random-init ``cpsam_mini`` when `reduced`), and is skipped
    when the ``cellpose`` extra is missing; ``maskrcnn`` from torchvision's
    COCO weights when cached (``maskrcnn_mini`` when `reduced`, else a
    random-init ResNet-50); ``unet`` from nothing. Without a GPU, every
    recipe but ``unet`` trains only at the reduced size (the full size
    would take hours on a CPU).

    Parameters
    ----------
    recipes : sequence of str
        Recipe names (:data:`cellnb.recipes.RECIPES`).
    folder : str or Path
        Where random-init stand-in checkpoints are written.
    model : str, default="vit_b_lm"
        The μSAM model the SAM recipes start from when it is cached.
    cellpose_model : str, default="cpsam"
    reduced : bool, default=False
        Plan the reduced architectures (CI, teaching on a laptop).
    gpu : bool, optional
        Whether a GPU trains (default: ``torch.cuda.is_available()``).

    Returns
    -------
    plan : DataFrame
        One row per recipe, indexed by ``recipe``: ``starts_from`` (what, in
        words), ``runs`` (bool), ``why_not`` ("" when it runs) and ``base``
        (the keyword arguments of :func:`cellnb.train` that choose the
        starting weights: ``model``, ``checkpoint``, ``pretrained``).

    Examples
    --------
    >>> import tempfile
    >>> plan = training_plan(["unet", "maskrcnn"], tempfile.mkdtemp(), reduced=True)
    >>> plan["starts_from"].tolist(), plan["runs"].tolist()
    (['no pretrained weights', 'random-init maskrcnn_mini'], [True, True])
    >>> plan.loc["maskrcnn", "base"]
    {'model': 'maskrcnn_mini'}
    """
    from .recipes import RECIPES

    recipes = [recipes] if isinstance(recipes, str) else list(recipes)
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}.")
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    rows, sam = [], None
    for recipe in recipes:
        base, why_not = {}, ""
        if recipe == "unet":
            note = "no pretrained weights"
        elif recipe in _SAM_RECIPES:
            if sam is None:  # one stand-in checkpoint (and one warning) for every SAM recipe
                sam = train_base(model, folder, kind="vit_mini" if reduced else "vit_t")
            base = dict(sam)
            note = (f"{model} (cached)" if "checkpoint" not in base
                    else f"random-init {base['model']}")
        elif recipe == "cellpose":
            from .recipes.cellpose import cached

            found = cached(cellpose_model)
            if found is None:
                note, why_not = "nothing", "pip install 'cellnb[cellpose]'"
            elif found or reduced:
                base = train_base(cellpose_model, folder, kind="cpsam_mini")
                note = (f"{cellpose_model} (cached)" if found else "random-init cpsam_mini")
            else:
                note, why_not = "nothing", f"{cellpose_model} weights not cached"
        else:  # maskrcnn
            coco = _torch_dir() / _torch_file("maskrcnn_resnet50_fpn_v2")[0]
            if reduced:
                base, note = {"model": "maskrcnn_mini"}, "random-init maskrcnn_mini"
            elif coco.is_file():
                base, note = {"model": "maskrcnn_resnet50_fpn_v2"}, "COCO weights (cached)"
            else:
                base = {"model": "maskrcnn_resnet50_fpn_v2", "pretrained": False}
                note = "random-init ResNet-50"
        if not why_not and recipe != "unet" and not (gpu or reduced):
            why_not = "needs a GPU at full size"
        rows.append({"recipe": recipe, "starts_from": note, "runs": not why_not,
                     "why_not": why_not, "base": base})
    return pd.DataFrame(rows, columns=["recipe", "starts_from", "runs", "why_not",
                                       "base"]).set_index("recipe")
