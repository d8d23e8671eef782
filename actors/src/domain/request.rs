//! The configuration request: `timeoutInSeconds` and `parameters`, validated field by field.
//!
//! Parsing goes through `serde_json::Value` so that each rejection can name the field at fault.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Largest device timeout accepted, in seconds: one hour.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
const MAX_PARAMETERS: usize = 64;
const MAX_KEY_LEN: usize = 64;
const MAX_TEXT_LEN: usize = 1024;
const MAX_LIST_LEN: usize = 256;
const VLAN_RANGE: std::ops::RangeInclusive<i64> = 1..=4094;
const INTERFACE_RANGE: std::ops::RangeInclusive<i64> = 1..=1024;

/// Why a request body was refused: `Malformed` is not JSON (400), `Invalid` breaks the schema (422).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
}

/// A validated request for one device.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ConfigRequest {
    /// The device's own timeout, passed to Service A unchanged (not an HTTP deadline).
    #[serde(rename = "timeoutInSeconds")]
    pub timeout_in_seconds: u64,
    pub parameters: Parameters,
}

/// One parameter value: a string, an integer or a list of integers.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Text(String),
    IntList(Vec<i64>),
}

/// Named parameters. `Debug` redacts secrets, so passwords never reach a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Parameters(BTreeMap<String, ParamValue>);

impl ConfigRequest {
    /// Parses a request body: 400 for bytes that are not JSON, 422 for JSON that breaks the schema.
    pub fn from_json(body: &[u8]) -> Result<Self, RequestError> {
        Self::from_value(&parse_json(body, "request body")?)
    }

    /// Validates an already parsed JSON value (a request body, or a queue message's `task_payload`).
    pub fn from_value(value: &Value) -> Result<Self, RequestError> {
        let object = value
            .as_object()
            .ok_or_else(|| invalid("request body must be a JSON object"))?;
        if let Some(unknown) = object.keys().find(|k| *k != "timeoutInSeconds" && *k != "parameters") {
            return Err(invalid(format!(
                "unknown field `{unknown}`: expected `timeoutInSeconds` and `parameters`"
            )));
        }
        let timeout = object
            .get("timeoutInSeconds")
            .ok_or_else(|| invalid("missing field `timeoutInSeconds`"))?;
        let timeout_in_seconds = timeout.as_u64().filter(|t| *t <= MAX_TIMEOUT_SECS).ok_or_else(|| {
            invalid(format!(
                "`timeoutInSeconds` must be an integer from 0 to {MAX_TIMEOUT_SECS}, got {timeout}"
            ))
        })?;
        let parameters = object
            .get("parameters")
            .ok_or_else(|| invalid("missing field `parameters`"))?;
        Ok(Self {
            timeout_in_seconds,
            parameters: Parameters::from_value(parameters)?,
        })
    }

    /// A stable 64-bit fingerprint (FNV-1a) of the request for one device: list-form and object-form
    /// parameters give the same one, since both parse to the same sorted map.
    pub fn fingerprint(&self, equipment: &super::EquipmentId) -> u64 {
        let canonical = serde_json::to_vec(self).expect("a request always serialises");
        let bytes = equipment.as_str().as_bytes().iter().chain(&[0u8]).chain(&canonical);
        bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a request always serialises")
    }
}

impl fmt::Debug for ConfigRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigRequest")
            .field("timeout_in_seconds", &self.timeout_in_seconds)
            .field("parameters", &self.parameters)
            .finish()
    }
}

impl Parameters {
    /// Accepts an object, or the original specification's list of one-key objects.
    fn from_value(value: &Value) -> Result<Self, RequestError> {
        let mut params = BTreeMap::new();
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    insert_param(&mut params, key, value)?;
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let pair = single_pair(item).ok_or_else(|| {
                        invalid(format!("`parameters[{index}]` must be an object with exactly one key"))
                    })?;
                    if params.contains_key(pair.0) {
                        return Err(invalid(format!("parameter `{}` is given twice", pair.0)));
                    }
                    insert_param(&mut params, pair.0, pair.1)?;
                }
            }
            other => {
                return Err(invalid(format!(
                    "`parameters` must be an object or a list of one-key objects, got {}",
                    kind(other)
                )))
            }
        }
        if params.len() > MAX_PARAMETERS {
            return Err(invalid(format!("at most {MAX_PARAMETERS} parameters are accepted")));
        }
        Ok(Self(params))
    }

    pub fn get(&self, key: &str) -> Option<&ParamValue> {
        self.0.get(key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a parameter's value may appear in logs. An allow-list, not a list of secret-looking
/// words: devices take credentials under any name (`wpa_psk`, `pppoe_pass`, `snmp_community`,
/// `pin`, ...), so every other value is hidden.
pub fn is_loggable_key(key: &str) -> bool {
    ["username", "vlan", "interfaces"]
        .iter()
        .any(|allowed| key.eq_ignore_ascii_case(allowed))
}

impl Serialize for Parameters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Shows the kind of a value, never the value itself.
impl fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Int(_) => "<integer>",
            Self::Text(_) => "<text>",
            Self::IntList(_) => "<list>",
        })
    }
}

/// Shows the allow-listed values (useful to operators) and hides every other one.
impl fmt::Debug for Parameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.0 {
            if !is_loggable_key(key) {
                map.entry(key, &format_args!("<redacted>"));
            } else {
                map.entry(
                    key,
                    &format_args!("{}", serde_json::to_string(value).unwrap_or_default()),
                );
            }
        }
        map.finish()
    }
}

fn single_pair(item: &Value) -> Option<(&String, &Value)> {
    let map: &Map<String, Value> = item.as_object()?;
    (map.len() == 1).then(|| map.iter().next()).flatten()
}

fn insert_param(params: &mut BTreeMap<String, ParamValue>, key: &str, value: &Value) -> Result<(), RequestError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(invalid(format!("parameter names must have 1 to {MAX_KEY_LEN} bytes")));
    }
    let parsed = parse_value(key, value)?;
    check_range(key, &parsed)?;
    params.insert(key.to_owned(), parsed);
    Ok(())
}

fn parse_value(key: &str, value: &Value) -> Result<ParamValue, RequestError> {
    let wrong = || {
        invalid(format!(
            "parameter `{key}` must be a string, an integer or a list of integers, got {}",
            kind(value)
        ))
    };
    match value {
        Value::String(text) if text.len() <= MAX_TEXT_LEN => Ok(ParamValue::Text(text.clone())),
        Value::String(_) => Err(invalid(format!(
            "parameter `{key}` is longer than {MAX_TEXT_LEN} bytes"
        ))),
        Value::Number(n) => n.as_i64().map(ParamValue::Int).ok_or_else(wrong),
        Value::Array(items) if items.len() <= MAX_LIST_LEN => items
            .iter()
            .map(|item| item.as_i64().ok_or_else(wrong))
            .collect::<Result<_, _>>()
            .map(ParamValue::IntList),
        Value::Array(_) => Err(invalid(format!("parameter `{key}` has more than {MAX_LIST_LEN} items"))),
        _ => Err(wrong()),
    }
}

/// Range checks for the parameters whose meaning is known.
fn check_range(key: &str, value: &ParamValue) -> Result<(), RequestError> {
    match (key, value) {
        ("vlan", ParamValue::Int(vlan)) if !VLAN_RANGE.contains(vlan) => {
            Err(invalid(format!("`vlan` must be from 1 to 4094, got {vlan}")))
        }
        ("vlan", ParamValue::Text(_) | ParamValue::IntList(_)) => {
            Err(invalid("`vlan` must be an integer from 1 to 4094"))
        }
        ("interfaces", ParamValue::IntList(list)) => match list.iter().find(|i| !INTERFACE_RANGE.contains(i)) {
            Some(bad) => Err(invalid(format!(
                "`interfaces` must hold interface numbers from 1 to 1024, got {bad}"
            ))),
            None => Ok(()),
        },
        ("interfaces", _) => Err(invalid("`interfaces` must be a list of integers")),
        _ => Ok(()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() => "an integer",
        Value::Number(n) if n.is_u64() => "an integer beyond 2^63-1",
        Value::Number(_) => "a number with a fraction or beyond 64 bits",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Strict JSON: bytes that are not JSON are malformed (400); a key given twice is invalid (422).
pub fn parse_json(body: &[u8], what: &str) -> Result<Value, RequestError> {
    super::strict_json::parse(body).map_err(|e| {
        if e.is_data() {
            RequestError::Invalid(format!("{what} is ambiguous: {e}"))
        } else {
            RequestError::Malformed(format!("{what} is not valid JSON: {e}"))
        }
    })
}

fn invalid(message: impl Into<String>) -> RequestError {
    RequestError::Invalid(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"timeoutInSeconds": 14, "parameters": {"username": "admin", "password": "admin", "vlan": 534, "interfaces": [1, 2, 3, 4]}}"#;

    fn parse(body: &str) -> Result<ConfigRequest, RequestError> {
        ConfigRequest::from_json(body.as_bytes())
    }

    fn invalid_message(body: &str) -> String {
        match parse(body) {
            Err(RequestError::Invalid(m)) => m,
            other => panic!("expected 422 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_documented_example() {
        let request = parse(EXAMPLE).unwrap();
        assert_eq!(request.timeout_in_seconds, 14);
        assert_eq!(request.parameters.get("vlan"), Some(&ParamValue::Int(534)));
        assert_eq!(
            request.parameters.get("interfaces"),
            Some(&ParamValue::IntList(vec![1, 2, 3, 4]))
        );
    }

    #[test]
    fn list_form_means_the_same_as_the_object_form() {
        let list = r#"{"timeoutInSeconds": 14, "parameters": [{"username": "admin"}, {"password": "admin"}, {"vlan": 534}, {"interfaces": [1, 2, 3, 4]}]}"#;
        assert_eq!(parse(list).unwrap(), parse(EXAMPLE).unwrap());
    }

    #[test]
    fn fingerprints_follow_meaning_not_spelling() {
        let device = super::super::EquipmentId::parse("abc123").unwrap();
        let other = super::super::EquipmentId::parse("abc124").unwrap();
        let list = r#"{"timeoutInSeconds": 14, "parameters": [{"vlan": 534}, {"interfaces": [1, 2, 3, 4]}, {"username": "admin"}, {"password": "admin"}]}"#;
        let example = parse(EXAMPLE).unwrap();
        assert_eq!(example.fingerprint(&device), parse(list).unwrap().fingerprint(&device));
        assert_ne!(example.fingerprint(&device), example.fingerprint(&other));
        let changed = EXAMPLE.replace("534", "535");
        assert_ne!(
            example.fingerprint(&device),
            parse(&changed).unwrap().fingerprint(&device)
        );
    }

    #[test]
    fn not_json_is_malformed() {
        assert!(matches!(
            parse("{\"timeoutInSeconds\": 1,"),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(parse(""), Err(RequestError::Malformed(_))));
    }

    #[test]
    fn schema_errors_name_the_field() {
        assert!(invalid_message(r#"{"parameters": {}}"#).contains("timeoutInSeconds"));
        assert!(invalid_message(r#"{"timeoutInSeconds": 1}"#).contains("parameters"));
        assert!(invalid_message(r#"{"timeoutInSeconds": -1, "parameters": {}}"#).contains("timeoutInSeconds"));
        assert!(invalid_message(r#"{"timeoutInSeconds": "14", "parameters": {}}"#).contains("timeoutInSeconds"));
        assert!(invalid_message(r#"{"timeoutInSeconds": 99999999, "parameters": {}}"#).contains("timeoutInSeconds"));
        assert!(invalid_message(r#"{"timeoutInSeconds": 1, "parameters": {"vlan": 0}}"#).contains("vlan"));
        assert!(invalid_message(r#"{"timeoutInSeconds": 1, "parameters": {"vlan": 4095}}"#).contains("vlan"));
        assert!(
            invalid_message(r#"{"timeoutInSeconds": 1, "parameters": {"interfaces": [0]}}"#).contains("interfaces")
        );
        assert!(invalid_message(r#"{"timeoutInSeconds": 1, "parameters": {"flag": true}}"#).contains("flag"));
        assert!(invalid_message(r#"{"timeoutInSeconds": 1, "parameters": 5}"#).contains("parameters"));
        assert!(invalid_message(r#"{"timeoutInSeconds": 1, "parameters": {}, "x": 1}"#).contains("`x`"));
        assert!(invalid_message(r#"[1]"#).contains("object"));
        assert!(
            invalid_message(r#"{"timeoutInSeconds": 1, "parameters": [{"a": 1, "b": 2}]}"#).contains("parameters[0]")
        );
        assert!(invalid_message(r#"{"timeoutInSeconds": 1, "parameters": [{"a": 1}, {"a": 2}]}"#).contains("twice"));
        assert!(invalid_message(r#"{"timeoutInSeconds": 1, "parameters": {"vlan": 1, "vlan": 2}}"#).contains("twice"));
    }

    #[test]
    fn debug_output_shows_only_allow_listed_values() {
        let body = r#"{"timeoutInSeconds": 1, "parameters": {"username": "ops", "password": "hunter2",
            "apiToken": "t0k3n", "wpa_psk": "psk-value", "pppoe_pass": "pppoe-value",
            "snmp_community": "community-value", "admin_pwd": "pwd-value", "wifi_passphrase": "phrase-value",
            "pin": "1234567", "cert": "-----BEGIN PRIVATE KEY-----", "vlan": 534, "interfaces": [1, 2]}}"#;
        let shown = format!("{:?}", parse(body).unwrap());
        assert!(shown.contains("password") && shown.contains("<redacted>"), "{shown}");
        for secret in [
            "hunter2",
            "t0k3n",
            "psk-value",
            "pppoe-value",
            "community-value",
            "pwd-value",
            "phrase-value",
            "1234567",
            "PRIVATE KEY",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(
            shown.contains("534") && shown.contains("ops") && shown.contains("[1,2]"),
            "{shown}"
        );
    }

    #[test]
    fn only_username_vlan_and_interfaces_are_loggable() {
        assert!(is_loggable_key("username") && is_loggable_key("VLAN") && is_loggable_key("interfaces"));
        assert!(!is_loggable_key("password") && !is_loggable_key("user") && !is_loggable_key("username2"));
    }
}

#[cfg(test)]
mod props;
