//! The console's colours: built-in themes from `themes/*.toml`, user themes that override
//! part of one, and NO_COLOR, which always wins.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use crate::position::line_column;

/// The themes compiled into the binary, so zdm looks right wherever it is copied.
const BUILT_IN: [(&str, &str); 4] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("monochrome", include_str!("../../themes/monochrome.toml")),
];

/// The theme used when none is chosen.
pub const DEFAULT: &str = "dark";

/// Why a theme could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no theme named {name:?}: choose one of {available}, or give the path of a .toml file"
    )]
    Unknown { name: String, available: String },
    #[error("cannot read the theme {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: colors.{key} = {value:?} is not a colour (expected an ANSI name such as cyan or lightred, an index 0-255, \"#rrggbb\" or \"reset\")")]
    Color {
        path: String,
        key: &'static str,
        value: String,
    },
}

/// Declares the colour roles once: the resolved `Theme` fields, the partial file form, and
/// the merge of one over the other all come from this list.
macro_rules! colour_roles {
    ($($role:ident),+ $(,)?) => {
        /// Resolved colours, one per role the views draw with.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Colors { $(pub $role: Color,)+ }

        /// A theme file's `[colors]` table: any subset of the roles.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PartialColors { $($role: Option<String>,)+ }

        impl Colors {
            /// Every role in one colour.
            fn all(color: Color) -> Self {
                Colors { $($role: color,)+ }
            }
        }

        impl PartialColors {
            /// `base` with every role this file sets replaced.
            fn over(&self, base: &Colors, path: &str) -> Result<Colors, Error> {
                Ok(Colors { $($role: match &self.$role {
                    Some(value) => parse_color(value).ok_or_else(|| Error::Color {
                        path: path.to_string(),
                        key: stringify!($role),
                        value: value.clone(),
                    })?,
                    None => base.$role,
                },)+ })
            }
        }
    };
}

colour_roles!(
    text,
    muted,
    accent,
    border,
    selection_fg,
    selection_bg,
    ok,
    warning,
    danger,
    info,
    gauge,
    chart,
);

/// A theme file: a name, optionally the built-in theme it starts from, and colours.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    /// The built-in theme a user theme overrides (default: dark).
    base: Option<String>,
    #[serde(default)]
    colors: PartialColors,
}

/// The colours and styles every view draws with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub name: String,
    pub colors: Colors,
}

impl Theme {
    /// The theme for this run: monochrome under NO_COLOR, else `choice` (a built-in name,
    /// a name in `$XDG_CONFIG_HOME/zdm/themes/`, or a file path), else dark.
    pub fn select(choice: Option<&str>, no_color: bool) -> Result<Theme, Error> {
        if no_color {
            return Self::built_in("monochrome");
        }
        let Some(choice) = choice else {
            return Self::built_in(DEFAULT);
        };
        let as_path = Path::new(choice);
        if as_path.extension().is_some_and(|ext| ext == "toml") || as_path.is_file() {
            return Self::from_file(as_path);
        }
        if let Some(user_file) = user_theme_dir().map(|dir| dir.join(format!("{choice}.toml"))) {
            if user_file.is_file() {
                return Self::from_file(&user_file);
            }
        }
        Self::built_in(choice)
    }

    /// One of the themes shipped in `themes/`.
    pub fn built_in(name: &str) -> Result<Theme, Error> {
        let (_, text) = BUILT_IN
            .iter()
            .find(|(built_in, _)| *built_in == name)
            .ok_or_else(|| Error::Unknown {
                name: name.to_string(),
                available: Self::names().join(", "),
            })?;
        let origin = format!("themes/{name}.toml");
        let file = parse(&origin, text)?;
        let colors = file.colors.over(&Colors::terminal_default(), &origin)?;
        Ok(Theme {
            name: file.name.unwrap_or_else(|| name.to_string()),
            colors,
        })
    }

    /// A user theme: the keys it sets, over its `base` built-in theme (dark by default).
    pub fn from_file(path: &Path) -> Result<Theme, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let file = parse(&origin, &text)?;
        let base = Self::built_in(file.base.as_deref().unwrap_or(DEFAULT))?;
        let colors = file.colors.over(&base.colors, &origin)?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        Ok(Theme {
            name: file.name.or(stem).unwrap_or(base.name),
            colors,
        })
    }

    /// The names of the built-in themes.
    pub fn names() -> Vec<&'static str> {
        BUILT_IN.iter().map(|(name, _)| *name).collect()
    }

    /// Whether the theme has no colours at all (then emphasis is bold and reverse video).
    pub fn is_monochrome(&self) -> bool {
        self.colors == Colors::terminal_default()
    }

    pub fn text(&self) -> Style {
        Style::default().fg(self.colors.text)
    }

    pub fn muted(&self) -> Style {
        let style = Style::default().fg(self.colors.muted);
        if self.is_monochrome() {
            style.add_modifier(Modifier::DIM)
        } else {
            style
        }
    }

    pub fn title(&self) -> Style {
        Style::default()
            .fg(self.colors.accent)
            .add_modifier(Modifier::BOLD)
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused {
            Style::default()
                .fg(self.colors.accent)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(self.colors.border)
        }
    }

    /// The selected row: its colours, and reverse video too when they are the terminal's own.
    pub fn selection(&self) -> Style {
        let style = Style::default()
            .fg(self.colors.selection_fg)
            .bg(self.colors.selection_bg);
        if self.colors.selection_bg == Color::Reset {
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        }
    }

    pub fn ok(&self) -> Style {
        Style::default().fg(self.colors.ok)
    }

    pub fn warning(&self) -> Style {
        Style::default()
            .fg(self.colors.warning)
            .add_modifier(Modifier::BOLD)
    }

    pub fn danger(&self) -> Style {
        Style::default()
            .fg(self.colors.danger)
            .add_modifier(Modifier::BOLD)
    }

    pub fn info(&self) -> Style {
        Style::default().fg(self.colors.info)
    }

    pub fn gauge(&self) -> Style {
        Style::default().fg(self.colors.gauge)
    }

    pub fn chart(&self) -> Style {
        Style::default().fg(self.colors.chart)
    }
}

impl Colors {
    /// Every role in the terminal's own colour: what monochrome is.
    fn terminal_default() -> Self {
        Colors::all(Color::Reset)
    }
}

/// Whether the user asked for no colour (https://no-color.org: set and not empty).
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

fn user_theme_dir() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("zdm").join("themes"))
}

fn parse(origin: &str, text: &str) -> Result<ThemeFile, Error> {
    toml::from_str(text).map_err(|error| {
        let (line, column) = error
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        Error::Parse {
            path: origin.to_string(),
            line,
            column,
            message: error.message().to_string(),
        }
    })
}

/// ANSI names (`cyan`, `lightred`, `darkgray`), `reset`, an index, or `#rrggbb`.
fn parse_color(text: &str) -> Option<Color> {
    Color::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deeply_nested_theme_is_refused_at_its_position() {
        let text = format!(
            "[colors]\nx = {}{}\n",
            "[".repeat(20_000),
            "]".repeat(20_000)
        );
        match parse("deep.toml", &text) {
            Err(Error::Parse { line, .. }) => assert_eq!(line, 2),
            Ok(_) => panic!("a 20,000-deep theme must be refused"),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn every_built_in_theme_loads_with_every_role_set() {
        for name in Theme::names() {
            let theme = Theme::built_in(name).expect(name);
            assert_eq!(theme.name, name);
        }
        // Monochrome is the only one without colour.
        assert!(Theme::built_in("monochrome").expect("mono").is_monochrome());
        assert!(!Theme::built_in("dark").expect("dark").is_monochrome());
    }

    #[test]
    fn built_in_files_set_every_role_explicitly() {
        // A role a built-in theme forgets would silently fall back to the terminal colour.
        for (name, text) in BUILT_IN {
            let file: ThemeFile = toml::from_str(text).expect(name);
            let c = &file.colors;
            let set = [
                &c.text,
                &c.muted,
                &c.accent,
                &c.border,
                &c.selection_fg,
                &c.selection_bg,
                &c.ok,
                &c.warning,
                &c.danger,
                &c.info,
                &c.gauge,
                &c.chart,
            ];
            assert!(
                set.iter().all(|role| role.is_some()),
                "{name} leaves a role unset"
            );
        }
    }

    type Rgb = (u8, u8, u8);

    /// The standard xterm palette: the 16 ANSI colours (what a 16-colour terminal shows,
    /// and the first 16 entries of a 256-colour one), then the 6x6x6 cube and the grey
    /// ramp of the 256-colour palette.
    fn xterm_rgb(index: u8) -> Rgb {
        const ANSI: [Rgb; 16] = [
            (0x00, 0x00, 0x00),
            (0xcd, 0x00, 0x00),
            (0x00, 0xcd, 0x00),
            (0xcd, 0xcd, 0x00),
            (0x00, 0x00, 0xee),
            (0xcd, 0x00, 0xcd),
            (0x00, 0xcd, 0xcd),
            (0xe5, 0xe5, 0xe5),
            (0x7f, 0x7f, 0x7f),
            (0xff, 0x00, 0x00),
            (0x00, 0xff, 0x00),
            (0xff, 0xff, 0x00),
            (0x5c, 0x5c, 0xff),
            (0xff, 0x00, 0xff),
            (0x00, 0xff, 0xff),
            (0xff, 0xff, 0xff),
        ];
        match index {
            0..=15 => ANSI[usize::from(index)],
            16..=231 => {
                let level = |n: u8| if n == 0 { 0 } else { 55 + 40 * n };
                let n = index - 16;
                (level(n / 36), level(n / 6 % 6), level(n % 6))
            }
            232..=255 => {
                let grey = 8 + 10 * (index - 232);
                (grey, grey, grey)
            }
        }
    }

    /// A theme colour as the xterm palette draws it; `Reset` is the terminal's own
    /// colour, `reset` (its default foreground or background).
    fn rgb(color: Color, reset: Rgb) -> Rgb {
        let index = match color {
            Color::Reset => return reset,
            Color::Rgb(r, g, b) => return (r, g, b),
            Color::Indexed(index) => index,
            Color::Black => 0,
            Color::Red => 1,
            Color::Green => 2,
            Color::Yellow => 3,
            Color::Blue => 4,
            Color::Magenta => 5,
            Color::Cyan => 6,
            Color::Gray => 7,
            Color::DarkGray => 8,
            Color::LightRed => 9,
            Color::LightGreen => 10,
            Color::LightYellow => 11,
            Color::LightBlue => 12,
            Color::LightMagenta => 13,
            Color::LightCyan => 14,
            Color::White => 15,
        };
        xterm_rgb(index)
    }

    /// WCAG 2 relative luminance.
    fn luminance((r, g, b): Rgb) -> f64 {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    }

    /// WCAG 2 contrast ratio, 1 to 21.
    fn contrast(a: Rgb, b: Rgb) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn the_contrast_arithmetic_matches_wcag_and_xterm() {
        assert!((contrast((0, 0, 0), (255, 255, 255)) - 21.0).abs() < 1e-9);
        assert!((contrast((0x76, 0x76, 0x76), (255, 255, 255)) - 4.54).abs() < 0.01);
        assert_eq!(xterm_rgb(16), (0, 0, 0));
        assert_eq!(xterm_rgb(196), (0xff, 0, 0));
        assert_eq!(xterm_rgb(28), (0, 0x87, 0));
        assert_eq!(xterm_rgb(231), (0xff, 0xff, 0xff));
        assert_eq!(xterm_rgb(232), (8, 8, 8));
        assert_eq!(xterm_rgb(255), (0xee, 0xee, 0xee));
        assert_eq!(rgb(Color::Gray, (0, 0, 0)), xterm_rgb(7));
        assert_eq!(
            rgb(Color::Indexed(7), (0, 0, 0)),
            rgb(Color::Gray, (0, 0, 0))
        );
    }

    #[test]
    fn every_built_in_theme_is_readable_on_the_terminal_it_is_for() {
        // The terminal each theme is for, as (default foreground, background): dark ones
        // draw xterm's ANSI 7 on ANSI 0, the light one black on white. Named colours are
        // the 16-colour palette (a 256-colour terminal shows the same for them), indices
        // the 256-colour palette. Monochrome draws only the terminal's own colours.
        let dark = ((0xe5, 0xe5, 0xe5), (0, 0, 0));
        let light = ((0, 0, 0), (0xff, 0xff, 0xff));
        let mut failures = Vec::new();
        for name in Theme::names() {
            if name == "monochrome" {
                continue;
            }
            let (fg, bg) = if name == "light" { light } else { dark };
            let c = Theme::built_in(name).expect(name).colors;
            let on_background = [
                ("text", c.text),
                ("muted", c.muted),
                ("accent", c.accent),
                ("border", c.border),
                ("ok", c.ok),
                ("warning", c.warning),
                ("danger", c.danger),
                ("info", c.info),
                ("gauge", c.gauge),
                ("chart", c.chart),
            ];
            let mut pairs: Vec<(String, Rgb, Rgb)> = on_background
                .iter()
                .map(|(role, color)| (role.to_string(), rgb(*color, fg), bg))
                .collect();
            pairs.push((
                "selection_fg on selection_bg".to_string(),
                rgb(c.selection_fg, fg),
                rgb(c.selection_bg, bg),
            ));
            for (pair, fore, back) in pairs {
                let ratio = contrast(fore, back);
                if ratio < 4.5 {
                    failures.push(format!("{name}: {pair} {ratio:.2}:1"));
                }
            }
        }
        assert!(failures.is_empty(), "below 4.5:1: {failures:#?}");
    }

    #[test]
    fn no_color_always_wins() {
        let theme = Theme::select(Some("high-contrast"), true).expect("theme");
        assert!(theme.is_monochrome());
        assert!(theme.selection().add_modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn the_default_is_dark() {
        assert_eq!(Theme::select(None, false).expect("theme").name, "dark");
    }

    #[test]
    fn a_user_theme_overrides_only_what_it_sets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("night.toml");
        std::fs::write(&path, "base = \"light\"\n[colors]\ndanger = \"#ff00ff\"\n").expect("write");
        let theme = Theme::select(path.to_str(), false).expect("theme");
        let light = Theme::built_in("light").expect("light");
        assert_eq!(theme.name, "night");
        assert_eq!(theme.colors.danger, Color::Rgb(255, 0, 255));
        assert_eq!(theme.colors.accent, light.colors.accent);
    }

    #[test]
    fn bad_themes_say_where_and_what() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[colors]\nacent = \"red\"\n").expect("write");
        let message = Theme::from_file(&path)
            .expect_err("unknown key")
            .to_string();
        assert!(
            message.contains("bad.toml:2:1: unknown field `acent`"),
            "{message}"
        );

        std::fs::write(&path, "[colors]\naccent = \"blurple\"\n").expect("write");
        let message = Theme::from_file(&path).expect_err("bad colour").to_string();
        assert!(
            message.contains("colors.accent = \"blurple\" is not a colour"),
            "{message}"
        );

        let message = Theme::select(Some("neon"), false)
            .expect_err("unknown")
            .to_string();
        assert!(
            message.contains("dark, light, high-contrast, monochrome"),
            "{message}"
        );
    }
}
