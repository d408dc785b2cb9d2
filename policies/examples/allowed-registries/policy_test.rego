package attest.admission_test

import rego.v1

import data.attest.admission

image(name) := {"reference": concat("", [name, ":1.0"]), "name": name}

test_allowed_registry_passes if {
	count(admission.deny) == 0 with input as {"images": [image("registry.example.com/shop/web")]}
}

test_other_registry_denied if {
	admission.deny == {"index.docker.io/library/nginx:1.0: registry not allowed (allowed: registry.example.com/, ghcr.io/acme/)"} with input as {"images": [image("index.docker.io/library/nginx")]}
}

test_lookalike_host_denied if {
	count(admission.deny) == 1 with input as {"images": [image("registry.example.com.evil.io/shop/web")]}
}

test_list_can_be_replaced if {
	msgs := admission.deny with input as {"images": [image("ghcr.io/acme/api")]}
		with data.attest.admission.allowed_registries as ["quay.io/acme/"]
	count(msgs) == 1
}

test_every_image_is_checked if {
	imgs := [image("ghcr.io/acme/api"), image("quay.io/x/y")]
	count(admission.deny) == 1 with input.images as imgs
}
