//! A campaign's input: rows of a CSV file (a header names the columns: `serial`, an optional
//! `timeoutInSeconds`, then one column per parameter) or of a JSON-lines file. Each row is checked
//! as Service B would check it, so a bad row is reported with its line number and never sent.

use anyhow::{Context, Result};
use cpe_actors::{ConfigRequest, EquipmentId};
use serde_json::{json, Map, Value};
use std::path::Path;

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

pub fn read(path: &Path) -> Result<(Vec<Row>, Vec<BadRow>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json_lines = text.trim_start().starts_with('{');
    let parsed = if json_lines {
        from_json_lines(&text)
    } else {
        from_csv(&text)?
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

fn from_json_lines(text: &str) -> Parsed {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str::<Value>(line)
            .map_err(|e| format!("not JSON: {e}"))
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

fn from_csv(text: &str) -> Result<Parsed> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .context("the CSV file has no header row")?
        .iter()
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        header.iter().any(|h| h == "serial"),
        "the CSV header names no `serial` column (it has: {})",
        header.join(", ")
    );
    let mut out = Vec::new();
    for record in reader.records() {
        let (line, row) = match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                (line, csv_row(&header, &record))
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

fn csv_row(header: &[String], record: &csv::StringRecord) -> Result<(String, Value), String> {
    let (mut serial, mut timeout, mut parameters) = (None, json!(DEFAULT_TIMEOUT), Map::new());
    for (name, cell) in header.iter().zip(record.iter()) {
        match name.as_str() {
            "serial" => serial = Some(cell.to_owned()),
            "timeoutInSeconds" if !cell.is_empty() => {
                timeout = json!(cell
                    .parse::<u64>()
                    .map_err(|_| format!("timeoutInSeconds `{cell}` is not a whole number"))?)
            }
            _ if cell.is_empty() => {}
            _ => drop(parameters.insert(name.clone(), cell_value(cell))),
        }
    }
    let serial = serial.filter(|s| !s.is_empty()).ok_or("the serial is empty")?;
    Ok((serial, json!({"timeoutInSeconds": timeout, "parameters": parameters})))
}

/// `534` is a number, `1 2 3 4` a list of numbers, anything else text.
fn cell_value(cell: &str) -> Value {
    if let Ok(number) = cell.parse::<i64>() {
        return json!(number);
    }
    let numbers: Option<Vec<i64>> = cell.split_whitespace().map(|n| n.parse().ok()).collect();
    match numbers {
        Some(list) if cell.contains(' ') => json!(list),
        _ => json!(cell),
    }
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
