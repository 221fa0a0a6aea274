"""The `.bslz` container (see FORMAT.md at the repository root) and safetensors in and out."""
