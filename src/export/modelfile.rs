//! An Ollama `Modelfile` for an exported GGUF: `FROM` the file, an explicit `TEMPLATE`
//! (a Go `text/template` over Ollama's `.Messages`) that renders conversations as the
//! chat template the run trained with does, `PARAMETER stop` for every turn marker and
//! EOS, `SYSTEM` for the run's system prompt and sampling parameters from
//! `[generation]`.
//!
//! Both `TEMPLATE` and the stops are always written: Ollama otherwise guesses a template
//! from the GGUF's Jinja by edit distance (it takes ftui's Phi-3 template for zephyr) and
//! keeps the guessed stops. A Jinja program cannot be translated to Go in general, so
//! ftui recognises a template by what it renders: the chat template is rendered on probe
//! conversations next to each template ftui has a verified Go twin for (its five
//! built-ins and the default model's), and the first that renders every probe alike
//! gives the Go template. Anything else is refused with the reason, never guessed.

use super::{io_err, ExportError, Prepared, Result};
use crate::template::{builtin, ChatTemplate, SpecialTokens};
use std::path::Path;

/// SmolLM2-Instruct's template (the default model's): ChatML with a default system
/// prompt when the conversation has none.
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const CHATML_GO: &str = "{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
";

/// A Go template of Ollama's and the stops it needs; `{eos}` and `{bos}` stand for the
/// tokenizer's texts.
struct GoTwin {
    name: &'static str,
    jinja: fn() -> Option<&'static str>,
    go: &'static str,
    stops: &'static [&'static str],
}

const TWINS: [GoTwin; 6] = [
    GoTwin {
        name: "chatml",
        jinja: || builtin("chatml"),
        go: CHATML_GO,
        stops: &["<|im_start|>", "<|im_end|>"],
    },
    GoTwin {
        name: "SmolLM2",
        jinja: || Some(SMOLLM2),
        go: "{{- range $i, $_ := .Messages }}{{ if and (eq $i 0) (ne .Role \"system\") }}<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
{{ end }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
",
        stops: &["<|im_start|>", "<|im_end|>"],
    },
    GoTwin {
        name: "llama3",
        jinja: || builtin("llama3"),
        go: "{bos}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

",
        stops: &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    },
    GoTwin {
        name: "phi3",
        jinja: || builtin("phi3"),
        go: "{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}<|assistant|>
",
        stops: &["<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "{eos}"],
    },
    GoTwin {
        name: "zephyr",
        jinja: || builtin("zephyr"),
        go: "{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}{eos}
{{ end }}<|assistant|>
",
        stops: &["<|system|>", "<|user|>", "<|assistant|>", "{eos}"],
    },
    // Mistral v0.3: the system prompt goes into the last user turn.
    GoTwin {
        name: "mistral",
        jinja: || builtin("mistral"),
        go: "{bos}{{- range $index, $_ := .Messages }}
{{- if eq .Role \"user\" }}[INST] {{ if and $.System (eq (len (slice $.Messages $index)) 1) }}{{ $.System }}

{{ end }}{{ .Content }}[/INST]
{{- else if eq .Role \"assistant\" }} {{ .Content }}{eos}
{{- end }}
{{- end }}",
        stops: &["[INST]", "[/INST]", "{eos}"],
    },
];

/// Probe conversations: every role, several turns, a newline inside a message.
fn probes() -> Vec<Vec<serde_json::Value>> {
    let m = |role: &str, content: &str| serde_json::json!({"role": role, "content": content});
    vec![
        vec![m("user", "Hello there")],
        vec![m("system", "Be brief."), m("user", "Hi")],
        vec![
            m("user", "2+2?"),
            m("assistant", "4"),
            m("user", "And 3+3?\nJust the number."),
        ],
        vec![
            m("system", "You are a tutor."),
            m("user", "Define a noun."),
            m("assistant", "A naming word."),
            m("user", "Thanks"),
        ],
    ]
}

/// A chat template as Ollama's Go template, with the stops it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GoTemplate {
    /// The built-in (or SmolLM2) template it renders like.
    pub like: &'static str,
    pub template: String,
    pub stops: Vec<String>,
}

/// The Go twin of `template` (compiled with `specials`), or why there is none.
/// `adds_bos`: the GGUF's tokenizer adds BOS itself (`add_bos_token`), so the Go template
/// must not write it.
pub fn translate(
    template: &ChatTemplate,
    specials: &SpecialTokens,
    adds_bos: bool,
) -> Result<GoTemplate> {
    let render = |t: &ChatTemplate| -> Vec<Option<String>> {
        probes()
            .iter()
            .flat_map(|c| [true, false].map(|g| t.render(c, g).ok().map(|r| r.text)))
            .collect()
    };
    let want = render(template);
    if want.iter().all(Option::is_none) {
        return Err(ExportError::Untranslatable(
            "the chat template renders none of the probe conversations".into(),
        ));
    }
    let mut nearest = ("", 0usize);
    for twin in &TWINS {
        let Some(source) = (twin.jinja)() else {
            continue;
        };
        let Ok(candidate) = ChatTemplate::new(source, specials) else {
            continue;
        };
        let got = render(&candidate);
        let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        if same == want.len() {
            let eos = specials.eos.clone().unwrap_or_default();
            let bos = if adds_bos {
                String::new()
            } else {
                specials.bos.clone().unwrap_or_default()
            };
            let fill = |s: &str| s.replace("{eos}", &eos).replace("{bos}", &bos);
            let mut stops: Vec<String> = Vec::new();
            for s in twin.stops.iter().map(|s| fill(s)) {
                if !s.is_empty() && !stops.contains(&s) {
                    stops.push(s);
                }
            }
            return Ok(GoTemplate {
                like: twin.name,
                template: fill(twin.go),
                stops,
            });
        }
        if same > nearest.1 {
            nearest = (twin.name, same);
        }
    }
    let hint = if nearest.1 > 0 {
        format!(
            "; the nearest, {}, renders {} of {} probes alike",
            nearest.0,
            nearest.1,
            want.len()
        )
    } else {
        String::new()
    };
    Err(ExportError::Untranslatable(format!(
        "the chat template renders conversations unlike every template ftui has an Ollama (Go) twin for (chatml, llama3, phi3, mistral, zephyr, SmolLM2's){hint}; write the Modelfile's TEMPLATE by hand or export with one of those templates"
    )))
}

/// `"value"` for a Modelfile line; Ollama's parser cannot escape quotes.
fn quoted(what: &str, v: &str, delimiter: &str) -> Result<String> {
    if v.contains(delimiter) || (delimiter == "\"" && v.contains('\n')) {
        return Err(ExportError::Untranslatable(format!(
            "{what} {v:?} holds {delimiter}, which a Modelfile cannot quote"
        )));
    }
    Ok(format!("{delimiter}{v}{delimiter}"))
}

/// The Modelfile text for the GGUF at `from` (as the `FROM` line should name it).
pub fn modelfile(p: &Prepared, from: &str) -> Result<String> {
    let tok = &p.loaded.tokenizer;
    let with = tok.encode("a", true).unwrap_or_default();
    let without = tok.encode("a", false).unwrap_or_default();
    let adds_bos = with.len() > without.len()
        && with.first().copied() == tok.specials.bos.as_ref().map(|t| t.id);
    let go = translate(&p.template, &tok.template_specials(), adds_bos)?;
    let mut stops = go.stops.clone();
    if let Some(eot) = &p.turns.end_of_turn {
        if !stops.contains(&eot.text) {
            stops.push(eot.text.clone());
        }
    }
    let mut out = format!(
        "# Made by ftui export from {} (chat template rendering like {}).\nFROM {from}\nTEMPLATE {}\n",
        p.source_name,
        go.like,
        quoted("the template", &go.template, "\"\"\"")?
    );
    for s in &stops {
        out.push_str(&format!(
            "PARAMETER stop {}\n",
            quoted("the stop", s, "\"")?
        ));
    }
    if let Some(c) = &p.config {
        let g = &c.generation;
        out.push_str(&format!("PARAMETER temperature {}\n", g.temperature));
        out.push_str(&format!("PARAMETER top_p {}\n", g.top_p));
        out.push_str(&format!("PARAMETER top_k {}\n", g.top_k));
        out.push_str(&format!(
            "PARAMETER repeat_penalty {}\n",
            g.repetition_penalty
        ));
        out.push_str(&format!("PARAMETER num_predict {}\n", g.max_new_tokens));
        if let Some(seed) = g.seed {
            out.push_str(&format!("PARAMETER seed {seed}\n"));
        }
        out.push_str(&format!("PARAMETER num_ctx {}\n", c.training.max_length));
        if let Some(system) = c.data.as_ref().and_then(|d| d.system_prompt.as_deref()) {
            out.push_str(&format!(
                "SYSTEM {}\n",
                quoted("the system prompt", system, "\"\"\"")?
            ));
        }
    }
    Ok(out)
}

/// The Modelfile to write at `path` for the GGUF file `gguf`: `FROM` names the GGUF
/// relative to the Modelfile's folder when it lies there. Made before the GGUF is
/// written, so an untranslatable template stops the export before the long part.
pub fn for_gguf(p: &Prepared, path: &Path, gguf: &Path) -> Result<String> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let from = match gguf.strip_prefix(dir) {
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => std::path::absolute(gguf)
            .unwrap_or_else(|_| gguf.to_path_buf())
            .display()
            .to_string(),
    };
    modelfile(p, &from)
}

/// Writes Modelfile `text` to `path` atomically.
pub fn write(path: &Path, text: &str) -> Result<()> {
    crate::fsutil::write_atomic(path, text.as_bytes()).map_err(io_err(path))
}
