use super::*;
use proptest::prelude::*;

fn eval_ok(src: &str, result: f64) -> bool {
    match evaluate(src, result) {
        Ok(b) => b,
        Err(e) => panic!("{src:?} failed: {e}"),
    }
}

fn eval_err(src: &str) -> ExprError {
    match evaluate(src, 1.0) {
        Ok(b) => panic!("{src:?} evaluated to {b}, expected an error"),
        Err(e) => e,
    }
}

#[test]
fn comparisons() {
    let table = [
        ("result < 0.05", 0.01, true),
        ("result < 0.05", 0.05, false),
        ("result <= 0.05", 0.05, true),
        ("result > 0.05", 0.06, true),
        ("result >= 0.05", 0.05, true),
        ("result == 12", 12.0, true),
        ("result != 12", 12.0, false),
        ("result != 12", 13.0, true),
        ("true == true", 0.0, true),
        ("true != false", 0.0, true),
        ("1e3 == 1000", 0.0, true),
        ("2.5E-1 == 0.25", 0.0, true),
        (".5 == 0.5", 0.0, true),
    ];
    for (src, result, want) in table {
        assert_eq!(eval_ok(src, result), want, "{src} with result {result}");
    }
}

#[test]
fn arithmetic_and_precedence() {
    let table = [
        ("1 + 2 * 3 == 7", true),
        ("(1 + 2) * 3 == 9", true),
        ("10 - 4 - 3 == 3", true),
        ("8 / 4 / 2 == 1", true),
        ("-2 * -3 == 6", true),
        ("--2 == 2", true),
        ("2 - -2 == 4", true),
        ("result * 2 > result + 1", true), // result = 3
        ("1 < 2 and 2 < 3 or false", true),
        ("false or true and false", false), // and binds tighter
        ("not false and false", false),     // not binds tighter than and
        ("not 1 > 2", true),                // comparison binds tighter than not
        ("!(1 > 2) && true || false", true),
        ("true and not not true", true),
    ];
    for (src, want) in table {
        assert_eq!(eval_ok(src, 3.0), want, "{src}");
    }
}

#[test]
fn nan_and_infinity() {
    assert!(eval_ok("isNaN(result)", f64::NAN));
    assert!(!eval_ok("isNaN(result)", 1.0));
    assert!(!eval_ok("result < 1", f64::NAN));
    assert!(!eval_ok("result >= 1", f64::NAN));
    assert!(eval_ok("result != result", f64::NAN));
    assert!(eval_ok("1 / 0 > 1e308", 0.0));
    assert!(eval_ok("-1 / 0 < 0", 0.0));
    assert!(eval_ok("isNaN(0 / 0)", 0.0));
    assert!(eval_ok("isNaN(result / result)", 0.0));
    assert!(eval_ok("1e999 > 1", 0.0), "huge literals become inf");
}

#[test]
fn errors_name_the_position_and_fix() {
    let table = [
        (
            "result + true > 1",
            8,
            "`+` (right side) needs a number, found a boolean",
        ),
        ("not 3", 1, "`not` needs a boolean, found a number"),
        ("result > true", 8, "needs a number"),
        ("true == 1", 6, "needs a boolean, found a number"),
        ("result", 1, "computes a number"),
        ("result + 1", 1, "computes a number"),
        ("", 1, "empty"),
        ("   ", 1, "empty"),
        ("result >", 9, "found the end of the condition"),
        (
            "(result > 1",
            12,
            "expected `)` to close the `(` at position 1",
        ),
        ("result > 1)", 11, "unexpected `)`"),
        ("result = 1", 8, "compare with `==`"),
        ("result & 1", 8, "use `and`"),
        ("result | 1", 8, "use `or`"),
        ("foo > 1", 1, "unknown name `foo`"),
        ("isNaN result", 7, "isNaN needs an argument"),
        ("0 < result < 1", 12, "cannot be chained"),
        ("result > 1 result", 12, "unexpected `result`"),
        ("result > 1e", 11, "exponent needs digits"),
        ("result > 1.2.3", 13, "unexpected number 0.3"),
        ("result ≥ 1", 8, "unexpected character '≥'"),
        ("1 > .", 5, "needs digits"),
    ];
    for (src, position, fragment) in table {
        let e = eval_err(src);
        assert!(
            e.message.contains(fragment),
            "{src:?}: message {:?} lacks {fragment:?}",
            e.message
        );
        assert_eq!(e.position, position, "{src:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("at position {position}: "))
        );
    }
}

#[test]
fn limits() {
    let long = format!("result > {}", "1".repeat(MAX_LEN));
    assert!(eval_err(&long).message.contains("at most 512"));
    let deep = format!("{}result > 1{}", "(".repeat(65), ")".repeat(65));
    assert!(eval_err(&deep).message.contains("nests deeper than 64"));
    let ok = format!("{}result > 1{}", "(".repeat(60), ")".repeat(60));
    assert!(eval_ok(&ok, 2.0));
    assert!(
        eval_err(&format!("{}1 > 0", "not ".repeat(70)))
            .message
            .contains("nests")
    );
    assert!(
        eval_err(&format!("{}1 > 0", "-".repeat(100)))
            .message
            .contains("nests")
    );
    // Long left-deep chains stay within the length bound.
    let chain = format!("{} > 0", vec!["1"; 200].join("+"));
    assert!(eval_ok(&chain, 0.0));
}

// ---- property tests ----

/// A well-typed expression tree and its reference semantics.
#[derive(Debug, Clone)]
enum Num {
    Lit(f64),
    Result,
    Neg(Box<Num>),
    Arith(BinOp, Box<Num>, Box<Num>),
}

#[derive(Debug, Clone)]
enum Cond {
    Lit(bool),
    Cmp(BinOp, Num, Num),
    IsNaN(Num),
    Not(Box<Cond>),
    Logic(BinOp, Box<Cond>, Box<Cond>),
    BoolEq(bool, Box<Cond>, Box<Cond>),
}

fn num_strategy() -> impl Strategy<Value = Num> {
    let leaf = prop_oneof![
        (0u32..4000).prop_map(|n| Num::Lit(f64::from(n) / 4.0)),
        Just(Num::Result),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|n| Num::Neg(Box::new(n))),
            (
                prop_oneof![
                    Just(BinOp::Add),
                    Just(BinOp::Sub),
                    Just(BinOp::Mul),
                    Just(BinOp::Div)
                ],
                inner.clone(),
                inner
            )
                .prop_map(|(op, a, b)| Num::Arith(op, Box::new(a), Box::new(b))),
        ]
    })
}

fn cond_strategy() -> impl Strategy<Value = Cond> {
    let cmp = prop_oneof![
        Just(BinOp::Lt),
        Just(BinOp::Le),
        Just(BinOp::Gt),
        Just(BinOp::Ge),
        Just(BinOp::Eq),
        Just(BinOp::Ne)
    ];
    let leaf = prop_oneof![
        any::<bool>().prop_map(Cond::Lit),
        (cmp, num_strategy(), num_strategy()).prop_map(|(op, a, b)| Cond::Cmp(op, a, b)),
        num_strategy().prop_map(Cond::IsNaN),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
            (
                prop_oneof![Just(BinOp::And), Just(BinOp::Or)],
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| Cond::Logic(op, Box::new(a), Box::new(b))),
            (any::<bool>(), inner.clone(), inner).prop_map(|(eq, a, b)| Cond::BoolEq(
                eq,
                Box::new(a),
                Box::new(b)
            )),
        ]
    })
}

fn num_value(n: &Num, result: f64) -> f64 {
    match n {
        Num::Lit(v) => *v,
        Num::Result => result,
        Num::Neg(a) => -num_value(a, result),
        Num::Arith(op, a, b) => {
            let (a, b) = (num_value(a, result), num_value(b, result));
            match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                _ => a / b,
            }
        }
    }
}

fn cond_value(c: &Cond, result: f64) -> bool {
    match c {
        Cond::Lit(b) => *b,
        Cond::Cmp(op, a, b) => {
            let (a, b) = (num_value(a, result), num_value(b, result));
            match op {
                BinOp::Lt => a < b,
                BinOp::Le => a <= b,
                BinOp::Gt => a > b,
                BinOp::Ge => a >= b,
                BinOp::Eq => a == b,
                _ => a != b,
            }
        }
        Cond::IsNaN(a) => num_value(a, result).is_nan(),
        Cond::Not(a) => !cond_value(a, result),
        Cond::Logic(BinOp::And, a, b) => cond_value(a, result) && cond_value(b, result),
        Cond::Logic(_, a, b) => cond_value(a, result) || cond_value(b, result),
        Cond::BoolEq(eq, a, b) => (cond_value(a, result) == cond_value(b, result)) == *eq,
    }
}

/// Renders fully parenthesised, alternating the operator spellings.
fn num_text(n: &Num) -> String {
    match n {
        Num::Lit(v) => format!("{v}"),
        Num::Result => "result".into(),
        Num::Neg(a) => format!("-({})", num_text(a)),
        Num::Arith(op, a, b) => format!("({} {} {})", num_text(a), op.symbol(), num_text(b)),
    }
}

fn cond_text(c: &Cond, symbolic: bool) -> String {
    match c {
        Cond::Lit(b) => b.to_string(),
        Cond::Cmp(op, a, b) => format!("({} {} {})", num_text(a), op.symbol(), num_text(b)),
        Cond::IsNaN(a) => format!("isNaN({})", num_text(a)),
        Cond::Not(a) => {
            let not = if symbolic { "!" } else { "not " };
            format!("{not}({})", cond_text(a, !symbolic))
        }
        Cond::Logic(op, a, b) => {
            let word = match (op, symbolic) {
                (BinOp::And, true) => "&&",
                (BinOp::And, false) => "and",
                (_, true) => "||",
                (_, false) => "or",
            };
            format!(
                "({} {word} {})",
                cond_text(a, !symbolic),
                cond_text(b, symbolic)
            )
        }
        // `not` binds looser than `==`, so its operands need parentheses.
        Cond::BoolEq(eq, a, b) => format!(
            "(({}) {} ({}))",
            cond_text(a, symbolic),
            if *eq { "==" } else { "!=" },
            cond_text(b, !symbolic)
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,600}", result in any::<f64>()) {
        let _ = evaluate(&src, result);
    }

    #[test]
    fn condition_like_text_never_panics(
        src in "[ ()!&|=<>+*/.0-9eE-]{0,80}(result|isNaN|not|and|or|true|false|[(]{0,80}|[0-9]{0,400}|é|∞){0,6}[ ()0-9<>=]{0,80}",
        result in any::<f64>(),
    ) {
        if let Err(e) = evaluate(&src, result) {
            prop_assert!(e.position >= 1 && e.position <= src.chars().count() + 1, "{e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 0usize..300, kind in 0u8..3) {
        let (open, close) = match kind {
            0 => ("(", ")"),
            1 => ("not (", ")"),
            _ => ("-(", ")"),
        };
        let src = format!("{}1{} > 0", open.repeat(depth), close.repeat(depth));
        let _ = evaluate(&src, 1.0);
    }

    #[test]
    fn well_typed_expressions_agree_with_the_reference(
        cond in cond_strategy(),
        symbolic in any::<bool>(),
        result in prop_oneof![any::<f64>(), (-100i32..100).prop_map(f64::from), Just(f64::NAN)],
    ) {
        let src = cond_text(&cond, symbolic);
        prop_assume!(src.chars().count() <= MAX_LEN);
        match evaluate(&src, result) {
            Ok(got) => prop_assert_eq!(got, cond_value(&cond, result), "{}", src),
            Err(e) => prop_assert!(false, "{} failed: {}", src, e),
        }
    }
}
