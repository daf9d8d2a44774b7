"""The project package. Also the --setup_file that Dataflow workers install."""
from setuptools import find_packages, setup

setup(
    name="taxi-tfx-pipeline",
    version="0.1.0",
    description="Production TFX pipeline: local Beam runs, Vertex AI schedules, TF Serving.",
    python_requires=">=3.10,<3.11",
    packages=find_packages(
        include=[f"{name}{tail}" for name in ("models", "pipeline", "serving", "monitoring", "cli", "report", "common")
                 for tail in ("", ".*")]
    ),
    py_modules=["local_runner", "vertex_runner"],
    package_data={"": ["*.pbtxt", "*.config", "*.yml", "*.yaml", "*.html"]},
    entry_points={"console_scripts": ["taxi=cli.main:entry"]},
    # What Dataflow workers need beyond Beam's SDK container when they get this package through
    # --setup_file (vertex_runner.py --beam-code setup-file): the TFX of the pipeline image (Dockerfile)
    # and, through it, tfx-bsl, TFT, TFDV and TFMA. A setup_file stops TFX from shipping itself.
    # Local installs use requirements.lock with --no-deps, so this never re-resolves them.
    install_requires=["tfx==1.16.0"],
)
