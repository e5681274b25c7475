//! A migration file as a tree of values that remember where they were written (byte spans),
//! built from TOML or JSON, so that every later error can point at its key or value.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A value and the bytes of the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// TOML only; no operation field takes one.
    Datetime(String),
    /// JSON only.
    Null,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// One `key = value` of a table, in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Range<usize>,
    pub value: Node,
}

/// The deepest nesting of arrays and tables a migration file may have. A real one needs
/// five or six levels; the cap keeps a hostile or broken file (`[` × 20,000) from
/// exhausting the stack of every recursive walk over the tree, and TOML's own parser
/// stops at a similar depth.
pub(crate) const MAX_DEPTH: usize = 64;

/// A syntax error: where, and what was expected there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub span: Range<usize>,
    pub message: String,
}

impl Node {
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Table(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|entry| entry.key == key)
    }

    /// What this value is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Null => "null",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    /// The span of the value reached by following `path` (keys, or array indexes as
    /// numbers); `None` when the path leads nowhere.
    pub fn find(&self, path: &[&str]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let next = match &self.value {
            Value::Table(entries) => &entries.iter().find(|entry| entry.key == *first)?.value,
            Value::Array(items) => items.get(first.parse::<usize>().ok()?)?,
            _ => return None,
        };
        next.find(rest)
    }

    /// Like [`Node::find`], but the span of the key itself when the last step is a key.
    pub fn find_key_span(&self, path: &[&str]) -> Option<Range<usize>> {
        let (last, parents) = path.split_last()?;
        let parent = self.find(parents)?;
        match &parent.value {
            Value::Table(entries) => entries
                .iter()
                .find(|entry| entry.key == *last)
                .map(|entry| entry.key_span.clone()),
            _ => parent.find(&[last]).map(|node| node.span.clone()),
        }
    }
}

/// Parses a TOML document; every syntax error the parser can recover from is returned.
pub(crate) fn from_toml(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let (document, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|error| {
                let span = error.span().unwrap_or(0..0);
                let message = error.message().trim().to_string();
                SyntaxError {
                    message: name_the_key(text, &span, message),
                    span,
                }
            })
            .collect());
    }
    let span = document.span();
    Ok(Node {
        span,
        value: toml_table(document.get_ref()),
    })
}

/// TOML's parser says only "duplicate key"; its span is the key, which the message names
/// (as the JSON reader's does).
fn name_the_key(text: &str, span: &Range<usize>, message: String) -> String {
    if message != "duplicate key" {
        return message;
    }
    match text.get(span.clone()).map(str::trim) {
        Some(key) if !key.is_empty() => format!("duplicate key `{}`", key.trim_matches('"')),
        _ => message,
    }
}

fn toml_table(table: &DeTable<'_>) -> Value {
    let mut entries: Vec<Entry> = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_span: key.span(),
            value: toml_node(value.get_ref(), value.span()),
        })
        .collect();
    // The parser keeps keys sorted; file order reads better in messages.
    entries.sort_by_key(|entry| entry.key_span.start);
    Value::Table(entries)
}

fn toml_node(value: &DeValue<'_>, span: Range<usize>) -> Node {
    let value = match value {
        DeValue::String(text) => Value::String(text.to_string()),
        // No key of a migration takes a number, so an integer beyond i64 only needs to be
        // reported as the wrong type: its approximate value is enough for the message.
        DeValue::Integer(integer) => i64::from_str_radix(integer.as_str(), integer.radix())
            .map_or_else(
                |_| Value::Float(integer.as_str().parse().unwrap_or(f64::INFINITY)),
                Value::Integer,
            ),
        DeValue::Float(float) => Value::Float(float.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(flag) => Value::Bool(*flag),
        DeValue::Datetime(datetime) => Value::Datetime(datetime.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| toml_node(item.get_ref(), item.span()))
                .collect(),
        ),
        DeValue::Table(table) => toml_table(table),
    };
    Node { span, value }
}

/// Parses a JSON document. Syntax is checked by serde_json (whose messages are good);
/// this walk then records where each value is.
pub(crate) fn from_json(text: &str) -> Result<Node, Vec<SyntaxError>> {
    if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let offset = json_offset(text, error.line(), error.column());
        let message = error.to_string();
        // serde_json appends " at line L column C"; the position is ours to print.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head)
            .to_string();
        return Err(vec![SyntaxError {
            span: offset..offset,
            message,
        }]);
    }
    let mut reader = JsonReader {
        text,
        at: 0,
        depth: 0,
    };
    reader.skip_space();
    let node = reader.value()?;
    Ok(node)
}

/// serde_json's 1-based line and column (in bytes) → byte offset.
fn json_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let mut offset = (line_start + column.saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// A walk over JSON that serde_json has already accepted, so it only records spans; it
/// still fails cleanly rather than panicking if the two ever disagree.
struct JsonReader<'t> {
    text: &'t str,
    at: usize,
    /// Arrays and objects open around the current position.
    depth: usize,
}

impl JsonReader<'_> {
    fn bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn fail<T>(&self, message: &str) -> Result<T, Vec<SyntaxError>> {
        Err(vec![SyntaxError {
            span: self.at..self.at,
            message: message.to_string(),
        }])
    }

    fn expect(&mut self, byte: u8) -> Result<(), Vec<SyntaxError>> {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(&format!("expected `{}`", char::from(byte)))
        }
    }

    fn value(&mut self) -> Result<Node, Vec<SyntaxError>> {
        self.skip_space();
        let start = self.at;
        if matches!(self.peek(), Some(b'{' | b'[')) {
            if self.depth >= MAX_DEPTH {
                return self.fail(&format!(
                    "arrays and tables nested more than {MAX_DEPTH} deep; a migration needs a \
                     handful of levels"
                ));
            }
            self.depth += 1;
        }
        let value = match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            _ => self.scalar(),
        };
        if matches!(value, Ok(Value::Array(_) | Value::Table(_))) {
            self.depth -= 1;
        }
        Ok(Node {
            span: start..self.at,
            value: value?,
        })
    }

    fn scalar(&mut self) -> Result<Value, Vec<SyntaxError>> {
        let value = match self.peek() {
            Some(b'"') => Value::String(self.string()?.0),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return self.fail("expected a JSON value"),
        };
        Ok(value)
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, Vec<SyntaxError>> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            self.fail(&format!("expected `{word}`"))
        }
    }

    fn number(&mut self) -> Result<Value, Vec<SyntaxError>> {
        let start = self.at;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        let literal = &self.text[start..self.at];
        if let Ok(integer) = literal.parse::<i64>() {
            Ok(Value::Integer(integer))
        } else if let Ok(float) = literal.parse::<f64>() {
            Ok(Value::Float(float))
        } else {
            self.fail("expected a number")
        }
    }

    /// A string literal: its decoded text and the span of the literal with its quotes.
    fn string(&mut self) -> Result<(String, Range<usize>), Vec<SyntaxError>> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.peek() {
                Some(b'\\') => self.at += 2,
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(_) => self.at += 1,
                None => return self.fail("unterminated string"),
            }
        }
        let literal = self.text.get(start..self.at).unwrap_or_default();
        match serde_json::from_str::<String>(literal) {
            Ok(text) => Ok((text, start..self.at)),
            Err(error) => self.fail(&error.to_string()),
        }
    }

    fn array(&mut self) -> Result<Value, Vec<SyntaxError>> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return self.fail("expected `,` or `]`"),
            }
        }
    }

    fn object(&mut self) -> Result<Value, Vec<SyntaxError>> {
        self.expect(b'{')?;
        let mut entries: Vec<Entry> = Vec::new();
        let mut duplicates = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Table(entries));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return self.fail("expected a key in double quotes");
            }
            let (key, key_span) = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            if entries.iter().any(|entry| entry.key == key) {
                // serde_json accepts duplicate keys (the last wins); a migration must not.
                duplicates.push(SyntaxError {
                    span: key_span.clone(),
                    message: format!("duplicate key `{key}`"),
                });
            }
            entries.push(Entry {
                key,
                key_span,
                value,
            });
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
        if duplicates.is_empty() {
            Ok(Value::Table(entries))
        } else {
            Err(duplicates)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_values_keep_their_spans() {
        let text = "description = \"x\"\n\n[[operations]]\nop = \"drop_table\"\ntable = \"t\"\n";
        let root = from_toml(text).expect("valid");
        let table = root.find(&["operations", "0", "table"]).expect("found");
        assert_eq!(&text[table.span.clone()], "\"t\"");
        let key = root
            .find_key_span(&["operations", "0", "op"])
            .expect("found");
        assert_eq!(&text[key], "op");
    }

    #[test]
    fn json_values_keep_their_spans() {
        let text = r#"{"operations": [{"op": "drop_table", "table": "t\u00e9"}]}"#;
        let root = from_json(text).expect("valid");
        let table = root.find(&["operations", "0", "table"]).expect("found");
        assert_eq!(&text[table.span.clone()], r#""t\u00e9""#);
        assert_eq!(table.value, Value::String("té".to_string()));
        let key = root
            .find_key_span(&["operations", "0", "table"])
            .expect("found");
        assert_eq!(&text[key], "\"table\"");
    }

    #[test]
    fn json_duplicate_keys_are_refused() {
        let errors = from_json(r#"{"a": 1, "a": 2}"#).expect_err("duplicate");
        assert_eq!(errors[0].message, "duplicate key `a`");
        assert_eq!(errors[0].span, 9..12);
    }

    #[test]
    fn deep_nesting_is_refused_where_it_passes_the_cap() {
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        let errors = from_json(&deep).expect_err("too deep");
        assert_eq!(errors[0].span.start, MAX_DEPTH);
        assert!(
            errors[0].message.contains("nested more than 64 deep"),
            "{errors:?}"
        );
        let fits = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(from_json(&fits).is_ok());
        let deep = format!("a = {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
        assert!(from_toml(&deep).is_err());
    }

    #[test]
    fn duplicate_keys_are_named() {
        let errors =
            from_toml("[[operations]]\nop = \"drop_table\"\ntable = \"t\"\ntable = \"u\"\n")
                .expect_err("duplicate");
        assert_eq!(errors[0].message, "duplicate key `table`");
    }

    #[test]
    fn json_syntax_errors_have_an_offset() {
        let text = "{\n  \"operations\": [\n    {\"op\": }\n  ]\n}\n";
        let errors = from_json(text).expect_err("malformed");
        assert_eq!(
            crate::position::line_column(text, errors[0].span.start).0,
            3
        );
        assert!(errors[0].message.contains("expected value"), "{errors:?}");
    }
}
