//! The workbench's keys: every command is an [`Action`], and a [`KeyMap`] says
//! which keys do it. Panes ask the map ("is this key `NextBatch`?") instead of
//! matching key codes, so a user can rebind any command and the hint bar and
//! help screen always show the keys that really work.
//!
//! Defaults are vim-ish with arrows as well. `<config dir>/keys.toml`, when it
//! exists, replaces the keys of the actions it names and leaves the rest (as
//! gitui's key list does):
//!
//! ```toml
//! save = ["ctrl-s", "F2"]   # every key that does it; [] unbinds it
//! next_batch = "ctrl-n"     # one key may be a plain string
//! ```
//!
//! A key is a character (`a`, `G`, `?`, `+`) or a name (`enter`, `esc`, `tab`,
//! `backtab`, `space`, `backspace`, `up`, `pgdn`, `home`, `f2`, ...), after any
//! of `ctrl-`, `alt-`, `shift-`, `super-`. A mistyped action or key is an error
//! naming the file, the action and the line: ignoring it would look like a key
//! that does not work.
//!
//! Actions are per context, so one key may do different things in different
//! panes (Esc is both `back` and `stop_generation`): a pane asks
//! [`KeyMap::action`] about its own candidates, in the order it prefers them.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use toml::de::{DeTable, DeValue};

/// Declares every action once with its name in keys.toml, its description and
/// its default keys, so none of them can be missing for some action.
macro_rules! actions {
    ($($variant:ident $name:literal $description:literal [$($key:literal),*],)+) => {
        /// A command a key can give.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $(#[doc = $description] $variant,)+
        }

        impl Action {
            /// Every action, in the order the help screen lists them.
            pub const ALL: &'static [Action] = &[$(Action::$variant),+];
            const COUNT: usize = Self::ALL.len();

            /// Its name in keys.toml (snake_case).
            pub fn name(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }

            /// What it does, in a few words, for the hint bar and the help.
            pub fn description(self) -> &'static str {
                match self {
                    $(Action::$variant => $description,)+
                }
            }

            /// Its default keys, in keys.toml's syntax.
            pub fn default_keys(self) -> &'static [&'static str] {
                match self {
                    $(Action::$variant => &[$($key),*],)+
                }
            }
        }
    };
}

actions! {
    Quit "quit" "quit" ["q"],
    Help "help" "help for every key" ["?", "f1"],
    NextPane "next_pane" "next pane" ["tab"],
    PrevPane "prev_pane" "previous pane" ["shift-tab"],
    Up "up" "up" ["k", "up"],
    Down "down" "down" ["j", "down"],
    PageUp "page_up" "page up" ["pgup", "ctrl-u"],
    PageDown "page_down" "page down" ["pgdn", "ctrl-d"],
    Home "home" "first" ["g", "home"],
    End "end" "last" ["G", "end"],
    Left "left" "left" ["h", "left"],
    Right "right" "right" ["l", "right"],
    Select "select" "select" ["enter"],
    Back "back" "back / cancel" ["esc"],
    Edit "edit" "edit" ["e", "i"],
    Save "save" "save" ["s", "ctrl-s"],
    Search "search" "search" ["/"],
    NextBatch "next_batch" "next batch" ["n", "]"],
    PrevBatch "prev_batch" "previous batch" ["N", "["],
    CycleMasking "cycle_masking" "masking" ["m"],
    CyclePacking "cycle_packing" "packing" ["p"],
    CyclePadding "cycle_padding" "padding side" ["d"],
    LongerMaxLength "longer_max_length" "longer max_length" ["+", "="],
    ShorterMaxLength "shorter_max_length" "shorter max_length" ["-"],
    ToggleAdapter "toggle_adapter" "adapter on/off" ["a"],
    SideBySide "side_by_side" "side by side" ["b"],
    ShowPrompt "show_prompt" "show the prompt" ["P"],
    StopGeneration "stop_generation" "stop generating" ["esc"],
    ClearChat "clear_chat" "clear the chat" ["c"],
    CycleTheme "cycle_theme" "next theme" ["t"],
    StartTraining "start_training" "start training" ["r"],
    PauseTraining "pause_training" "pause the run" ["space"],
    ResumeTraining "resume_training" "resume the run" ["u"],
    StopTraining "stop_training" "stop the run" ["x"],
    SaveCheckpoint "save_checkpoint" "save a checkpoint now" ["w"],
    ChartWindow "chart_window" "whole run / recent" ["v"],
    ChatWithRun "chat_with_run" "chat with the run's adapter" ["C"],
    Export "export" "export" ["E"],
}

impl Action {
    /// The action called `name` in keys.toml.
    pub fn from_name(name: &str) -> Option<Action> {
        Self::ALL.iter().copied().find(|a| a.name() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One key with its modifiers, normalised so that what a terminal reports for
/// it compares equal however the terminal spells it: Shift is folded into the
/// character (`G`, `?`) and into `BackTab`, and Ctrl with a letter ignores the
/// letter's case (terminals cannot tell Ctrl-S from Ctrl-s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyBinding {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl KeyBinding {
    /// A binding for `code` with `modifiers`, normalised.
    pub fn new(code: KeyCode, modifiers: KeyModifiers) -> KeyBinding {
        let shift = modifiers.contains(KeyModifiers::SHIFT);
        let code = match code {
            KeyCode::Char(c) if modifiers.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            KeyCode::Char(c) if shift => KeyCode::Char(c.to_ascii_uppercase()),
            KeyCode::Tab if shift => KeyCode::BackTab,
            other => other,
        };
        let modifiers = match code {
            KeyCode::Char(_) | KeyCode::BackTab => modifiers - KeyModifiers::SHIFT,
            _ => modifiers,
        };
        KeyBinding { code, modifiers }
    }

    /// Whether `event` is this key (presses and repeats, never releases).
    pub fn matches(&self, event: &KeyEvent) -> bool {
        event.kind != KeyEventKind::Release && KeyBinding::new(event.code, event.modifiers) == *self
    }
}

impl From<&KeyEvent> for KeyBinding {
    fn from(e: &KeyEvent) -> Self {
        KeyBinding::new(e.code, e.modifiers)
    }
}

impl FromStr for KeyBinding {
    type Err = String;

    /// Parses keys.toml's syntax (and what [`Display`](fmt::Display) writes).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty key".into());
        }
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = s;
        'prefixes: loop {
            for (prefix, m) in MODIFIER_PREFIXES {
                // What follows a prefix must be a key: `ctrl-` alone is not
                // Ctrl plus nothing, and `-` alone is the minus key.
                let Some(head) = rest.get(..prefix.len()) else {
                    continue;
                };
                if head.eq_ignore_ascii_case(prefix) && rest.len() > prefix.len() {
                    modifiers |= *m;
                    rest = &rest[prefix.len()..];
                    continue 'prefixes;
                }
            }
            break;
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => match c {
                '↑' => KeyCode::Up,
                '↓' => KeyCode::Down,
                '←' => KeyCode::Left,
                '→' => KeyCode::Right,
                c => KeyCode::Char(c),
            },
            _ => named_key(rest).ok_or_else(|| {
                format!(
                    "`{s}` is not a key: use one character, or a name like enter, esc, tab, \
                     space, backspace, up, pgdn, home, f2, after any of ctrl-, alt-, shift-"
                )
            })?,
        };
        Ok(KeyBinding::new(code, modifiers))
    }
}

const MODIFIER_PREFIXES: &[(&str, KeyModifiers)] = &[
    ("ctrl-", KeyModifiers::CONTROL),
    ("ctrl+", KeyModifiers::CONTROL),
    ("control-", KeyModifiers::CONTROL),
    ("alt-", KeyModifiers::ALT),
    ("alt+", KeyModifiers::ALT),
    ("shift-", KeyModifiers::SHIFT),
    ("shift+", KeyModifiers::SHIFT),
    ("super-", KeyModifiers::SUPER),
    ("super+", KeyModifiers::SUPER),
];

fn named_key(name: &str) -> Option<KeyCode> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "enter" | "return" => KeyCode::Enter,
        "esc" | "escape" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "backtab" => KeyCode::BackTab,
        "space" => KeyCode::Char(' '),
        "backspace" => KeyCode::Backspace,
        "delete" | "del" => KeyCode::Delete,
        "insert" | "ins" => KeyCode::Insert,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "pgup" | "pageup" => KeyCode::PageUp,
        "pgdn" | "pgdown" | "pagedown" => KeyCode::PageDown,
        "minus" => KeyCode::Char('-'),
        "plus" => KeyCode::Char('+'),
        _ => {
            let n: u8 = lower.strip_prefix('f')?.parse().ok()?;
            if (1..=24).contains(&n) {
                KeyCode::F(n)
            } else {
                return None;
            }
        }
    })
}

impl fmt::Display for KeyBinding {
    /// The key as the hint bar shows it: `j`, `G`, `↓`, `Ctrl-s`, `Shift-Tab`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (m, label) in [
            (KeyModifiers::CONTROL, "Ctrl-"),
            (KeyModifiers::ALT, "Alt-"),
            (KeyModifiers::SUPER, "Super-"),
            (KeyModifiers::HYPER, "Hyper-"),
            (KeyModifiers::META, "Meta-"),
            (KeyModifiers::SHIFT, "Shift-"),
        ] {
            if self.modifiers.contains(m) {
                f.write_str(label)?;
            }
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("Shift-Tab"),
            KeyCode::Backspace => f.write_str("Backspace"),
            KeyCode::Delete => f.write_str("Del"),
            KeyCode::Insert => f.write_str("Ins"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::F(n) => write!(f, "F{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Why keys.toml could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}, line {line}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// An unknown action, or a value that is not a list of keys. `key` is the
    /// action's name as written in the file.
    #[error("{}, line {line}: `{key}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Which keys do each action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    bindings: [Vec<KeyBinding>; Action::COUNT],
}

impl Default for KeyMap {
    /// The default keys ([`Action::default_keys`]).
    fn default() -> Self {
        KeyMap {
            bindings: std::array::from_fn(|i| {
                // Every default parses (a test checks), so nothing is dropped.
                Action::ALL[i]
                    .default_keys()
                    .iter()
                    .filter_map(|k| k.parse().ok())
                    .collect()
            }),
        }
    }
}

impl KeyMap {
    /// Where the user's key file is: `<config dir>/keys.toml`.
    pub fn path() -> PathBuf {
        crate::paths::dirs().config.join("keys.toml")
    }

    /// The defaults with the user's `keys.toml` over them, if there is one.
    pub fn load() -> Result<KeyMap, KeysError> {
        Self::load_from(&Self::path())
    }

    /// The defaults with the key file at `path` over them; no file, no change.
    pub fn load_from(path: &Path) -> Result<KeyMap, KeysError> {
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyMap::default()),
            Err(source) => {
                return Err(KeysError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::from_toml(&src, path)
    }

    /// The defaults with key-file text over them; `file` names it in errors.
    pub fn from_toml(src: &str, file: &Path) -> Result<KeyMap, KeysError> {
        let doc = DeTable::parse(src).map_err(|e| KeysError::Syntax {
            file: file.to_path_buf(),
            line: e.span().map_or(1, |s| crate::config::line_at(src, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let invalid = |key: &str, at: usize, message: String| KeysError::Invalid {
            file: file.to_path_buf(),
            line: crate::config::line_at(src, at),
            key: key.to_string(),
            message,
        };
        let mut map = KeyMap::default();
        for (key, value) in doc.get_ref().iter() {
            let name: &str = key.get_ref();
            let at = key.span().start;
            let Some(action) = Action::from_name(name) else {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                return Err(invalid(
                    name,
                    at,
                    format!("no such action; the actions are {}", names.join(", ")),
                ));
            };
            let items = match value.get_ref() {
                DeValue::String(_) => std::slice::from_ref(value),
                DeValue::Array(items) => &items[..],
                _ => {
                    return Err(invalid(
                        name,
                        at,
                        "expected a list of keys, like [\"ctrl-s\", \"F2\"]".into(),
                    ))
                }
            };
            let mut keys = Vec::new();
            for item in items {
                let at = item.span().start;
                let DeValue::String(text) = item.get_ref() else {
                    return Err(invalid(
                        name,
                        at,
                        "a key is a string, like \"ctrl-s\"".into(),
                    ));
                };
                let key: KeyBinding = text.parse().map_err(|e| invalid(name, at, e))?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            map.set(action, keys);
        }
        Ok(map)
    }

    /// The keys that do `action` (empty: unbound).
    pub fn bindings(&self, action: Action) -> &[KeyBinding] {
        &self.bindings[action as usize]
    }

    /// Makes `keys` the keys that do `action`.
    pub fn set(&mut self, action: Action, keys: Vec<KeyBinding>) {
        self.bindings[action as usize] = keys;
    }

    /// Whether `event` is one of `action`'s keys.
    pub fn matches(&self, action: Action, event: &KeyEvent) -> bool {
        self.bindings(action).iter().any(|k| k.matches(event))
    }

    /// The first of `candidates` that `event` is a key of: a pane lists the
    /// actions it handles, in the order it prefers them where keys are shared.
    pub fn action(&self, event: &KeyEvent, candidates: &[Action]) -> Option<Action> {
        candidates.iter().copied().find(|a| self.matches(*a, event))
    }

    /// `action`'s keys for the hint bar and the help screen, such as `j/↓`;
    /// empty when it is unbound.
    pub fn label(&self, action: Action) -> String {
        let keys: Vec<String> = self
            .bindings(action)
            .iter()
            .map(|k| k.to_string())
            .collect();
        keys.join("/")
    }

    /// The keys that more than one of `actions` share, with those actions:
    /// for actions live at the same time (a pane's and the global ones) a
    /// shared key means the later ones never see it.
    pub fn conflicts(&self, actions: &[Action]) -> Vec<(KeyBinding, Vec<Action>)> {
        let mut found: Vec<(KeyBinding, Vec<Action>)> = Vec::new();
        for &a in actions {
            for &k in self.bindings(a) {
                match found.iter_mut().find(|(key, _)| *key == k) {
                    Some((_, acts)) if !acts.contains(&a) => acts.push(a),
                    Some(_) => {}
                    None => found.push((k, vec![a])),
                }
            }
        }
        found.retain(|(_, acts)| acts.len() > 1);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn ch(c: char) -> KeyEvent {
        key(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn invalid(src: &str) -> (usize, String, String) {
        match KeyMap::from_toml(src, Path::new("keys.toml")) {
            Err(KeysError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn every_action_has_a_name_a_description_and_a_default_key() {
        let map = KeyMap::default();
        for &a in Action::ALL {
            assert!(!a.description().is_empty(), "{a:?}");
            assert_eq!(Action::from_name(a.name()), Some(a));
            assert!(
                a.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{a:?}: {}",
                a.name()
            );
            for k in a.default_keys() {
                assert!(k.parse::<KeyBinding>().is_ok(), "{a:?}: default key {k}");
            }
            assert!(!map.bindings(a).is_empty(), "{a:?} has no key");
            assert_eq!(map.bindings(a).len(), a.default_keys().len());
        }
        assert_eq!(Action::ALL.len(), 38);
        assert_eq!(Action::from_name("NextBatch"), None);
    }

    #[test]
    fn defaults_share_only_esc() {
        let map = KeyMap::default();
        let conflicts = map.conflicts(Action::ALL);
        let esc: KeyBinding = "esc".parse().unwrap();
        assert_eq!(
            conflicts,
            vec![(esc, vec![Action::Back, Action::StopGeneration])]
        );
    }

    #[test]
    fn parses_keys() {
        let cases: &[(&str, KeyCode, KeyModifiers)] = &[
            ("a", KeyCode::Char('a'), KeyModifiers::NONE),
            ("?", KeyCode::Char('?'), KeyModifiers::NONE),
            ("G", KeyCode::Char('G'), KeyModifiers::NONE),
            ("shift-g", KeyCode::Char('G'), KeyModifiers::NONE),
            ("-", KeyCode::Char('-'), KeyModifiers::NONE),
            ("+", KeyCode::Char('+'), KeyModifiers::NONE),
            ("ctrl--", KeyCode::Char('-'), KeyModifiers::CONTROL),
            ("ctrl-s", KeyCode::Char('s'), KeyModifiers::CONTROL),
            ("Ctrl-S", KeyCode::Char('s'), KeyModifiers::CONTROL),
            (
                "ctrl+alt-x",
                KeyCode::Char('x'),
                KeyModifiers::CONTROL.union(KeyModifiers::ALT),
            ),
            ("shift-tab", KeyCode::BackTab, KeyModifiers::NONE),
            ("backtab", KeyCode::BackTab, KeyModifiers::NONE),
            ("enter", KeyCode::Enter, KeyModifiers::NONE),
            ("Esc", KeyCode::Esc, KeyModifiers::NONE),
            ("up", KeyCode::Up, KeyModifiers::NONE),
            ("shift-up", KeyCode::Up, KeyModifiers::SHIFT),
            ("pgdn", KeyCode::PageDown, KeyModifiers::NONE),
            ("PageUp", KeyCode::PageUp, KeyModifiers::NONE),
            ("f2", KeyCode::F(2), KeyModifiers::NONE),
            ("F12", KeyCode::F(12), KeyModifiers::NONE),
            ("space", KeyCode::Char(' '), KeyModifiers::NONE),
            ("↓", KeyCode::Down, KeyModifiers::NONE),
        ];
        for (text, code, modifiers) in cases {
            assert_eq!(
                text.parse::<KeyBinding>(),
                Ok(KeyBinding {
                    code: *code,
                    modifiers: *modifiers
                }),
                "{text}"
            );
        }
        for bad in ["", "ctrl-", "enterr", "f0", "f25", "ctrl-foo", "jk"] {
            assert!(bad.parse::<KeyBinding>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn labels_read_back_as_the_same_keys() {
        let map = KeyMap::default();
        assert_eq!(map.label(Action::Down), "j/↓");
        assert_eq!(map.label(Action::PrevPane), "Shift-Tab");
        assert_eq!(map.label(Action::Save), "s/Ctrl-s");
        assert_eq!(map.label(Action::PageDown), "PgDn/Ctrl-d");
        assert_eq!(map.label(Action::Help), "?/F1");
        for &a in Action::ALL {
            for k in map.bindings(a) {
                assert_eq!(k.to_string().parse::<KeyBinding>().as_ref(), Ok(k), "{a:?}");
            }
        }
    }

    #[test]
    fn matches_what_terminals_send() {
        let map = KeyMap::default();
        assert!(map.matches(Action::Down, &ch('j')));
        assert!(map.matches(Action::Down, &key(KeyCode::Down, KeyModifiers::NONE)));
        assert!(!map.matches(Action::Down, &key(KeyCode::Down, KeyModifiers::SHIFT)));
        assert!(!map.matches(
            Action::Down,
            &key(KeyCode::Char('j'), KeyModifiers::CONTROL)
        ));
        // Shift-g arrives as `G`, with or without SHIFT, or as `g` with SHIFT.
        assert!(map.matches(Action::End, &ch('G')));
        assert!(map.matches(Action::End, &key(KeyCode::Char('G'), KeyModifiers::SHIFT)));
        assert!(map.matches(Action::End, &key(KeyCode::Char('g'), KeyModifiers::SHIFT)));
        assert!(!map.matches(Action::End, &ch('g')));
        assert!(map.matches(Action::Help, &key(KeyCode::Char('?'), KeyModifiers::SHIFT)));
        // Shift-Tab arrives as BackTab, usually with SHIFT.
        assert!(map.matches(
            Action::PrevPane,
            &key(KeyCode::BackTab, KeyModifiers::SHIFT)
        ));
        assert!(map.matches(Action::PrevPane, &key(KeyCode::Tab, KeyModifiers::SHIFT)));
        assert!(!map.matches(
            Action::NextPane,
            &key(KeyCode::BackTab, KeyModifiers::SHIFT)
        ));
        // Ctrl-Shift-s is Ctrl-s.
        let ctrl_shift = KeyModifiers::CONTROL | KeyModifiers::SHIFT;
        assert!(map.matches(Action::Save, &key(KeyCode::Char('S'), ctrl_shift)));
        // Releases are not presses.
        let mut release = ch('q');
        release.kind = KeyEventKind::Release;
        assert!(!map.matches(Action::Quit, &release));
        assert!(map.matches(Action::Quit, &ch('q')));
    }

    #[test]
    fn action_takes_the_first_candidate() {
        let map = KeyMap::default();
        let esc = key(KeyCode::Esc, KeyModifiers::NONE);
        let chat = [Action::StopGeneration, Action::Back, Action::ClearChat];
        assert_eq!(map.action(&esc, &chat), Some(Action::StopGeneration));
        assert_eq!(map.action(&esc, &chat[1..]), Some(Action::Back));
        assert_eq!(map.action(&ch('c'), &chat), Some(Action::ClearChat));
        assert_eq!(map.action(&ch('x'), &chat), None);
        assert_eq!(map.action(&ch('n'), &[]), None);
    }

    #[test]
    fn a_file_changes_only_the_actions_it_names() {
        let src = "# mine\nsave = [\"ctrl-s\", \"F2\"]\nnext_batch = \"ctrl-n\"\nclear_chat = []\n";
        let map = KeyMap::from_toml(src, Path::new("keys.toml")).unwrap();
        let defaults = KeyMap::default();
        assert_eq!(map.label(Action::Save), "Ctrl-s/F2");
        assert!(!map.matches(Action::Save, &ch('s')));
        assert!(map.matches(Action::Save, &key(KeyCode::F(2), KeyModifiers::NONE)));
        assert_eq!(map.label(Action::NextBatch), "Ctrl-n");
        assert!(map.bindings(Action::ClearChat).is_empty());
        assert_eq!(map.label(Action::ClearChat), "");
        for &a in Action::ALL {
            if ![Action::Save, Action::NextBatch, Action::ClearChat].contains(&a) {
                assert_eq!(map.bindings(a), defaults.bindings(a), "{a:?}");
            }
        }
        assert_eq!(
            KeyMap::from_toml("", Path::new("keys.toml")).unwrap(),
            defaults
        );
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_line() {
        let (line, key, message) = invalid("save = [\"ctrl-s\"]\n\nsavee = [\"s\"]\n");
        assert_eq!((line, key.as_str()), (3, "savee"));
        assert!(
            message.contains("next_batch"),
            "lists the actions: {message}"
        );

        let (line, key, message) = invalid("quit = [\n  \"q\",\n  \"ctrl-qq\",\n]\n");
        assert_eq!((line, key.as_str()), (3, "quit"));
        assert!(message.contains("ctrl-qq"), "{message}");

        let (line, key, _) = invalid("\nquit = 3\n");
        assert_eq!((line, key.as_str()), (2, "quit"));

        let (line, key, _) = invalid("quit = [\"q\", 1]\n");
        assert_eq!((line, key.as_str()), (1, "quit"));

        let (line, key, _) = invalid("[quit]\nkey = \"q\"\n");
        assert_eq!((line, key.as_str()), (1, "quit"));

        let err = KeyMap::from_toml("quit = [\"q\"]\nsave = [\"s\"\n", Path::new("/x/keys.toml"))
            .unwrap_err();
        assert!(matches!(err, KeysError::Syntax { line: 2, .. }), "{err:?}");

        let err = KeyMap::from_toml("help = \"??\"\n", Path::new("/x/keys.toml")).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("/x/keys.toml, line 1: `help`: "),
            "{shown}"
        );
    }

    #[test]
    fn load_from_a_file_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        assert_eq!(KeyMap::load_from(&path).unwrap(), KeyMap::default());
        std::fs::write(&path, "cycle_theme = [\"T\"]\n").unwrap();
        let map = KeyMap::load_from(&path).unwrap();
        assert_eq!(map.label(Action::CycleTheme), "T");
        std::fs::write(&path, "cycle_theme = [\"T\"]\ncycle_them = [\"t\"]\n").unwrap();
        let err = KeyMap::load_from(&path).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("keys.toml, line 2: `cycle_them`"), "{shown}");
        assert!(shown.contains(&path.display().to_string()), "{shown}");
    }
}
