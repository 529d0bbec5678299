//! Where a chat template given in a config or on the command line comes from:
//! a built-in name, a file, or the template text itself.

use std::path::Path;

/// Resolves `spec` to template text: a built-in name (`chatml`, `llama3`,
/// `phi3`, `mistral`, `zephyr`), a path to a file, or an inline template.
pub fn resolve_source(spec: &str) -> Result<String, String> {
    if let Some(t) = super::builtin(spec) {
        return Ok(t.to_string());
    }
    let path = Path::new(spec);
    if path.is_file() {
        return std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the chat template: {e}", path.display()));
    }
    if spec.contains("{{") || spec.contains("{%") {
        return Ok(spec.to_string());
    }
    Err(format!(
        "chat template `{spec}`: not a file, not a built-in name (chatml, llama3, phi3, mistral, zephyr) and not a template"
    ))
}
