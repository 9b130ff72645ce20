//! Compile-time checks of a rule against its schema node, in place of the
//! type checker the `cel` crate lacks: undeclared variables and functions,
//! fields the schema does not have, arithmetic mixing int and double, and a
//! result of the wrong type are refused when the CRD is written, as
//! Kubernetes refuses them. What cannot be typed statically (`dyn`, e.g.
//! int-or-string or unknown fields) is left to evaluation.
//!
//! The checker also notes which calls take operands whose size varies with
//! the input, for the cost guard ([`super::cost`]).

use std::collections::HashMap;
use std::fmt;

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators as op};
use serde_json::Value;

use super::library::FUNCTIONS;

/// A static CEL type, from the schema or the expression.
#[derive(Debug, Clone)]
pub enum Ty<'s> {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Null,
    Type,
    List(Box<Ty<'s>>),
    /// A map with string keys (`additionalProperties`) and this value type.
    Map(Box<Ty<'s>>),
    /// An object with known `properties` (its schema node).
    Object(&'s Value),
    Dyn,
}

impl fmt::Display for Ty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Duration => f.write_str("google.protobuf.Duration"),
            Ty::Timestamp => f.write_str("google.protobuf.Timestamp"),
            Ty::Null => f.write_str("null_type"),
            Ty::Type => f.write_str("type"),
            Ty::List(t) => write!(f, "list({t})"),
            Ty::Map(t) => write!(f, "map(string, {t})"),
            Ty::Object(_) => f.write_str("object"),
            Ty::Dyn => f.write_str("dyn"),
        }
    }
}

impl<'s> Ty<'s> {
    /// The type of values under schema node `node`.
    pub fn of_schema(node: Option<&'s Value>) -> Ty<'s> {
        let Some(node) = node.filter(|n| n.is_object()) else {
            return Ty::Dyn;
        };
        let flag = |name: &str| node.get(name).and_then(Value::as_bool).unwrap_or(false);
        if flag("x-kubernetes-int-or-string") {
            return Ty::Dyn;
        }
        let format = node.get("format").and_then(Value::as_str).unwrap_or("");
        match node.get("type").and_then(Value::as_str).unwrap_or("") {
            "integer" => Ty::Int,
            "number" => Ty::Double,
            "boolean" => Ty::Bool,
            "string" => match format {
                "date-time" | "date" => Ty::Timestamp,
                "duration" => Ty::Duration,
                "byte" => Ty::Bytes,
                _ => Ty::String,
            },
            "array" => Ty::List(Box::new(Ty::of_schema(node.get("items")))),
            "object" => match node.get("additionalProperties") {
                Some(a) if a.is_object() => Ty::Map(Box::new(Ty::of_schema(Some(a)))),
                Some(Value::Bool(true)) => Ty::Map(Box::new(Ty::Dyn)),
                _ if node.get("properties").is_some() || flag("x-kubernetes-embedded-resource") => {
                    Ty::Object(node)
                }
                _ if flag("x-kubernetes-preserve-unknown-fields") => Ty::Dyn,
                _ => Ty::Object(node),
            },
            _ => Ty::Dyn,
        }
    }

    fn scalar(&self) -> bool {
        !matches!(self, Ty::List(_) | Ty::Map(_) | Ty::Object(_) | Ty::Dyn)
    }

    /// Whether operations on it take time that grows with the input.
    fn sized(&self) -> bool {
        !matches!(
            self,
            Ty::Bool | Ty::Int | Ty::Uint | Ty::Double | Ty::Duration | Ty::Timestamp | Ty::Null
        )
    }

    fn stringy(&self) -> bool {
        matches!(self, Ty::String | Ty::Bytes)
    }

    fn same_scalar(&self, other: &Ty<'_>) -> bool {
        self.scalar() && std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Expression ids of the calls whose work grows with the input, each
/// `true` when a list or map operand (not only strings) makes it grow.
pub type SizedCalls = HashMap<u64, bool>;

/// What checking an expression found.
#[derive(Debug, Default)]
pub struct Checked {
    /// `(expression id, message)` of each error.
    pub errors: Vec<(u64, String)>,
    /// Whether the expression reads `oldSelf` (a transition rule).
    pub uses_old: bool,
    /// Calls whose operands grow with the input: `true` where one is a
    /// collection (or dynamic), `false` where they are strings or bytes.
    pub sized_calls: SizedCalls,
}

/// Type `expr` with `self` typed by `node`; the result type and findings.
pub fn check<'s>(expr: &IdedExpr, node: &'s Value) -> (Ty<'s>, Checked) {
    let mut c = Checker {
        self_ty: Ty::of_schema(Some(node)),
        scope: Vec::new(),
        accus: Vec::new(),
        out: Checked::default(),
    };
    let ty = c.infer(expr);
    (ty, c.out)
}

struct Checker<'s> {
    self_ty: Ty<'s>,
    scope: Vec<(String, Ty<'s>)>,
    accus: Vec<String>,
    out: Checked,
}

impl<'s> Checker<'s> {
    fn error(&mut self, id: u64, msg: String) -> Ty<'s> {
        self.out.errors.push((id, msg));
        Ty::Dyn
    }

    fn infer(&mut self, e: &IdedExpr) -> Ty<'s> {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            },
            Expr::Ident(name) => self.ident(e.id, name),
            Expr::Select(s) => {
                let t = self.infer(&s.operand);
                let field = self.field(e.id, &t, &s.field);
                if s.test { Ty::Bool } else { field }
            }
            Expr::Call(call) => {
                // `optional.none()` and the like: a namespaced function.
                if let Some(target) = &call.target
                    && let Expr::Ident(ns) = &target.expr
                    && !self.scope.iter().any(|(n, _)| n == ns)
                    && ns != "self"
                    && ns != "oldSelf"
                {
                    let name = format!("{ns}.{}", call.func_name);
                    if FUNCTIONS.contains(&name.as_str()) {
                        for a in &call.args {
                            self.infer(a);
                        }
                        return Ty::Dyn;
                    }
                }
                let target = call.target.as_ref().map(|t| self.infer(t));
                let args: Vec<Ty<'s>> = call.args.iter().map(|a| self.infer(a)).collect();
                let accu_arg = call
                    .args
                    .iter()
                    .any(|a| matches!(&a.expr, Expr::Ident(n) if self.accus.contains(n)));
                let operands = || target.iter().chain(args.iter());
                if !accu_arg && operands().any(Ty::sized) {
                    let collection = operands().any(|t| t.sized() && !t.stringy());
                    self.out.sized_calls.insert(e.id, collection);
                }
                self.call(e.id, &call.func_name, target, args, &call.args)
            }
            Expr::Comprehension(c) => {
                let range = self.infer(&c.iter_range);
                let (first, second) = match &range {
                    Ty::List(t) => (Ty::Int, (**t).clone()),
                    Ty::Map(t) => (Ty::String, (**t).clone()),
                    Ty::Object(_) => (Ty::String, Ty::Dyn),
                    Ty::Dyn => (Ty::Dyn, Ty::Dyn),
                    other => {
                        let msg = format!(
                            "expression of type '{other}' cannot be range of a comprehension (must be list, map, or dynamic)"
                        );
                        (self.error(c.iter_range.id, msg), Ty::Dyn)
                    }
                };
                let accu = self.infer(&c.accu_init);
                let depth = self.scope.len();
                match &c.iter_var2 {
                    Some(v2) => {
                        self.scope.push((c.iter_var.clone(), first));
                        self.scope.push((v2.clone(), second));
                    }
                    None => {
                        let elem = if matches!(range, Ty::List(_)) {
                            second
                        } else {
                            first
                        };
                        self.scope.push((c.iter_var.clone(), elem));
                    }
                }
                self.scope.push((c.accu_var.clone(), accu));
                self.accus.push(c.accu_var.clone());
                self.infer(&c.loop_cond);
                self.infer(&c.loop_step);
                let result = self.infer(&c.result);
                self.accus.pop();
                self.scope.truncate(depth);
                result
            }
            Expr::List(l) => {
                let tys: Vec<Ty<'s>> = l.elements.iter().map(|x| self.infer(x)).collect();
                let elem = match tys.first() {
                    Some(t) if tys.iter().all(|u| t.same_scalar(u)) => t.clone(),
                    _ => Ty::Dyn,
                };
                Ty::List(Box::new(elem))
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.infer(&me.key);
                        self.infer(&me.value);
                    }
                }
                Ty::Map(Box::new(Ty::Dyn))
            }
            Expr::Struct(s) => {
                let msg = format!("undeclared reference to '{}'", s.type_name);
                self.error(e.id, msg)
            }
            Expr::Unspecified => self.error(e.id, "unsupported expression".into()),
        }
    }

    fn ident(&mut self, id: u64, name: &str) -> Ty<'s> {
        if let Some((_, t)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return t.clone();
        }
        match name {
            "self" => self.self_ty.clone(),
            "oldSelf" => {
                self.out.uses_old = true;
                self.self_ty.clone()
            }
            // Type names, as in `type(self) == string`.
            "int" | "uint" | "double" | "string" | "bool" | "bytes" | "list" | "map"
            | "null_type" | "type" => Ty::Type,
            _ => self.error(id, format!("undeclared reference to '{name}'")),
        }
    }

    fn field(&mut self, id: u64, t: &Ty<'s>, field: &str) -> Ty<'s> {
        match t {
            Ty::Object(node) => {
                let node: &'s Value = node;
                if let Some(p) = node.get("properties").and_then(|p| p.get(field)) {
                    return Ty::of_schema(Some(p));
                }
                let flag = |n: &str| node.get(n).and_then(Value::as_bool).unwrap_or(false);
                let embedded = flag("x-kubernetes-embedded-resource")
                    && matches!(field, "apiVersion" | "kind" | "metadata");
                if embedded || flag("x-kubernetes-preserve-unknown-fields") {
                    return Ty::Dyn;
                }
                self.error(id, format!("undefined field '{field}'"))
            }
            Ty::Map(v) => (**v).clone(),
            Ty::Dyn => Ty::Dyn,
            other => self.error(
                id,
                format!("type '{other}' does not support field selection"),
            ),
        }
    }

    fn call(
        &mut self,
        id: u64,
        name: &str,
        target: Option<Ty<'s>>,
        args: Vec<Ty<'s>>,
        arg_exprs: &[IdedExpr],
    ) -> Ty<'s> {
        let no_overload = |tys: &[&Ty<'_>]| {
            let list: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
            format!(
                "found no matching overload for '{name}' applied to '({})'",
                list.join(", ")
            )
        };
        match name {
            op::EQUALS
            | op::NOT_EQUALS
            | op::LESS
            | op::LESS_EQUALS
            | op::GREATER
            | op::GREATER_EQUALS
            | op::LOGICAL_AND
            | op::LOGICAL_OR
            | op::LOGICAL_NOT
            | op::IN
            | op::NOT_STRICTLY_FALSE => Ty::Bool,
            op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO => {
                let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
                    return Ty::Dyn;
                };
                match (a, b) {
                    (Ty::Dyn, _) | (_, Ty::Dyn) => Ty::Dyn,
                    (Ty::Timestamp, Ty::Timestamp) if name == op::SUBSTRACT => Ty::Duration,
                    (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp)
                        if name == op::ADD || name == op::SUBSTRACT =>
                    {
                        Ty::Timestamp
                    }
                    (Ty::List(_), Ty::List(_)) if name == op::ADD => Ty::List(Box::new(Ty::Dyn)),
                    (a, b) if a.same_scalar(b) && !matches!(a, Ty::Bool | Ty::Null | Ty::Type) => {
                        a.clone()
                    }
                    (a, b) => {
                        let msg = no_overload(&[a, b]);
                        self.error(id, msg)
                    }
                }
            }
            op::NEGATE => args.into_iter().next().unwrap_or(Ty::Dyn),
            op::CONDITIONAL => match (args.get(1), args.get(2)) {
                (Some(a), Some(b)) if a.same_scalar(b) => a.clone(),
                _ => Ty::Dyn,
            },
            op::INDEX => match args.first() {
                Some(Ty::List(t)) => (**t).clone(),
                Some(Ty::Map(t)) => (**t).clone(),
                Some(obj @ Ty::Object(_)) => match arg_exprs.get(1).map(|a| &a.expr) {
                    Some(Expr::Literal(LiteralValue::String(s))) => {
                        let obj = obj.clone();
                        self.field(id, &obj, s.inner())
                    }
                    _ => Ty::Dyn,
                },
                _ => Ty::Dyn,
            },
            op::OPT_INDEX | op::OPT_SELECT => Ty::Dyn,
            _ if !FUNCTIONS.contains(&name) => {
                self.error(id, format!("undeclared reference to '{name}'"))
            }
            "size" | "int" | "indexOf" | "lastIndexOf" => Ty::Int,
            n if n.starts_with("get") => Ty::Int,
            "uint" => Ty::Uint,
            "double" => Ty::Double,
            "string" | "lowerAscii" | "upperAscii" | "trim" | "replace" | "substring"
            | "charAt" | "join" => Ty::String,
            "bytes" => Ty::Bytes,
            "bool" | "contains" | "startsWith" | "endsWith" | "matches" | "isSorted" | "has"
            | "all" | "exists" | "exists_one" | "hasValue" => Ty::Bool,
            "duration" => Ty::Duration,
            "timestamp" => Ty::Timestamp,
            "type" => Ty::Type,
            "split" => Ty::List(Box::new(Ty::String)),
            "sum" | "min" | "max" => match target {
                Some(Ty::List(t)) => *t,
                _ => Ty::Dyn,
            },
            _ => Ty::Dyn,
        }
    }
}
