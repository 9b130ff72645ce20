//! The cost guard: before a rule runs, an upper bound of its work on this
//! input, from the rule's shape and the input's largest list and string.
//! The `cel` crate has no cost tracking of its own, so a rule whose bound
//! exceeds [`COST_LIMIT`] is not run: `self.all(x, self.all(y, ...))` over
//! a list of a hundred thousand items would otherwise hold a request thread
//! for minutes. Like Kubernetes' runtime cost limit, the unit is roughly one
//! evaluation step, with string work at a tenth per byte.

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators as op};

use super::check::SizedCalls;
use super::convert::Sizes;

/// The most a rule may cost on one value (Kubernetes' per-call limit).
pub const COST_LIMIT: f64 = 1_000_000.0;

/// Upper bound of the cost of `e` on an input of `sizes`; `sized` are the
/// calls whose operands grow with the input (from [`super::check`]).
pub fn estimate(e: &IdedExpr, sizes: Sizes, sized: &SizedCalls) -> f64 {
    Estimator { sizes, sized }.cost(e)
}

struct Estimator<'a> {
    sizes: Sizes,
    sized: &'a SizedCalls,
}

impl Estimator<'_> {
    /// Work of one call on input-sized operands: a pass over a list (when
    /// `collection`) or a string.
    fn linear(&self, collection: bool) -> f64 {
        let chars = self.sizes.chars as f64 / 10.0;
        if collection {
            (self.sizes.items as f64).max(chars) + 1.0
        } else {
            chars + 1.0
        }
    }

    fn cost(&self, e: &IdedExpr) -> f64 {
        match &e.expr {
            Expr::Literal(_) | Expr::Ident(_) | Expr::Unspecified => 1.0,
            Expr::Select(s) => 1.0 + self.cost(&s.operand),
            Expr::Call(c) => {
                let target = c.target.as_ref().map_or(0.0, |t| self.cost(t));
                if c.func_name == op::CONDITIONAL && c.args.len() == 3 {
                    let branch = self.cost(&c.args[1]).max(self.cost(&c.args[2]));
                    return 1.0 + self.cost(&c.args[0]) + branch;
                }
                let args: f64 = c.args.iter().map(|a| self.cost(a)).sum();
                let mut own = 1.0;
                if let Some(collection) = self.sized.get(&e.id) {
                    own += self.linear(*collection);
                }
                if c.func_name == "replace" {
                    // The result may be as long as the input times the
                    // replacement: bound by a literal replacement's length.
                    let to = match c.args.get(1).map(|a| &a.expr) {
                        Some(Expr::Literal(LiteralValue::String(s))) => s.inner().len() as f64,
                        _ => self.sizes.chars as f64,
                    };
                    own += self.sizes.chars as f64 * (1.0 + to) / 10.0;
                }
                own + target + args
            }
            Expr::Comprehension(c) => {
                let n = self.iterations(&c.iter_range);
                self.cost(&c.iter_range)
                    + self.cost(&c.accu_init)
                    + n * (1.0 + self.cost(&c.loop_cond) + self.cost(&c.loop_step))
                    + self.cost(&c.result)
            }
            Expr::List(l) => 1.0 + l.elements.iter().map(|x| self.cost(x)).sum::<f64>(),
            Expr::Map(m) => 1.0 + self.entries(&m.entries),
            Expr::Struct(s) => 1.0 + self.entries(&s.entries),
        }
    }

    fn entries(&self, entries: &[cel::common::ast::IdedEntryExpr]) -> f64 {
        entries
            .iter()
            .map(|en| match &en.expr {
                EntryExpr::MapEntry(m) => self.cost(&m.key) + self.cost(&m.value),
                EntryExpr::StructField(f) => self.cost(&f.value),
            })
            .sum()
    }

    /// How many times a comprehension over `range` may loop.
    fn iterations(&self, range: &IdedExpr) -> f64 {
        match &range.expr {
            Expr::List(l) => l.elements.len() as f64,
            Expr::Map(m) => m.entries.len() as f64,
            _ if mentions_split(range) => self.sizes.items.max(self.sizes.chars) as f64 + 1.0,
            _ => self.sizes.items as f64 + 1.0,
        }
    }
}

/// Whether `e` calls `split`, whose list is as long as a string.
fn mentions_split(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Call(c) => {
            c.func_name == "split"
                || c.target.as_deref().is_some_and(mentions_split)
                || c.args.iter().any(mentions_split)
        }
        Expr::Select(s) => mentions_split(&s.operand),
        Expr::Comprehension(c) => mentions_split(&c.iter_range) || mentions_split(&c.loop_step),
        Expr::List(l) => l.elements.iter().any(mentions_split),
        _ => false,
    }
}
