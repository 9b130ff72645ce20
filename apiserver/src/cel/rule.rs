//! One validation rule: its compilation (with the checks Kubernetes makes
//! when a CRD is written) and its evaluation against a value, worded as
//! Kubernetes' apiextensions server words the causes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cel::common::types::CelOptional;
use cel::common::value::Val;
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::Value;

use super::check::{self, SizedCalls, Ty};
use super::convert::{self, Sizes};
use super::cost::{self, COST_LIMIT};
use super::library;
use crate::error::Cause;

/// The longest rule or message expression accepted (bytes).
const MAX_SOURCE: usize = 16 * 1024;

/// `reason` of a rule: the cause a failing rule gives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reason {
    Invalid,
    Forbidden,
    Required,
    Duplicate,
}

const REASONS: &[&str] = &[
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

/// A compiled expression with the calls the cost guard weighs.
#[derive(Debug, Clone)]
struct Compiled {
    program: Arc<Program>,
    sized: Arc<SizedCalls>,
}

/// A compiled `x-kubernetes-validations` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    source: String,
    rule: Compiled,
    message: Option<String>,
    message_expression: Option<Compiled>,
    reason: Reason,
    /// Normalized `fieldPath` suffix: `.a.b` or `[key]` segments.
    field_path: String,
    optional_old_self: bool,
    transition: bool,
}

/// What a compiled expression is allowed to evaluate to.
#[derive(Clone, Copy)]
enum Want {
    Bool,
    String,
}

impl Rule {
    pub fn is_transition(&self) -> bool {
        self.transition
    }

    /// Compile entry `raw` of `node`'s rules; `p` is the entry's path.
    pub fn compile(raw: &Value, node: &Value, p: &str) -> Result<Rule, Vec<Cause>> {
        let mut causes = Vec::new();
        let Some(obj) = raw.as_object() else {
            return Err(vec![Cause::invalid(
                p,
                "Invalid value: \"object\": must be a validation rule object",
            )]);
        };
        let string_field = |name: &str, causes: &mut Vec<Cause>| match obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                causes.push(Cause::invalid(
                    format!("{p}.{name}"),
                    "Invalid value: \"object\": must be a string",
                ));
                None
            }
        };
        let source = string_field("rule", &mut causes).unwrap_or_default();
        let message = string_field("message", &mut causes);
        let message_source = string_field("messageExpression", &mut causes);
        let reason = string_field("reason", &mut causes);
        let field_path = string_field("fieldPath", &mut causes);
        let optional_old_self = match obj.get("optionalOldSelf") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                causes.push(Cause::invalid(
                    format!("{p}.optionalOldSelf"),
                    "Invalid value: \"object\": must be a boolean",
                ));
                false
            }
        };

        let rule = if source.trim().is_empty() {
            causes.push(Cause::required(format!("{p}.rule")));
            None
        } else {
            match compile_expr(&source, node, Want::Bool) {
                Ok((c, uses_old)) => Some((c, uses_old)),
                Err(detail) => {
                    causes.push(Cause::invalid(
                        format!("{p}.rule"),
                        format!("Invalid value: {source:?}: {detail}"),
                    ));
                    None
                }
            }
        };
        if let Some(m) = &message {
            if m.trim().is_empty() {
                causes.push(Cause::invalid(
                    format!("{p}.message"),
                    format!("Invalid value: {m:?}: message must be non-empty if specified"),
                ));
            } else if m.contains(['\n', '\r']) {
                causes.push(Cause::invalid(
                    format!("{p}.message"),
                    format!("Invalid value: {m:?}: message must not contain line breaks"),
                ));
            }
        }
        let message_expression = match &message_source {
            None => None,
            Some(m) if m.trim().is_empty() => {
                causes.push(Cause::invalid(
                    format!("{p}.messageExpression"),
                    format!(
                        "Invalid value: {m:?}: messageExpression must be non-empty if specified"
                    ),
                ));
                None
            }
            Some(m) => match compile_expr(m, node, Want::String) {
                Ok((c, _)) => Some(c),
                Err(detail) => {
                    causes.push(Cause::invalid(
                        format!("{p}.messageExpression"),
                        format!("Invalid value: {m:?}: messageExpression {detail}"),
                    ));
                    None
                }
            },
        };
        let reason = match reason.as_deref() {
            None | Some("FieldValueInvalid") => Reason::Invalid,
            Some("FieldValueForbidden") => Reason::Forbidden,
            Some("FieldValueRequired") => Reason::Required,
            Some("FieldValueDuplicate") => Reason::Duplicate,
            Some(other) => {
                causes.push(Cause::not_supported(format!("{p}.reason"), other, REASONS));
                Reason::Invalid
            }
        };
        let field_path = match field_path.as_deref() {
            None | Some("") => String::new(),
            Some(fp) => match normalize_field_path(fp, node) {
                Ok(n) => n,
                Err(detail) => {
                    causes.push(Cause::invalid(
                        format!("{p}.fieldPath"),
                        format!("Invalid value: {fp:?}: {detail}"),
                    ));
                    String::new()
                }
            },
        };
        let transition = rule.as_ref().is_some_and(|(_, uses_old)| *uses_old);
        if optional_old_self && rule.is_some() && !transition {
            causes.push(Cause::invalid(
                format!("{p}.optionalOldSelf"),
                "Invalid value: true: may not be set if rule does not use oldSelf",
            ));
        }
        match rule {
            Some((rule, _)) if causes.is_empty() => Ok(Rule {
                source,
                rule,
                message,
                message_expression,
                reason,
                field_path,
                optional_old_self,
                transition,
            }),
            _ => Err(causes),
        }
    }

    /// The rule as messages name it: its message if it has one.
    fn error_string(&self) -> &str {
        match &self.message {
            Some(m) => m.trim(),
            None => self.source.trim(),
        }
    }

    /// The message of a failed rule without a usable message expression.
    fn message_or_default(&self) -> String {
        match &self.message {
            Some(m) => m.trim().to_owned(),
            None => format!("failed rule: {}", self.error_string()),
        }
    }

    /// The cause of this rule evaluating to false.
    fn failure(&self, ctx: &Context<'_, '_>, ty: &str, path: &str, sizes: Sizes) -> Cause {
        let field = format!("{path}{}", self.field_path);
        let field = field.strip_prefix('.').unwrap_or(&field).to_owned();
        let detail = self
            .message_expression
            .as_ref()
            .and_then(|m| {
                if cost::estimate(m.program.expression(), sizes, &m.sized) > COST_LIMIT {
                    return None;
                }
                match run(&m.program, ctx) {
                    Ok(Cel::String(s)) if !s.trim().is_empty() && !s.contains(['\n', '\r']) => {
                        Some(s.trim().to_owned())
                    }
                    other => {
                        tracing::debug!(?other, "messageExpression gave no message");
                        None
                    }
                }
            })
            .unwrap_or_else(|| self.message_or_default());
        match self.reason {
            Reason::Invalid => invalid(field, ty, &detail),
            Reason::Forbidden => Cause::forbidden(field, detail),
            Reason::Required => Cause::required_because(field, detail),
            Reason::Duplicate => Cause::duplicate(field, ty),
        }
    }
}

/// `Invalid value: "<type>": detail`, as Kubernetes reports rule errors.
fn invalid(field: impl Into<String>, ty: &str, detail: &str) -> Cause {
    Cause::invalid(field, format!("Invalid value: {ty:?}: {detail}"))
}

/// Parse and check `source` for `node`; the program and whether it reads
/// `oldSelf`, or the detail of why it does not compile.
fn compile_expr(source: &str, node: &Value, want: Want) -> Result<(Compiled, bool), String> {
    if source.len() > MAX_SOURCE {
        return Err(format!(
            "compilation failed: expression longer than {MAX_SOURCE} bytes"
        ));
    }
    let env = library::env();
    let program = catch_unwind(AssertUnwindSafe(|| env.compile(source)))
        .map_err(|_| "compilation failed: the expression could not be parsed".to_owned())?
        .map_err(|e| format!("compilation failed: {e}"))?;
    let (ty, checked) = check::check(program.expression(), node);
    if let Some((id, msg)) = checked.errors.first() {
        let (line, col) = position(&program, source, *id);
        return Err(format!(
            "compilation failed: ERROR: <input>:{line}:{col}: {msg}"
        ));
    }
    match (want, &ty) {
        (_, Ty::Dyn) | (Want::Bool, Ty::Bool) | (Want::String, Ty::String) => {}
        (Want::Bool, other) => {
            return Err(format!(
                "compilation failed: cel expression must evaluate to a bool, not {other}"
            ));
        }
        (Want::String, other) => {
            return Err(format!(
                "compilation failed: must evaluate to a string, not {other}"
            ));
        }
    }
    Ok((
        Compiled {
            program: Arc::new(program),
            sized: Arc::new(checked.sized_calls),
        },
        checked.uses_old,
    ))
}

/// 1-based line and column of expression `id` in `source`.
fn position(program: &Program, source: &str, id: u64) -> (usize, usize) {
    let Some((start, _)) = program.source_info().offset_for(id) else {
        return (1, 1);
    };
    let start = start as usize;
    let mut line = 1;
    let mut col = 1;
    for (i, c) in source.chars().enumerate() {
        if i >= start {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// `fieldPath` (`.a.b`, `.a['b.c']`) as a field path suffix, checked
/// against the schema below `node`.
fn normalize_field_path(fp: &str, node: &Value) -> Result<String, String> {
    let bad = |why: &str| format!("fieldPath must be a valid path: {why}");
    let mut rest = fp;
    let mut out = String::new();
    let mut schema = Some(node);
    while !rest.is_empty() {
        let seg = if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or_else(|| bad("unterminated ['...']"))?;
            rest = &r[end + 2..];
            &r[..end]
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            rest = &r[end..];
            &r[..end]
        } else {
            return Err(bad("expected '.' or '['"));
        };
        if seg.is_empty() {
            return Err(bad("empty field name"));
        }
        if seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            out.push('.');
            out.push_str(seg);
        } else {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        }
        if let Some(s) = schema {
            let preserve = s
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            schema = match (
                s.get("properties").and_then(|p| p.get(seg)),
                s.get("additionalProperties"),
            ) {
                (Some(p), _) => Some(p),
                (None, Some(a)) if a.is_object() => Some(a),
                _ if preserve => None,
                _ => return Err(bad(&format!("field {seg:?} is not in the schema"))),
            };
        }
    }
    Ok(out)
}

/// Run `program`, turning a panic of the interpreter into an error.
fn run(program: &Program, ctx: &Context<'_, '_>) -> Result<Cel, ExecutionError> {
    catch_unwind(AssertUnwindSafe(|| program.execute(ctx))).unwrap_or_else(|_| {
        Err(ExecutionError::InternalError(
            "the interpreter failed".to_owned(),
        ))
    })
}

/// How `oldSelf` is bound.
enum OldSelf<'a> {
    Absent,
    Plain(&'a Cel),
    /// `optionalOldSelf`: an optional, empty without an old value.
    Optional(Option<&'a Cel>),
}

fn boxed(v: &Cel) -> Box<dyn Val> {
    // Every value `convert` makes has a built-in CEL type: null is only a
    // fallback.
    let b: Result<Box<dyn Val>, _> = v.clone().try_into();
    b.unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
}

fn context<'a>(env: &Arc<Env>, this: &Cel, old: OldSelf<'_>) -> Context<'a, 'a> {
    let mut ctx = Context::with_env(env.clone());
    ctx.add_variable_as_val("self", boxed(this));
    match old {
        OldSelf::Absent => {}
        OldSelf::Plain(o) => ctx.add_variable_as_val("oldSelf", boxed(o)),
        OldSelf::Optional(o) => {
            let opt = match o {
                Some(o) => CelOptional::of(boxed(o)),
                None => CelOptional::none(),
            };
            ctx.add_variable_as_val("oldSelf", Box::new(opt));
        }
    }
    ctx
}

/// Evaluate `rules` (all of one node with schema `schema`) on `value`.
pub fn check_all(
    rules: &[Rule],
    schema: &Value,
    value: &Value,
    old: Option<&Value>,
    path: &str,
) -> Vec<Cause> {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let sizes = convert::sizes(value).max(old.map(convert::sizes).unwrap_or_default());
    let this = convert::to_cel(value, Some(schema));
    let old_cel = old.map(|o| convert::to_cel(o, Some(schema)));
    let env = library::env();
    let plain = context(
        &env,
        &this,
        old_cel.as_ref().map_or(OldSelf::Absent, OldSelf::Plain),
    );
    let mut optional = None;
    let mut causes = Vec::new();
    for rule in rules {
        if rule.transition && old.is_none() && !rule.optional_old_self {
            continue;
        }
        let estimate = cost::estimate(rule.rule.program.expression(), sizes, &rule.rule.sized);
        if estimate > COST_LIMIT {
            causes.push(invalid(
                path,
                ty,
                &format!(
                    "operation cancelled: estimated cost {estimate:.0} exceeds the limit of {COST_LIMIT:.0} (lists of up to {} items, strings of up to {} bytes): no further validation rules will be run due to call cost exceeds limit for rule: {}",
                    sizes.items,
                    sizes.chars,
                    rule.error_string()
                ),
            ));
            return causes;
        }
        let ctx = if rule.optional_old_self {
            &*optional
                .get_or_insert_with(|| context(&env, &this, OldSelf::Optional(old_cel.as_ref())))
        } else {
            &plain
        };
        match run(&rule.rule.program, ctx) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => causes.push(rule.failure(ctx, ty, path, sizes)),
            Ok(other) => causes.push(invalid(
                path,
                ty,
                &format!(
                    "rule evaluated to {} instead of a bool evaluating rule: {}",
                    other.type_of(),
                    rule.error_string()
                ),
            )),
            Err(ExecutionError::NoSuchOverload(e)) => causes.push(invalid(
                path,
                ty,
                &format!(
                    "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                    rule.error_string()
                ),
            )),
            Err(e) => causes.push(invalid(
                path,
                ty,
                &format!("{e} evaluating rule: {}", rule.error_string()),
            )),
        }
    }
    causes
}
