"""A logged model's folder, the pytorch flavour's: written without torch where MLflow is the
version it was checked against, else through MLflow's public save_model."""
import shutil
from pathlib import Path
from typing import Any, Tuple

# write() uses five private MLflow helpers: they are used only with the MLflow that
# tests/test_tracking.py checked them against (the folder equals mlflow.pytorch.save_model's).
# Any other MLflow gets save_with_mlflow, public but with torch imported here (~0.9-1.8 s).
TESTED_MLFLOW = ("3.17.2",)


def mlflow_tested() -> bool:
    import mlflow

    return mlflow.__version__ in TESTED_MLFLOW


def write(root: Path, path: str, example, output, torch_version: str) -> None:
    """The folder mlflow.pytorch.save_model(..., serialization_format="pickle") writes, without
    torch (0.9 s of import, make bench P2')."""
    import yaml
    from mlflow.models import Model, infer_signature
    from mlflow.models.utils import _save_example
    from mlflow.pyfunc import add_to_model
    from mlflow.utils.environment import _generate_mlflow_version_pinning, _mlflow_conda_env, _PythonEnv

    pickle_module = "mlflow.pytorch.pickle_module"  # what load_model unpickles with
    (root / "data").mkdir(parents=True)
    shutil.copy(path, root / "data" / "model.pth")
    (root / "data" / "pickle_module_info.txt").write_text(pickle_module)
    mlmodel = Model()
    mlmodel.signature = infer_signature(example, output)
    _save_example(mlmodel, example, str(root))
    mlmodel.add_flavor("pytorch", model_data="data", pytorch_version=torch_version, code=None)
    add_to_model(mlmodel, loader_module="mlflow.pytorch", data="data", pickle_module_name=pickle_module,
                 code=None, conda_env="conda.yaml", python_env="python_env.yaml", model_config={"device": None})
    mlmodel.model_size_bytes = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    mlmodel.save(str(root / "MLmodel"))
    # Explicit requirements: inferring them imports the module's packages (seconds), and
    # MLflow's check of them against this environment reads every installed package's
    # metadata (0.3 s): pointless for the very torch that made the model.
    requirements = [_generate_mlflow_version_pinning(), f"torch=={torch_version.split('+')[0]}"]
    conda_env = _mlflow_conda_env(additional_pip_deps=requirements, install_mlflow=False)
    (root / "conda.yaml").write_text(yaml.safe_dump(conda_env, default_flow_style=False))
    (root / "requirements.txt").write_text("\n".join(requirements))
    _PythonEnv.current().to_yaml(str(root / "python_env.yaml"))


def save_with_mlflow(root: Path, path: str, example, output) -> None:
    """The same folder through MLflow's public mlflow.pytorch.save_model (torch loaded here)."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    module = torch.load(path, weights_only=False)
    mlflow.pytorch.save_model(module, str(root), signature=infer_signature(example, output), input_example=example,
                              serialization_format="pickle",
                              pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])  # MLflow adds its own


def save_module(module, example, path: Path) -> Tuple[Any, str]:
    """torch.save the whole module to `path`: what log_model_file takes, with the module's output
    on `example` (for the signature) and torch's version."""
    import torch

    with torch.no_grad():
        output = module(torch.from_numpy(example)).numpy()
    torch.save(module, path)
    return output, str(torch.__version__)
