//! The few styles and marks the text output uses. Printed through `anstream`, which drops
//! the escape codes when the stream is not a terminal, when `NO_COLOR` is set, or with
//! `--color never`.

use anstyle::{AnsiColor, Style};

/// Passed, healthy.
pub const GOOD: Style = AnsiColor::Green.on_default();
/// A warning: works, but look at it.
pub const WARN: Style = AnsiColor::Yellow.on_default();
/// Failed.
pub const BAD: Style = AnsiColor::Red.on_default();
/// Headings and names.
pub const BOLD: Style = Style::new().bold();
/// Secondary detail: hints, links.
pub const DIM: Style = Style::new().dimmed();

/// Check marks, linkerd-style: passed.
pub const PASS: &str = "√";
/// Check marks: warning.
pub const WARNING: &str = "‼";
/// Check marks: failed.
pub const FAIL: &str = "×";
/// Injection tables, istioctl-style: yes.
pub const YES: &str = "✔";
/// Injection tables: no.
pub const NO: &str = "✘";

/// `text` in `style` (the escape codes are removed by anstream where colour is off).
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}
