//! JSON emitted exactly as Go's `encoding/json` emits it.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

/// Serializes `value` compactly, escaping `<`, `>`, `&`, U+2028 and U+2029 as Go's
/// `encoding/json` does (`\u003c`, ...). Field order is the order of the Rust struct;
/// use `BTreeMap` for maps so that keys come out sorted as Go sorts them.
///
/// # Errors
/// Fails only if `value`'s `Serialize` implementation fails.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter(CompactFormatter));
    value.serialize(&mut ser)?;
    Ok(out)
}

struct GoFormatter(CompactFormatter);

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(fragment.get(start..i).unwrap_or_default().as_bytes())?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(fragment.get(start..).unwrap_or_default().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let v = serde_json::json!({"a": "<x>&\u{2028}\u{2029}\n\u{1}é\"\\"});
        let out = String::from_utf8(to_go_json(&v).unwrap()).unwrap();
        // Go 1.22+: json.Marshal(map[string]string{"a": "<x>&\u2028\u2029\n\x01é\"\\"})
        assert_eq!(
            out,
            r#"{"a":"\u003cx\u003e\u0026\u2028\u2029\n\u0001é\"\\"}"#
        );
    }
}
