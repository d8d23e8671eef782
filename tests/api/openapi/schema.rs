//! A JSON Schema validator for the keywords the OpenAPI documents use, and only those: any other
//! keyword fails the test, so nothing in a document goes unchecked. (schemathesis checks the same
//! answers with a full validator; this one runs in every `cargo test`, without Python.)
//!
//! Strict mode also refuses an object field that the schema does not list, so an answer that gains
//! a field fails until the document names it.

use serde_json::{Map, Value};

/// Keywords that describe and never constrain.
const ANNOTATIONS: &[&str] = &["description", "title", "default", "examples", "deprecated"];

pub struct Validator<'d> {
    document: &'d Value,
    strict: bool,
}

impl<'d> Validator<'d> {
    pub fn new(document: &'d Value, strict: bool) -> Self {
        Self { document, strict }
    }

    /// Follows a local `$ref` (`#/components/...`).
    pub fn resolve(&self, reference: &str) -> &'d Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are used, got {reference}"));
        self.document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} does not resolve"))
    }

    /// Follows `$ref`s until a value that is not one.
    pub fn deref(&self, mut value: &'d Value) -> &'d Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            value = self.resolve(reference);
        }
        value
    }

    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), String> {
        self.check(schema, value, "$")
    }

    fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{at}: nothing is allowed here")),
            Value::Object(schema) => schema,
            other => panic!("{at}: a schema must be an object or a boolean, got {other}"),
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return self.check(self.resolve(reference), value, at);
        }
        for (keyword, rule) in schema {
            self.keyword(schema, keyword, rule, value, at)?;
        }
        if self.strict && !schema.contains_key("additionalProperties") {
            if let (Some(listed), Some(object)) = (schema.get("properties"), value.as_object()) {
                if let Some(extra) = object.keys().find(|key| listed.get(key.as_str()).is_none()) {
                    return Err(format!("{at}: field `{extra}` is not in the document"));
                }
            }
        }
        Ok(())
    }

    fn keyword(
        &self,
        schema: &Map<String, Value>,
        keyword: &str,
        rule: &Value,
        value: &Value,
        at: &str,
    ) -> Result<(), String> {
        let fail = |why: String| Err(format!("{at}: {why}, got {value}"));
        match keyword {
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    other => panic!("{at}: bad type {other}"),
                };
                if !types.iter().any(|kind| has_type(value, kind)) {
                    return fail(format!("expected {}", types.join(" or ")));
                }
            }
            "enum" if !rule.as_array().expect("enum is a list").contains(value) => {
                return fail(format!("not one of {rule}"))
            }
            "const" if rule != value => return fail(format!("expected {rule}")),
            "enum" | "const" => {}
            "properties" => {
                if let Some(object) = value.as_object() {
                    for (name, sub) in rule.as_object().expect("properties is an object") {
                        if let Some(field) = object.get(name) {
                            self.check(sub, field, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in rule.as_array().expect("required is a list") {
                        if !object.contains_key(name.as_str().expect("a field name")) {
                            return fail(format!("missing field {name}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(object) = value.as_object() {
                    let listed = schema.get("properties");
                    for (name, field) in object {
                        if listed.and_then(|listed| listed.get(name)).is_none() {
                            self.check(rule, field, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "propertyNames" => {
                for name in value.as_object().into_iter().flat_map(Map::keys) {
                    self.check(rule, &Value::String(name.clone()), &format!("{at} (name {name})"))?;
                }
            }
            "items" => {
                for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                    self.check(rule, item, &format!("{at}[{index}]"))?;
                }
            }
            "minimum" | "maximum" => {
                if let Some(number) = value.as_number() {
                    let (got, bound) = (as_i128(number), as_i128(rule.as_number().expect("a number")));
                    let broken = if keyword == "minimum" { got < bound } else { got > bound };
                    if broken {
                        return fail(format!("{keyword} is {rule}"));
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let Some(text) = value.as_str() {
                    check_count(keyword, rule, text.chars().count()).or_else(fail)?;
                }
            }
            "minItems" | "maxItems" => {
                if let Some(items) = value.as_array() {
                    check_count(keyword, rule, items.len()).or_else(fail)?;
                }
            }
            "minProperties" | "maxProperties" => {
                if let Some(object) = value.as_object() {
                    check_count(keyword, rule, object.len()).or_else(fail)?;
                }
            }
            "pattern" => {
                if let Some(text) = value.as_str() {
                    if !matches_pattern(rule.as_str().expect("a pattern"), text) {
                        return fail(format!("does not match {rule}"));
                    }
                }
            }
            "format" => {
                if let Some(text) = value.as_str() {
                    let valid = match rule.as_str().expect("a format") {
                        "uuid" => uuid::Uuid::try_parse(text).is_ok() && text.len() == 36,
                        "date-time" => is_date_time(text),
                        other => panic!("{at}: format {other} is not checked by this validator"),
                    };
                    if !valid {
                        return fail(format!("not a {rule}"));
                    }
                }
            }
            "oneOf" => {
                let branches = rule.as_array().expect("oneOf is a list");
                let results: Vec<Result<(), String>> =
                    branches.iter().map(|branch| self.check(branch, value, at)).collect();
                let passed = results.iter().filter(|result| result.is_ok()).count();
                if passed != 1 {
                    let why: Vec<String> = results.into_iter().filter_map(Result::err).collect();
                    return fail(format!("{passed} of the oneOf branches match ({})", why.join("; ")));
                }
            }
            annotation if ANNOTATIONS.contains(&annotation) => {}
            other => panic!("{at}: keyword `{other}` is not checked by this validator; teach it or avoid it"),
        }
        Ok(())
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => panic!("unknown type {other}"),
    }
}

fn as_i128(number: &serde_json::Number) -> i128 {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
        .unwrap_or_else(|| number.as_f64().expect("a number") as i128)
}

fn check_count(keyword: &str, rule: &Value, count: usize) -> Result<(), String> {
    let bound = rule.as_u64().expect("a count") as usize;
    let broken = if keyword.starts_with("min") {
        count < bound
    } else {
        count > bound
    };
    if broken {
        return Err(format!("{keyword} is {bound}, has {count}"));
    }
    Ok(())
}

/// The patterns the documents use, each matched by hand (no regex engine in this build); an
/// unknown pattern fails the test rather than passing unchecked.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    let all = |range: std::ops::RangeInclusive<usize>, ok: fn(u8) -> bool| {
        range.contains(&text.len()) && text.bytes().all(ok)
    };
    match pattern {
        "^[a-zA-Z0-9]{6,128}$" => all(6..=128, |b| b.is_ascii_alphanumeric()),
        "^[!-~]{1,255}$" => all(1..=255, |b| b.is_ascii_graphic()),
        "^[0-9a-fA-F]{48}$" => all(48..=48, |b| b.is_ascii_hexdigit()),
        "^[0-9]+$" => all(1..=usize::MAX, |b| b.is_ascii_digit()),
        "^[0-9]{1,19}$" => all(1..=19, |b| b.is_ascii_digit()),
        "^[A-Za-z0-9._-]{1,64}$" => all(1..=64, |b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        // `since`: up to 15 digits, and a unit unless it is milliseconds since the epoch.
        "^[0-9]{1,15}(ms|s|m|h|d)?$" => {
            let digits = text.bytes().take_while(u8::is_ascii_digit).count();
            (1..=15).contains(&digits) && ["", "ms", "s", "m", "h", "d"].contains(&&text[digits..])
        }
        "^[0-9a-f]{48}$" => all(48..=48, |b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        // `?wait=`: a whole number and a unit, at most 60 s.
        "^0*([0-9]{1,4}|[1-5][0-9]{4}|60000)ms$|^0*([0-9]|[1-5][0-9]|60)s$|^0*[01]m$|^0+[hd]$" => {
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let per_unit: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return false,
            };
            let value = digits.trim_start_matches('0');
            !digits.is_empty() && value.len() <= 6 && value.parse::<u128>().unwrap_or(0) * per_unit <= 60_000
        }
        other => panic!("pattern {other} is not known to this validator; add a matcher for it"),
    }
}

/// RFC 3339 `date-time`, as the services write it: `2026-12-02T16:36:08.123Z`.
fn is_date_time(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && text.ends_with('Z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1)))
}
