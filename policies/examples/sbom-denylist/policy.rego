# SBOM deny-list: no verified SBOM may list a denied package or licence.
#
# Reads the SBOM itself, so the admission config must set
# `policy.includeStatements: true` (off by default: SBOMs can be large).
# CycloneDX components (`name`, `licenses[].license.id` or `.expression`) and
# SPDX packages (`name`, `licenseConcluded`, `licenseDeclared`) are read.
package attest.admission

import rego.v1

denied_packages := {"log4j-core", "event-stream"}

denied_licenses := {"AGPL-3.0-only", "AGPL-3.0-or-later", "SSPL-1.0"}

deny contains msg if {
	some img in input.images
	some name in sbom_packages(img)
	name in denied_packages
	msg := sprintf("%s: SBOM lists denied package %s", [img.reference, name])
}

deny contains msg if {
	some img in input.images
	some license in sbom_licenses(img)
	license in denied_licenses
	msg := sprintf("%s: SBOM lists denied licence %s", [img.reference, license])
}

verified_sboms(img) := [att.statement.predicate |
	some att in img.attestations
	att.verified == true
	att.statement
]

sbom_packages(img) := {c.name | some bom in verified_sboms(img); some c in bom.components} | {p.name | some doc in verified_sboms(img); some p in doc.packages}

sbom_licenses(img) := cyclonedx_licenses(img) | spdx_licenses(img)

# a licence entry is {"license": {"id": ...}} or {"expression": ...}
cyclonedx_licenses(img) := {id |
	some bom in verified_sboms(img)
	some c in bom.components
	some entry in c.licenses
	some key in ["id", "expression"]
	id := object.get(entry, ["license", key], object.get(entry, key, null))
	is_string(id)
}

spdx_licenses(img) := {id |
	some doc in verified_sboms(img)
	some p in doc.packages
	some key in ["licenseConcluded", "licenseDeclared"]
	id := object.get(p, key, null)
	is_string(id)
}
