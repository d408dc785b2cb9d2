package corpus_test

import rego.v1

import data.corpus

good := {"images": ["good/a"], "owner": "me"}

test_plain_pass if count(corpus.deny) == 0

test_plain_fail if count(corpus.deny) == 1

test_with_literal if {
	corpus.deny == {"bad x"} with input as {"images": ["x", "good/y"]}
}

test_with_test_rule if {
	corpus.allow with input as good
}

test_with_variable_and_set_binding if {
	inp := {"images": ["x"]}
	result := corpus.deny with input as inp
	result == {"bad x"}
	"bad x" in result
}

test_with_two_clauses_on_lines if {
	corpus.deny == {"bad z"}
		with input as {"images": ["good/a"]}
		with input.images as ["z"]
}

test_with_partial_input if {
	corpus.allow with input as good with input.owner as "you"
}

test_with_partial_input_fails if {
	corpus.allow with input as good with input.images as ["bad"]
}

test_with_data_rule if {
	corpus.deny == {"too many"} with input as {"images": ["good/1", "good/2"]} with data.corpus.limits as {"max": 1}
}

test_with_data_rule_of_partial_set if {
	corpus.count_bad == 0 with input as {"images": ["x"]} with data.corpus.deny as set()
}

test_with_data_absent_path if {
	x := data.settings.level with data.settings.level as 3
	x == 3
}

test_with_iteration if {
	some imgs in [["x"], ["good/y"]]
	count(corpus.deny) == 0 with input.images as imgs
	imgs == ["good/y"]
}

test_with_not if {
	not corpus.allow with input as {"images": ["x"], "owner": "me"}
}

test_with_not_fails if {
	not corpus.allow with input as good
}

test_with_fails if {
	count(corpus.deny) == 0 with input as {"images": ["x"]}
}

test_with_undefined_value_fails if {
	corpus.allow with input as data.nowhere.nothing
}

test_with_warn_and_then_plain if {
	w := corpus.warn with input as {"images": []}
	w == {"no owner"}
	count(corpus.warn) == 1
}

test_with_semicolons if {
	a := 1; corpus.allow with input as good; a == 1
}

test_with_object_comprehension if {
	ws := {k: v | some k in ["a", "b"]; v := corpus.deny with input as {"images": [k]}}
	ws.a == {"bad a"}
}

test_with_undefined_value_under_not_fails if {
	not corpus.allow with input as data.nowhere.nothing
}

test_with_builtin_value_mock if {
	corpus.too_old with input.built_ns as 0 with time.now_ns as 5000000000
}

test_with_builtin_value_mock_fails if {
	corpus.too_old with input.built_ns as 0 with time.now_ns as 10
}

mock_now := 7

test_with_builtin_mocked_by_a_rule_value if {
	not corpus.too_old with input.built_ns as 0 with time.now_ns as mock_now
}

fake_count(_) := 99

test_with_function_mocked_by_function if {
	corpus.deny["too many"] with input as {"images": []} with count as fake_count
}
