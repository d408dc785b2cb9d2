# No `latest`: an image must name a tag other than "latest", or a digest.
#
# A reference without tag or digest ("nginx") means "latest" too. An image
# pinned by digest ("web:latest@sha256:...") is accepted: the digest, not the
# tag, decides what runs.
package attest.admission

import rego.v1

deny contains msg if {
	some img in input.images
	floating(img)
	msg := sprintf("%s: uses the 'latest' tag; pin a version tag or a digest", [img.reference])
}

floating(img) if {
	img.tag == "latest"
	not pinned(img)
}

floating(img) if {
	object.get(img, "tag", null) == null
	not pinned(img)
}

pinned(img) if contains(img.reference, "@")
