#!/usr/bin/env bash
# Installs an OpenCL platform for the OpenCL backend's tests: Debian's ICD loader and PoCL, which
# runs OpenCL kernels on the CPU (correctness only; PoCL timings are not GPU timings). Idempotent.
set -euo pipefail

if ls /etc/OpenCL/vendors/*.icd >/dev/null 2>&1 && ldconfig -p | grep -q 'libOpenCL\.so\.1'; then
  exit 0
fi
echo "ci/opencl.sh: installing pocl-opencl-icd and ocl-icd-libopencl1 from Debian"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq pocl-opencl-icd ocl-icd-libopencl1 >/dev/null
