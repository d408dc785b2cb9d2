package corpus

import rego.v1

limits := {"max": 2}

deny contains msg if {
	some img in input.images
	not startswith(img, "good/")
	msg := sprintf("bad %v", [img])
}

deny contains "too many" if count(input.images) > limits.max

warn contains "no owner" if not input.owner

allow if {
	count(deny) == 0
	input.owner
}

count_bad := count(deny)

too_old if time.now_ns() - input.built_ns > 1000000000
