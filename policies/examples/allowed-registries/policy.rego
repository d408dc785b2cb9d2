# Allowed registries: every image must come from a registry (and path) on the list.
#
# `name` is the canonical image name (host lower-cased, Docker Hub folded to
# index.docker.io/library/...), so a prefix check cannot be fooled by "Registry.Example.com"
# or "docker.io/nginx" versus "nginx". End each prefix with "/": "registry.example.com"
# alone would also admit "registry.example.com.evil.io/...".
package attest.admission

import rego.v1

# Edit this list, or override it in tests: `with data.attest.admission.allowed_registries as [...]`.
allowed_registries := [
	"registry.example.com/",
	"ghcr.io/acme/",
]

deny contains msg if {
	some img in input.images
	name := img.name # bound first: `not f(x)` over an undefined x must not pass
	not registry_allowed(name)

	# concat, not sprintf("%s", [concat(...)]): the embedded engine mangles the latter
	msg := concat("", [img.reference, ": registry not allowed (allowed: ", concat(", ", allowed_registries), ")"])
}

registry_allowed(name) if {
	some prefix in allowed_registries
	startswith(name, prefix)
}
