//! Which modules get an adapter, by peft's rules (`check_target_module_exists`).

use crate::config::TargetModules;

/// Whether peft would put an adapter on `module`: a list matches a module by
/// its full name or its last components; a string is a regular expression over
/// the full name; `all-linear` is every linear layer but the output head.
pub fn is_target(module: &str, targets: &TargetModules) -> bool {
    match targets {
        TargetModules::Pattern(p) if p == "all-linear" => module != "lm_head",
        TargetModules::Pattern(p) => full_match(p, module),
        TargetModules::Names(names) => names
            .iter()
            .any(|t| module == t || module.ends_with(&format!(".{t}"))),
    }
}

/// `re.fullmatch` for the patterns people write in `target_modules`.
fn full_match(pattern: &str, text: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(text))
}

/// The model module a `modules_to_save` entry names: peft names them by their
/// last component.
pub fn saved_module_name(m: &str) -> String {
    match m.rsplit('.').next().unwrap_or(m) {
        "embed_tokens" => "model.embed_tokens".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_regexes_and_all_linear() {
        let names = TargetModules::Names(vec!["q_proj".into(), "mlp.down_proj".into()]);
        assert!(is_target("model.layers.0.self_attn.q_proj", &names));
        assert!(is_target("model.layers.3.mlp.down_proj", &names));
        assert!(!is_target("model.layers.0.self_attn.k_proj", &names));
        assert!(!is_target("model.layers.0.self_attn.xq_proj", &names));
        let re = TargetModules::Pattern(r".*\.(q|v)_proj".into());
        assert!(is_target("model.layers.1.self_attn.v_proj", &re));
        assert!(!is_target("model.layers.1.self_attn.o_proj", &re));
        let all = TargetModules::Pattern("all-linear".into());
        assert!(is_target("model.layers.1.mlp.up_proj", &all));
        assert!(!is_target("lm_head", &all));
    }
}
