//! The Kubernetes protobuf encoding, as far as kubectl sends it: `kubectl
//! create namespace|configmap|secret` post built-in kinds as
//! `application/vnd.kubernetes.protobuf`. The body is the magic `k8s\0`
//! and a `runtime.Unknown` (type meta, then the object's own message); this
//! decodes the envelope and the kinds listed in `object`, into the JSON the
//! rest of the emulator speaks. Other kinds are refused with 415, which
//! names them.

use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// The object a protobuf body carries, as JSON; the error says why not.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the protobuf magic k8s\\0")?;
    let unknown = fields(envelope)?;
    let type_meta = fields(bytes_of(&unknown, 1).unwrap_or_default())?;
    let api_version = string_of(&type_meta, 1);
    let kind = string_of(&type_meta, 2);
    let raw = fields(bytes_of(&unknown, 2).unwrap_or_default())?;
    let mut object = object(&kind, &raw)?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

/// The kinds kubectl creates from the command line.
fn object(kind: &str, raw: &[Field<'_>]) -> Result<Value, String> {
    let metadata = metadata(&fields(bytes_of(raw, 1).unwrap_or_default())?)?;
    let mut object = json!({ "metadata": metadata });
    match kind {
        "Namespace" => {}
        "ConfigMap" => {
            object["data"] = string_map(raw, 2)?;
        }
        "Secret" => {
            // `data` holds bytes; JSON carries them in base64.
            let mut data = Map::new();
            for entry in repeated(raw, 2) {
                let entry = fields(entry)?;
                data.insert(
                    string_of(&entry, 1),
                    json!(base64(bytes_of(&entry, 2).unwrap_or_default())),
                );
            }
            object["data"] = Value::Object(data);
            let kind_of_secret = string_of(raw, 3);
            if !kind_of_secret.is_empty() {
                object["type"] = json!(kind_of_secret);
            }
        }
        "SelfSubjectAccessReview" => {
            // `kubectl auth can-i`: spec (2) with resourceAttributes (1) or
            // nonResourceAttributes (2).
            let spec = fields(bytes_of(raw, 2).unwrap_or_default())?;
            let strings = |message: &[u8], names: &[(u64, &str)]| -> Result<Value, String> {
                let message = fields(message)?;
                let mut out = Map::new();
                for (number, name) in names {
                    let value = string_of(&message, *number);
                    if !value.is_empty() {
                        out.insert((*name).into(), json!(value));
                    }
                }
                Ok(Value::Object(out))
            };
            let mut review = Map::new();
            if let Some(attributes) = bytes_of(&spec, 1) {
                let names = [
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ];
                review.insert("resourceAttributes".into(), strings(attributes, &names)?);
            }
            if let Some(attributes) = bytes_of(&spec, 2) {
                review.insert(
                    "nonResourceAttributes".into(),
                    strings(attributes, &[(1, "path"), (2, "verb")])?,
                );
            }
            object["spec"] = Value::Object(review);
        }
        other => {
            return Err(format!(
                "the emulator decodes protobuf for Namespace, ConfigMap, Secret and SelfSubjectAccessReview only, not {other}; send JSON"
            ));
        }
    }
    Ok(object)
}

/// `ObjectMeta`: what a client sets on create.
fn metadata(meta: &[Field<'_>]) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, key) in [(1, "name"), (2, "generateName"), (3, "namespace")] {
        let value = string_of(meta, number);
        if !value.is_empty() {
            out.insert(key.into(), json!(value));
        }
    }
    for (number, key) in [(11, "labels"), (12, "annotations")] {
        let map = string_map(meta, number)?;
        if map.as_object().is_some_and(|m| !m.is_empty()) {
            out.insert(key.into(), map);
        }
    }
    Ok(Value::Object(out))
}

/// One field of a message: its number and, for the wire types kubectl's
/// messages use here, its varint or its bytes.
struct Field<'a> {
    number: u64,
    value: Wire<'a>,
}

enum Wire<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(data: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at).ok_or("a truncated varint")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than 64 bits".into())
}

fn fields(data: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < data.len() {
        let tag = varint(data, &mut at)?;
        let value = match tag & 7 {
            0 => {
                varint(data, &mut at)?;
                Wire::Varint
            }
            1 => {
                at += 8;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(data, &mut at)?).map_err(|e| e.to_string())?;
                let end = at
                    .checked_add(len)
                    .filter(|end| *end <= data.len())
                    .ok_or("a truncated field")?;
                let bytes = &data[at..end];
                at = end;
                Wire::Bytes(bytes)
            }
            5 => {
                at += 4;
                Wire::Fixed
            }
            other => return Err(format!("an unsupported protobuf wire type {other}")),
        };
        out.push(Field {
            number: tag >> 3,
            value,
        });
    }
    if at > data.len() {
        return Err("a truncated message".into());
    }
    Ok(out)
}

fn repeated<'a>(message: &'a [Field<'a>], number: u64) -> impl Iterator<Item = &'a [u8]> {
    message.iter().filter_map(move |field| match field.value {
        Wire::Bytes(bytes) if field.number == number => Some(bytes),
        _ => None,
    })
}

fn bytes_of<'a>(message: &'a [Field<'a>], number: u64) -> Option<&'a [u8]> {
    repeated(message, number).last()
}

fn string_of(message: &[Field<'_>], number: u64) -> String {
    bytes_of(message, number)
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

/// A `map<string, string>` field: repeated entries of key 1, value 2.
fn string_map(message: &[Field<'_>], number: u64) -> Result<Value, String> {
    let mut map = Map::new();
    for entry in repeated(message, number) {
        let entry = fields(entry)?;
        map.insert(string_of(&entry, 1), json!(string_of(&entry, 2)));
    }
    Ok(Value::Object(map))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-delimited field.
    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(number << 3 | 2).unwrap()];
        out.push(u8::try_from(bytes.len()).unwrap());
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_config_map_is_read_from_its_envelope() {
        let meta = [
            field(1, b"made"),
            field(3, b"shop"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made", "namespace": "shop", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
        assert!(decode(b"not protobuf").is_err());
        assert!(
            decode(&[MAGIC, &[0x0a, 0x7f]].concat()).is_err(),
            "truncated"
        );
        let attributes = [field(2, b"delete"), field(5, b"namespaces")].concat();
        let raw = [field(1, &[]), field(2, &field(1, &attributes))].concat();
        let type_meta = [
            field(1, b"authorization.k8s.io/v1"),
            field(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        assert_eq!(
            decode(&body).unwrap()["spec"],
            json!({"resourceAttributes": {"verb": "delete", "resource": "namespaces"}})
        );
        assert_eq!(base64(b"hi!"), "aGkh");
        assert_eq!(base64(b"hi"), "aGk=");
    }
}
