//! SQL `LIKE` matching, without allocating and without regular expressions.
//!
//! In a pattern, `%` matches any run of characters (including none), `_` exactly one
//! character, and the escape character (a backslash unless `ESCAPE` names another; none
//! after `ESCAPE ''`) makes the character after it literal. An escape character at the end
//! of the pattern stands for itself. `ILIKE` compares characters case-insensitively.

/// A pattern read one element at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    /// `%`.
    Many,
    /// `_`.
    One,
    /// A character to match as it is.
    Literal(char),
}

/// The element of `pattern` at byte `at`, and its length in bytes; `None` at the end.
fn element_at(pattern: &str, at: usize, escape: Option<char>) -> Option<(Element, usize)> {
    let mut chars = pattern.get(at..)?.chars();
    let c = chars.next()?;
    if Some(c) == escape {
        return Some(match chars.next() {
            Some(escaped) => (Element::Literal(escaped), c.len_utf8() + escaped.len_utf8()),
            None => (Element::Literal(c), c.len_utf8()),
        });
    }
    let element = match c {
        '%' => Element::Many,
        '_' => Element::One,
        c => Element::Literal(c),
    };
    Some((element, c.len_utf8()))
}

/// Whether two characters are equal, ignoring case when `fold_case`.
fn same_char(a: char, b: char, fold_case: bool) -> bool {
    a == b || (fold_case && a.to_lowercase().eq(b.to_lowercase()))
}

/// Whether `text` matches the LIKE `pattern`.
///
/// Greedy matching with one backtracking point (the last `%` seen), which is exact for
/// patterns of `%` and `_`: O(text × pattern) at worst, linear in the usual cases.
pub(super) fn like(text: &str, pattern: &str, escape: Option<char>, fold_case: bool) -> bool {
    let (mut t, mut p) = (0, 0);
    // After the last `%`: where the pattern resumes, and where in the text it was tried.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        let next_char = text.get(t..).and_then(|rest| rest.chars().next());
        match element_at(pattern, p, escape) {
            Some((Element::Many, len)) => {
                p += len;
                resume = Some((p, t));
                continue;
            }
            Some((Element::One, len)) => {
                if let Some(c) = next_char {
                    t += c.len_utf8();
                    p += len;
                    continue;
                }
            }
            Some((Element::Literal(want), len)) => {
                if let Some(c) = next_char.filter(|&c| same_char(c, want, fold_case)) {
                    t += c.len_utf8();
                    p += len;
                    continue;
                }
            }
            None if next_char.is_none() => return true,
            None => {}
        }
        // A mismatch: let the last `%` take one more character, and retry after it.
        let Some((after_many, tried)) = resume else {
            return false;
        };
        let Some(c) = text.get(tried..).and_then(|rest| rest.chars().next()) else {
            return false;
        };
        t = tried + c.len_utf8();
        p = after_many;
        resume = Some((after_many, t));
    }
}

/// A constant LIKE pattern, compiled once: the common shapes become plain string tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LikePattern {
    /// No wildcard: the text equals it.
    Exact(String),
    /// `abc%`.
    Prefix(String),
    /// `%abc`.
    Suffix(String),
    /// `abc%xyz`.
    PrefixSuffix(String, String),
    /// `%abc%`.
    Contains(String),
    /// Anything else, matched by [`like`].
    General {
        pattern: String,
        escape: Option<char>,
        fold_case: bool,
    },
}

impl LikePattern {
    /// Compiles `pattern`.
    pub(super) fn new(pattern: &str, escape: Option<char>, fold_case: bool) -> Self {
        let general = || Self::General {
            pattern: pattern.to_owned(),
            escape,
            fold_case,
        };
        if fold_case {
            return general();
        }
        // The literal runs between the `%`s; any `_` needs the general matcher.
        let mut runs = vec![String::new()];
        let mut at = 0;
        while let Some((element, len)) = element_at(pattern, at, escape) {
            at += len;
            match element {
                Element::One => return general(),
                Element::Many => runs.push(String::new()),
                Element::Literal(c) => {
                    if let Some(run) = runs.last_mut() {
                        run.push(c);
                    }
                }
            }
        }
        match runs.as_mut_slice() {
            [exact] => Self::Exact(std::mem::take(exact)),
            [first, middle @ .., last] if middle.iter().all(String::is_empty) => {
                match (first.is_empty(), last.is_empty()) {
                    (true, true) => Self::Prefix(String::new()),
                    (false, true) => Self::Prefix(std::mem::take(first)),
                    (true, false) => Self::Suffix(std::mem::take(last)),
                    (false, false) => {
                        Self::PrefixSuffix(std::mem::take(first), std::mem::take(last))
                    }
                }
            }
            [first, middle @ .., last] if first.is_empty() && last.is_empty() => {
                let mut words = middle.iter_mut().filter(|run| !run.is_empty());
                match (words.next(), words.next()) {
                    (Some(word), None) => Self::Contains(std::mem::take(word)),
                    _ => general(),
                }
            }
            _ => general(),
        }
    }

    /// Whether `text` matches.
    pub(super) fn matches(&self, text: &str) -> bool {
        match self {
            Self::Exact(exact) => text == exact,
            Self::Prefix(prefix) => text.starts_with(prefix.as_str()),
            Self::Suffix(suffix) => text.ends_with(suffix.as_str()),
            Self::PrefixSuffix(prefix, suffix) => {
                text.len() >= prefix.len() + suffix.len()
                    && text.starts_with(prefix.as_str())
                    && text.ends_with(suffix.as_str())
            }
            Self::Contains(word) => text.contains(word.as_str()),
            Self::General {
                pattern,
                escape,
                fold_case,
            } => like(text, pattern, *escape, *fold_case),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The obvious recursive definition, to check the matchers against.
    fn reference(text: &[char], pattern: &[Element], fold_case: bool) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((Element::Many, rest)) => {
                (0..=text.len()).any(|skip| reference(&text[skip..], rest, fold_case))
            }
            Some((Element::One, rest)) => {
                !text.is_empty() && reference(&text[1..], rest, fold_case)
            }
            Some((Element::Literal(want), rest)) => {
                text.first()
                    .is_some_and(|&c| same_char(c, *want, fold_case))
                    && reference(&text[1..], rest, fold_case)
            }
        }
    }

    fn elements(pattern: &str, escape: Option<char>) -> Vec<Element> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((element, len)) = element_at(pattern, at, escape) {
            out.push(element);
            at += len;
        }
        out
    }

    fn check(text: &str, pattern: &str, escape: Option<char>, fold_case: bool) {
        let chars: Vec<char> = text.chars().collect();
        let want = reference(&chars, &elements(pattern, escape), fold_case);
        assert_eq!(
            like(text, pattern, escape, fold_case),
            want,
            "{text:?} LIKE {pattern:?}"
        );
        assert_eq!(
            LikePattern::new(pattern, escape, fold_case).matches(text),
            want,
            "{text:?} LIKE {pattern:?} ({:?})",
            LikePattern::new(pattern, escape, fold_case)
        );
    }

    #[test]
    fn like_table() {
        let cases = [
            ("paid", "paid", true),
            ("paid", "pai", false),
            ("paid", "p%", true),
            ("paid", "%d", true),
            ("paid", "%ai%", true),
            ("paid", "p%d", true),
            ("pd", "p%id", false),
            ("paid", "_aid", true),
            ("paid", "____", true),
            ("paid", "_____", false),
            ("", "%", true),
            ("", "", true),
            ("", "_", false),
            ("a%b", r"a\%b", true),
            ("axb", r"a\%b", false),
            ("a_b", r"a\_b", true),
            ("axb", r"a\_b", false),
            ("a\\", "a\\", true),
            ("日本語", "_本_", true),
            ("日本語", "%語", true),
            ("mississippi", "%iss%ppi", true),
            ("mississippi", "%iss%ssi", false),
            ("aaa", "%a%a%a%", true),
            ("aa", "%a%a%a%", false),
        ];
        for (text, pattern, want) in cases {
            assert_eq!(
                like(text, pattern, Some('\\'), false),
                want,
                "{text} {pattern}"
            );
            check(text, pattern, Some('\\'), false);
        }
        assert!(like("PAID", "pa%", Some('\\'), true));
        assert!(!like("PAID", "pa%", Some('\\'), false));
        assert!(like("a!%", "a!!!%", Some('!'), false));
        assert!(like(r"a\b", r"a\b", None, false));
    }

    #[test]
    fn constant_patterns_take_the_short_paths() {
        let e = Some('\\');
        assert_eq!(
            LikePattern::new("ab", e, false),
            LikePattern::Exact("ab".into())
        );
        assert_eq!(
            LikePattern::new("ab%%", e, false),
            LikePattern::Prefix("ab".into())
        );
        assert_eq!(
            LikePattern::new("%ab", e, false),
            LikePattern::Suffix("ab".into())
        );
        assert_eq!(
            LikePattern::new(r"%a\%b%", e, false),
            LikePattern::Contains("a%b".into())
        );
        assert_eq!(
            LikePattern::new("a%b", e, false),
            LikePattern::PrefixSuffix("a".into(), "b".into())
        );
        assert!(matches!(
            LikePattern::new("%a%b%", e, false),
            LikePattern::General { .. }
        ));
        assert!(matches!(
            LikePattern::new("a_", e, false),
            LikePattern::General { .. }
        ));
    }

    proptest! {
        #[test]
        fn like_agrees_with_the_reference(
            text in "[abAB%_\\\\é]{0,8}",
            pattern in "[abAB%_\\\\é]{0,8}",
            fold_case in any::<bool>(),
            backslash in any::<bool>(),
        ) {
            let escape = if backslash { Some('\\') } else { None };
            check(&text, &pattern, escape, fold_case);
        }
    }
}
