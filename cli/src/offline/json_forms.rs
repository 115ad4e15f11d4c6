//! What a body may have looked like before something re-encoded it: the JSON renderings of
//! common serializers (compact, pretty, sorted keys, `\/` and `\uXXXX` escapes, Python's
//! default separators) and the form encodings of common URL encoders. The diagnosis
//! ([`super::diagnose`]) verifies each against the signature; the one that matches names the
//! re-encoding.
//!
//! The JSON is re-laid from its own tokens: numbers and (unless a variant changes them)
//! strings keep their exact text, so only the change a variant names is made.

use std::fmt::Write as _;

/// One candidate original body.
#[derive(Debug, Clone)]
pub struct Variant {
    /// What the variant changes, e.g. "2-space pretty JSON, sorted keys".
    pub name: String,
    /// The bytes.
    pub body: Vec<u8>,
}

/// A JSON value with its tokens' text kept.
enum Node<'a> {
    /// A number, `true`, `false` or `null`, as written.
    Atom(&'a str),
    /// A string token, quotes included, as written.
    Str(&'a str),
    Array(Vec<Node<'a>>),
    Object(Vec<(&'a str, Node<'a>)>),
}

/// How strings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strings {
    /// As received.
    Raw,
    /// As `JSON.stringify` and `serde_json` write them: UTF-8, `/` unescaped.
    Canonical,
    /// `/` as `\/` (PHP's `json_encode`, some Java serializers).
    EscapeSlash,
    /// Non-ASCII as `\uXXXX` (Python's default `ensure_ascii`).
    Ascii,
    /// Both (PHP's `json_encode` default).
    EscapeSlashAscii,
}

impl Strings {
    fn describe(self) -> &'static str {
        match self {
            Strings::Raw | Strings::Canonical => "",
            Strings::EscapeSlash => ", `/` escaped as `\\/`",
            Strings::Ascii => ", non-ASCII as `\\uXXXX`",
            Strings::EscapeSlashAscii => ", `/` as `\\/` and non-ASCII as `\\uXXXX`",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    name: &'static str,
    indent: Option<&'static str>,
    item_sep: &'static str,
    key_sep: &'static str,
}

const COMPACT: Layout = Layout {
    name: "compact JSON",
    indent: None,
    item_sep: ",",
    key_sep: ":",
};
const PRETTY2: Layout = Layout {
    name: "2-space pretty JSON",
    indent: Some("  "),
    item_sep: ",",
    key_sep: ": ",
};
const PRETTY4: Layout = Layout {
    name: "4-space pretty JSON",
    indent: Some("    "),
    item_sep: ",",
    key_sep: ": ",
};
const PYTHON: Layout = Layout {
    name: "Python json.dumps default JSON (`, ` and `: ` separators)",
    indent: None,
    item_sep: ", ",
    key_sep: ": ",
};

/// The JSON renderings of `body` that differ from it; empty when `body` is not JSON.
pub fn json_variants(body: &[u8]) -> Vec<Variant> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Vec::new();
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    let mut parser = Parser { text, pos: 0 };
    let Some(root) = parser.value() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |name: String, rendered: String| {
        let bytes = rendered.into_bytes();
        if bytes != body && !out.iter().any(|v: &Variant| v.body == bytes) {
            out.push(Variant { name, body: bytes });
        }
    };
    let string_modes = [
        Strings::Canonical,
        Strings::EscapeSlash,
        Strings::Ascii,
        Strings::EscapeSlashAscii,
    ];
    for layout in [COMPACT, PRETTY2, PRETTY4] {
        for sort in [false, true] {
            for strings in string_modes {
                let mut rendered = String::new();
                render(&root, layout, sort, strings, 0, &mut rendered);
                let sorted = if sort { ", sorted keys" } else { "" };
                let name = format!("{}{sorted}{}", layout.name, strings.describe());
                if layout.indent.is_some() && strings == Strings::Canonical {
                    push(format!("{name}, trailing newline"), format!("{rendered}\n"));
                }
                push(name, rendered);
            }
        }
    }
    for sort in [false, true] {
        let mut rendered = String::new();
        render(&root, PYTHON, sort, Strings::Ascii, 0, &mut rendered);
        let sorted = if sort { ", sorted keys" } else { "" };
        push(format!("{}{sorted}", PYTHON.name), rendered);
    }
    // The layout as received, only the strings' escapes changed (a forwarder that keeps
    // the formatting but unescapes `\/`, e.g.).
    for (strings, name) in [
        (
            Strings::Canonical,
            "the same JSON with escapes such as `\\/` written out",
        ),
        (
            Strings::EscapeSlash,
            "the same JSON with `/` escaped as `\\/`",
        ),
        (Strings::Ascii, "the same JSON with non-ASCII as `\\uXXXX`"),
    ] {
        push(name.to_owned(), map_strings(text, strings));
    }
    out
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while let Some(b) = self.text.as_bytes().get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// A value. The text was validated by `serde_json` first (which also bounds the nesting
    /// depth), so this parser only has to find the tokens.
    fn value(&mut self) -> Option<Node<'a>> {
        self.skip_ws();
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut members = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek()? {
                        b'}' => {
                            self.pos += 1;
                            return Some(Node::Object(members));
                        }
                        b',' => self.pos += 1,
                        _ => {
                            let key = self.string()?;
                            self.skip_ws();
                            if self.peek()? != b':' {
                                return None;
                            }
                            self.pos += 1;
                            let value = self.value()?;
                            members.push((key, value));
                        }
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek()? {
                        b']' => {
                            self.pos += 1;
                            return Some(Node::Array(items));
                        }
                        b',' => self.pos += 1,
                        _ => items.push(self.value()?),
                    }
                }
            }
            b'"' => self.string().map(Node::Str),
            _ => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.pos += 1;
                }
                self.text.get(start..self.pos).map(Node::Atom)
            }
        }
    }

    /// A string token, quotes included.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let end = string_end(self.text.as_bytes(), start)?;
        self.pos = end;
        self.text.get(start..end)
    }
}

/// The end (exclusive) of the string token starting at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn render(
    node: &Node<'_>,
    layout: Layout,
    sort: bool,
    strings: Strings,
    depth: usize,
    out: &mut String,
) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(indent) = layout.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    };
    match node {
        Node::Atom(atom) => out.push_str(atom),
        Node::Str(raw) => out.push_str(&string_form(raw, strings)),
        Node::Array(items) if items.is_empty() => out.push_str("[]"),
        Node::Object(members) if members.is_empty() => out.push_str("{}"),
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(layout.item_sep);
                }
                newline(out, depth + 1);
                render(item, layout, sort, strings, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Node::Object(members) => {
            let mut members: Vec<&(&str, Node<'_>)> = members.iter().collect();
            if sort {
                members.sort_by_cached_key(|(key, _)| {
                    serde_json::from_str::<String>(key).unwrap_or_default()
                });
            }
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(layout.item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&string_form(key, strings));
                out.push_str(layout.key_sep);
                render(value, layout, sort, strings, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// A string token written the way `strings` says.
fn string_form(raw: &str, strings: Strings) -> String {
    if strings == Strings::Raw {
        return raw.to_owned();
    }
    let Ok(decoded) = serde_json::from_str::<String>(raw) else {
        return raw.to_owned();
    };
    let canonical = serde_json::to_string(&decoded).unwrap_or_else(|_| raw.to_owned());
    let escaped = if matches!(strings, Strings::EscapeSlash | Strings::EscapeSlashAscii) {
        canonical.replace('/', "\\/")
    } else {
        canonical
    };
    if matches!(strings, Strings::Ascii | Strings::EscapeSlashAscii) {
        let mut out = String::with_capacity(escaped.len());
        for c in escaped.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0_u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
        out
    } else {
        escaped
    }
}

/// `text` with every string token rewritten and everything else kept.
fn map_strings(text: &str, strings: Strings) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'"') {
            let Some(end) = string_end(bytes, i) else {
                break;
            };
            out.push_str(text.get(copied..i).unwrap_or_default());
            out.push_str(&string_form(text.get(i..end).unwrap_or_default(), strings));
            copied = end;
            i = end;
        } else {
            i += 1;
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// The other URL-encodings of a form body (`a=b&c=d`); empty when `body` is not one.
pub fn form_variants(body: &[u8]) -> Vec<Variant> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    let looks_like_form = !text.is_empty()
        && text.contains('=')
        && !text.starts_with(['{', '['])
        && text.bytes().all(|b| b.is_ascii_graphic());
    if !looks_like_form {
        return Vec::new();
    }
    let mut out: Vec<Variant> = Vec::new();
    let mut push = |name: &str, candidate: String| {
        let bytes = candidate.into_bytes();
        if bytes != body && !out.iter().any(|v| v.body == bytes) {
            out.push(Variant {
                name: name.to_owned(),
                body: bytes,
            });
        }
    };
    push("spaces as `%20` instead of `+`", text.replace('+', "%20"));
    push("spaces as `+` instead of `%20`", text.replace("%20", "+"));
    push(
        "upper-case percent escapes (`%2F`)",
        percent_case(text, true),
    );
    push(
        "lower-case percent escapes (`%2f`)",
        percent_case(text, false),
    );
    push(
        "re-encoded as an HTML form does (spaces as `+`, only `*-._` kept)",
        reencode(text, b"*-._", true),
    );
    push(
        "re-encoded as encodeURIComponent does (spaces as `%20`)",
        reencode(text, b"-_.!~*'()", false),
    );
    push(
        "re-encoded as Python's urlencode does (spaces as `+`, `_.-~` kept)",
        reencode(text, b"_.-~", true),
    );
    out
}

fn percent_case(text: &str, upper: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        if upper {
            out.push_str(&escape.to_ascii_uppercase());
        } else {
            out.push_str(&escape.to_ascii_lowercase());
        }
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

fn percent_decode(part: &str) -> Vec<u8> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(value);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn reencode(text: &str, keep: &[u8], space_plus: bool) -> String {
    let encode = |part: &str| {
        let mut out = String::new();
        for b in percent_decode(part) {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                out.push(char::from(b));
            } else if b == b' ' && space_plus {
                out.push('+');
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        out
    };
    text.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => format!("{}={}", encode(name), encode(value)),
            None => encode(pair),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(variants: &[Variant]) -> Vec<(&str, String)> {
        variants
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    String::from_utf8_lossy(&v.body).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn json_renderings_are_the_serializers_output() {
        let body = r#"{ "b": "a/b", "a": [1, 2.50, {}], "c": "é" }"#;
        let variants = json_variants(body.as_bytes());
        let found = names(&variants);
        let get = |name: &str| {
            found.iter().find(|(n, _)| *n == name).map_or_else(
                || panic!("no variant {name}: {found:#?}"),
                |(_, b)| b.clone(),
            )
        };
        assert_eq!(
            get("compact JSON"),
            r#"{"b":"a/b","a":[1,2.50,{}],"c":"é"}"#
        );
        assert_eq!(
            get("compact JSON, sorted keys"),
            r#"{"a":[1,2.50,{}],"b":"a/b","c":"é"}"#
        );
        assert_eq!(
            get("2-space pretty JSON"),
            "{\n  \"b\": \"a/b\",\n  \"a\": [\n    1,\n    2.50,\n    {}\n  ],\n  \"c\": \"é\"\n}"
        );
        assert_eq!(
            get("compact JSON, `/` as `\\/` and non-ASCII as `\\uXXXX`"),
            r#"{"b":"a\/b","a":[1,2.50,{}],"c":"\u00e9"}"#
        );
        assert_eq!(
            get("Python json.dumps default JSON (`, ` and `: ` separators)"),
            r#"{"b": "a/b", "a": [1, 2.50, {}], "c": "\u00e9"}"#
        );
        assert_eq!(
            get("the same JSON with `/` escaped as `\\/`"),
            r#"{ "b": "a\/b", "a": [1, 2.50, {}], "c": "é" }"#
        );
        assert!(json_variants(b"not json").is_empty());
    }

    #[test]
    fn form_encodings_differ_only_in_the_encoding() {
        let variants = form_variants(b"text=a+b%2fc&x=1");
        let found = names(&variants);
        assert!(found.contains(&(
            "spaces as `%20` instead of `+`",
            "text=a%20b%2fc&x=1".into()
        )));
        assert!(found.contains(&(
            "upper-case percent escapes (`%2F`)",
            "text=a+b%2Fc&x=1".into()
        )));
        assert!(found.contains(&(
            "re-encoded as encodeURIComponent does (spaces as `%20`)",
            "text=a%20b%2Fc&x=1".into()
        )));
        assert!(form_variants(br#"{"a":1}"#).is_empty());
    }
}
