//! Word wrapping for text drawn beside a label (a chat turn's role): the
//! caller wraps to the width left of the label and indents the continuation
//! lines itself, which ratatui's paragraph wrapping cannot do.

use ratatui::text::Span;

/// The terminal cells `s` takes.
fn cells(s: &str) -> usize {
    Span::raw(s).width()
}

/// `text` in lines of at most `width` cells (at least one character each),
/// broken after spaces where possible; a space where a line breaks is dropped.
/// Every `\n` starts a new line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut used = 0;
        // Where the line may break: the byte after its last space, and the cells before it.
        let mut last_break: Option<(usize, usize)> = None;
        for ch in paragraph.chars() {
            let mut buf = [0u8; 4];
            let w = cells(ch.encode_utf8(&mut buf));
            if used + w > width && !line.is_empty() {
                if ch == ' ' {
                    lines.push(std::mem::take(&mut line));
                    used = 0;
                    last_break = None;
                    continue;
                }
                match last_break.take() {
                    Some((at, before)) => {
                        let rest = line.split_off(at);
                        lines.push(line.trim_end_matches(' ').to_string());
                        line = rest;
                        used -= before;
                    }
                    None => {
                        lines.push(std::mem::take(&mut line));
                        used = 0;
                    }
                }
            }
            line.push(ch);
            used += w;
            if ch == ' ' {
                last_break = Some((line.len(), used));
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn breaks_after_spaces_and_splits_long_words() {
        assert_eq!(
            wrap("Strong in you, the Force is.", 10),
            ["Strong in", "you, the", "Force is."]
        );
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one\n\ntwo", 10), ["one", "", "two"]);
        assert_eq!(wrap("", 5), [""]);
        // Wide characters take two cells.
        assert_eq!(wrap("日本語です", 4), ["日本", "語で", "す"]);
        for line in wrap("a long answer that goes on and on, past the edge", 7) {
            assert!(line.chars().count() <= 7, "{line:?}");
        }
    }
}
