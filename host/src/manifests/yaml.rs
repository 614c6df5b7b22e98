//! JSON values written as YAML, for manifests people read and diff.
//!
//! Every string is a double-quoted JSON string (valid YAML, never taken for
//! a number, a boolean or a date), except multi-line text, which is a
//! literal block; keys are plain when they are plain words.

use serde_json::Value;

/// One YAML document (no leading `---`).
pub fn document(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(_) | Value::Array(_) => block(&mut out, v, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if plain {
        k.to_owned()
    } else {
        serde_json::to_string(k).expect("a string serialises")
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => serde_json::to_string(other).expect("a value serialises"),
    }
}

/// Whether `v` is written on the line of its key (a scalar or an empty collection).
fn is_inline(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => !s.contains('\n'),
        _ => true,
    }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A multi-line string as a literal block at `indent`.
fn literal(out: &mut String, s: &str, indent: usize) {
    out.push_str(if s.ends_with('\n') { "|\n" } else { "|-\n" });
    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::String(s) if s.contains('\n') => {
            out.push(' ');
            literal(out, s, indent + 2);
        }
        _ if is_inline(v) => {
            out.push(' ');
            out.push_str(&inline(v));
            out.push('\n');
        }
        Value::Array(_) => {
            out.push('\n');
            block(out, v, indent);
        }
        _ => {
            out.push('\n');
            block(out, v, indent + 2);
        }
    }
}

/// A non-empty map or list, each entry on its own line at `indent`.
fn block(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                pad(out, indent);
                out.push_str(&key(k));
                out.push(':');
                value_after_key(out, v, indent);
            }
        }
        Value::Array(items) => {
            for item in items {
                pad(out, indent);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key shares the dash's line.
                        let mut first = true;
                        for (k, v) in m {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                pad(out, indent + 2);
                            }
                            out.push_str(&key(k));
                            out.push(':');
                            value_after_key(out, v, indent + 2);
                        }
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        block(out, item, indent + 2);
                    }
                    Value::String(s) if s.contains('\n') => {
                        out.push(' ');
                        literal(out, s, indent + 2);
                    }
                    scalar => {
                        out.push(' ');
                        out.push_str(&inline(scalar));
                        out.push('\n');
                    }
                }
            }
        }
        scalar => {
            pad(out, indent);
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_lists_and_text_are_written_as_yaml_reads_them() {
        // serde_json keeps keys sorted.
        let v = json!({
            "apiVersion": "v1",
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "wasmvol"}},
            "spec": {"args": ["serve", "--config"], "ports": [{"name": "http", "port": 9808}], "empty": [], "none": {}},
            "data": {"policy.toml": "[host]\nstate_dir = \"/var/lib/wasmvol\"\n"},
            "odd key": true
        });
        assert_eq!(
            document(&v),
            r#"apiVersion: "v1"
data:
  policy.toml: |
    [host]
    state_dir = "/var/lib/wasmvol"
metadata:
  labels:
    app.kubernetes.io/name: "wasmvol"
  name: "x"
"odd key": true
spec:
  args:
  - "serve"
  - "--config"
  empty: []
  none: {}
  ports:
  - name: "http"
    port: 9808
"#
        );
    }
}
