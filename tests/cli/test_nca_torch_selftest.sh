#!/usr/bin/env bash
# The PyTorch reference model's self-test: Philox4x32-10 against the
# Random123 known-answer vectors, perception and alive masks against loops
# over the spec, and torch.autograd.gradcheck of a short rollout.
set -euo pipefail
mkdir -p "$MG_WORK"
"$MG_PYTHON" "$MG_SOURCE_DIR/analysis/nca_torch.py" selftest
