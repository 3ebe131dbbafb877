//! The condition language of analysis metrics (`successCondition`,
//! `failureCondition`): arithmetic and comparisons over the measured `result`.
//! A small recursive-descent parser with bounded input length and nesting, so a
//! hostile condition can neither panic nor overflow the stack.

/// Longest accepted condition, in characters (the CRD allows 512).
pub const MAX_LEN: usize = 512;
/// Deepest accepted nesting of parentheses, `not` and unary minus.
pub const MAX_DEPTH: usize = 64;

/// Why a condition cannot be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct ExprError {
    /// 1-based character position in the condition.
    pub position: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn error<T>(position: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        position,
        message: message.into(),
    })
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

/// A parsed condition. `at` fields are 1-based character positions of the
/// operator, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Bool(bool),
    /// The measured value.
    Result,
    Neg {
        at: usize,
        operand: Box<Expr>,
    },
    Not {
        at: usize,
        operand: Box<Expr>,
    },
    IsNaN {
        at: usize,
        operand: Box<Expr>,
    },
    Binary {
        at: usize,
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

/// The type of a (sub)expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Number,
    Bool,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Bool => "a boolean",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    LParen,
    RParen,
    Op(BinOp),
    Minus,
    Not,
    End,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Number(n) => format!("number {n}"),
        Token::Ident(name) => format!("`{name}`"),
        Token::LParen => "`(`".into(),
        Token::RParen => "`)`".into(),
        Token::Op(op) => format!("`{}`", op.symbol()),
        Token::Minus => "`-`".into(),
        Token::Not => "`not`".into(),
        Token::End => "the end of the condition".into(),
    }
}

/// Splits the condition into (position, token) pairs, ending with `End`.
fn lex(src: &str) -> Result<Vec<(usize, Token)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let at = i + 1;
        let next = chars.get(i + 1).copied();
        let (token, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '0'..='9' | '.' => lex_number(&chars, i)?,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let word: String = chars[i..i + len].iter().collect();
                let token = match word.as_str() {
                    "and" => Token::Op(BinOp::And),
                    "or" => Token::Op(BinOp::Or),
                    "not" => Token::Not,
                    _ => Token::Ident(word),
                };
                (token, len)
            }
            '(' => (Token::LParen, 1),
            ')' => (Token::RParen, 1),
            '+' => (Token::Op(BinOp::Add), 1),
            '-' => (Token::Minus, 1),
            '*' => (Token::Op(BinOp::Mul), 1),
            '/' => (Token::Op(BinOp::Div), 1),
            '<' if next == Some('=') => (Token::Op(BinOp::Le), 2),
            '<' => (Token::Op(BinOp::Lt), 1),
            '>' if next == Some('=') => (Token::Op(BinOp::Ge), 2),
            '>' => (Token::Op(BinOp::Gt), 1),
            '=' if next == Some('=') => (Token::Op(BinOp::Eq), 2),
            '!' if next == Some('=') => (Token::Op(BinOp::Ne), 2),
            '!' => (Token::Not, 1),
            '&' if next == Some('&') => (Token::Op(BinOp::And), 2),
            '|' if next == Some('|') => (Token::Op(BinOp::Or), 2),
            '=' => return error(at, "`=` is not an operator; compare with `==`"),
            '&' => return error(at, "`&` is not an operator; use `and` (or `&&`)"),
            '|' => return error(at, "`|` is not an operator; use `or` (or `||`)"),
            other => {
                return error(
                    at,
                    format!(
                        "unexpected character {other:?}; a condition uses `result`, numbers, \
                         + - * /, comparisons, and/or/not, isNaN(...) and parentheses"
                    ),
                );
            }
        };
        tokens.push((at, token));
        i += len;
    }
    tokens.push((chars.len() + 1, Token::End));
    Ok(tokens)
}

/// A number: digits, an optional fraction and an optional exponent.
fn lex_number(chars: &[char], start: usize) -> Result<(Token, usize), ExprError> {
    let digits = |from: usize| {
        chars.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|c| c.is_ascii_digit()).count()
        })
    };
    let mut end = start + digits(start);
    let mut mantissa_digits = end - start;
    if chars.get(end) == Some(&'.') {
        let fraction = digits(end + 1);
        mantissa_digits += fraction;
        end += 1 + fraction;
    }
    if mantissa_digits == 0 {
        return error(start + 1, "a number needs digits, e.g. 0.5");
    }
    if matches!(chars.get(end), Some('e' | 'E')) {
        let mut exp = end + 1;
        if matches!(chars.get(exp), Some('+' | '-')) {
            exp += 1;
        }
        let exp_digits = digits(exp);
        if exp_digits == 0 {
            return error(
                end + 1,
                "an exponent needs digits, e.g. 1e-3 (write `result * e` with spaces for a product)",
            );
        }
        end = exp + exp_digits;
    }
    let text: String = chars[start..end].iter().collect();
    match text.parse::<f64>() {
        Ok(value) => Ok((Token::Number(value), end - start)),
        Err(_) => error(start + 1, format!("invalid number {text:?}")),
    }
}

/// One precedence level of the parser.
type Level = fn(&mut Parser) -> Result<Expr, ExprError>;

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> (usize, &Token) {
        match self.tokens.get(self.next) {
            Some((at, token)) => (*at, token),
            None => (0, &Token::End),
        }
    }

    fn bump(&mut self) -> (usize, Token) {
        let (at, token) = self.peek();
        let token = token.clone();
        self.next += 1;
        (at, token)
    }

    fn nest(&mut self, at: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return error(
                at,
                format!("the condition nests deeper than {MAX_DEPTH} levels; simplify it"),
            );
        }
        Ok(())
    }

    fn binary_chain(&mut self, ops: &[BinOp], operand: Level) -> Result<Expr, ExprError> {
        let mut lhs = operand(self)?;
        loop {
            let (at, token) = self.peek();
            let op = match token {
                Token::Op(op) if ops.contains(op) => *op,
                Token::Minus if ops.contains(&BinOp::Sub) => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = operand(self)?;
            lhs = Expr::Binary {
                at,
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let (at, _) = self.peek();
        self.nest(at)?;
        let expr = self.binary_chain(&[BinOp::Or], Self::and);
        self.depth -= 1;
        expr
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        self.binary_chain(&[BinOp::And], Self::not)
    }

    /// A prefix operator (`not`, unary `-`) that applies to its own level
    /// again (`not not x`), else the next level.
    fn prefix(
        &mut self,
        operator: Token,
        this: Level,
        next: Level,
        build: fn(usize, Box<Expr>) -> Expr,
    ) -> Result<Expr, ExprError> {
        let (at, token) = self.peek();
        if *token != operator {
            return next(self);
        }
        self.bump();
        self.nest(at)?;
        let operand = this(self);
        self.depth -= 1;
        Ok(build(at, Box::new(operand?)))
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        self.prefix(Token::Not, Self::not, Self::comparison, |at, operand| {
            Expr::Not { at, operand }
        })
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        const COMPARISONS: [BinOp; 6] = [
            BinOp::Lt,
            BinOp::Le,
            BinOp::Gt,
            BinOp::Ge,
            BinOp::Eq,
            BinOp::Ne,
        ];
        let lhs = self.additive()?;
        let (at, token) = self.peek();
        let op = match token {
            Token::Op(op) if COMPARISONS.contains(op) => *op,
            _ => return Ok(lhs),
        };
        self.bump();
        let rhs = self.additive()?;
        let (next_at, next) = self.peek();
        if matches!(next, Token::Op(op) if COMPARISONS.contains(op)) {
            return error(
                next_at,
                "comparisons cannot be chained; join them with `and`, e.g. `result > 0 and result < 1`",
            );
        }
        Ok(Expr::Binary {
            at,
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        })
    }

    fn additive(&mut self) -> Result<Expr, ExprError> {
        self.binary_chain(&[BinOp::Add, BinOp::Sub], Self::multiplicative)
    }

    fn multiplicative(&mut self) -> Result<Expr, ExprError> {
        self.binary_chain(&[BinOp::Mul, BinOp::Div], Self::unary)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        self.prefix(Token::Minus, Self::unary, Self::primary, |at, operand| {
            Expr::Neg { at, operand }
        })
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let (at, token) = self.bump();
        match token {
            Token::Number(value) => Ok(Expr::Number(value)),
            Token::LParen => {
                let inner = self.or()?;
                self.expect_close(at)?;
                Ok(inner)
            }
            Token::Ident(name) => match name.as_str() {
                "result" => Ok(Expr::Result),
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "isNaN" => {
                    let (open_at, open) = self.bump();
                    if open != Token::LParen {
                        return error(
                            open_at,
                            "isNaN needs an argument in parentheses: isNaN(result)",
                        );
                    }
                    let operand = self.or()?;
                    self.expect_close(open_at)?;
                    Ok(Expr::IsNaN {
                        at,
                        operand: Box::new(operand),
                    })
                }
                other => error(
                    at,
                    format!(
                        "unknown name `{other}`; the measured value is `result`, the only function is isNaN(...)"
                    ),
                ),
            },
            other => error(
                at,
                format!(
                    "expected a number, `result`, `(` or isNaN(...), found {}",
                    describe(&other)
                ),
            ),
        }
    }

    fn expect_close(&mut self, open_at: usize) -> Result<(), ExprError> {
        let (at, token) = self.bump();
        if token == Token::RParen {
            Ok(())
        } else {
            error(
                at,
                format!(
                    "expected `)` to close the `(` at position {open_at}, found {}",
                    describe(&token)
                ),
            )
        }
    }
}

/// Parses a condition (syntax only; [`check`] finds type errors).
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let len = src.chars().count();
    if len > MAX_LEN {
        return error(
            MAX_LEN + 1,
            format!("the condition is {len} characters long; at most {MAX_LEN} are allowed"),
        );
    }
    let mut parser = Parser {
        tokens: lex(src)?,
        next: 0,
        depth: 0,
    };
    if parser.peek().1 == &Token::End {
        return error(1, "the condition is empty; write e.g. `result < 0.05`");
    }
    let expr = parser.or()?;
    let (at, token) = parser.peek();
    if *token != Token::End {
        return error(
            at,
            format!(
                "unexpected {} after a complete expression; join conditions with `and`/`or`",
                describe(token)
            ),
        );
    }
    Ok(expr)
}

fn expect_type(expr: &Expr, want: Type, at: usize, what: &str) -> Result<(), ExprError> {
    let found = check(expr)?;
    if found == want {
        Ok(())
    } else {
        error(
            at,
            format!("{what} needs {}, found {}", want.name(), found.name()),
        )
    }
}

/// The type of an expression, or the first type error (e.g. `result + true`).
pub fn check(expr: &Expr) -> Result<Type, ExprError> {
    match expr {
        Expr::Number(_) | Expr::Result => Ok(Type::Number),
        Expr::Bool(_) => Ok(Type::Bool),
        Expr::Neg { at, operand } => {
            expect_type(operand, Type::Number, *at, "unary `-`").map(|()| Type::Number)
        }
        Expr::Not { at, operand } => {
            expect_type(operand, Type::Bool, *at, "`not`").map(|()| Type::Bool)
        }
        Expr::IsNaN { at, operand } => {
            expect_type(operand, Type::Number, *at, "isNaN(...)").map(|()| Type::Bool)
        }
        Expr::Binary { at, op, lhs, rhs } => {
            let what = format!("`{}`", op.symbol());
            match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                    expect_type(lhs, Type::Number, *at, &format!("{what} (left side)"))?;
                    expect_type(rhs, Type::Number, *at, &format!("{what} (right side)"))?;
                    Ok(Type::Number)
                }
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    expect_type(lhs, Type::Number, *at, &format!("{what} (left side)"))?;
                    expect_type(rhs, Type::Number, *at, &format!("{what} (right side)"))?;
                    Ok(Type::Bool)
                }
                BinOp::And | BinOp::Or => {
                    expect_type(lhs, Type::Bool, *at, &format!("{what} (left side)"))?;
                    expect_type(rhs, Type::Bool, *at, &format!("{what} (right side)"))?;
                    Ok(Type::Bool)
                }
                BinOp::Eq | BinOp::Ne => {
                    let left = check(lhs)?;
                    expect_type(
                        rhs,
                        left,
                        *at,
                        &format!("{what} with {} on the left", left.name()),
                    )?;
                    Ok(Type::Bool)
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Number(f64),
    Bool(bool),
}

impl Value {
    // `check` has proven the types, so the fallbacks are never taken.
    fn number(self) -> f64 {
        match self {
            Value::Number(n) => n,
            Value::Bool(_) => f64::NAN,
        }
    }
    fn bool(self) -> bool {
        match self {
            Value::Bool(b) => b,
            Value::Number(_) => false,
        }
    }
}

/// Evaluates a type-checked expression. IEEE arithmetic: division by zero
/// gives ±inf or NaN, and every comparison with NaN is false (except `!=`).
fn eval(expr: &Expr, result: f64) -> Value {
    match expr {
        Expr::Number(n) => Value::Number(*n),
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Result => Value::Number(result),
        Expr::Neg { operand, .. } => Value::Number(-eval(operand, result).number()),
        Expr::Not { operand, .. } => Value::Bool(!eval(operand, result).bool()),
        Expr::IsNaN { operand, .. } => Value::Bool(eval(operand, result).number().is_nan()),
        Expr::Binary { op, lhs, rhs, .. } => {
            let l = eval(lhs, result);
            match op {
                BinOp::And => return Value::Bool(l.bool() && eval(rhs, result).bool()),
                BinOp::Or => return Value::Bool(l.bool() || eval(rhs, result).bool()),
                _ => {}
            }
            let r = eval(rhs, result);
            let (a, b) = (l.number(), r.number());
            match op {
                BinOp::Add => Value::Number(a + b),
                BinOp::Sub => Value::Number(a - b),
                BinOp::Mul => Value::Number(a * b),
                BinOp::Div => Value::Number(a / b),
                BinOp::Lt => Value::Bool(a < b),
                BinOp::Le => Value::Bool(a <= b),
                BinOp::Gt => Value::Bool(a > b),
                BinOp::Ge => Value::Bool(a >= b),
                BinOp::Eq | BinOp::Ne => {
                    let equal = match (l, r) {
                        (Value::Bool(x), Value::Bool(y)) => x == y,
                        _ => a == b,
                    };
                    Value::Bool(equal == (*op == BinOp::Eq))
                }
                BinOp::And | BinOp::Or => Value::Bool(false),
            }
        }
    }
}

/// Parses and type-checks a condition that must be true or false.
pub fn compile(src: &str) -> Result<Expr, ExprError> {
    let expr = parse(src)?;
    if check(&expr)? != Type::Bool {
        return error(
            1,
            "the condition computes a number, not true/false; compare it, e.g. `result < 0.05`",
        );
    }
    Ok(expr)
}

/// Evaluates a condition with `result` bound to the measured value.
pub fn evaluate(src: &str, result: f64) -> Result<bool, ExprError> {
    let expr = compile(src)?;
    Ok(eval(&expr, result).bool())
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
