//! One line of editable text with a cursor, for every pane that takes text
//! (a config value, a search, a chat message): typing inserts at the cursor,
//! Left/Right/Home/End move it, Backspace and Delete remove around it, Enter
//! and Esc end the edit.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where the cursor is drawn.
pub const CURSOR: &str = "▏";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextInput {
    text: String,
    /// A byte offset on a char boundary.
    cursor: usize,
}

/// What a key did to the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOutcome {
    /// The text changed.
    Edited,
    /// Only the cursor moved.
    Moved,
    /// Enter.
    Submit,
    /// Esc.
    Cancel,
    /// Not a key the input uses.
    Ignored,
}

impl TextInput {
    /// `text`, with the cursor at its end.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        TextInput {
            cursor: text.len(),
            text,
        }
    }

    pub fn value(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
    }

    /// The text with the cursor mark where the cursor is.
    pub fn display(&self) -> String {
        let (before, after) = self.text.split_at(self.cursor);
        format!("{before}{CURSOR}{after}")
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .chars()
            .next()
            .map_or(self.cursor, |c| self.cursor + c.len_utf8())
    }

    pub fn on_key(&mut self, key: &KeyEvent) -> InputOutcome {
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return InputOutcome::Ignored;
        }
        match key.code {
            KeyCode::Enter => InputOutcome::Submit,
            KeyCode::Esc => InputOutcome::Cancel,
            KeyCode::Char(c) => {
                self.text.insert(self.cursor, c);
                self.cursor += c.len_utf8();
                InputOutcome::Edited
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let from = self.prev_boundary();
                self.text.replace_range(from..self.cursor, "");
                self.cursor = from;
                InputOutcome::Edited
            }
            KeyCode::Delete if self.cursor < self.text.len() => {
                let to = self.next_boundary();
                self.text.replace_range(self.cursor..to, "");
                InputOutcome::Edited
            }
            KeyCode::Left => {
                self.cursor = self.prev_boundary();
                InputOutcome::Moved
            }
            KeyCode::Right => {
                self.cursor = self.next_boundary();
                InputOutcome::Moved
            }
            KeyCode::Home => {
                self.cursor = 0;
                InputOutcome::Moved
            }
            KeyCode::End => {
                self.cursor = self.text.len();
                InputOutcome::Moved
            }
            _ => InputOutcome::Ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(input: &mut TextInput, code: KeyCode) -> InputOutcome {
        input.on_key(&KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(input: &mut TextInput, text: &str) {
        for c in text.chars() {
            press(input, KeyCode::Char(c));
        }
    }

    #[test]
    fn edits_happen_at_the_cursor() {
        let mut t = TextInput::new("héllo");
        assert_eq!(t.display(), "héllo▏");
        press(&mut t, KeyCode::Home);
        typed(&mut t, ">");
        assert_eq!(t.display(), ">▏héllo");
        press(&mut t, KeyCode::Right);
        press(&mut t, KeyCode::Right);
        assert_eq!(press(&mut t, KeyCode::Backspace), InputOutcome::Edited);
        assert_eq!(t.display(), ">h▏llo", "a two-byte char goes as one");
        press(&mut t, KeyCode::Delete);
        assert_eq!(t.value(), ">hlo");
        press(&mut t, KeyCode::End);
        assert_eq!(press(&mut t, KeyCode::Delete), InputOutcome::Ignored);
        press(&mut t, KeyCode::Left);
        typed(&mut t, "ß");
        assert_eq!(t.display(), ">hlß▏o");
        press(&mut t, KeyCode::Home);
        assert_eq!(press(&mut t, KeyCode::Backspace), InputOutcome::Ignored);
        assert_eq!(press(&mut t, KeyCode::Left), InputOutcome::Moved);
        assert_eq!(t.display(), "▏>hlßo");
    }

    #[test]
    fn enter_and_esc_end_the_edit_and_ctrl_keys_pass() {
        let mut t = TextInput::default();
        assert!(t.is_empty());
        assert_eq!(press(&mut t, KeyCode::Enter), InputOutcome::Submit);
        assert_eq!(press(&mut t, KeyCode::Esc), InputOutcome::Cancel);
        let ctrl_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL);
        assert_eq!(t.on_key(&ctrl_u), InputOutcome::Ignored);
        assert!(t.is_empty());
        let shifted = KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT);
        assert_eq!(t.on_key(&shifted), InputOutcome::Edited);
        assert_eq!(t.value(), "A");
        t.clear();
        assert_eq!(t.display(), "▏");
    }
}
