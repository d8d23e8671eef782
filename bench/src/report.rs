//! The results table (figure, value, baseline, ratio, target, met?) and the notes printed under it.

use std::fmt::Write as _;

/// What a figure must reach; checked against the ratio, or against the value when there is no baseline.
#[derive(Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    /// A figure reported for understanding (a diagnostic, or one the issue sets no target for).
    None,
}

pub struct Row {
    pub figure: String,
    pub value: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    pub target: Target,
    /// The target's unit when it applies to the value (`B/task`), empty when it applies to the ratio.
    pub unit: &'static str,
    /// The number compared with the target; the ratio unless the row says otherwise.
    pub checked: Option<f64>,
    pub skipped: Option<String>,
    /// Measured, but something outside the app spoiled the measurement.
    pub invalid: Option<String>,
}

impl Row {
    /// A figure compared with its baseline: the ratio is value / baseline.
    pub fn ratio(figure: impl Into<String>, value: String, baseline: String, ratio: f64) -> Self {
        Self {
            figure: figure.into(),
            value,
            baseline,
            ratio: Some(ratio),
            target: Target::None,
            unit: "",
            checked: Some(ratio),
            skipped: None,
            invalid: None,
        }
    }

    /// A figure without a baseline, compared (if at all) with a target in its own unit.
    pub fn plain(figure: impl Into<String>, value: String) -> Self {
        Self {
            figure: figure.into(),
            value,
            baseline: "—".into(),
            ratio: None,
            target: Target::None,
            unit: "",
            checked: None,
            skipped: None,
            invalid: None,
        }
    }

    pub fn skipped(figure: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut row = Self::plain(figure, "—".into());
        row.skipped = Some(reason.into());
        row
    }

    pub fn invalid(mut self, why: impl Into<String>) -> Self {
        self.invalid = Some(why.into());
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Compares `value` (not the ratio) with the target, in `unit`.
    pub fn check_value(mut self, value: f64, unit: &'static str) -> Self {
        self.checked = Some(value);
        self.unit = unit;
        self
    }

    fn target_text(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        match self.target {
            Target::AtLeast(t) => format!(">= {t}{unit}"),
            Target::AtMost(t) => format!("<= {t}{unit}"),
            Target::None => "—".into(),
        }
    }

    fn met(&self) -> String {
        if let Some(reason) = &self.skipped {
            return format!("skipped: {reason}");
        }
        if let Some(why) = &self.invalid {
            return format!("invalid: {why}");
        }
        match (self.target, self.checked) {
            (Target::AtLeast(t), Some(x)) => yes_no(x >= t),
            (Target::AtMost(t), Some(x)) => yes_no(x <= t),
            (Target::None, _) => "n/a".into(),
            (_, None) => "no figure".into(),
        }
    }
}

fn yes_no(ok: bool) -> String {
    if ok { "yes" } else { "NO" }.into()
}

#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    pub fn add(&mut self, row: Row) {
        println!("  -> {}: {} ({})", row.figure, row.value, row.met());
        self.rows.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  .. {note}");
        self.notes.push(note);
    }

    /// The table in Markdown, so it can be pasted into docs/performance.md as it is.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("| figure | value | baseline | ratio | target | met? |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let ratio = row.ratio.map_or("—".into(), format_ratio);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.figure,
                row.value,
                row.baseline,
                ratio,
                row.target_text(),
                row.met()
            );
        }
        if !self.notes.is_empty() {
            out.push_str("\nNotes:\n\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

fn format_ratio(ratio: f64) -> String {
    if ratio >= 100.0 {
        format!("{ratio:.0}")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}")
    } else {
        format!("{ratio:.3}")
    }
}

/// `1k`, `10k`, `1M` for round sizes, the number otherwise.
pub fn size(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Cores, CPU model and kernel, for the header of a run.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(String::new(), |kib| format!(", {:.0} GiB RAM", kib as f64 / 1048576.0));
    format!("{cores} cores ({model}){memory}, Linux {}", kernel.trim())
}

/// The git commit of the working directory at run time, and whether it has uncommitted changes.
pub fn source_tree() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match (git(&["rev-parse", "--short", "HEAD"]), git(&["status", "--porcelain"])) {
        (Some(commit), Some(changes)) if !changes.is_empty() => format!("commit {commit} with uncommitted changes"),
        (Some(commit), _) => format!("commit {commit}"),
        _ => "unknown (not a git checkout)".into(),
    }
}

/// The 1, 5 and 15 minute load averages: other work on a shared machine shows here.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_on_the_ratio_or_the_value() {
        let row = Row::ratio("x", "1".into(), "2".into(), 0.5).target(Target::AtLeast(0.5));
        assert_eq!(row.met(), "yes");
        let row = Row::plain("m", "2000 B".into())
            .target(Target::AtMost(1024.0))
            .check_value(2000.0, "B/task");
        assert_eq!(
            (row.met().as_str(), row.target_text().as_str()),
            ("NO", "<= 1024 B/task")
        );
        assert_eq!(size(100_000), "100k");
        assert_eq!(size(1_000_000), "1M");
    }
}
