//! The `key = "..."` template: parsing, checking against the fn's parameters, and mapping error
//! positions back into the string literal.
//!
//! Grammar (on the literal's *value*):
//!
//! ```text
//! template    := (text | "{{" | "}}" | placeholder)*
//! placeholder := "{" root ("." member)* "}"
//! root        := identifier            // a parameter bound by the fn's patterns, or `self`
//! member      := identifier | integer  // a named field or a tuple index
//! ```
//!
//! Every error carries a byte range in the value; [`source_range`] turns it into a range of the
//! literal's source text so that the error can point at the placeholder itself.

use std::ops::Range;

use syn::LitStr;

/// One piece of a parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal text, with `{{`/`}}` already turned into single braces.
    Text(String),
    /// A `{path}` placeholder.
    Field(Placeholder),
}

/// A `{root.member...}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    /// The parameter (or `self`) the path starts at.
    pub root: String,
    /// The field accesses after the root.
    pub members: Vec<Member>,
    /// Where the placeholder is in the literal's value, braces included.
    pub range: Range<usize>,
}

/// One field access in a placeholder path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    /// `.name`
    Named(String),
    /// `.0`
    Index(u32),
}

/// A mistake in the template: where it is (a byte range of the value) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    /// Byte range in the literal's value.
    pub range: Range<usize>,
    /// The message shown to the user; it names the fix.
    pub message: String,
}

impl TemplateError {
    fn new(range: Range<usize>, message: impl Into<String>) -> Self {
        TemplateError {
            range,
            message: message.into(),
        }
    }
}

/// Splits a template into text and placeholders, collecting every syntax error (an error does not
/// stop the scan, so one compile shows all of them).
pub(crate) fn parse(value: &str) -> (Vec<Segment>, Vec<TemplateError>) {
    let mut segments = Vec::new();
    let mut errors = Vec::new();
    let mut text = String::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < value.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                text.push('{');
                i += 2;
            }
            b'{' => {
                // The placeholder runs to the next `}`; a `{` before it means this one is unclosed.
                let close = value[i + 1..]
                    .find(['{', '}'])
                    .map(|off| i + 1 + off)
                    .filter(|&j| bytes[j] == b'}');
                let Some(close) = close else {
                    errors.push(TemplateError::new(
                        i..i + 1,
                        "unclosed `{` in the key template: close the placeholder with `}`, \
                         or write `{{` for a literal `{`",
                    ));
                    i += 1;
                    continue;
                };
                let range = i..close + 1;
                match parse_path(&value[i + 1..close]) {
                    Ok((root, members)) => {
                        if !text.is_empty() {
                            segments.push(Segment::Text(std::mem::take(&mut text)));
                        }
                        segments.push(Segment::Field(Placeholder {
                            root,
                            members,
                            range,
                        }));
                    }
                    Err(message) => errors.push(TemplateError::new(range, message)),
                }
                i = close + 1;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                text.push('}');
                i += 2;
            }
            b'}' => {
                errors.push(TemplateError::new(
                    i..i + 1,
                    "unmatched `}` in the key template: write `}}` for a literal `}`",
                ));
                i += 1;
            }
            _ => {
                let ch = value[i..].chars().next().unwrap_or_default();
                text.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    (segments, errors)
}

/// Parses the inside of `{...}` into a root and field path.
fn parse_path(inner: &str) -> Result<(String, Vec<Member>), String> {
    let shown = format!("{{{inner}}}");
    if inner.is_empty() {
        return Err("empty placeholder `{}`: name a parameter, e.g. `{id}`, \
                    or write `{{}}` for literal braces"
            .to_owned());
    }
    if inner.chars().any(char::is_whitespace) {
        let fixed: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
        return Err(format!(
            "placeholder `{shown}` contains spaces: write `{{{fixed}}}`"
        ));
    }
    if let Some((path, _spec)) = inner.split_once(':') {
        return Err(format!(
            "format specs are not supported in key placeholders: write `{{{path}}}` \
             (values are rendered with `Display`); to separate two values, put the `:` \
             outside the braces: `{{a}}:{{b}}`"
        ));
    }
    let mut parts = inner.split('.');
    let root = parts.next().unwrap_or_default();
    if root.is_empty() {
        return Err(format!(
            "placeholder `{shown}` must start with a parameter name, e.g. `{{order.id}}`"
        ));
    }
    if root.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "positional placeholders like `{shown}` are not supported: name a parameter, \
             e.g. `{{id}}`"
        ));
    }
    if !is_identifier(root) {
        return Err(format!(
            "`{root}` in `{shown}` is not a parameter name: a placeholder is a parameter \
             followed by fields, e.g. `{{order.id}}` or `{{pair.0}}`"
        ));
    }
    let mut members = Vec::new();
    for part in parts {
        if part.is_empty() {
            return Err(if inner.ends_with('.') {
                format!(
                    "placeholder `{shown}` ends with `.`: name a field after it, \
                     e.g. `{{order.id}}`, or remove the `.`"
                )
            } else {
                format!(
                    "placeholder `{shown}` has an empty field name between two `.`: \
                     write a path like `{{order.customer.id}}`"
                )
            });
        }
        if part.bytes().all(|b| b.is_ascii_digit()) {
            let index = part
                .parse::<u32>()
                .ok()
                .filter(|_| part == "0" || !part.starts_with('0'));
            match index {
                Some(index) => members.push(Member::Index(index)),
                None => {
                    return Err(format!(
                        "`{part}` in `{shown}` is not a tuple index: write it without \
                         leading zeros, e.g. `{{pair.0}}`"
                    ))
                }
            }
        } else if is_identifier(part) {
            if is_keyword(part) {
                return Err(format!(
                    "`{part}` in `{shown}` is a Rust keyword and cannot name a field in a key \
                     template: use `key_expr = ...` for this key"
                ));
            }
            members.push(Member::Named(part.to_owned()));
        } else {
            return Err(format!(
                "`{part}` in `{shown}` is not a field name: a placeholder is a parameter \
                 followed by fields, e.g. `{{order.id}}` or `{{pair.0}}`; for anything else \
                 use `key_expr = ...`"
            ));
        }
    }
    Ok((root.to_owned(), members))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    s != "_" && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Keywords that cannot be written as a field name (`self` is handled as a root).
pub(crate) fn is_keyword(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
        "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
        "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait",
        "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do",
        "final", "gen", "macro", "override", "priv", "try", "typeof", "unsized", "virtual",
        "yield",
    ];
    KEYWORDS.contains(&s)
}

/// The checks that need the whole template: it is not empty, and any two placeholders are
/// separated by text containing `:` (which the runtime escapes inside rendered values), so that
/// different argument values can never render the same key.
pub(crate) fn check_structure(value: &str, segments: &[Segment]) -> Vec<TemplateError> {
    let mut errors = Vec::new();
    if value.is_empty() {
        errors.push(TemplateError::new(
            0..0,
            "the key template is empty: write the lock's name, e.g. `key = \"report:{day}\"`",
        ));
        return errors;
    }
    let mut previous: Option<&Placeholder> = None;
    let mut separated = true;
    for segment in segments {
        match segment {
            Segment::Text(text) => separated |= text.contains(':'),
            Segment::Field(field) => {
                if let (Some(prev), false) = (previous, separated) {
                    let a = &value[prev.range.clone()];
                    let b = &value[field.range.clone()];
                    errors.push(TemplateError::new(
                        prev.range.start..field.range.end,
                        format!(
                            "placeholders `{a}` and `{b}` must be separated by `:` \
                             (e.g. `{a}:{b}`) so that different values can never render \
                             the same key"
                        ),
                    ));
                }
                previous = Some(field);
                separated = false;
            }
        }
    }
    errors
}

/// Maps a byte range of the literal's value to a byte range of its source text (quotes, `r#`,
/// and escapes included), as `Literal::subspan` expects. `None` when the source cannot be
/// mapped (then the caller points at the whole literal).
pub(crate) fn source_range(lit: &LitStr, range: Range<usize>) -> Option<Range<usize>> {
    let offsets = source_offsets(&lit.token().to_string(), &lit.value())?;
    Some(*offsets.get(range.start)?..*offsets.get(range.end)?)
}

/// For each byte offset of `value` (and one past its end), the byte offset in `source` where the
/// character starting there was written. `None` when `source` does not decode to `value`.
fn source_offsets(source: &str, value: &str) -> Option<Vec<usize>> {
    let mut offsets = Vec::with_capacity(value.len() + 1);
    let mut decoded = String::with_capacity(value.len());
    if let Some(rest) = source.strip_prefix('r') {
        let hashes = rest.bytes().take_while(|&b| b == b'#').count();
        let start = 1 + hashes + 1;
        let end = source.len().checked_sub(1 + hashes)?;
        let body = source.get(start..end)?;
        if body != value {
            return None;
        }
        offsets.extend((0..=value.len()).map(|i| start + i));
        return Some(offsets);
    }
    let body_end = source.rfind('"')?;
    let body = source.get(1..body_end)?;
    let mut chars = body.char_indices().peekable();
    let push = |decoded: &mut String, offsets: &mut Vec<usize>, ch: char, at: usize| {
        for _ in 0..ch.len_utf8() {
            offsets.push(1 + at);
        }
        decoded.push(ch);
    };
    while let Some((at, ch)) = chars.next() {
        if ch != '\\' {
            push(&mut decoded, &mut offsets, ch, at);
            continue;
        }
        let (_, esc) = chars.next()?;
        let out = match esc {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '\\' => '\\',
            '0' => '\0',
            '\'' => '\'',
            '"' => '"',
            'x' => {
                let hi = chars.next()?.1.to_digit(16)?;
                let lo = chars.next()?.1.to_digit(16)?;
                char::from_u32(hi * 16 + lo)?
            }
            'u' => {
                if chars.next()?.1 != '{' {
                    return None;
                }
                let mut code = 0u32;
                loop {
                    let (_, c) = chars.next()?;
                    match c {
                        '}' => break,
                        '_' => {}
                        c => code = code.checked_mul(16)?.checked_add(c.to_digit(16)?)?,
                    }
                }
                char::from_u32(code)?
            }
            '\n' | '\r' => {
                // Line continuation: the newline and the following whitespace are skipped.
                while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                continue;
            }
            _ => return None,
        };
        push(&mut decoded, &mut offsets, out, at);
    }
    offsets.push(1 + body.len());
    (decoded == value).then_some(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(root: &str, members: Vec<Member>, range: Range<usize>) -> Segment {
        Segment::Field(Placeholder {
            root: root.to_owned(),
            members,
            range,
        })
    }

    fn text(s: &str) -> Segment {
        Segment::Text(s.to_owned())
    }

    fn errors(value: &str) -> Vec<TemplateError> {
        let (segments, mut errors) = parse(value);
        errors.extend(check_structure(value, &segments));
        errors
    }

    #[test]
    fn plain_text_and_placeholders() {
        let (segments, errors) = parse("order:{order.id}:{user_id}");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            segments,
            vec![
                text("order:"),
                field("order", vec![Member::Named("id".into())], 6..16),
                text(":"),
                field("user_id", vec![], 17..26),
            ]
        );
    }

    #[test]
    fn self_fields_and_tuple_indexes() {
        let (segments, errors) = parse("{self.cfg.name}:{pair.0}");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            segments,
            vec![
                field(
                    "self",
                    vec![Member::Named("cfg".into()), Member::Named("name".into())],
                    0..15
                ),
                text(":"),
                field("pair", vec![Member::Index(0)], 16..24),
            ]
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        let (segments, errors) = parse("{{tag}}:{id}:}}{{");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            segments,
            vec![text("{tag}:"), field("id", vec![], 8..12), text(":}{")]
        );
    }

    #[test]
    fn constant_key_and_unicode() {
        let (segments, errors) = parse("nightly-report");
        assert!(errors.is_empty());
        assert_eq!(segments, vec![text("nightly-report")]);
        let (segments, errors) = parse("ключ:{x}");
        assert!(errors.is_empty());
        assert_eq!(segments, vec![text("ключ:"), field("x", vec![], 9..12)]);
    }

    #[test]
    fn unbalanced_braces() {
        let e = errors("a:{id");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].range, 2..3);
        assert!(e[0].message.contains("unclosed `{`"), "{}", e[0].message);
        assert!(e[0].message.contains("`{{`"));

        let e = errors("a}:{id}");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].range, 1..2);
        assert!(e[0].message.contains("write `}}`"), "{}", e[0].message);

        // `{` before the closing brace: the first one is unclosed, the rest still parses.
        let (segments, e) = parse("{a{b}");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].range, 0..1);
        assert_eq!(segments, vec![text("a"), field("b", vec![], 2..5)]);
    }

    #[test]
    fn empty_placeholder() {
        let e = errors("job:{}");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].range, 4..6);
        assert!(
            e[0].message.contains("empty placeholder"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn bad_paths() {
        for (template, needle) in [
            ("{a..b}", "empty field name"),
            ("{a.}", "ends with `.`"),
            ("{1}", "positional placeholders"),
            ("{.a}", "must start with a parameter name"),
            ("{a.b-c}", "is not a field name"),
            ("{a-b}", "is not a parameter name"),
            ("{ a }", "write `{a}`"),
            ("{a:?}", "format specs are not supported"),
            ("{a.01}", "leading zeros"),
            ("{a.type}", "keyword"),
        ] {
            let e = errors(template);
            assert_eq!(e.len(), 1, "{template}: {e:?}");
            assert_eq!(e[0].range, 0..template.len(), "{template}");
            assert!(
                e[0].message.contains(needle),
                "{template}: {}",
                e[0].message
            );
        }
    }

    #[test]
    fn all_errors_are_reported() {
        let e = errors("{}:{a..b}:}");
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn placeholders_need_a_colon_between_them() {
        let e = errors("{a}{b}");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].range, 0..6);
        assert_eq!(
            e[0].message,
            "placeholders `{a}` and `{b}` must be separated by `:` (e.g. `{a}:{b}`) so that \
             different values can never render the same key"
        );
        let e = errors("x:{a}-{b.c}:{d}");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].range, 2..11);
        assert!(e[0].message.contains("`{a}` and `{b.c}`"));
        // A colon anywhere in the text between them is enough.
        assert!(errors("{a}-:-{b}").is_empty());
        assert!(errors("{a}:{b}:{c}").is_empty());
        assert!(errors("pre{a}post").is_empty());
        // Escaped braces are text, not placeholders.
        assert!(errors("{a}{{}}").is_empty());
    }

    #[test]
    fn empty_template() {
        let e = errors("");
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("empty"));
    }

    #[test]
    fn source_ranges_of_plain_raw_and_escaped_literals() {
        let lit: LitStr = syn::parse_quote!("ab:{x}");
        assert_eq!(source_range(&lit, 3..6), Some(4..7));
        assert_eq!(source_range(&lit, 0..6), Some(1..7));

        let lit: LitStr = syn::parse_quote!(r#"ab:{x}"#);
        assert_eq!(source_range(&lit, 3..6), Some(6..9));

        // "\n" is two source bytes for one value byte; "é" is two bytes in both.
        let lit: LitStr = syn::parse_str(r#""\né\u{41}:{x}""#).unwrap();
        assert_eq!(lit.value(), "\néA:{x}");
        let value_range = 5..8;
        assert_eq!(&lit.value()[value_range.clone()], "{x}");
        let source = lit.token().to_string();
        let mapped = source_range(&lit, value_range).unwrap();
        assert_eq!(&source[mapped], "{x}");

        let lit: LitStr = syn::parse_str("\"a\\\n    {x}\"").unwrap();
        assert_eq!(lit.value(), "a{x}");
        let source = lit.token().to_string();
        let mapped = source_range(&lit, 1..4).unwrap();
        assert_eq!(&source[mapped], "{x}");

        let lit: LitStr = syn::parse_str(r#""\x41\"{y}""#).unwrap();
        let source = lit.token().to_string();
        let mapped = source_range(&lit, 2..5).unwrap();
        assert_eq!(&source[mapped], "{y}");
    }
}
