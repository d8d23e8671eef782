//! A campaign's input: rows of a CSV file (a header names the columns: `serial`, an optional
//! `timeoutInSeconds`, then one column per parameter, typed as `cells.rs` says) or of a JSON-lines
//! file. Each row is checked
//! as Service B would check it, so a bad row is reported with its line number and never sent.

use super::cells::Column;
use anyhow::{Context, Result};
use cpe_actors::{ConfigRequest, EquipmentId};
use serde_json::{json, Map, Value};

/// One device's request, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub serial: String,
    pub body: Value,
}

/// A row that cannot be sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub why: String,
}

/// Timeout used when a row names none.
const DEFAULT_TIMEOUT: u64 = 14;

/// The rows of a file's bytes: a byte order mark is skipped, and a line that is not UTF-8 is a bad
/// row of its own, not the end of the file.
pub fn parse(bytes: &[u8]) -> Result<(Vec<Row>, Vec<BadRow>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let json_lines = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if json_lines {
        from_json_lines(bytes)
    } else {
        from_csv(bytes)?
    };
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    for (line, row) in parsed {
        match row.and_then(|(serial, body)| check(serial, body)) {
            Ok(row) => rows.push(Row { line, ..row }),
            Err(why) => bad.push(BadRow { line, why }),
        }
    }
    Ok((rows, bad))
}

type Parsed = Vec<(u64, Result<(String, Value), String>)>;

fn from_json_lines(bytes: &[u8]) -> Parsed {
    let mut out = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = std::str::from_utf8(line)
            .map_err(|e| format!("not UTF-8 (byte {} of the line)", e.valid_up_to() + 1))
            .and_then(|line| serde_json::from_str::<Value>(line).map_err(|e| format!("not JSON: {e}")))
            .and_then(|mut value| {
                let serial = value["serial"].as_str().ok_or("no `serial` string")?.to_owned();
                let object = value.as_object_mut().ok_or("not a JSON object")?;
                object.remove("serial");
                object.entry("timeoutInSeconds").or_insert(json!(DEFAULT_TIMEOUT));
                Ok((serial, value))
            });
        out.push((index as u64 + 1, row));
    }
    out
}

fn from_csv(bytes: &[u8]) -> Result<Parsed> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let header = reader.byte_headers().context("the CSV file has no header row")?.clone();
    let columns = header
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let name = std::str::from_utf8(name)
                .map_err(|_| anyhow::anyhow!("line 1, column {}: the header is not UTF-8", index + 1))?;
            Column::parse(name).map_err(|why| anyhow::anyhow!("line 1, column {}: {why}", index + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(
        columns.iter().any(|c| c.name == "serial"),
        "the CSV header names no `serial` column (it has: {})",
        columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let mut out = Vec::new();
    for record in reader.byte_records() {
        let (line, row) = match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                (line, csv_row(&columns, &record))
            }
            Err(error) => (
                error.position().map_or(0, |p| p.line()),
                Err(format!("not CSV: {error}")),
            ),
        };
        out.push((line, row));
    }
    Ok(out)
}

/// One record: each cell read as its column says; a bad cell names its column.
fn csv_row(columns: &[Column], record: &csv::ByteRecord) -> Result<(String, Value), String> {
    let (mut serial, mut timeout, mut parameters) = (None, json!(DEFAULT_TIMEOUT), Map::new());
    for (index, (column, cell)) in columns.iter().zip(record.iter()).enumerate() {
        let at = |why: String| format!("column {} (`{}`): {why}", index + 1, column.name);
        let cell = std::str::from_utf8(cell).map_err(|_| at("not UTF-8".into()))?;
        match column.name.as_str() {
            "serial" => serial = Some(cell.to_owned()),
            _ if cell.is_empty() => {}
            "timeoutInSeconds" => timeout = column.value(cell).map_err(at)?,
            name => drop(parameters.insert(name.to_owned(), column.value(cell).map_err(at)?)),
        }
    }
    let serial = serial.filter(|s| !s.is_empty()).ok_or("the serial is empty")?;
    Ok((serial, json!({"timeoutInSeconds": timeout, "parameters": parameters})))
}

/// Service B's own checks: the equipment id and the request body.
fn check(serial: String, body: Value) -> Result<Row, String> {
    EquipmentId::parse(&serial)
        .map_err(|_| format!("serial `{serial}` is not an equipment id (6 or more letters and digits)"))?;
    let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    ConfigRequest::from_json(&bytes).map_err(|rejection| rejection.to_string())?;
    Ok(Row { line: 0, serial, body })
}

#[cfg(test)]
mod tests;
