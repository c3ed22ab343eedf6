#!/usr/bin/env bash
# render-default.sh IMAGE prints config/default with the manager image set to IMAGE.
# It uses kubectl's built-in kustomize with a throw-away overlay, so no kustomize binary is needed.
set -euo pipefail
img="${1:?usage: hack/render-default.sh IMAGE}"
root="$(cd "$(dirname "$0")/.." && pwd)"
overlay="$(mktemp -d)"
trap 'rm -rf "${overlay}"' EXIT
name="${img%:*}"
tag="${img##*:}"
if [[ "${name}" == "${img}" || "${tag}" == */* ]]; then name="${img}"; tag="latest"; fi
cat >"${overlay}/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="${overlay}" "${root}/config/default")
images:
- name: controller
  newName: ${name}
  newTag: "${tag}"
YAML
${KUBECTL:-kubectl} kustomize --load-restrictor LoadRestrictionsNone "${overlay}"
