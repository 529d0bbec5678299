//! What a chat template writes around a turn that matters after training: the marker
//! that ends the assistant's turn. Generation must stop there, so a merged folder lists
//! it among `generation_config.json`'s EOS ids, a GGUF names it `eot_token_id`, and an
//! Ollama Modelfile makes it a `stop` parameter.

use super::{ExportError, Result};
use crate::template::ChatTemplate;
use crate::tokenizer::{SpecialToken, TextTokenizer};

/// Stand-ins for message contents: no whitespace (templates trim), nothing a template
/// or tokenizer would treat specially.
const USER: &str = "FTUIPROBEUSER";
const ASSISTANT: &str = "FTUIPROBEASSISTANT";

/// The turn markers of a chat template on a tokenizer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatTurns {
    /// The end-of-turn marker, a token of the vocabulary (`<|im_end|>`, `<|eot_id|>`,
    /// `<|end|>`, an EOS token), when the text after the answer starts with one.
    pub end_of_turn: Option<SpecialToken>,
}

impl ChatTurns {
    /// Renders a user and an assistant turn and reads what closes the assistant's.
    pub fn of(template: &ChatTemplate, tokenizer: &TextTokenizer) -> Result<ChatTurns> {
        let messages = [
            serde_json::json!({"role": "user", "content": USER}),
            serde_json::json!({"role": "assistant", "content": ASSISTANT}),
        ];
        let text = template
            .render(&messages, false)
            .map_err(|e| ExportError::Template(e.to_string()))?
            .text;
        let after = text
            .rfind(ASSISTANT)
            .map(|i| text[i + ASSISTANT.len()..].to_string())
            .unwrap_or_default();
        // The longest added (or EOS) token the text after the answer starts with.
        let mut candidates: Vec<(String, u32)> = tokenizer
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (t.content, id))
            .collect();
        if let Some(eos) = &tokenizer.specials.eos {
            candidates.push((eos.text.clone(), eos.id));
        }
        candidates.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let trimmed = after.trim_start();
        let end_of_turn = candidates
            .into_iter()
            .find(|(t, _)| !t.is_empty() && trimmed.starts_with(t.as_str()))
            .map(|(text, id)| SpecialToken { text, id });
        Ok(ChatTurns { end_of_turn })
    }
}
