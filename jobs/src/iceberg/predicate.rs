//! SQL `WHERE` text (`symbol = 'BTC-USD' AND event_time >= TIMESTAMP '2026-01-01'`) turned
//! into an iceberg [`Predicate`] over a table's columns, as Spark's `rewrite_data_files(where
//! => ...)` takes one. Literals are typed by the column they are compared with, so
//! `'2026-01-01'` means a date for a date column and a timestamp for a timestamp column.
//!
//! Supported: comparisons, `AND`/`OR`/`NOT`, `IN`, `BETWEEN`, `IS [NOT] NULL`, parentheses;
//! anything else is a clear error, never a silently wider or narrower filter.

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::{Datum, PrimitiveType, Schema, Type};

use crate::{Error, Result};

/// Parses `sql` as a boolean expression over `schema`'s columns.
pub fn parse_where(schema: &Schema, sql: &str) -> Result<Predicate> {
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| invalid(sql, &e.to_string()))?;
    Converter { schema, sql }.predicate(&expr)
}

fn invalid(sql: &str, why: &str) -> Error {
    Error::Usage(format!("--where {sql:?}: {why}"))
}

struct Converter<'a> {
    schema: &'a Schema,
    sql: &'a str,
}

impl Converter<'_> {
    fn err(&self, why: impl AsRef<str>) -> Error {
        invalid(self.sql, why.as_ref())
    }

    fn predicate(&self, expr: &Expr) -> Result<Predicate> {
        match expr {
            Expr::Nested(inner) => self.predicate(inner),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Ok(!self.predicate(expr)?),
            Expr::BinaryOp { left, op, right } => match op {
                BinaryOperator::And => Ok(self.predicate(left)?.and(self.predicate(right)?)),
                BinaryOperator::Or => Ok(self.predicate(left)?.or(self.predicate(right)?)),
                _ => self.comparison(left, op, right),
            },
            Expr::IsNull(e) => Ok(self.column(e)?.0.is_null()),
            Expr::IsNotNull(e) => Ok(self.column(e)?.0.is_not_null()),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (reference, ty) = self.column(expr)?;
                let values = list
                    .iter()
                    .map(|v| self.literal(v, &ty))
                    .collect::<Result<Vec<_>>>()?;
                Ok(if *negated {
                    reference.is_not_in(values)
                } else {
                    reference.is_in(values)
                })
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (reference, ty) = self.column(expr)?;
                let within = reference
                    .clone()
                    .greater_than_or_equal_to(self.literal(low, &ty)?)
                    .and(reference.less_than_or_equal_to(self.literal(high, &ty)?));
                Ok(if *negated { !within } else { within })
            }
            other => Err(self.err(format!("unsupported expression `{other}`"))),
        }
    }

    /// `column <op> literal` or `literal <op> column`.
    fn comparison(&self, left: &Expr, op: &BinaryOperator, right: &Expr) -> Result<Predicate> {
        let is_column = |e: &Expr| matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        let (column, value, op) = if is_column(right) && !is_column(left) {
            (self.column(right)?, left, flip(op))
        } else {
            (self.column(left)?, right, op.clone())
        };
        let (reference, ty) = column;
        let datum = self.literal(value, &ty)?;
        Ok(match op {
            BinaryOperator::Eq => reference.equal_to(datum),
            BinaryOperator::NotEq => reference.not_equal_to(datum),
            BinaryOperator::Lt => reference.less_than(datum),
            BinaryOperator::LtEq => reference.less_than_or_equal_to(datum),
            BinaryOperator::Gt => reference.greater_than(datum),
            BinaryOperator::GtEq => reference.greater_than_or_equal_to(datum),
            other => return Err(self.err(format!("unsupported operator `{other}`"))),
        })
    }

    fn column(&self, expr: &Expr) -> Result<(Reference, PrimitiveType)> {
        let name = match expr {
            Expr::Identifier(ident) => ident.value.to_lowercase(),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .map(|p| p.value.to_lowercase())
                .unwrap_or_default(),
            other => return Err(self.err(format!("`{other}` is not a column"))),
        };
        let field = self
            .schema
            .field_by_name(&name)
            .ok_or_else(|| self.err(format!("no column `{name}` in the table")))?;
        match field.field_type.as_ref() {
            Type::Primitive(p) => Ok((Reference::new(name), p.clone())),
            other => Err(self.err(format!("column `{name}` is {other}, not a primitive"))),
        }
    }

    /// A literal as a value of the column's type.
    fn literal(&self, expr: &Expr, ty: &PrimitiveType) -> Result<Datum> {
        let text = match expr {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
                Value::Boolean(b) => b.to_string(),
                other => return Err(self.err(format!("unsupported literal `{other}`"))),
            },
            Expr::TypedString(t) => t
                .value
                .clone()
                .into_string()
                .ok_or_else(|| self.err(format!("unsupported literal `{expr}`")))?,
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => format!("-{}", self.literal_text(expr)?),
            other => return Err(self.err(format!("`{other}` is not a literal"))),
        };
        typed(&text, ty).map_err(|why| self.err(format!("{text:?} is not a {ty}: {why}")))
    }

    fn literal_text(&self, expr: &Expr) -> Result<String> {
        match expr {
            Expr::Value(v) => match &v.value {
                Value::Number(s, _) => Ok(s.clone()),
                other => Err(self.err(format!("cannot negate `{other}`"))),
            },
            other => Err(self.err(format!("cannot negate `{other}`"))),
        }
    }
}

/// The operator with its operands swapped: `5 < x` is `x > 5`.
fn flip(op: &BinaryOperator) -> BinaryOperator {
    match op {
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        other => other.clone(),
    }
}

fn typed(text: &str, ty: &PrimitiveType) -> std::result::Result<Datum, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match ty {
        PrimitiveType::String => Ok(Datum::string(text)),
        PrimitiveType::Boolean => Datum::bool_from_str(text).map_err(|x| e(&x)),
        PrimitiveType::Int => text.parse::<i32>().map(Datum::int).map_err(|x| e(&x)),
        PrimitiveType::Long => text.parse::<i64>().map(Datum::long).map_err(|x| e(&x)),
        PrimitiveType::Float => text.parse::<f32>().map(Datum::float).map_err(|x| e(&x)),
        PrimitiveType::Double => text.parse::<f64>().map(Datum::double).map_err(|x| e(&x)),
        PrimitiveType::Date => Datum::date_from_str(text).map_err(|x| e(&x)),
        PrimitiveType::Timestamp => {
            // SQL writes `2026-01-01 00:00:00` or a bare date; chrono wants the `T`.
            let t = text.trim().trim_end_matches('Z').replace(' ', "T");
            let t = if t.contains('T') {
                t
            } else {
                format!("{t}T00:00:00")
            };
            Datum::timestamp_from_str(&t).map_err(|x| e(&x))
        }
        PrimitiveType::Decimal { scale, .. } => {
            let text = rescale(text, *scale).ok_or("not a decimal of that scale")?;
            Datum::decimal_from_str(&text)
                .and_then(|d| d.to(&Type::Primitive(ty.clone())))
                .map_err(|x| e(&x))
        }
        other => Err(format!("comparisons on {other} columns are not supported")),
    }
}

/// `43000.1` with scale 3 → `43000.100`; `None` when digits would be lost.
fn rescale(text: &str, scale: u32) -> Option<String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale as usize || frac.chars().any(|c| !c.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{frac:0<width$}", width = scale as usize);
    Some(if scale == 0 {
        int.to_string()
    } else {
        format!("{int}.{padded}")
    })
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{NestedField, Schema};

    use super::*;

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "symbol", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(2, "event_time", Type::Primitive(PrimitiveType::Timestamp))
                    .into(),
                NestedField::optional(
                    3,
                    "price",
                    Type::Primitive(PrimitiveType::Decimal {
                        precision: 38,
                        scale: 4,
                    }),
                )
                .into(),
                NestedField::optional(4, "n", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .expect("schema")
    }

    fn parsed(sql: &str) -> String {
        parse_where(&schema(), sql).expect(sql).to_string()
    }

    #[test]
    fn comparisons_take_the_column_type() {
        assert_eq!(parsed("symbol = 'BTC-USD'"), "symbol = \"BTC-USD\"");
        assert_eq!(
            parsed("event_time >= TIMESTAMP '2026-01-01 00:30:00'"),
            "event_time >= 2026-01-01 00:30:00"
        );
        assert_eq!(
            parsed("event_time < '2026-01-02'"),
            "event_time < 2026-01-02 00:00:00"
        );
        assert_eq!(parsed("5 < n"), "n > 5");
        assert_eq!(parsed("n >= -3"), "n >= -3");
        assert_eq!(parsed("price > 43000.1"), "price > 43000.1000");
    }

    #[test]
    fn boolean_structure_is_kept() {
        assert_eq!(
            parsed("symbol IN ('A', 'B') AND (n BETWEEN 1 AND 3 OR n IS NULL)"),
            "(symbol IN (\"A\", \"B\")) AND (((n >= 1) AND (n <= 3)) OR (n IS NULL))"
        );
        assert_eq!(parsed("NOT symbol = 'A'"), "NOT (symbol = \"A\")");
    }

    #[test]
    fn what_it_cannot_express_is_an_error() {
        for (sql, why) in [
            ("nope = 1", "no column `nope`"),
            ("upper(symbol) = 'A'", "is not a column"),
            ("n = 'x'", "is not a long"),
            ("price = 1.00001", "is not a decimal"),
            ("symbol LIKE 'B%'", "unsupported expression"),
            ("n % 2 = 0", "is not a column"),
            ("symbol = ", "--where"),
        ] {
            let err = parse_where(&schema(), sql).unwrap_err().to_string();
            assert!(err.contains(why), "{sql}: {err}");
        }
    }
}
