# shellcheck shell=bash
# The labels of every llem image, in one place: sourced by images/build.sh, which adds
# llem.build_inputs (the fingerprint of the build's inputs, these labels included) and appends
# them all as one LABEL instruction to the Dockerfile it builds. The orchestrator reads
# llem.image, llem.backend, llem.device and the versions (`llem images list`, the runner's
# device check).

# image_labels IMAGE BASE BACKEND_VERSION HARNESS_VERSION: print KEY=VALUE lines.
#   IMAGE            cpu | vllm-cpu | pytorch | vllm | tensorrt
#   BASE             the base image reference the build used
#   BACKEND_VERSION  version of the image's inference library (torch, vllm, tensorrt_llm)
#   HARNESS_VERSION  llem's version, from the wheel
# Exit status 2 for an unknown IMAGE.
image_labels() {
    local image=$1 base=$2 backend_version=$3 harness_version=$4 backend device description
    case "$image" in
        cpu) backend=pytorch device=cpu description="PyTorch on CPU" ;;
        vllm-cpu) backend=vllm device=cpu description="vLLM on CPU" ;;
        pytorch) backend=pytorch device=cuda description="PyTorch on CUDA" ;;
        vllm) backend=vllm device=cuda description=vLLM ;;
        tensorrt) backend=tensorrt device=cuda description=TensorRT-LLM ;;
        *) echo "image_labels: unknown image '$image'" >&2; return 2 ;;
    esac
    printf '%s\n' \
        "llem.image=$image" \
        "llem.backend=$backend" \
        "llem.device=$device" \
        "llem.backend_version=$backend_version" \
        "llem.harness_version=$harness_version" \
        "llem.base=$base" \
        "org.opencontainers.image.title=llem-$image" \
        "org.opencontainers.image.description=llem measurement harness, $description" \
        "org.opencontainers.image.version=$harness_version"
}

# label_instruction KEY=VALUE...: print one Dockerfile LABEL instruction that sets them all,
# quoted for the Dockerfile parser (", \ and $ escaped). images/build.sh appends it to the
# Dockerfile it sends: one step, where `docker build --label` would cost the legacy builder one
# container commit per label.
label_instruction() {
    local pair key value line=LABEL
    for pair in "$@"; do
        key=${pair%%=*}
        value=${pair#*=}
        value=${value//\\/\\\\}
        value=${value//\"/\\\"}
        value=${value//\$/\\\$}
        line+=" \"$key\"=\"$value\""
    done
    printf '%s\n' "$line"
}
