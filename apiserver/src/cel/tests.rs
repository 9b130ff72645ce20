//! Tables of rules against values (with `oldSelf`), and of rules that must
//! not compile.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Rules;
use crate::error::Cause;

const INVALID: &str = "FieldValueInvalid";

/// A schema node of `type` with `properties` and the given rules.
fn node(properties: Value, rules: Value) -> Value {
    json!({"type": "object", "properties": properties, "x-kubernetes-validations": rules})
}

fn spec_props() -> Value {
    json!({
        "replicas": {"type": "integer"},
        "ratio": {"type": "number"},
        "name": {"type": "string"},
        "missing": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "timeout": {"type": "string", "format": "duration"},
        "data": {"type": "string", "format": "byte"},
        "port": {"x-kubernetes-int-or-string": true},
        "items": {"type": "array", "items": {"type": "integer"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

fn compiled(schema: &Value) -> Rules {
    match Rules::compile(schema, "schema") {
        Ok(Some(r)) => r,
        Ok(None) => panic!("no rules in {schema}"),
        Err(c) => panic!("rules of {schema} did not compile: {c:?}"),
    }
}

fn cause(field: &str, reason: &'static str, message: &str) -> Cause {
    Cause {
        field: field.into(),
        reason,
        message: message.into(),
    }
}

struct Case {
    name: &'static str,
    rules: Value,
    value: Value,
    old: Option<Value>,
    want: Vec<Cause>,
}

fn run_cases(cases: Vec<Case>) {
    for c in cases {
        let schema = node(spec_props(), c.rules.clone());
        let rules = compiled(&schema);
        let got = rules.check(&c.value, c.old.as_ref(), "spec");
        assert_eq!(got, c.want, "case {}", c.name);
    }
}

fn one(rule: &str) -> Value {
    json!([{ "rule": rule }])
}

#[test]
fn rules_on_values() {
    let obj = |m: &str| format!("Invalid value: \"object\": {m}");
    run_cases(vec![
        Case {
            name: "passing rule",
            rules: one("self.replicas >= 0"),
            value: json!({"replicas": 1}),
            old: None,
            want: vec![],
        },
        Case {
            name: "failing rule, default message",
            rules: one("self.replicas >= 0"),
            value: json!({"replicas": -1}),
            old: None,
            want: vec![cause(
                "spec",
                INVALID,
                &obj("failed rule: self.replicas >= 0"),
            )],
        },
        Case {
            name: "message",
            rules: json!([{"rule": "self.replicas >= 0", "message": "must not be negative"}]),
            value: json!({"replicas": -1}),
            old: None,
            want: vec![cause("spec", INVALID, &obj("must not be negative"))],
        },
        Case {
            name: "messageExpression wins over message",
            rules: json!([{
                "rule": "self.replicas >= 0",
                "message": "static",
                "messageExpression": "'replicas is ' + string(self.replicas) + ', want at least 0'"
            }]),
            value: json!({"replicas": -2}),
            old: None,
            want: vec![cause(
                "spec",
                INVALID,
                &obj("replicas is -2, want at least 0"),
            )],
        },
        Case {
            name: "messageExpression failing falls back to message",
            rules: json!([{
                "rule": "self.replicas >= 0",
                "message": "static",
                "messageExpression": "self.missing"
            }]),
            value: json!({"replicas": -2}),
            old: None,
            want: vec![cause("spec", INVALID, &obj("static"))],
        },
        Case {
            name: "reason Forbidden with fieldPath",
            rules: json!([{
                "rule": "self.replicas < 10", "message": "too many",
                "reason": "FieldValueForbidden", "fieldPath": ".replicas"
            }]),
            value: json!({"replicas": 10}),
            old: None,
            want: vec![cause(
                "spec.replicas",
                "FieldValueForbidden",
                "Forbidden: too many",
            )],
        },
        Case {
            name: "reason Required",
            rules: json!([{"rule": "has(self.name)", "reason": "FieldValueRequired", "fieldPath": ".name"}]),
            value: json!({}),
            old: None,
            want: vec![cause(
                "spec.name",
                "FieldValueRequired",
                "Required value: failed rule: has(self.name)",
            )],
        },
        Case {
            name: "reason Duplicate",
            rules: json!([{"rule": "self.tags.size() == 0", "reason": "FieldValueDuplicate"}]),
            value: json!({"tags": ["a"]}),
            old: None,
            want: vec![cause(
                "spec",
                "FieldValueDuplicate",
                "Duplicate value: \"object\"",
            )],
        },
        Case {
            name: "fieldPath with brackets",
            rules: json!([{"rule": "false", "fieldPath": ".labels['a.b']"}]),
            value: json!({}),
            old: None,
            want: vec![cause(
                "spec.labels[a.b]",
                INVALID,
                &obj("failed rule: false"),
            )],
        },
        Case {
            name: "several rules, each reported",
            rules: json!([{"rule": "self.replicas > 5"}, {"rule": "self.name == 'x'"}, {"rule": "true"}]),
            value: json!({"replicas": 1, "name": "y"}),
            old: None,
            want: vec![
                cause("spec", INVALID, &obj("failed rule: self.replicas > 5")),
                cause("spec", INVALID, &obj("failed rule: self.name == 'x'")),
            ],
        },
        Case {
            name: "transition rule skipped on create",
            rules: json!([{"rule": "self.name == oldSelf.name", "message": "name is immutable"}]),
            value: json!({"name": "a"}),
            old: None,
            want: vec![],
        },
        Case {
            name: "transition rule holds",
            rules: json!([{"rule": "self.name == oldSelf.name", "message": "name is immutable"}]),
            value: json!({"name": "a"}),
            old: Some(json!({"name": "a"})),
            want: vec![],
        },
        Case {
            name: "transition rule fails",
            rules: json!([{"rule": "self.name == oldSelf.name", "message": "name is immutable"}]),
            value: json!({"name": "b"}),
            old: Some(json!({"name": "a"})),
            want: vec![cause("spec", INVALID, &obj("name is immutable"))],
        },
        Case {
            name: "whole-object immutability",
            rules: json!([{"rule": "self == oldSelf"}]),
            value: json!({"replicas": 1, "tags": ["a"]}),
            old: Some(json!({"replicas": 1, "tags": ["b"]})),
            want: vec![cause("spec", INVALID, &obj("failed rule: self == oldSelf"))],
        },
        Case {
            name: "transition rule only grows",
            rules: one("self.replicas >= oldSelf.replicas"),
            value: json!({"replicas": 3}),
            old: Some(json!({"replicas": 4})),
            want: vec![cause(
                "spec",
                INVALID,
                &obj("failed rule: self.replicas >= oldSelf.replicas"),
            )],
        },
        Case {
            name: "optionalOldSelf on create",
            rules: json!([{
                "rule": "!oldSelf.hasValue() || self.replicas >= oldSelf.value().replicas",
                "optionalOldSelf": true
            }]),
            value: json!({"replicas": 3}),
            old: None,
            want: vec![],
        },
        Case {
            name: "optionalOldSelf with an old value",
            rules: json!([{
                "rule": "!oldSelf.hasValue() || self.replicas >= oldSelf.value().replicas",
                "optionalOldSelf": true, "message": "may only grow"
            }]),
            value: json!({"replicas": 3}),
            old: Some(json!({"replicas": 4})),
            want: vec![cause("spec", INVALID, &obj("may only grow"))],
        },
        Case {
            name: "number is a double even when written as an integer",
            rules: one("self.ratio == 2.0 && self.ratio / 4.0 == 0.5"),
            value: json!({"ratio": 2}),
            old: None,
            want: vec![],
        },
        Case {
            name: "integer arithmetic",
            rules: one("self.replicas / 2 == 1 && self.replicas % 2 == 1"),
            value: json!({"replicas": 3}),
            old: None,
            want: vec![],
        },
        Case {
            name: "timestamps compare",
            rules: one("self.end > self.start && self.end - self.start <= duration('24h')"),
            value: json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-03T00:00:00Z"}),
            old: None,
            want: vec![cause(
                "spec",
                INVALID,
                &obj(
                    "failed rule: self.end > self.start && self.end - self.start <= duration('24h')",
                ),
            )],
        },
        Case {
            name: "timestamps, dates and durations",
            rules: one(
                "self.start < timestamp('2025-01-01T00:00:00Z') && self.start.getFullYear() == 2024 \
                 && self.day == timestamp('2024-02-03T00:00:00Z') \
                 && self.timeout == duration('90m') && self.timeout < duration('2h')",
            ),
            value: json!({"start": "2024-06-01T12:00:00+02:00", "day": "2024-02-03", "timeout": "1h30m"}),
            old: None,
            want: vec![],
        },
        Case {
            name: "bytes",
            rules: one("size(self.data) == 3 && self.data == b'abc'"),
            value: json!({"data": "YWJj"}),
            old: None,
            want: vec![],
        },
        Case {
            name: "int-or-string is dynamic",
            rules: one("self.port == 80 || self.port == 'http'"),
            value: json!({"port": "http"}),
            old: None,
            want: vec![],
        },
        Case {
            name: "int-or-string by type",
            rules: json!([{
                "rule": "type(self.port) == int ? self.port > 0 : self.port.endsWith('%')",
                "message": "port"
            }]),
            value: json!({"port": "50"}),
            old: None,
            want: vec![cause("spec", INVALID, &obj("port"))],
        },
        Case {
            name: "int-or-string by type, int",
            rules: one("type(self.port) == int ? self.port > 0 : self.port.endsWith('%')"),
            value: json!({"port": 8080}),
            old: None,
            want: vec![],
        },
        Case {
            name: "macros",
            rules: one(
                "self.tags.all(t, t.size() < 5) && self.tags.exists(t, t == 'b') \
                 && self.tags.exists_one(t, t.startsWith('a')) \
                 && self.tags.map(t, t + '!').filter(t, t.endsWith('!')).size() == 3 \
                 && has(self.tags) && !has(self.name)",
            ),
            value: json!({"tags": ["a", "b", "cc"]}),
            old: None,
            want: vec![],
        },
        Case {
            name: "maps and unknown fields",
            rules: one(
                "self.labels.all(k, k.startsWith('app')) && self.labels['app'] == 'web' \
                 && 'app' in self.labels && self.extra.anything.deep == 1",
            ),
            value: json!({"labels": {"app": "web"}, "extra": {"anything": {"deep": 1}}}),
            old: None,
            want: vec![],
        },
        Case {
            name: "string library",
            rules: one(
                "self.name.lowerAscii() == 'ab-cd' && self.name.upperAscii() == 'AB-CD' \
                 && self.name.split('-') == ['Ab', 'cD'] && ['x', 'y'].join('-') == 'x-y' \
                 && self.name.replace('-', '_') == 'Ab_cD' && self.name.substring(1, 3) == 'b-' \
                 && self.name.indexOf('-') == 2 && self.name.lastIndexOf('D') == 4 \
                 && self.name.charAt(0) == 'A' && ' x '.trim() == 'x' \
                 && self.name.matches('^[A-Za-z-]+$') && self.name.contains('-')",
            ),
            value: json!({"name": "Ab-cD"}),
            old: None,
            want: vec![],
        },
        Case {
            name: "list library",
            rules: one(
                "self.items.isSorted() && self.items.sum() == 6 && self.items.min() == 1 \
                 && self.items.max() == 3 && self.items.indexOf(2) == 1 \
                 && [1, 2, 1].lastIndexOf(1) == 2 && ![2, 1].isSorted() && [0.5, 1.5].sum() == 2.0",
            ),
            value: json!({"items": [1, 2, 3]}),
            old: None,
            want: vec![],
        },
        Case {
            name: "evaluation error",
            rules: one("self.missing == 'x'"),
            value: json!({}),
            old: None,
            want: vec![cause(
                "spec",
                INVALID,
                &obj("No such key: missing evaluating rule: self.missing == 'x'"),
            )],
        },
        Case {
            name: "runtime overload error on a dynamic value",
            rules: json!([{"rule": "self.port > 1", "message": "port"}]),
            value: json!({"port": "http"}),
            old: None,
            want: vec![cause(
                "spec",
                INVALID,
                &obj(
                    "'found no matching overload for '_>_' applied to '(string, int)'': call arguments did not match a supported operator, function or macro signature for rule: port",
                ),
            )],
        },
    ]);
}

#[test]
fn rules_at_the_root_and_on_scalars() {
    let schema = json!({
        "type": "string",
        "x-kubernetes-validations": [{"rule": "self.size() <= 3", "message": "too long"}]
    });
    let rules = compiled(&schema);
    assert_eq!(rules.check(&json!("abc"), None, "spec.name"), vec![]);
    assert_eq!(
        rules.check(&json!("abcd"), None, "spec.name"),
        vec![cause(
            "spec.name",
            INVALID,
            "Invalid value: \"string\": too long"
        )]
    );
    let root = node(
        json!({"replicas": {"type": "integer"}}),
        json!([{"rule": "self.replicas > 0", "fieldPath": ".replicas"}]),
    );
    let rules = compiled(&root);
    assert_eq!(
        rules.check(&json!({"replicas": 0}), None, ""),
        vec![cause(
            "replicas",
            INVALID,
            "Invalid value: \"object\": failed rule: self.replicas > 0"
        )]
    );
    assert!(!rules.has_transition_rules());
}

#[test]
fn root_rules_see_apiversion_kind_and_metadata() {
    let schema = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
        "x-kubernetes-validations": [{
            "rule": "self.metadata.name.startsWith(self.kind.lowerAscii()) && self.apiVersion != ''",
            "message": "name must start with the kind"
        }]
    });
    let rules = match Rules::compile(&schema, "spec.versions[0].schema.openAPIV3Schema") {
        Ok(Some(r)) => r,
        other => panic!("{other:?}"),
    };
    let obj = |name: &str| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "uid": "u"}});
    assert_eq!(rules.check(&obj("widget-1"), None, ""), vec![]);
    assert_eq!(
        rules.check(&obj("gadget-1"), None, ""),
        vec![cause(
            "",
            INVALID,
            "Invalid value: \"object\": name must start with the kind"
        )]
    );
    // Below the root, the fields are the schema's alone.
    assert!(Rules::compile(&schema, "schema.properties[spec]").is_err());
}

#[test]
fn nodes_without_rules() {
    assert!(matches!(
        Rules::compile(&json!({"type": "string"}), "s"),
        Ok(None)
    ));
    assert!(matches!(
        Rules::compile(
            &json!({"type": "string", "x-kubernetes-validations": []}),
            "s"
        ),
        Ok(None)
    ));
}

/// `(rules, field of the cause, reason, text the message holds)`.
#[test]
fn rules_that_do_not_compile() {
    let base = "schema.x-kubernetes-validations[0]";
    let cases: Vec<(Value, String, &str, &str)> = vec![
        (
            one("self.replicas >"),
            format!("{base}.rule"),
            INVALID,
            "Invalid value: \"self.replicas >\": compilation failed: ERROR: <input>:1:",
        ),
        (
            one("self.replicas + 1"),
            format!("{base}.rule"),
            INVALID,
            "compilation failed: cel expression must evaluate to a bool, not int",
        ),
        (
            one("self.name"),
            format!("{base}.rule"),
            INVALID,
            "must evaluate to a bool",
        ),
        (
            one("self.nope == 1"),
            format!("{base}.rule"),
            INVALID,
            "compilation failed: ERROR: <input>:1:5: undefined field 'nope'",
        ),
        (
            one("self.name.frobnicate()"),
            format!("{base}.rule"),
            INVALID,
            "undeclared reference to 'frobnicate'",
        ),
        (
            one("other > 1"),
            format!("{base}.rule"),
            INVALID,
            "undeclared reference to 'other'",
        ),
        (
            one("self.replicas + 1.5 > 2.0"),
            format!("{base}.rule"),
            INVALID,
            "found no matching overload for '_+_' applied to '(int, double)'",
        ),
        (
            one("self.replicas.foo == 1"),
            format!("{base}.rule"),
            INVALID,
            "type 'int' does not support field selection",
        ),
        (
            one("self.replicas.all(x, true)"),
            format!("{base}.rule"),
            INVALID,
            "cannot be range of a comprehension",
        ),
        (
            json!([{"message": "no rule"}]),
            format!("{base}.rule"),
            "FieldValueRequired",
            "Required value",
        ),
        (
            json!([{"rule": "true", "reason": "Bogus"}]),
            format!("{base}.reason"),
            "FieldValueNotSupported",
            "Unsupported value: \"Bogus\"",
        ),
        (
            json!([{"rule": "true", "optionalOldSelf": true}]),
            format!("{base}.optionalOldSelf"),
            INVALID,
            "may not be set if rule does not use oldSelf",
        ),
        (
            json!([{"rule": "true", "messageExpression": "self.replicas"}]),
            format!("{base}.messageExpression"),
            INVALID,
            "must evaluate to a string, not int",
        ),
        (
            json!([{"rule": "true", "messageExpression": "'a' +"}]),
            format!("{base}.messageExpression"),
            INVALID,
            "messageExpression compilation failed",
        ),
        (
            json!([{"rule": "true", "message": "two\nlines"}]),
            format!("{base}.message"),
            INVALID,
            "must not contain line breaks",
        ),
        (
            json!([{"rule": "true", "fieldPath": ".nope"}]),
            format!("{base}.fieldPath"),
            INVALID,
            "fieldPath must be a valid path",
        ),
        (
            json!([{"rule": "true", "fieldPath": "replicas"}]),
            format!("{base}.fieldPath"),
            INVALID,
            "fieldPath must be a valid path",
        ),
        (
            json!("not a list"),
            "schema.x-kubernetes-validations".into(),
            INVALID,
            "must be a list",
        ),
    ];
    for (rules, field, reason, text) in cases {
        let schema = node(spec_props(), rules.clone());
        let causes = match Rules::compile(&schema, "schema") {
            Err(c) => c,
            Ok(_) => panic!("{rules} compiled"),
        };
        assert_eq!(causes.len(), 1, "{rules}: {causes:?}");
        assert_eq!(causes[0].field, field, "{rules}");
        assert_eq!(causes[0].reason, reason, "{rules}");
        assert!(
            causes[0].message.contains(text),
            "{rules}: {:?} lacks {text:?}",
            causes[0].message
        );
    }
}

#[test]
fn every_library_function_is_callable() {
    // A clash in the library's registration would drop a function silently.
    let schema = node(
        json!({"s": {"type": "string"}, "l": {"type": "array", "items": {"type": "integer"}}}),
        one(
            "[self.s.lowerAscii(), self.s.upperAscii(), self.s.trim(), self.s.replace('a', 'b'), \
              self.s.replace('a', 'b', 1), self.s.substring(0), self.s.substring(0, 1), \
              self.s.charAt(0), self.s.split('a', 2).join(), self.s.split('a').join('-')].size() == 10 \
             && [self.s.indexOf('a'), self.s.indexOf('a', 1), self.s.lastIndexOf('a'), \
                 self.s.lastIndexOf('a', 1), self.l.indexOf(1), self.l.lastIndexOf(1), \
                 self.l.sum(), self.l.min(), self.l.max()].size() == 9 && self.l.isSorted()",
        ),
    );
    let rules = compiled(&schema);
    assert_eq!(
        rules.check(&json!({"s": "banana", "l": [1, 2]}), None, "spec"),
        vec![]
    );
}

#[test]
fn replace_results_are_bounded() {
    let schema = node(
        json!({"s": {"type": "string"}}),
        one("self.s.replace('', self.s).replace('', self.s).size() > 0"),
    );
    let rules = compiled(&schema);
    let s = "x".repeat(2000);
    let causes = rules.check(&json!({"s": s}), None, "spec");
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert!(
        causes[0].message.contains("result longer than"),
        "{causes:?}"
    );
}

#[test]
fn cost_limit_refuses_quadratic_rules_on_big_lists() {
    let schema = json!({
        "type": "array", "items": {"type": "integer"},
        "x-kubernetes-validations": [
            {"rule": "self.all(x, x >= 0)"},
            {"rule": "self.all(x, self.all(y, x == y || x != y))"},
            {"rule": "false", "message": "not reached"},
        ]
    });
    let rules = compiled(&schema);
    // Small lists: every rule runs.
    let small: Vec<i64> = (0..10).collect();
    assert_eq!(
        rules.check(&json!(small), None, "spec.list"),
        vec![cause(
            "spec.list",
            INVALID,
            "Invalid value: \"array\": not reached"
        )]
    );
    // A big list: the linear rule runs, the quadratic one is refused quickly
    // and stops the rest.
    let big: Vec<i64> = (0..100_000).collect();
    let started = Instant::now();
    let causes = rules.check(&json!(big), None, "spec.list");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].field, "spec.list");
    assert!(
        causes[0]
            .message
            .starts_with("Invalid value: \"array\": operation cancelled: estimated cost")
            && causes[0]
                .message
                .contains("no further validation rules will be run"),
        "{causes:?}"
    );
}

#[test]
fn cost_limit_lets_linear_string_rules_run_on_big_lists() {
    let schema = json!({
        "type": "array", "items": {"type": "string"},
        "x-kubernetes-validations": [
            {"rule": "self.all(x, x.startsWith('item-') && x.size() < 64)", "message": "names"},
        ]
    });
    let rules = compiled(&schema);
    let mut names: Vec<String> = (0..20_000).map(|i| format!("item-{i}")).collect();
    assert_eq!(rules.check(&json!(names), None, "spec.names"), vec![]);
    names.push("other".into());
    assert_eq!(
        rules.check(&json!(names), None, "spec.names"),
        vec![cause(
            "spec.names",
            INVALID,
            "Invalid value: \"array\": names"
        )]
    );
}

#[test]
fn durations_parse_as_go_writes_them() {
    use super::parse_duration;
    let d = |s| parse_duration(s).map(|d| d.num_milliseconds());
    assert_eq!(d("1h30m"), Some(5_400_000));
    assert_eq!(d("-1.5s"), Some(-1500));
    assert_eq!(d("300ms"), Some(300));
    assert_eq!(d("0"), Some(0));
    assert_eq!(d("1x"), None);
    assert_eq!(d(""), None);
    assert_eq!(d("h"), None);
}
