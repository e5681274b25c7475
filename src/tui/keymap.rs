//! The console's key bindings in one table: the help overlay, the footer hints and
//! docs/keybindings.md all read it, so they cannot drift from each other.

/// The bindings the footer offers, when they apply to what is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Help,
    Quit,
    Start,
    Pause,
    Target,
    Contract,
    Rollback,
    Throttle,
    Log,
    Pane,
    Plan,
}

impl Hint {
    /// The footer's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Hint::Help => "help",
            Hint::Quit => "quit",
            Hint::Start => "start",
            Hint::Pause => "pause/resume",
            Hint::Target => "batch",
            Hint::Contract => "contract",
            Hint::Rollback => "rollback",
            Hint::Throttle => "throttle",
            Hint::Log => "log",
            Hint::Pane => "pane",
            Hint::Plan => "plan",
        }
    }
}

/// One binding as a person reads it.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static str,
    pub action: &'static str,
    /// Offered in the footer when it applies.
    pub hint: Option<Hint>,
}

const fn bind(keys: &'static str, action: &'static str, hint: Option<Hint>) -> Binding {
    Binding { keys, action, hint }
}

/// Every binding, in the order the help overlay lists them.
pub const BINDINGS: [Binding; 16] = [
    bind(
        "j / k, ↓ / ↑",
        "move the selection, scroll the plan or the log",
        None,
    ),
    bind(
        "Tab / Shift-Tab",
        "focus the next / previous pane",
        Some(Hint::Pane),
    ),
    bind(
        "Enter",
        "open the selected migration's plan",
        Some(Hint::Plan),
    ),
    bind(
        "s",
        "start the selected migration (expand + backfill)",
        Some(Hint::Start),
    ),
    bind(
        "p",
        "pause or resume the running migration",
        Some(Hint::Pause),
    ),
    bind(
        "+ / -",
        "raise / lower the backfill's batch time target",
        Some(Hint::Target),
    ),
    bind("t", "manual throttle on / off", Some(Hint::Throttle)),
    bind(
        "c",
        "contract (shows the safety gates, asks you to type the name)",
        Some(Hint::Contract),
    ),
    bind(
        "r",
        "roll back (only before contract; asks to confirm)",
        Some(Hint::Rollback),
    ),
    bind("l", "show the log", Some(Hint::Log)),
    bind("/", "filter the log (Enter applies, Esc clears)", None),
    bind("?", "this help", Some(Hint::Help)),
    bind("Esc", "close a dialog without doing anything", None),
    bind(
        "q, Ctrl-C",
        "quit (asks to detach or pause if a migration runs)",
        Some(Hint::Quit),
    ),
    bind("y / n", "confirm / cancel a rollback", None),
    bind(
        "d / p",
        "quit dialog: detach (the run goes on) / pause it and quit",
        None,
    ),
];

/// The footer's order: what is most needed first, so a narrow screen cuts the least.
const FOOTER_ORDER: [Hint; 11] = [
    Hint::Help,
    Hint::Quit,
    Hint::Start,
    Hint::Pause,
    Hint::Target,
    Hint::Contract,
    Hint::Rollback,
    Hint::Throttle,
    Hint::Log,
    Hint::Pane,
    Hint::Plan,
];

/// `(key, hint)` pairs for the footer, most needed first: a binding's first key (`Tab`
/// of `Tab / Shift-Tab`), or both when they are one character each (`+/-`).
pub fn hints() -> impl Iterator<Item = (String, Hint)> {
    FOOTER_ORDER.into_iter().filter_map(|hint| {
        let binding = BINDINGS.iter().find(|b| b.hint == Some(hint))?;
        let first = binding.keys.split(',').next().unwrap_or(binding.keys);
        let key = match first.split(" / ").collect::<Vec<_>>()[..] {
            [a, b] if a.chars().count() == 1 && b.chars().count() == 1 => format!("{a}/{b}"),
            _ => first.split(' ').next().unwrap_or(first).to_string(),
        };
        Some((key, hint))
    })
}

/// docs/keybindings.md's table, generated from [`BINDINGS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| keys | action |\n| --- | --- |\n");
    for binding in BINDINGS {
        out.push_str(&format!("| `{}` | {} |\n", binding.keys, binding.action));
    }
    out
}
