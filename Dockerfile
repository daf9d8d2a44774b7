# The pipeline image: every Vertex task, the Vertex training job and (with
# --beam-code image, the default) the Dataflow workers run this one image, so
# the code that trains is the code that was tested.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/tfx/taxi-pipeline:$(git rev-parse --short HEAD) .
#
# The TFX image brings TFX 1.16, TensorFlow and Beam as TFX tested them; the
# project adds only its own packages (no dependency changes: --no-deps).
FROM tensorflow/tfx:1.16.0

# Dataflow starts custom SDK containers through Beam's boot launcher; its
# version must match the apache-beam inside the image (checked below).
ARG BEAM_VERSION=2.59.0
COPY --from=apache/beam_python3.10_sdk:2.59.0 /opt/apache/beam /opt/apache/beam

# The repository lives at /pipeline (pipeline.configs.IMAGE_REPO_ROOT): the
# compiled pipeline reads /pipeline/schema/schema.pbtxt and, with
# --beam-code setup-file, ships /pipeline/setup.py to Dataflow.
WORKDIR /pipeline
COPY . /pipeline
RUN python -m pip install --no-cache-dir --no-deps . \
 && beam="$(python -c 'import apache_beam; print(apache_beam.__version__)')" \
 && if [ "$beam" != "$BEAM_VERSION" ]; then \
      echo "error: the image has apache-beam $beam but Beam's boot launcher is $BEAM_VERSION; edit the COPY --from tag and BEAM_VERSION" >&2; exit 1; fi \
 && cd / && python -c "import models.model, pipeline.pipeline, pipeline.components.data_gate"

# Vertex pipeline tasks and TFX's Vertex training job set their own command;
# the entrypoint is what Dataflow runs.
ENTRYPOINT ["/opt/apache/beam/boot"]
