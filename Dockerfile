# One image for every dagan job: the demo, animate (with --crop --paste-back), generate, evaluate, train and the app.
#   docker build -t dagan .
#   docker run --rm -v "$PWD/out:/out" dagan demo --output /out
# Weights are read from a mounted /weights volume; nothing is downloaded at run time.
FROM debian:bookworm-slim

# Python from Debian, and tcmalloc for `dagan train --allocator tcmalloc`; dlib-bin, PyAV and OpenCV bring
# their own native libraries as wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*

# PyTorch from PyPI carries its own CUDA libraries, so the same image runs on a GPU host
# (docker run --gpus all ...). For a CPU-only image about 5 GB smaller, build with
#   --build-arg TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
ARG TORCH=torch
ENV VIRTUAL_ENV=/opt/dagan PATH=/opt/dagan/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/dagan && pip install $TORCH

COPY pyproject.toml README.md /src/
COPY dagan /src/dagan
RUN pip install "/src[face,app,eval]" && rm -rf /src

RUN useradd --create-home --uid 1000 dagan && mkdir -p /weights /out && chown dagan /out
USER dagan
WORKDIR /home/dagan
VOLUME ["/weights"]
# dagan app: serve on every interface inside the container (docker run -p 7860:7860 ... app --host 0.0.0.0).
EXPOSE 7860
ENTRYPOINT ["dagan"]
CMD ["--help"]
