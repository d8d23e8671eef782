//! Typed cells of a campaign file's columns (and of `configure --param`): text unless the column
//! says otherwise, so `0012` in `password` or `pin` is sent as the text `"0012"`, never the number 12.
//! `timeoutInSeconds` and `vlan` are whole numbers and `interfaces` a list of them, as the request
//! schema has them; a header may type any other column: `port:int`, `ports:ints`, `pin:string`.

use serde_json::{json, Value};

/// What a column's cells hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    /// Whole numbers separated by spaces or commas; one number is a list of one.
    Ints,
}

/// A column: the parameter it fills, and how its cells are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

impl Column {
    /// `name` or `name:type` (type `string`, `int` or `ints`); a type given to a column the schema
    /// types already must agree with it.
    pub fn parse(header: &str) -> Result<Self, String> {
        let (name, given) = match header.split_once(':') {
            Some((name, kind)) => (name.trim(), Some(kind.trim())),
            None => (header.trim(), None),
        };
        if name.is_empty() {
            return Err(format!("column `{header}` has no name"));
        }
        let builtin = builtin(name);
        let kind = match given {
            None => builtin.unwrap_or(Kind::Text),
            Some(given) => {
                let kind = match given {
                    "string" => Kind::Text,
                    "int" => Kind::Int,
                    "ints" => Kind::Ints,
                    other => return Err(format!("column `{header}`: type `{other}` is not string, int or ints")),
                };
                if builtin.is_some_and(|b| b != kind) {
                    return Err(format!("column `{header}`: `{name}` is always {}", describe(builtin)));
                }
                kind
            }
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
        })
    }

    /// The cell as the request's JSON value, or why it is not one.
    pub fn value(&self, cell: &str) -> Result<Value, String> {
        let number = |text: &str| {
            text.parse::<i64>()
                .map_err(|_| format!("`{}` is not a whole number", shown(text)))
        };
        match self.kind {
            Kind::Text => Ok(json!(cell)),
            Kind::Int => number(cell).map(|n| json!(n)),
            Kind::Ints => cell
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|part| !part.is_empty())
                .map(number)
                .collect::<Result<Vec<_>, _>>()
                .map(|list| json!(list)),
        }
    }
}

/// The columns the request schema types.
fn builtin(name: &str) -> Option<Kind> {
    match name {
        "timeoutInSeconds" | "vlan" => Some(Kind::Int),
        "interfaces" => Some(Kind::Ints),
        _ => None,
    }
}

fn describe(kind: Option<Kind>) -> &'static str {
    match kind {
        Some(Kind::Int) => "int",
        Some(Kind::Ints) => "ints",
        _ => "string",
    }
}

/// At most 40 characters of a cell, for a message.
fn shown(text: &str) -> String {
    text.chars().take(40).collect()
}

/// `configure --param KEY=VALUE`: the key may be typed as a header is (`port:int=80`).
pub fn param(pair: &str) -> Result<(String, Value), String> {
    let (key, value) = pair
        .split_once('=')
        .ok_or_else(|| format!("--param `{pair}` is not KEY=VALUE"))?;
    let column = Column::parse(key).map_err(|why| format!("--param `{pair}`: {why}"))?;
    let value = column.value(value).map_err(|why| format!("--param `{pair}`: {why}"))?;
    Ok((column.name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(header: &str, cell: &str) -> Result<Value, String> {
        Column::parse(header)?.value(cell)
    }

    #[test]
    fn cells_are_text_unless_their_column_is_typed() {
        assert_eq!(read("password", "0012"), Ok(json!("0012")));
        assert_eq!(read("pin", "007"), Ok(json!("007")));
        assert_eq!(read("vlan", "534"), Ok(json!(534)));
        assert_eq!(
            read("interfaces", "3"),
            Ok(json!([3])),
            "one interface is a list of one"
        );
        assert_eq!(read("interfaces", "1 2,3"), Ok(json!([1, 2, 3])));
        assert_eq!(read("port:int", "0080"), Ok(json!(80)));
        assert_eq!(read("ports:ints", "80 443"), Ok(json!([80, 443])));
        assert_eq!(read("pin:string", "0012"), Ok(json!("0012")));
        assert!(read("vlan", "abc").unwrap_err().contains("`abc` is not a whole number"));
        assert!(read("vlan:string", "1").unwrap_err().contains("always int"));
        assert!(read("x:float", "1").unwrap_err().contains("not string, int or ints"));
    }

    #[test]
    fn a_param_follows_the_same_rule() {
        assert_eq!(param("pin=0012"), Ok(("pin".into(), json!("0012"))));
        assert_eq!(param("port:int=80"), Ok(("port".into(), json!(80))));
        assert_eq!(param("vlan=7"), Ok(("vlan".into(), json!(7))));
        assert!(param("novalue").is_err());
    }
}
