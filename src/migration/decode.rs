//! From the spanned tree to typed [`Operation`]s: serde over [`Node`] with errors that keep
//! the position of the offending key or value, the `op` dispatch with "did you mean", and
//! every unknown key of an operation reported at once.

use std::fmt;
use std::ops::Range;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    Visitor,
};

use super::node::{Entry, Node, Value};
use super::operation::{
    AddCheck, AddColumn, AddEnumValue, AddForeignKey, AddUnique, ChangeType, CreateEnum,
    CreateIndex, CreateTable, DropColumn, DropConstraint, DropEnum, DropIndex, DropNotNull,
    DropTable, Operation, RawSql, RenameColumn, RenameConstraint, RenameEnumValue, RenameTable,
    SetDefault, SetNotNull, SplitTable,
};
use super::operation::{AddPrimaryKey, SetComment, SetReplicaIdentity};
use crate::suggest::{hint, one_of};

/// A decoding problem and the bytes it is about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodeError {
    pub span: Option<Range<usize>>,
    pub message: String,
    /// Set when the error is a required key that is absent.
    pub missing_key: Option<&'static str>,
}

impl DecodeError {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        DecodeError {
            span: Some(span),
            message: message.into(),
            missing_key: None,
        }
    }

    /// Keeps the innermost position: the first one attached wins.
    fn or_at(mut self, span: &Range<usize>) -> Self {
        if self.span.is_none() {
            self.span = Some(span.clone());
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DecodeError {
            span: None,
            message: message.to_string(),
            missing_key: None,
        }
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!(
            "expected {}, found {}",
            expected_text(expected),
            unexpected_text(&unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!(
            "invalid value {}: expected {}",
            unexpected_text(&unexpected),
            expected_text(expected)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(format_args!(
            "unknown value \"{variant}\"{}",
            hint(variant, expected, &one_of(expected))
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(unknown_key_message(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        DecodeError {
            missing_key: Some(field),
            ..de::Error::custom(format_args!("missing required key `{field}`"))
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        de::Error::custom(format_args!("key `{field}` is given twice"))
    }
}

fn unknown_key_message(key: &str, expected: &[&str]) -> String {
    format!(
        "unknown key `{key}`{}",
        hint(key, expected, &one_of(expected))
    )
}

/// serde's names for what it wanted, in the words of a TOML/JSON file.
fn expected_text(expected: &dyn de::Expected) -> String {
    let text = expected.to_string();
    if text == "a sequence" {
        "an array".to_string()
    } else if text.starts_with("struct ") {
        "a table".to_string()
    } else if text.starts_with("enum ") {
        "a string".to_string()
    } else {
        text
    }
}

fn unexpected_text(unexpected: &Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Str(text) => format!("the string \"{text}\""),
        Unexpected::Signed(number) => format!("the integer {number}"),
        Unexpected::Unsigned(number) => format!("the integer {number}"),
        Unexpected::Float(number) => format!("the float {number}"),
        Unexpected::Bool(flag) => format!("the boolean {flag}"),
        Unexpected::Map => "a table".to_string(),
        Unexpected::Seq => "an array".to_string(),
        Unexpected::Unit => "null".to_string(),
        other => other.to_string(),
    }
}

/// Decodes any serde type from a node; errors carry the span of the innermost node.
pub(crate) fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, DecodeError> {
    T::deserialize(NodeDeserializer(node)).map_err(|error| {
        // An error no inner node claimed (a missing key) belongs to the table's opening.
        let start = node.span.start;
        error.or_at(&(start..start))
    })
}

/// The keys a derived struct accepts, learned by asking it to deserialize from a
/// deserializer that only records them.
pub(crate) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Recorder;
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl fmt::Display for Fields {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("fields recorded")
        }
    }
    impl std::error::Error for Fields {}
    impl de::Error for Fields {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Recorder {
        type Error = Fields;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    match T::deserialize(Recorder) {
        Err(Fields(fields)) => fields,
        Ok(_) => &[],
    }
}

struct NodeDeserializer<'n>(&'n Node);

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let node = self.0;
        let result = match &node.value {
            Value::String(text) => visitor.visit_str(text),
            Value::Integer(number) => visitor.visit_i64(*number),
            Value::Float(number) => visitor.visit_f64(*number),
            Value::Bool(flag) => visitor.visit_bool(*flag),
            Value::Datetime(text) => Err(de::Error::custom(format_args!(
                "found the date-time {text}; no key of a migration takes one (quote it to make a string)"
            ))),
            Value::Null => visitor.visit_unit(),
            Value::Array(items) => visitor.visit_seq(Items {
                items: items.iter(),
            }),
            Value::Table(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                pending: None,
            }),
        };
        result.map_err(|error| error.or_at(&node.span))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// Only tables make structs: serde would otherwise also accept an array, by position.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        match self.0.value {
            Value::Table(_) => self.deserialize_any(visitor),
            _ => Err(DecodeError::at(
                self.0.span.clone(),
                format!("expected a table, found {}", self.0.kind()),
            )),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let node = self.0;
        match &node.value {
            Value::String(text) => visitor
                .visit_enum(text.as_str().into_deserializer())
                .map_err(|error: DecodeError| error.or_at(&node.span)),
            _ => Err(DecodeError::at(
                node.span.clone(),
                format!("expected a string, found {}", node.kind()),
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct newtype_struct seq tuple tuple_struct map
        identifier ignored_any
    }
}

struct Items<'n> {
    items: std::slice::Iter<'n, Node>,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = DecodeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DecodeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDeserializer(node))
                .map(Some)
                .map_err(|error| error.or_at(&node.span)),
            None => Ok(None),
        }
    }
}

struct Entries<'n> {
    entries: std::slice::Iter<'n, Entry>,
    pending: Option<&'n Node>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = DecodeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(&entry.value);
        seed.deserialize(entry.key.as_str().into_deserializer())
            .map(Some)
            .map_err(|error: DecodeError| error.or_at(&entry.key_span))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let node = self
            .pending
            .take()
            .ok_or_else(|| <DecodeError as de::Error>::custom("a value was read before its key"))?;
        seed.deserialize(NodeDeserializer(node))
            .map_err(|error| error.or_at(&node.span))
    }
}

/// Decodes one `[[operations]]` table. Every problem found is returned: each unknown key,
/// then the first problem serde finds in the rest.
pub(crate) fn operation(node: &Node) -> Result<Operation, Vec<DecodeError>> {
    let start = node.span.start..node.span.start;
    let Some(entries) = node.entries() else {
        return Err(vec![DecodeError::at(
            node.span.clone(),
            format!(
                "expected an operation (a table with `op = ...`), found {}",
                node.kind()
            ),
        )]);
    };
    let Some(op_entry) = node.get("op") else {
        return Err(vec![DecodeError::at(
            start,
            format!(
                "this operation has no `op` key; it must be one of: {}",
                Operation::NAMES.join(", ")
            ),
        )]);
    };
    let op = match &op_entry.value.value {
        Value::String(op) => op.as_str(),
        _ => {
            return Err(vec![DecodeError::at(
                op_entry.value.span.clone(),
                format!(
                    "`op` must be a string naming the operation, found {}",
                    op_entry.value.kind()
                ),
            )])
        }
    };
    let Some(decode) = decoder(op) else {
        return Err(vec![DecodeError::at(
            op_entry.value.span.clone(),
            format!(
                "unknown op \"{op}\"{}",
                hint(
                    op,
                    &Operation::NAMES,
                    &format!("one of: {}", Operation::NAMES.join(", "))
                )
            ),
        )]);
    };
    let (fields, decode) = decode;
    let mut errors = Vec::new();
    let mut known = Vec::with_capacity(entries.len());
    for entry in entries.iter().filter(|entry| entry.key != "op") {
        if fields.contains(&entry.key.as_str()) {
            known.push(entry.clone());
        } else {
            errors.push(DecodeError::at(
                entry.key_span.clone(),
                format!("{op}: {}", unknown_key_message(&entry.key, fields)),
            ));
        }
    }
    // serde stops at the first problem; each time one lies in a key's value, that key is
    // set aside and the rest decoded again, so every key's problem is reported once.
    let mut removed: Vec<String> = Vec::new();
    loop {
        let rest = Node {
            span: node.span.clone(),
            value: Value::Table(known.clone()),
        };
        match decode(&rest) {
            Ok(operation) if errors.is_empty() => return Ok(operation),
            Ok(_) => return Err(errors),
            Err(error) => {
                if error
                    .missing_key
                    .is_some_and(|key| removed.iter().any(|r| r == key))
                {
                    // Missing only because it was set aside: already reported.
                    return Err(errors);
                }
                let culprit = error.span.as_ref().and_then(|span| {
                    known.iter().position(|entry| {
                        entry.value.span.start <= span.start && span.start < entry.value.span.end
                            || entry.key_span.start == span.start
                    })
                });
                errors.push(DecodeError {
                    message: format!("{op}: {}", error.message),
                    ..error
                });
                match culprit {
                    Some(index) => removed.push(known.remove(index).key),
                    None => return Err(errors),
                }
            }
        }
    }
}

type Decoder = fn(&Node) -> Result<Operation, DecodeError>;

/// The accepted keys (besides `op`) and the decoder of each operation.
fn decoder(op: &str) -> Option<(&'static [&'static str], Decoder)> {
    macro_rules! arm {
        ($ty:ty, $variant:ident) => {
            (
                fields_of::<$ty>(),
                (|node: &Node| from_node::<$ty>(node).map(Operation::$variant)) as Decoder,
            )
        };
    }
    Some(match op {
        "create_table" => arm!(CreateTable, CreateTable),
        "drop_table" => arm!(DropTable, DropTable),
        "rename_table" => arm!(RenameTable, RenameTable),
        "add_column" => arm!(AddColumn, AddColumn),
        "drop_column" => arm!(DropColumn, DropColumn),
        "rename_column" => arm!(RenameColumn, RenameColumn),
        "change_type" => arm!(ChangeType, ChangeType),
        "set_not_null" => arm!(SetNotNull, SetNotNull),
        "drop_not_null" => arm!(DropNotNull, DropNotNull),
        "set_default" => arm!(SetDefault, SetDefault),
        "add_check" => arm!(AddCheck, AddCheck),
        "add_unique" => arm!(AddUnique, AddUnique),
        "add_foreign_key" => arm!(AddForeignKey, AddForeignKey),
        "drop_constraint" => arm!(DropConstraint, DropConstraint),
        "rename_constraint" => arm!(RenameConstraint, RenameConstraint),
        "create_index" => arm!(CreateIndex, CreateIndex),
        "drop_index" => arm!(DropIndex, DropIndex),
        "split_table" => arm!(SplitTable, SplitTable),
        "create_enum" => arm!(CreateEnum, CreateEnum),
        "drop_enum" => arm!(DropEnum, DropEnum),
        "add_enum_value" => arm!(AddEnumValue, AddEnumValue),
        "rename_enum_value" => arm!(RenameEnumValue, RenameEnumValue),
        "raw_sql" => arm!(RawSql, RawSql),
        "set_replica_identity" => arm!(SetReplicaIdentity, SetReplicaIdentity),
        "set_comment" => arm!(SetComment, SetComment),
        "add_primary_key" => arm!(AddPrimaryKey, AddPrimaryKey),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::operation::ColumnDef;

    #[test]
    fn every_op_name_has_a_decoder() {
        for name in Operation::NAMES {
            let (fields, _) = decoder(name).unwrap_or_else(|| panic!("no decoder for {name}"));
            assert!(!fields.is_empty(), "{name}");
        }
        assert!(decoder("truncate").is_none());
    }

    #[test]
    fn struct_fields_are_learned_from_serde() {
        assert_eq!(
            fields_of::<ColumnDef>(),
            [
                "name",
                "type",
                "nullable",
                "default",
                "unique",
                "primary_key",
                "check",
                "references",
                "identity",
                "sequence",
                "generated",
                "comment"
            ]
        );
    }
}
