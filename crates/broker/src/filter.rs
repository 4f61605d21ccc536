//! SQL92 property filters: the `MessageSelector.bySql(...)` expressions
//! that RocketMQ consumers subscribe with, evaluated in the broker against
//! each message's properties on pull.
//!
//! The language is RocketMQ's: comparisons (`=`, `<>`, `>`, `>=`, `<`,
//! `<=`), `[NOT] BETWEEN a AND b`, `[NOT] IN ('x', 'y')`, `IS [NOT] NULL`,
//! `[NOT] CONTAINS`, `[NOT] STARTSWITH`, `[NOT] ENDSWITH`, `AND`, `OR`,
//! `NOT`, parentheses, string literals in single quotes (`''` is a quote),
//! integers (an optional `L` suffix), decimals, `TRUE`, `FALSE`, `NULL`;
//! keywords in any case; identifiers name message properties. Evaluation is
//! three-valued as in SQL: a comparison with a missing property is unknown,
//! and only a true result selects the message.
//!
//! Property values are strings; compared with a number they are read as
//! one (a value that is not a number makes the comparison unknown, so the
//! message is not selected), and two strings are compared by `>`/`<` only
//! if both read as numbers. One difference from RocketMQ's parser, which
//! binds `NOT` tighter than `=`: here `NOT a = 'x'` means `NOT (a = 'x')`,
//! as in SQL.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use meridian_protocol::message::{find_property, parse_record};

/// A compiled selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector(Expr);

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Value),
    Prop(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    IsNull(Box<Expr>, bool),
    In(Box<Expr>, Vec<String>, bool),
    Text(Box<Expr>, TextOp, String, bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
}

impl Selector {
    /// Compile an expression; the error says what is wrong and where.
    pub fn parse(sql: &str) -> Result<Selector, String> {
        let tokens = lex(sql)?;
        let mut p = Parser { tokens, at: 0 };
        let e = p.or()?;
        if let Some(t) = p.peek() {
            return Err(format!("unexpected {} after the expression", t.describe()));
        }
        if !is_boolean(&e) {
            return Err("the expression does not result in a boolean value".into());
        }
        Ok(Selector(e))
    }

    /// Whether a message with these properties is selected.
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        eval(&self.0, get) == Value::Bool(true)
    }

    /// Whether a stored record is selected, by its properties. A record
    /// that does not parse is selected, so that the consumer sees it and
    /// nothing is silently lost.
    pub fn matches_record(&self, record: &[u8]) -> bool {
        let Ok(view) = parse_record(record) else {
            return true;
        };
        let props = view.properties_str().unwrap_or("");
        self.matches(&|name| find_property(props, name).map(str::to_owned))
    }
}

/// Compiled selectors by expression text, so each pull does not parse
/// again; bounded, cleared when full.
#[derive(Default)]
pub struct SelectorCache(Mutex<HashMap<String, Result<Arc<Selector>, String>>>);

impl SelectorCache {
    const MAX: usize = 4096;

    pub fn get(&self, sql: &str) -> Result<Arc<Selector>, String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = map.get(sql) {
            return r.clone();
        }
        if map.len() >= Self::MAX {
            map.clear();
        }
        let r = Selector::parse(sql).map(Arc::new);
        map.insert(sql.to_owned(), r.clone());
        r
    }
}

fn is_boolean(e: &Expr) -> bool {
    match e {
        Expr::Lit(Value::Bool(_)) | Expr::Prop(_) => true,
        Expr::Lit(_) | Expr::Neg(_) => false,
        _ => true,
    }
}

fn eval(e: &Expr, get: &dyn Fn(&str) -> Option<String>) -> Value {
    match e {
        Expr::Lit(v) => v.clone(),
        Expr::Prop(name) => get(name).map_or(Value::Null, Value::Str),
        Expr::Neg(inner) => match eval(inner, get) {
            Value::Long(n) => n.checked_neg().map_or(Value::Null, Value::Long),
            Value::Double(d) => Value::Double(-d),
            Value::Str(s) => match number(&s) {
                Some(Value::Long(n)) => n.checked_neg().map_or(Value::Null, Value::Long),
                Some(Value::Double(d)) => Value::Double(-d),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        Expr::Not(inner) => match truth(eval(inner, get)) {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        },
        Expr::And(l, r) => {
            let lv = truth(eval(l, get));
            if lv == Some(false) {
                return Value::Bool(false);
            }
            match (lv, truth(eval(r, get))) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        Expr::Or(l, r) => {
            let lv = truth(eval(l, get));
            if lv == Some(true) {
                return Value::Bool(true);
            }
            match (lv, truth(eval(r, get))) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        Expr::Cmp(l, op, r) => {
            let (lv, rv) = (eval(l, get), eval(r, get));
            match compare(&lv, &rv, *op) {
                Some(ord) => Value::Bool(match op {
                    CmpOp::Eq => ord == Ordering::Equal,
                    CmpOp::Ne => ord != Ordering::Equal,
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::Ge => ord != Ordering::Less,
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::Le => ord != Ordering::Greater,
                }),
                None => Value::Null,
            }
        }
        Expr::IsNull(inner, negated) => Value::Bool((eval(inner, get) == Value::Null) != *negated),
        Expr::In(inner, list, negated) => match eval(inner, get) {
            Value::Str(s) => Value::Bool(list.contains(&s) != *negated),
            _ => Value::Null,
        },
        Expr::Text(inner, op, lit, negated) => match eval(inner, get) {
            Value::Str(s) => {
                let hit = match op {
                    TextOp::Contains => s.contains(lit.as_str()),
                    TextOp::StartsWith => s.starts_with(lit.as_str()),
                    TextOp::EndsWith => s.ends_with(lit.as_str()),
                };
                Value::Bool(hit != *negated)
            }
            _ => Value::Null,
        },
    }
}

/// A value as a truth value: only booleans are true or false (a property
/// used as a condition on its own is a string, so false, as in RocketMQ).
fn truth(v: Value) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(b),
        _ => Some(false),
    }
}

/// Order two values, converting a string to the other side's type;
/// `None` when either is missing or they cannot be compared.
fn compare(l: &Value, r: &Value, op: CmpOp) -> Option<Ordering> {
    use Value::*;
    let ordering_op = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    match (l, r) {
        (Null, _) | (_, Null) => None,
        (Long(a), Long(b)) => Some(a.cmp(b)),
        (Long(a), Double(b)) => (*a as f64).partial_cmp(b),
        (Double(a), Long(b)) => a.partial_cmp(&(*b as f64)),
        (Double(a), Double(b)) => a.partial_cmp(b),
        (Str(a), Str(b)) if ordering_op => {
            let (a, b) = (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?);
            a.partial_cmp(&b)
        }
        (Str(a), Str(b)) => Some(a.cmp(b)),
        (Bool(a), Bool(b)) if !ordering_op => Some(a.cmp(b)),
        (Str(s), Bool(b)) if !ordering_op => Some(s.eq_ignore_ascii_case("true").cmp(b)),
        (Bool(b), Str(s)) if !ordering_op => Some(b.cmp(&s.eq_ignore_ascii_case("true"))),
        (Str(s), n @ (Long(_) | Double(_))) => compare(&convert(s, n)?, n, op),
        (n @ (Long(_) | Double(_)), Str(s)) => compare(n, &convert(s, n)?, op),
        // Different kinds never compare equal (RocketMQ answers "less").
        _ if !ordering_op => Some(Ordering::Less),
        _ => None,
    }
}

/// A string read as a number to compare with `like`: an integer when it
/// is one and `like` is, else a decimal (RocketMQ refuses `'2.5' > 2`;
/// Meridian compares them).
fn convert(s: &str, like: &Value) -> Option<Value> {
    match (number(s)?, like) {
        (Value::Long(n), Value::Double(_)) => Some(Value::Double(n as f64)),
        (v, _) => Some(v),
    }
}

fn number(s: &str) -> Option<Value> {
    let s = s.trim();
    s.parse::<i64>()
        .map(Value::Long)
        .ok()
        .or_else(|| s.parse::<f64>().ok().map(Value::Double))
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Long(i64),
    Double(f64),
    Sym(&'static str),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Long(n) => format!("number {n}"),
            Tok::Double(d) => format!("number {d}"),
            Tok::Sym(s) => format!("'{s}'"),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

const KEYWORDS: &[&str] = &[
    "NOT",
    "AND",
    "OR",
    "BETWEEN",
    "IN",
    "TRUE",
    "FALSE",
    "NULL",
    "IS",
    "CONTAINS",
    "STARTSWITH",
    "ENDSWITH",
];

fn lex(sql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .ok_or("a comment is not closed")?;
            i = end + 2;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("a string literal is not closed".into()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                i += 1;
                if i < chars.len() && matches!(chars[i], '+' | '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            if i < chars.len() && matches!(chars[i], 'l' | 'L') && !text.contains(['.', 'e', 'E']) {
                i += 1;
            }
            if i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                return Err(format!("'{text}{}' is not a number", chars[i]));
            }
            if text.contains(['.', 'e', 'E']) {
                let d = text
                    .parse::<f64>()
                    .map_err(|_| format!("'{text}' is not a number"))?;
                out.push(Tok::Double(d));
            } else {
                let n = text
                    .parse::<i64>()
                    .map_err(|_| format!("{text} is out of the range of a 64-bit integer"))?;
                out.push(Tok::Long(n));
            }
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '.'))
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "<>" => Some("<>"),
                "!=" => Some("<>"),
                ">=" => Some(">="),
                "<=" => Some("<="),
                _ => None,
            };
            if let Some(s) = sym {
                out.push(Tok::Sym(s));
                i += 2;
                continue;
            }
            let sym = match c {
                '=' => "=",
                '>' => ">",
                '<' => "<",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '+' => "+",
                '-' => "-",
                _ => return Err(format!("unexpected character '{c}' at position {i}")),
            };
            out.push(Tok::Sym(sym));
            i += 1;
        }
    }
    Ok(out)
}

// ---- parser ----

struct Parser {
    tokens: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.tokens.get(self.at + n)
    }

    fn keyword(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_keyword(kw)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), String> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(format!("expected {kw}, found {}", self.found()))
        }
    }

    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end of the expression".into(), Tok::describe)
    }

    fn condition(&self, e: Expr, op: &str) -> Result<Box<Expr>, String> {
        if is_boolean(&e) {
            Ok(Box::new(e))
        } else {
            Err(format!("{op} needs conditions on both sides"))
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            let right = self.and()?;
            left = Expr::Or(self.condition(left, "OR")?, self.condition(right, "OR")?);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            let right = self.not()?;
            left = Expr::And(self.condition(left, "AND")?, self.condition(right, "AND")?);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.keyword("NOT") {
            let inner = self.not()?;
            return Ok(Expr::Not(self.condition(inner, "NOT")?));
        }
        self.equality()
    }

    fn equality(&mut self) -> Result<Expr, String> {
        let mut left = self.comparison()?;
        loop {
            let op = if self.sym("=") {
                CmpOp::Eq
            } else if self.sym("<>") {
                CmpOp::Ne
            } else if self.peek().is_some_and(|t| t.is_keyword("IS")) {
                self.at += 1;
                let negated = self.keyword("NOT");
                self.expect_keyword("NULL")?;
                left = Expr::IsNull(Box::new(left), negated);
                continue;
            } else {
                return Ok(left);
            };
            let right = self.comparison()?;
            for side in [&left, &right] {
                if *side == Expr::Lit(Value::Null) {
                    return Err("NULL cannot be compared with = or <>; use IS NULL".into());
                }
            }
            left = Expr::Cmp(Box::new(left), op, Box::new(right));
        }
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        loop {
            let op = if self.sym(">") {
                Some(CmpOp::Gt)
            } else if self.sym(">=") {
                Some(CmpOp::Ge)
            } else if self.sym("<") {
                Some(CmpOp::Lt)
            } else if self.sym("<=") {
                Some(CmpOp::Le)
            } else {
                None
            };
            if let Some(op) = op {
                let right = self.unary()?;
                numeric_operand(&left)?;
                numeric_operand(&right)?;
                left = Expr::Cmp(Box::new(left), op, Box::new(right));
                continue;
            }
            let negated = self.peek().is_some_and(|t| t.is_keyword("NOT"))
                && self.peek_at(1).is_some_and(|t| {
                    ["BETWEEN", "IN", "CONTAINS", "STARTSWITH", "ENDSWITH"]
                        .iter()
                        .any(|k| t.is_keyword(k))
                });
            if negated {
                self.at += 1;
            }
            if self.keyword("BETWEEN") {
                let low = self.unary()?;
                self.expect_keyword("AND")?;
                let high = self.unary()?;
                for e in [&left, &low, &high] {
                    numeric_operand(e)?;
                }
                let ge = Expr::Cmp(Box::new(left.clone()), CmpOp::Ge, Box::new(low));
                let le = Expr::Cmp(Box::new(left), CmpOp::Le, Box::new(high));
                let between = Expr::And(Box::new(ge), Box::new(le));
                left = if negated {
                    Expr::Not(Box::new(between))
                } else {
                    between
                };
            } else if self.keyword("IN") {
                if !self.sym("(") {
                    return Err(format!("expected ( after IN, found {}", self.found()));
                }
                let mut list = vec![self.string()?];
                while self.sym(",") {
                    list.push(self.string()?);
                }
                if !self.sym(")") {
                    return Err(format!("expected ) to close IN, found {}", self.found()));
                }
                left = Expr::In(Box::new(left), list, negated);
            } else if let Some(op) = self.text_op() {
                let lit = self.string()?;
                left = Expr::Text(Box::new(left), op, lit, negated);
            } else if negated {
                return Err(format!("unexpected NOT before {}", self.found()));
            } else {
                return Ok(left);
            }
        }
    }

    fn text_op(&mut self) -> Option<TextOp> {
        if self.keyword("CONTAINS") {
            Some(TextOp::Contains)
        } else if self.keyword("STARTSWITH") {
            Some(TextOp::StartsWith)
        } else if self.keyword("ENDSWITH") {
            Some(TextOp::EndsWith)
        } else {
            None
        }
    }

    fn string(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.at += 1;
                Ok(s)
            }
            _ => Err(format!("expected a string literal, found {}", self.found())),
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.sym("+") {
            return self.unary();
        }
        if self.sym("-") {
            let inner = self.unary()?;
            return Ok(match inner {
                Expr::Lit(Value::Long(n)) => Expr::Lit(Value::Long(-n)),
                Expr::Lit(Value::Double(d)) => Expr::Lit(Value::Double(-d)),
                other => {
                    numeric_operand(&other)?;
                    Expr::Neg(Box::new(other))
                }
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(tok) = self.peek().cloned() else {
            return Err("the expression ends too early".into());
        };
        self.at += 1;
        Ok(match tok {
            Tok::Str(s) => Expr::Lit(Value::Str(s)),
            Tok::Long(n) => Expr::Lit(Value::Long(n)),
            Tok::Double(d) => Expr::Lit(Value::Double(d)),
            Tok::Sym("(") => {
                let e = self.or()?;
                if !self.sym(")") {
                    return Err(format!("expected ), found {}", self.found()));
                }
                e
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("TRUE") => Expr::Lit(Value::Bool(true)),
            Tok::Word(w) if w.eq_ignore_ascii_case("FALSE") => Expr::Lit(Value::Bool(false)),
            Tok::Word(w) if w.eq_ignore_ascii_case("NULL") => Expr::Lit(Value::Null),
            Tok::Word(w) if KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                return Err(format!("unexpected keyword {w}"));
            }
            Tok::Word(w) => Expr::Prop(w),
            other => return Err(format!("unexpected {}", other.describe())),
        })
    }
}

/// `>`, `<`, `BETWEEN` and negation take numbers or properties, never a
/// string, boolean or NULL literal, nor a condition.
fn numeric_operand(e: &Expr) -> Result<(), String> {
    match e {
        Expr::Lit(Value::Long(_) | Value::Double(_)) | Expr::Prop(_) | Expr::Neg(_) => Ok(()),
        Expr::Lit(v) => Err(format!("{v:?} cannot be compared by size")),
        _ => Err("a condition cannot be compared by size".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(sql: &str, props: &[(&str, &str)]) -> bool {
        let s = Selector::parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        s.matches(&|name| {
            props
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn comparisons_convert_property_strings_to_numbers() {
        let p = [("a", "5"), ("b", "2.5"), ("s", "abc")];
        assert!(sel("a = 5", &p));
        assert!(sel("a > 4 AND a < 6", &p));
        assert!(sel("a >= 5 and a <= 5", &p));
        assert!(sel("b > 2", &p));
        assert!(sel("b < 2.6", &p));
        assert!(!sel("a <> 5", &p));
        assert!(sel("s = 'abc'", &p));
        assert!(sel("s <> 'abd'", &p));
        // a string that is not a number never compares with one
        assert!(!sel("s > 1", &p));
        assert!(!sel("s = 1", &p));
        assert!(!sel("NOT (s = 1)", &p));
        assert!(sel("a = -(-5)", &p));
        assert!(sel("a > -1", &p));
    }

    #[test]
    fn between_in_null_and_text() {
        let p = [("a", "5"), ("region", "east-1")];
        assert!(sel("a BETWEEN 1 AND 5", &p));
        assert!(!sel("a NOT BETWEEN 1 AND 5", &p));
        assert!(sel("a not between 6 and 9", &p));
        assert!(sel("region IN ('west', 'east-1')", &p));
        assert!(!sel("region NOT IN ('west', 'east-1')", &p));
        assert!(sel("missing IS NULL", &p));
        assert!(sel("region IS NOT NULL", &p));
        assert!(!sel("region IS NULL", &p));
        assert!(sel("region CONTAINS 'st-'", &p));
        assert!(sel("region STARTSWITH 'east'", &p));
        assert!(sel("region ENDSWITH '-1'", &p));
        assert!(sel("region NOT CONTAINS 'west'", &p));
    }

    #[test]
    fn missing_properties_are_unknown_not_false() {
        let p = [("a", "1")];
        assert!(!sel("b = 1", &p));
        assert!(!sel("NOT (b = 1)", &p));
        assert!(!sel("b <> 1", &p));
        assert!(sel("b = 1 OR a = 1", &p));
        assert!(!sel("b = 1 AND a = 1", &p));
        assert!(!sel("b NOT IN ('x')", &p));
        assert!(sel("NOT a = 2", &p));
    }

    #[test]
    fn precedence_literals_and_keywords() {
        let p = [("a", "1"), ("b", "2"), ("q", "it's")];
        assert!(sel("a = 1 OR a = 2 AND b = 3", &p));
        assert!(!sel("(a = 1 OR a = 2) AND b = 3", &p));
        assert!(sel("q = 'it''s'", &p));
        assert!(sel("TRUE", &p));
        assert!(!sel("FALSE OR a = 9", &p));
        assert!(sel("a = 1L /* a comment */", &p));
        assert!(sel("a=1 and b=2", &p));
        assert!(sel("TAGS IS NULL", &p));
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        for bad in [
            "",
            "a =",
            "a = 'x",
            "a > 'x'",
            "a = NULL",
            "a IN (1, 2)",
            "a IN ('x'",
            "5",
            "'abc'",
            "a = 1 b = 2",
            "a # 1",
            "AND a = 1",
            "a BETWEEN 1 2",
            "99999999999999999999 = a",
            "(a = 1",
        ] {
            let e = Selector::parse(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
    }

    #[test]
    fn the_cache_gives_the_same_answer() {
        let c = SelectorCache::default();
        assert!(c.get("a = 1").is_ok());
        assert!(c.get("a = 1").is_ok());
        assert!(c.get("a =").is_err());
    }
}
