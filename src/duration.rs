//! Human durations for options: `250ms`, `2s`, `1m`, `1h`, `7d`.

use std::time::Duration;

/// Parses a whole number followed by a unit (ms, s, m, h, d). A unit is required: `60` alone is ambiguous.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!("`{raw}` is not a duration: expected a whole number and a unit, like 250ms, 2s, 1m, 1h or 7d")
    })?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("`{raw}` needs a unit: ms, s, m, h or d (for example {raw}s)")),
        other => return Err(format!("unknown unit `{other}` in `{raw}`: use ms, s, m, h or d")),
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{raw}` is too long"))
}

/// Formats a duration the way `parse_duration` reads it, for logs and defaults.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        m if m % 86_400_000 == 0 && m > 0 => format!("{}d", m / 86_400_000),
        m if m % 3_600_000 == 0 && m > 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 && m > 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

#[cfg(test)]
mod tests;
