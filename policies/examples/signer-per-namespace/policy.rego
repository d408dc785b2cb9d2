# Signer per namespace: workloads in a namespace must run images signed by that
# team's identity (a keyless subject prefix or a key id).
#
# The image policy's authorities decide which signatures are *trusted*; this
# narrows, per namespace, which trusted signer is good enough. Namespaces not
# listed are left to the image policy.
package attest.admission

import rego.v1

namespace_signers := {
	"shop": {"subjects": ["https://github.com/acme/shop/"], "keyIds": []},
	"payments": {"subjects": [], "keyIds": ["payments-release-key"]},
}

deny contains msg if {
	some img in input.images
	rule := namespace_signers[input.request.namespace]
	not signed_by_team(img, rule)
	msg := sprintf("%s: not signed by the signer of namespace %s", [img.reference, input.request.namespace])
}

signed_by_team(img, rule) if {
	some sig in img.signatures
	sig.verified == true
	sig.signer.type == "keyless"
	some prefix in rule.subjects
	startswith(sig.signer.subject, prefix)
}

signed_by_team(img, rule) if {
	some sig in img.signatures
	sig.verified == true
	sig.signer.type == "key"
	sig.signer.keyId in rule.keyIds
}
