//! The workbench's colours, as one [`Theme`] of named styles that every pane
//! draws with, so no pane picks a colour of its own and a user can restyle ftui
//! without rebuilding it.
//!
//! Themes are TOML, one table per style:
//!
//! ```toml
//! [trained]
//! fg = "lightgreen"        # a name, "reset", "none", "#rrggbb" or 0-255
//! bg = 22
//! modifiers = ["bold"]     # bold, dim, italic, underlined, reversed, ...
//! ```
//!
//! Every theme is applied over the built-in dark theme, field by field (as
//! gitui's and bottom's are), so a theme file names only what it changes and a
//! style ftui adds later gets dark's value instead of breaking old files. A
//! mistyped style or field is an error naming it and its line: a silently
//! ignored key would look like a theme that does not work.
//!
//! The built-in themes are embedded in the binary, so ftui looks the same from
//! any folder; user themes live in `<config dir>/themes/<name>.toml`.

use ratatui::style::{Color, Modifier, Style};
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The built-in themes, in the order [`Theme::next_builtin`] cycles through.
pub const THEMES: [&str; 3] = ["dark", "light", "high-contrast"];

/// The embedded TOML of a built-in theme.
fn builtin_source(name: &str) -> Option<&'static str> {
    match name {
        "dark" => Some(include_str!("../../themes/dark.toml")),
        "light" => Some(include_str!("../../themes/light.toml")),
        "high-contrast" => Some(include_str!("../../themes/high-contrast.toml")),
        _ => None,
    }
}

/// Declares the style fields once, so the struct, the TOML names and the
/// lookup by name cannot drift apart.
macro_rules! theme_styles {
    ($($(#[doc = $doc:literal])+ $field:ident,)+) => {
        /// The styles ftui draws with. Fields are plain [`Style`]s (`Copy`), to
        /// use as they are or to `patch` over another style.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Theme {
            /// The name it was loaded by: a built-in name, a user theme's name,
            /// or a file's stem.
            pub name: String,
            $($(#[doc = $doc])+ pub $field: Style,)+
        }

        impl Theme {
            /// Every style's name, as written in a theme file.
            pub const STYLE_NAMES: &'static [&'static str] = &[$(stringify!($field)),+];

            /// A theme with every style empty: what dark.toml is applied over.
            fn empty(name: &str) -> Theme {
                Theme {
                    name: name.to_string(),
                    $($field: Style::new(),)+
                }
            }

            /// The style called `name` in a theme file.
            pub fn style(&self, name: &str) -> Option<Style> {
                match name {
                    $(stringify!($field) => Some(self.$field),)+
                    _ => None,
                }
            }

            fn style_mut(&mut self, name: &str) -> Option<&mut Style> {
                match name {
                    $(stringify!($field) => Some(&mut self.$field),)+
                    _ => None,
                }
            }
        }
    };
}

theme_styles! {
    /// Ordinary text; also the base painted under a whole screen.
    text,
    /// Secondary text: hints, units, the system prompt.
    dim,
    /// Titles, tab labels, section names, a chosen setting.
    accent,
    /// The selected list row or token (patched over that thing's own style).
    selected,
    /// The tab of the pane on show.
    tab_active,
    /// The status bar.
    status,
    /// The model's name, device and dtype in the status bar.
    status_model,
    /// A key in the hint bar and the help screen.
    key_hint_key,
    /// What that key does.
    key_hint_text,
    /// Errors.
    error,
    /// Warnings.
    warning,
    /// Something that went well or is within limits.
    ok,
    /// A token the loss is computed on.
    trained,
    /// A token whose label is -100 (no loss).
    masked,
    /// A padding token.
    pad,
    /// The mark where a packed sequence starts.
    boundary,
    /// A special token such as `<|im_start|>` (patched over its kind's style).
    special,
    /// The user's turns in the chat.
    user,
    /// The model's turns in the chat.
    assistant,
    /// A config value that differs from its default.
    changed,
    /// Pane borders.
    border,
    /// The border of the pane or field that has the keys.
    border_focused,
}

/// Why a theme could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error(
        "no theme `{name}`: the built-in themes are {} and {} does not exist",
        THEMES.join(", "),
        path.display()
    )]
    NotFound { name: String, path: PathBuf },
    #[error("cannot read the theme {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{file}, line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// A style or field that does not exist, or a value that is not one.
    /// `key` is `style` or `style.field`.
    #[error("{file}, line {line}: `{key}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

impl Default for Theme {
    /// The built-in dark theme.
    fn default() -> Self {
        // dark.toml is embedded and a test parses it, so the fallback (every
        // style empty: the terminal's own colours) is never reached.
        Theme::builtin("dark").unwrap_or_else(|| Theme::empty("dark"))
    }
}

impl Theme {
    /// A built-in theme by name (one of [`THEMES`]).
    pub fn builtin(name: &str) -> Option<Theme> {
        Self::builtin_result(name)?.ok()
    }

    fn builtin_result(name: &str) -> Option<Result<Theme, ThemeError>> {
        let src = builtin_source(name)?;
        let file = format!("themes/{name}.toml (built in)");
        let mut theme = Theme::empty(name);
        Some(theme.apply_toml(src, &file).map(|()| theme))
    }

    /// Loads a theme: a built-in name, else a user theme
    /// `<config dir>/themes/<name>.toml`, else (a name ending in `.toml` or
    /// holding a `/`) a path to a theme file.
    pub fn load(name_or_path: &str) -> Result<Theme, ThemeError> {
        Self::load_in(name_or_path, &crate::paths::dirs().config)
    }

    /// [`Theme::load`] with the config folder given.
    pub fn load_in(name_or_path: &str, config_dir: &Path) -> Result<Theme, ThemeError> {
        if let Some(builtin) = Self::builtin_result(name_or_path) {
            return builtin;
        }
        let as_path = Path::new(name_or_path);
        let is_path = as_path.extension().is_some_and(|e| e == "toml")
            || name_or_path.contains('/')
            || name_or_path.contains(std::path::MAIN_SEPARATOR);
        let (name, path) = if is_path {
            let stem = as_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| name_or_path.to_string());
            (stem, as_path.to_path_buf())
        } else {
            let path = config_dir
                .join("themes")
                .join(format!("{name_or_path}.toml"));
            (name_or_path.to_string(), path)
        };
        let src = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ThemeError::NotFound {
                    name: name_or_path.to_string(),
                    path,
                })
            }
            Err(source) => return Err(ThemeError::Io { path, source }),
        };
        let mut theme = Theme::from_toml(&src, &path.display().to_string())?;
        theme.name = name;
        Ok(theme)
    }

    /// A theme from TOML text, applied over the built-in dark theme. `file`
    /// names the text's origin in errors.
    pub fn from_toml(src: &str, file: &str) -> Result<Theme, ThemeError> {
        let mut theme = Theme::default();
        theme.apply_toml(src, file)?;
        Ok(theme)
    }

    /// The built-in theme after `current` (the first after a user theme), for
    /// a key that cycles themes at run time.
    pub fn next_builtin(current: &str) -> &'static str {
        let next = THEMES
            .iter()
            .position(|t| *t == current)
            .map_or(0, |i| (i + 1) % THEMES.len());
        THEMES[next]
    }

    /// Applies a theme file over `self`: each style it names, and within a
    /// style each of `fg`, `bg` and `modifiers` it gives, replaces this one's.
    fn apply_toml(&mut self, src: &str, file: &str) -> Result<(), ThemeError> {
        let doc = DeTable::parse(src).map_err(|e| ThemeError::Syntax {
            file: file.to_string(),
            line: e.span().map_or(1, |s| crate::config::line_at(src, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let invalid = |key: String, at: usize, message: String| ThemeError::Invalid {
            file: file.to_string(),
            line: crate::config::line_at(src, at),
            key,
            message,
        };
        for (name, value) in doc.get_ref().iter() {
            let style_name: &str = name.get_ref();
            let Some(style) = self.style_mut(style_name) else {
                return Err(invalid(
                    style_name.to_string(),
                    name.span().start,
                    format!(
                        "no such style; the styles are {}",
                        Theme::STYLE_NAMES.join(", ")
                    ),
                ));
            };
            let DeValue::Table(fields) = value.get_ref() else {
                return Err(invalid(
                    style_name.to_string(),
                    name.span().start,
                    "expected a table of fg, bg and modifiers".into(),
                ));
            };
            for (field, v) in fields.iter() {
                let key = format!("{style_name}.{}", field.get_ref());
                let result = match &**field.get_ref() {
                    "fg" => parse_color(v).map(|c| style.fg = c),
                    "bg" => parse_color(v).map(|c| style.bg = c),
                    "modifiers" => parse_modifiers(v).map(|m| {
                        style.add_modifier = m;
                        style.sub_modifier = Modifier::empty();
                    }),
                    _ => Err((
                        field.span().start,
                        "no such field; a style has fg, bg and modifiers".to_string(),
                    )),
                };
                result.map_err(|(at, message)| invalid(key, at, message))?;
            }
        }
        Ok(())
    }
}

/// A colour: a name, "reset", "none" (no colour: inherit), "#rrggbb", or an
/// index 0-255 as a number or a string. Errors carry the offending offset.
fn parse_color(v: &Spanned<DeValue<'_>>) -> Result<Option<Color>, (usize, String)> {
    let at = v.span().start;
    match v.get_ref() {
        DeValue::String(s) if s.trim().eq_ignore_ascii_case("none") => Ok(None),
        DeValue::String(s) => s.trim().parse::<Color>().map(Some).map_err(|_| {
            (
                at,
                format!(
                    "`{s}` is not a colour: use a name like \"green\" or \"darkgray\", \
                     \"reset\", \"none\", \"#rrggbb\", or an index 0-255"
                ),
            )
        }),
        DeValue::Integer(i) => u8::from_str_radix(i.as_str(), i.radix())
            .map(|n| Some(Color::Indexed(n)))
            .map_err(|_| (at, format!("colour index {i} is not within 0-255"))),
        _ => Err((at, "a colour is a string or an index 0-255".into())),
    }
}

/// A list of modifier names, as one set.
fn parse_modifiers(v: &Spanned<DeValue<'_>>) -> Result<Modifier, (usize, String)> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err((
            v.span().start,
            "modifiers is a list, like [\"bold\", \"italic\"]".into(),
        ));
    };
    let mut set = Modifier::empty();
    for item in items.iter() {
        let at = item.span().start;
        let DeValue::String(name) = item.get_ref() else {
            return Err((at, "a modifier is a string, like \"bold\"".into()));
        };
        set |= modifier(name).ok_or_else(|| {
            (
                at,
                format!(
                    "`{name}` is not a modifier: use bold, dim, italic, underlined, reversed, \
                     crossed_out, slow_blink, rapid_blink or hidden"
                ),
            )
        })?;
    }
    Ok(set)
}

fn modifier(name: &str) -> Option<Modifier> {
    Some(
        match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "bold" => Modifier::BOLD,
            "dim" => Modifier::DIM,
            "italic" => Modifier::ITALIC,
            "underlined" | "underline" => Modifier::UNDERLINED,
            "reversed" | "reverse" => Modifier::REVERSED,
            "crossed_out" => Modifier::CROSSED_OUT,
            "slow_blink" => Modifier::SLOW_BLINK,
            "rapid_blink" => Modifier::RAPID_BLINK,
            "hidden" => Modifier::HIDDEN,
            _ => return None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(src: &str) -> (usize, String, String) {
        match Theme::from_toml(src, "test.toml") {
            Err(ThemeError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn builtin_themes_parse_and_carry_their_names() {
        for name in THEMES {
            let theme = match Theme::builtin_result(name) {
                Some(Ok(t)) => t,
                other => panic!("{name}: {other:?}"),
            };
            assert_eq!(theme.name, name);
            assert_eq!(
                Theme::load_in(name, Path::new("/nonexistent")).unwrap(),
                theme
            );
        }
        assert!(Theme::builtin("solarized").is_none());
        assert_eq!(Theme::default(), Theme::builtin("dark").unwrap());
    }

    #[test]
    fn dark_names_every_style() {
        let src = builtin_source("dark").unwrap();
        let doc = DeTable::parse(src).unwrap();
        let mut named: Vec<&str> = doc.get_ref().keys().map(|k| &**k.get_ref()).collect();
        let mut all = Theme::STYLE_NAMES.to_vec();
        named.sort_unstable();
        all.sort_unstable();
        assert_eq!(
            named, all,
            "dark.toml is the base every other theme lies over"
        );
    }

    #[test]
    fn a_file_changes_only_what_it_names() {
        let dark = Theme::default();
        let t = Theme::from_toml("[trained]\nbg = \"blue\"\n", "t.toml").unwrap();
        assert_eq!(t.trained.bg, Some(Color::Blue));
        assert_eq!(t.trained.fg, dark.trained.fg, "fg not named: dark's stays");
        assert_eq!(t.trained.add_modifier, dark.trained.add_modifier);
        for name in Theme::STYLE_NAMES.iter().filter(|n| **n != "trained") {
            assert_eq!(t.style(name), dark.style(name), "{name}");
        }
        // An empty table and an empty file change nothing.
        assert_eq!(Theme::from_toml("[pad]\n", "t.toml").unwrap(), dark);
        assert_eq!(Theme::from_toml("", "t.toml").unwrap(), dark);
    }

    #[test]
    fn modifiers_replace_and_none_clears() {
        let t = Theme::from_toml(
            "[accent]\nmodifiers = [\"italic\", \"Underlined\"]\n[pad]\nbg = \"none\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            t.accent.add_modifier,
            Modifier::ITALIC | Modifier::UNDERLINED
        );
        assert_eq!(t.pad.bg, None);
        let t = Theme::from_toml("[accent]\nmodifiers = []\n", "t.toml").unwrap();
        assert_eq!(t.accent.add_modifier, Modifier::empty());
    }

    #[test]
    fn colour_forms() {
        let src = r##"
            text = { fg = "DarkGray", bg = "reset" }
            dim = { fg = "#ff8000", bg = 200 }
            accent = { fg = "17", bg = 0x10 }
        "##;
        let t = Theme::from_toml(src, "t.toml").unwrap();
        assert_eq!(t.text.fg, Some(Color::DarkGray));
        assert_eq!(t.text.bg, Some(Color::Reset));
        assert_eq!(t.dim.fg, Some(Color::Rgb(255, 128, 0)));
        assert_eq!(t.dim.bg, Some(Color::Indexed(200)));
        assert_eq!(t.accent.fg, Some(Color::Indexed(17)));
        assert_eq!(t.accent.bg, Some(Color::Indexed(16)));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let (line, key, message) = invalid("[trained]\nfg = \"red\"\n\n[trainde]\nfg = \"red\"\n");
        assert_eq!((line, key.as_str()), (4, "trainde"));
        assert!(message.contains("masked"), "lists the styles: {message}");

        let (line, key, _) = invalid("[masked]\nfg = \"red\"\nfgg = \"blue\"\n");
        assert_eq!((line, key.as_str()), (3, "masked.fgg"));

        let (line, key, message) = invalid("[pad]\n\nbg = \"purpel\"\n");
        assert_eq!((line, key.as_str()), (3, "pad.bg"));
        assert!(message.contains("purpel"), "{message}");

        let (line, key, _) = invalid("[pad]\nfg = 300\n");
        assert_eq!((line, key.as_str()), (2, "pad.fg"));

        let (line, key, _) = invalid("[pad]\nfg = true\n");
        assert_eq!((line, key.as_str()), (2, "pad.fg"));

        let (line, key, _) = invalid("[ok]\nmodifiers = \"bold\"\n");
        assert_eq!((line, key.as_str()), (2, "ok.modifiers"));

        let (line, key, message) = invalid("[ok]\nmodifiers = [\n  \"bold\",\n  \"blinky\",\n]\n");
        assert_eq!((line, key.as_str()), (4, "ok.modifiers"));
        assert!(message.contains("blinky"), "{message}");

        let (line, key, _) = invalid("\ntrained = \"green\"\n");
        assert_eq!((line, key.as_str()), (2, "trained"));

        let err = Theme::from_toml("[trained]\nfg = \"red\"\n[ok\n", "mine.toml").unwrap_err();
        assert!(matches!(err, ThemeError::Syntax { line: 3, .. }), "{err:?}");
        let shown = err.to_string();
        assert!(shown.starts_with("mine.toml, line 3: "), "{shown}");
    }

    #[test]
    fn load_finds_user_themes_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let themes = dir.path().join("themes");
        std::fs::create_dir_all(&themes).unwrap();
        std::fs::write(themes.join("mine.toml"), "[ok]\nfg = \"blue\"\n").unwrap();
        let t = Theme::load_in("mine", dir.path()).unwrap();
        assert_eq!((t.name.as_str(), t.ok.fg), ("mine", Some(Color::Blue)));
        assert_eq!(t.trained, Theme::default().trained);

        let file = dir.path().join("other.toml");
        std::fs::write(&file, "[ok]\nfg = \"red\"\n").unwrap();
        let t = Theme::load_in(file.to_str().unwrap(), Path::new("/nonexistent")).unwrap();
        assert_eq!((t.name.as_str(), t.ok.fg), ("other", Some(Color::Red)));

        match Theme::load_in("nope", dir.path()) {
            Err(ThemeError::NotFound { name, path }) => {
                assert_eq!(name, "nope");
                assert_eq!(path, themes.join("nope.toml"));
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(themes.join("bad.toml"), "[ok]\nfg = \"red\"\nbold = true\n").unwrap();
        let err = Theme::load_in("bad", dir.path()).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("bad.toml, line 3: `ok.bold`"), "{shown}");
    }

    #[test]
    fn next_builtin_cycles() {
        assert_eq!(Theme::next_builtin("dark"), "light");
        assert_eq!(Theme::next_builtin("light"), "high-contrast");
        assert_eq!(Theme::next_builtin("high-contrast"), "dark");
        assert_eq!(Theme::next_builtin("mine"), "dark");
    }

    /// The token kinds, each also with `special` over it, as the batch view
    /// draws them (padding is never marked special).
    fn token_styles(t: &Theme) -> Vec<(&'static str, Style)> {
        vec![
            ("trained", t.trained),
            ("masked", t.masked),
            ("pad", t.pad),
            ("boundary", t.boundary),
            ("special", t.special),
            ("trained+special", t.trained.patch(t.special)),
            ("masked+special", t.masked.patch(t.special)),
        ]
    }

    #[test]
    fn token_kinds_look_different_in_every_theme() {
        for name in THEMES {
            let styles = token_styles(&Theme::builtin(name).unwrap());
            for (i, (a, sa)) in styles.iter().enumerate() {
                for (b, sb) in &styles[i + 1..] {
                    assert_ne!(sa, sb, "{name}: {a} and {b} look the same");
                }
            }
        }
        let [dark, light, hc] = THEMES.map(|n| Theme::builtin(n).unwrap());
        for (a, b) in [(&dark, &light), (&dark, &hc), (&light, &hc)] {
            assert_ne!(
                token_styles(a),
                token_styles(b),
                "{} and {}",
                a.name,
                b.name
            );
        }
    }

    #[test]
    fn high_contrast_uses_no_dim_text() {
        let t = Theme::builtin("high-contrast").unwrap();
        for name in Theme::STYLE_NAMES {
            let s = t.style(name).unwrap();
            assert!(!s.add_modifier.contains(Modifier::DIM), "{name} is dim");
            assert_ne!(s.fg, Some(Color::DarkGray), "{name} is dark grey");
        }
    }

    /// xterm's colours, to judge contrast by.
    fn rgb(c: Color) -> Option<(u8, u8, u8)> {
        const ANSI: [(u8, u8, u8); 16] = [
            (0, 0, 0),
            (205, 0, 0),
            (0, 205, 0),
            (205, 205, 0),
            (0, 0, 238),
            (205, 0, 205),
            (0, 205, 205),
            (229, 229, 229),
            (127, 127, 127),
            (255, 0, 0),
            (0, 255, 0),
            (255, 255, 0),
            (92, 92, 255),
            (255, 0, 255),
            (0, 255, 255),
            (255, 255, 255),
        ];
        let cube = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
        Some(match c {
            Color::Reset => return None,
            Color::Rgb(r, g, b) => (r, g, b),
            Color::Indexed(i @ 0..=15) => ANSI[i as usize],
            Color::Indexed(i @ 16..=231) => {
                let i = i - 16;
                (cube(i / 36), cube(i / 6 % 6), cube(i % 6))
            }
            Color::Indexed(i) => {
                let v = 8 + 10 * (i - 232);
                (v, v, v)
            }
            Color::Black => ANSI[0],
            Color::Red => ANSI[1],
            Color::Green => ANSI[2],
            Color::Yellow => ANSI[3],
            Color::Blue => ANSI[4],
            Color::Magenta => ANSI[5],
            Color::Cyan => ANSI[6],
            Color::Gray => ANSI[7],
            Color::DarkGray => ANSI[8],
            Color::LightRed => ANSI[9],
            Color::LightGreen => ANSI[10],
            Color::LightYellow => ANSI[11],
            Color::LightBlue => ANSI[12],
            Color::LightMagenta => ANSI[13],
            Color::LightCyan => ANSI[14],
            Color::White => ANSI[15],
        })
    }

    /// WCAG's contrast ratio.
    fn contrast(a: (u8, u8, u8), b: (u8, u8, u8)) -> f64 {
        let lum = |(r, g, b): (u8, u8, u8)| {
            let ch = |v: u8| {
                let v = f64::from(v) / 255.0;
                if v <= 0.03928 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)
        };
        let (x, y) = (lum(a), lum(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    /// Every style's text against what it is drawn on (its own background,
    /// else `text`'s, else the terminal's), reversal included.
    fn assert_contrast(name: &str, terminal_fg: Color, terminal_bg: Color, least: f64) {
        let t = Theme::builtin(name).unwrap();
        let base_fg = t.text.fg.and_then(rgb).or(rgb(terminal_fg)).unwrap();
        let base_bg = t.text.bg.and_then(rgb).or(rgb(terminal_bg)).unwrap();
        let mut styles: Vec<(String, Style)> = Theme::STYLE_NAMES
            .iter()
            .map(|n| (n.to_string(), t.style(n).unwrap()))
            .collect();
        styles.extend(
            token_styles(&t)
                .into_iter()
                .map(|(n, s)| (n.to_string(), s)),
        );
        styles.push(("selected trained".into(), t.trained.patch(t.selected)));
        styles.push(("selected changed".into(), t.changed.patch(t.selected)));
        for (style_name, s) in styles {
            let mut fg = s.fg.and_then(rgb).unwrap_or(base_fg);
            let mut bg = s.bg.and_then(rgb).unwrap_or(base_bg);
            if s.add_modifier.contains(Modifier::REVERSED) {
                std::mem::swap(&mut fg, &mut bg);
            }
            let c = contrast(fg, bg);
            assert!(
                c >= least,
                "{name}: {style_name} has contrast {c:.2} < {least}"
            );
        }
    }

    #[test]
    fn light_is_readable_on_white() {
        assert_contrast("light", Color::Black, Color::White, 3.0);
    }

    #[test]
    fn high_contrast_is_high_contrast() {
        assert_contrast("high-contrast", Color::White, Color::Black, 7.0);
    }
}
